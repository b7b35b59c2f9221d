"""The project side by side with captum, kronfluence and dattri (issue 15): same model, data and damping, one process.

    pip install -e .[peers]                 # captum, kronfluence, dattri: benchmark-only, never needed at run time
    python benchmarks/peers.py --quick      # smoke run: N = 600 train, 100 queries, short training
    python benchmarks/peers.py              # N = 6,000 train, 1,000 queries (MNIST, 10 classes, 10 % labels flipped)
    python benchmarks/peers.py --only mlp-ip,tracin   # a subset of the row groups
    python benchmarks/peers.py --only cnn-kfac,cnn-ekfac,cnn-tracin   # the SmallCNN's KFAC, EK-FAC and TracIn rows
    python benchmarks/peers.py --dataset fashion --n-train 10000 --n-test 500 --only cnn-ip   # Fashion-MNIST (Debian's
                                            # dataset-fashion-mnist, /usr/share/datasets/fashion-mnist)
    python benchmarks/peers.py --only resnet-ip   # ResNet18 (torchvision) on random 3×32×32 images: speed only

Each row times the project and a peer on the same trained model (fit + scoring, seconds, wall clock), prints the
ratio peer ÷ project (above 1: the project is faster), the agreement of the scores and the AUROC of self-influence
for finding the flipped training labels. Agreement is ``max rel`` = max|project − peer| / max|project| where both
compute the same quantity (signs aligned: the project's scores are + = harmful, −gᵀH⁻¹g; the peers' are
+ = helpful), and Spearman's ρ where they approximate the same thing differently (kronfluence's KFAC / EK-FAC /
diagonal use a Fisher with labels sampled from the model; the project's use the exact GGN expectation, except in the
CNN's KFAC / EK-FAC rows and the sampled diagonal row, where its factors too come from sampled labels, like for like).
Any peer that is not installed is skipped with the install hint.

The CNN rows print the path the gradient engine takes for each convolution (issue 35: formed per-sample weight
gradients where positions are many, the pairwise "ghost" form where they are few, by a cost model per layer and
device: ``influence_core.gradients.conv_paths``). The ResNet18 rows select every Conv2d and Linear parameter (its
BatchNorms frozen), as kronfluence tracks those modules and captum is given them as ``layers``.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from influence_core.config import ModelConfig, TrainConfig  # noqa: E402
from influence_core.data.mnist import load_fashion_mnist, load_mnist  # noqa: E402
from influence_core.data.noise import uniform_noise  # noqa: E402
from influence_core.gradients import conv_paths  # noqa: E402
from influence_core.measurements import PerSampleLoss  # noqa: E402
from influence_core.methods import AttributionContext, fit_attributor  # noqa: E402
from influence_core.metrics import auroc  # noqa: E402
from influence_core.models import build_model, parameter_names  # noqa: E402
from influence_core.training import train_model  # noqa: E402

HINT = "not installed: pip install -e .[peers]"
WEIGHT_DECAY = 1e-3  # the L2 term of training: part of the project's H
DAMPING = 1e-2  # the project's λ; the peers get weight decay + λ, the same total added to the curvature's diagonal
ROWS: list[dict] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def peer(name: str):
    try:
        if name == "captum":
            import captum.influence as mod
        elif name == "kronfluence":
            import kronfluence as mod
        else:
            import dattri as mod
        return mod
    except ImportError as exc:
        log(f"{name} {HINT} ({exc})")
        return None


def version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v(name)
    except PackageNotFoundError:
        return "-"


REPEAT = 1  # runs per cell (--repeat): the median is reported, which also takes the first call's warm-up out


def timed(fn):
    seconds = []
    for _ in range(REPEAT):
        torch.manual_seed(0)
        t0 = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t0)
    return out, float(np.median(seconds))


def side_by_side(ours_fn, theirs_fn):
    """(ours, seconds, theirs, seconds): both run ``REPEAT`` times, alternating which goes first, and the medians, so
    a change of load on a shared machine falls on both alike."""
    times: dict[int, list[float]] = {0: [], 1: []}
    outs: dict[int, object] = {}
    fns = (ours_fn, theirs_fn)
    for r in range(REPEAT):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            torch.manual_seed(0)
            t0 = time.perf_counter()
            outs[i] = fns[i]()
            times[i].append(time.perf_counter() - t0)
    return outs[0], float(np.median(times[0])), outs[1], float(np.median(times[1]))


def as_np(a) -> np.ndarray:
    return (a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)).astype(np.float64)


def max_rel(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / max(np.abs(ours).max(), 1e-30))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a.ravel())).astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel())).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def record(row, ours, t_ours, peer_name, theirs, t_theirs, same: bool, mask=None, note=""):
    """One table row; ``ours`` / ``theirs`` already in the same sign convention (None: the peer did not run)."""
    entry = dict(row=row, ours_s=t_ours, peer=peer_name, peer_s=t_theirs, agree="", auc="", note=note)
    if theirs is not None:
        entry["agree"] = f"max rel {max_rel(ours, theirs):.1e}" if same else f"ρ {spearman(ours, theirs):.3f}"
        if mask is not None:
            entry["auc"] = f"{auroc(ours, mask):.3f} / {auroc(theirs, mask):.3f}"
    elif mask is not None:
        entry["auc"] = f"{auroc(ours, mask):.3f}"
    ROWS.append(entry)
    ratio = f"{t_theirs / t_ours:.2f}×" if t_theirs else "-"
    log(f"ROW {row}: project {t_ours:.3f} s, {peer_name} {t_theirs or 0:.3f} s, ratio {ratio} {entry['agree']} AUROC {entry['auc']} {note}")


def gemm_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048**3 / best / 1e9


# ----------------------------------------------------------------------------------------------------------- data


DATASETS = {"mnist": ("MNIST", load_mnist), "fashion": ("Fashion-MNIST", load_fashion_mnist)}


def load(n_train: int, n_test: int, seed: int, dataset: str = "mnist"):
    ds = DATASETS[dataset][1](n_train=n_train, n_test=n_test, seed=seed)
    noisy, mask = uniform_noise(ds.y_train, 0.10, 10, seed)
    x = torch.tensor(ds.x_train, dtype=torch.float32)
    y = torch.tensor(noisy, dtype=torch.long)
    xt = torch.tensor(ds.x_test, dtype=torch.float32)
    yt = torch.tensor(ds.y_test, dtype=torch.long)
    return x, y, xt, yt, mask


def train(kind: str, x, y, epochs: int, seed: int):
    cfg = ModelConfig(kind=kind, hidden=128, depth=1) if kind == "mlp" else ModelConfig(kind=kind)
    model = build_model(cfg, tuple(x.shape[1:]), 10, seed)
    tcfg = TrainConfig(epochs=epochs, lr=1e-3, batch_size=128, optimizer="adam", weight_decay=WEIGHT_DECAY, n_checkpoints=5)
    result = train_model(model, x, y, tcfg, seed)
    return model.eval(), result.checkpoints


def project(method: str, model, x, y, names, curvature="identity", checkpoints=(), curvature_options=None):
    ctx = AttributionContext(
        model, x, y, names, WEIGHT_DECAY, curvature, DAMPING, checkpoints, seed=0, curvature_options=dict(curvature_options or {})
    )
    return fit_attributor(method, ctx)


def project_self(method, model, x, y, names, curvature="identity", checkpoints=(), curvature_options=None):
    return as_np(project(method, model, x, y, names, curvature, checkpoints, curvature_options).self_scores())


def project_matrix(method, model, x, y, names, xt, yt, curvature="identity", checkpoints=(), curvature_options=None):
    return as_np(project(method, model, x, y, names, curvature, checkpoints, curvature_options).scores(PerSampleLoss(xt, yt)))


# ----------------------------------------------------------------------------------------------------------- captum


def _captum_checkpoints(model, checkpoints, folder: str):
    """Captum loads checkpoints from files through a function that returns the learning rate."""
    paths = []
    for k, ckpt in enumerate(checkpoints):
        path = os.path.join(folder, f"ckpt{k}.pt")
        torch.save({"state": ckpt.state, "lr": ckpt.lr}, path)
        paths.append(path)

    def load_fn(m, path):
        saved = torch.load(path, weights_only=True)
        m.load_state_dict(saved["state"])
        return saved["lr"]

    return paths, load_fn


def _final_only(model, folder: str):
    path = os.path.join(folder, "final.pt")
    torch.save({"state": copy.deepcopy(model.state_dict()), "lr": 1.0}, path)  # lr 1: TracIn at one checkpoint = IP
    return [path]


def captum_tracin(model, x, y, paths, load_fn, batch: int, fast_layer=None, layers=None):
    from captum.influence import TracInCP, TracInCPFast
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)
    m = copy.deepcopy(model)
    if fast_layer is not None:
        return TracInCPFast(m, getattr(m, fast_layer), loader, paths, load_fn, nn.CrossEntropyLoss(reduction="sum"), batch_size=batch)
    return TracInCP(
        m,
        loader,
        paths,
        load_fn,
        layers=layers,
        loss_fn=nn.CrossEntropyLoss(reduction="sum"),
        batch_size=batch,
        sample_wise_grads_per_batch=True,
    )


# ------------------------------------------------------------------------------------------------------ kronfluence


def kronfluence_scores(model, x, y, strategy: str, xt=None, yt=None, batch: int = 512, folder: str = ""):
    """Fit kronfluence's factors (strategy: identity, diagonal, kfac, ekfac) and return (self-scores or the pairwise
    matrix) in kronfluence's sign (+ = helpful); damping = weight decay + λ, as the project's H has."""
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task
    from torch.utils.data import TensorDataset

    class CrossEntropy(Task):
        def compute_train_loss(self, batch, model, sample=False):
            inputs, labels = batch
            logits = model(inputs)
            if sample:
                with torch.no_grad():
                    labels = torch.multinomial(torch.softmax(logits.detach(), -1), 1).flatten()
            return F.cross_entropy(logits, labels, reduction="sum")

        def compute_measurement(self, batch, model):
            inputs, labels = batch
            return F.cross_entropy(model(inputs), labels, reduction="sum")

    task = CrossEntropy()
    m = prepare_model(copy.deepcopy(model).eval(), task)
    analyzer = Analyzer(f"peers_{strategy}", m, task, cpu=True, disable_tqdm=True, output_dir=folder, log_level=40)
    train_set = TensorDataset(x, y)
    factor_args = FactorArguments(strategy=strategy)
    analyzer.fit_all_factors("f", train_set, per_device_batch_size=batch, factor_args=factor_args, overwrite_output_dir=True)
    score_args = ScoreArguments(damping_factor=WEIGHT_DECAY + DAMPING)
    if xt is None:
        analyzer.compute_self_scores(
            "s", "f", train_set, per_device_train_batch_size=batch, score_args=score_args, overwrite_output_dir=True
        )
        return analyzer.load_self_scores("s")["all_modules"]
    analyzer.compute_pairwise_scores(
        "p",
        "f",
        TensorDataset(xt, yt),
        train_set,
        per_device_query_batch_size=len(xt),
        per_device_train_batch_size=batch,
        score_args=score_args,
        overwrite_output_dir=True,
    )
    return analyzer.load_pairwise_scores("p")["all_modules"]


# ------------------------------------------------------------------------------------------------------------ dattri


def dattri_tracin(model, checkpoints, x, y, xt, yt, batch: int):
    """dattri's TracIn over the same checkpoints and learning rates, its random projection switched off (exact)."""
    from dattri.algorithm.tracin import TracInAttributor
    from dattri.task import AttributionTask
    from torch.utils.data import DataLoader, TensorDataset

    m = copy.deepcopy(model).eval()

    def loss(params, data):
        image, label = data
        return F.cross_entropy(torch.func.functional_call(m, params, image.unsqueeze(0)), label.unsqueeze(0))

    task = AttributionTask(loss_func=loss, model=m, checkpoints=[c.state for c in checkpoints])
    attributor = TracInAttributor(task, weight_list=torch.tensor([c.lr for c in checkpoints]), normalized_grad=False, device="cpu")
    attributor.projector_kwargs = None  # dattri projects to 512 dimensions by default; off, it is TracIn itself
    train_loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)
    test_loader = DataLoader(TensorDataset(xt, yt), batch_size=len(xt), shuffle=False)
    return attributor.attribute(train_loader, test_loader).T  # (n_train, n_test) → (n_test, n_train)


# -------------------------------------------------------------------------------------------------------------- rows


def mlp_rows(model, ckpts, x, y, xt, yt, mask, groups, gflops, folder):
    names = parameter_names(model, "all")
    p = sum(model.get_parameter(n).numel() for n in names)
    captum, kron = peer("captum"), peer("kronfluence")
    n, k = len(x), len(xt)

    if "mlp-ip" in groups:
        log("MLP self-influence, identity (IP), all parameters")
        ours, t = timed(lambda: project_self("ip", model, x, y, names))
        if captum:
            paths = _final_only(model, folder)
            theirs, tp = timed(lambda: captum_tracin(model, x, y, paths, _load_lr, 512).self_influence())
            record("MLP self IP (all)", ours, t, f"captum {version('captum')}", as_np(theirs), tp, True, mask)
        if kron:
            theirs, tp = timed(lambda: kronfluence_scores(model, x, y, "identity", folder=folder))
            record("MLP self IP (all)", ours, t, f"kronfluence {version('kronfluence')}", as_np(theirs), tp, True, mask)

        log("MLP self-influence, IP on the last layer's weight (captum's TracInCPFast takes head.weight only)")
        ours, t = timed(lambda: project_self("ip", model, x, y, ["head.weight"]))
        if captum:
            paths = _final_only(model, folder)
            theirs, tp = timed(lambda: captum_tracin(model, x, y, paths, _load_lr, 512, fast_layer="head").self_influence())
            record("MLP self IP (head.weight)", ours, t, f"captum {version('captum')}", as_np(theirs), tp, True, mask)
        else:
            record("MLP self IP (head.weight)", ours, t, "-", None, None, True, mask)

        log("MLP self-influence, full GGN of the last layer (project only: no peer has this quantity)")
        ours, t = timed(lambda: project_self("influence", model, x, y, names, "last_layer"))
        record("MLP self last-layer GGN", ours, t, "-", None, None, True, mask)

    if "mlp-diag" in groups:
        log("MLP self-influence, diagonal curvature")
        ours, t = timed(lambda: project_self("influence", model, x, y, names, "diag"))
        theirs, tp = timed(lambda: kronfluence_scores(model, x, y, "diagonal", folder=folder)) if kron else (None, None)
        record(
            "MLP self diagonal",
            ours,
            t,
            f"kronfluence {version('kronfluence')}",
            None if theirs is None else as_np(theirs),
            tp,
            False,
            mask,
        )

    if "mlp-matrix" in groups:
        log(f"MLP full-parameter IP matrix {k} × {n} ({p:,} parameters)")
        ours, t = timed(lambda: project_matrix("ip", model, x, y, names, xt, yt))
        floor = 2.0 * k * n * p / (gflops * 1e9)  # the formed product k × p × n at the machine's measured GEMM peak
        note = f"formed rows would need ≥ {floor:.2f} s at the machine's {gflops:.0f} GFLOP/s; outer products skip that product"
        if captum:
            paths = _final_only(model, folder)
            theirs, tp = timed(lambda: captum_tracin(model, x, y, paths, _load_lr, 512).influence((xt, yt)))
            record(f"MLP matrix IP {k}×{n}", ours, t, f"captum {version('captum')}", -as_np(theirs), tp, True, note=note)
        if kron:
            theirs, tp = timed(lambda: kronfluence_scores(model, x, y, "identity", xt, yt, folder=folder))
            record(f"MLP matrix IP {k}×{n}", ours, t, f"kronfluence {version('kronfluence')}", -as_np(theirs), tp, True, note=note)

    for strategy in ("kfac", "ekfac"):
        if f"mlp-{strategy}" in groups:
            kron_rows("MLP", strategy, model, x, y, names, xt, yt, mask, folder)

    if "tracin" in groups:
        tracin_rows("TracIn", model, ckpts, x, y, names, xt, yt, mask, folder)


def kron_rows(label, strategy, model, x, y, names, xt, yt, mask, folder, batch: int = 512, sampled: bool = False) -> None:
    """KFAC (``strategy`` "kfac") or EK-FAC ("ekfac"): the project's fit + k × n matrix and fit + self-influence against
    kronfluence's, each pair timed side by side; agreement by Spearman's ρ (kronfluence samples its Fisher's labels and
    joins a Linear bias to its weight; the project takes the exact GGN expectation, biases apart, unless ``sampled``:
    then its factors too come from one label sampled per row, like for like)."""
    kron = peer("kronfluence")
    curvature = {"kfac": "kron", "ekfac": "ekfac"}[strategy]
    name = {"kfac": "KFAC", "ekfac": "EK-FAC"}[strategy] + (", sampled labels" if sampled else "")
    options = {"sampled": 1} if sampled else None
    n, k = len(x), len(xt)
    log(f"{label} {name}: fit + {k} × {n} scores")

    def ours_matrix():
        return project_matrix("influence", model, x, y, names, xt, yt, curvature, curvature_options=options)

    def ours_self():
        return project_self("influence", model, x, y, names, curvature, curvature_options=options)

    peer_label = f"kronfluence {version('kronfluence')}"
    if kron:
        ours, t, theirs, tp = side_by_side(
            ours_matrix, lambda: kronfluence_scores(model, x, y, strategy, xt, yt, batch=batch, folder=folder)
        )
        record(f"{label} {name} matrix {k}×{n}", as_np(ours), t, peer_label, -as_np(theirs), tp, False)
    else:
        ours, t = timed(ours_matrix)
        record(f"{label} {name} matrix {k}×{n}", as_np(ours), t, peer_label, None, None, False)
    log(f"{label} {name}: fit + self-influence")
    if kron:
        ours, t, theirs, tp = side_by_side(ours_self, lambda: kronfluence_scores(model, x, y, strategy, batch=batch, folder=folder))
        record(f"{label} {name} self", as_np(ours), t, peer_label, as_np(theirs), tp, False, mask)
    else:
        ours, t = timed(ours_self)
        record(f"{label} {name} self", as_np(ours), t, peer_label, None, None, False, mask)


def tracin_rows(label, model, ckpts, x, y, names, xt, yt, mask, folder, batch: int = 512) -> None:
    """TracIn over the training checkpoints: self-influence against captum's TracInCP, the k × n matrix against captum's
    and dattri's (projection off), each pair timed side by side; the same quantity, so agreement by max rel."""
    captum, dattri = peer("captum"), peer("dattri")
    n, k = len(x), len(xt)
    log(f"{label} over {len(ckpts)} checkpoints: self-influence and the {k} × {n} matrix")

    def ours_self():
        return project_self("tracin", model, x, y, names, checkpoints=ckpts)

    def ours_matrix():
        return project_matrix("tracin", model, x, y, names, xt, yt, checkpoints=ckpts)

    if captum:
        paths, load_fn = _captum_checkpoints(model, ckpts, folder)
        ours, t, theirs, tp = side_by_side(ours_self, lambda: captum_tracin(model, x, y, paths, load_fn, batch).self_influence())
        record(f"{label} self ({len(ckpts)} ckpts)", as_np(ours), t, f"captum {version('captum')}", as_np(theirs), tp, True, mask)
        ours, t, theirs, tp = side_by_side(ours_matrix, lambda: captum_tracin(model, x, y, paths, load_fn, batch).influence((xt, yt)))
        record(f"{label} matrix {k}×{n}", as_np(ours), t, f"captum {version('captum')}", -as_np(theirs), tp, True)
    if dattri:
        ours, t, theirs, tp = side_by_side(ours_matrix, lambda: dattri_tracin(model, ckpts, x, y, xt, yt, 1000))
        record(f"{label} matrix {k}×{n}", as_np(ours), t, f"dattri {version('dattri')}", -as_np(theirs), tp, True)


def _load_lr(m, path):
    saved = torch.load(path, weights_only=True)
    m.load_state_dict(saved["state"])
    return saved["lr"]


def log_conv_paths(model, sample_shape, names) -> None:
    """Which path the gradient engine takes for each convolution on this machine (issue 35's cost model)."""
    for name, plan in conv_paths(model, sample_shape, names).items():
        d_out, d_in = plan["sides"]
        log(
            f"  {name}: P = {plan['positions']} positions, {d_out} × {d_in}: formed by {plan['form']}; "
            f"squared norm {plan['norm']}, pairs {plan['pair']}"
        )


def cnn_rows(model, ckpts, x, y, xt, yt, mask, groups, folder):
    names = parameter_names(model, "all")
    kron = peer("kronfluence")
    log_conv_paths(model, tuple(x.shape[1:]), names)
    if "cnn-diag" in groups:
        # like for like first: kronfluence's Fisher samples one label per row; so does the project's diag with sampled=1
        log("CNN self-influence, diagonal curvature from sampled labels")

        def sampled():
            return project_self("influence", model, x, y, names, "diag", curvature_options={"sampled": 1})

        if kron:
            ours, t, theirs, tp = side_by_side(sampled, lambda: kronfluence_scores(model, x, y, "diagonal", folder=folder))
            theirs = as_np(theirs)
        else:
            (ours, t), theirs, tp = timed(sampled), None, None
        record("CNN self diagonal, sampled labels", ours, t, f"kronfluence {version('kronfluence')}", theirs, tp, False, mask)
        log("CNN self-influence, diagonal curvature (exact GGN expectation)")
        ours, t = timed(lambda: project_self("influence", model, x, y, names, "diag"))
        record("CNN self diagonal", ours, t, f"kronfluence {version('kronfluence')}", theirs, tp, False, mask)
    if "cnn-ip" in groups:
        log("CNN self-influence and matrix, identity (IP)")
        ip_rows("CNN", "all", model, x, y, names, xt, yt, mask, folder, 512)
    for strategy in ("kfac", "ekfac"):
        if f"cnn-{strategy}" in groups:  # like for like: the project's factors from sampled labels too (as cnn-diag)
            kron_rows("CNN", strategy, model, x, y, names, xt, yt, mask, folder, sampled=True)
    if "cnn-tracin" in groups:
        tracin_rows("CNN TracIn", model, ckpts, x, y, names, xt, yt, mask, folder)


def ip_rows(label, scope, model, x, y, names, xt, yt, mask, folder, batch, layers=None) -> None:
    """IP self-influence and the k × n IP matrix of the project against captum and kronfluence, each pair timed side
    by side (:func:`side_by_side`). ``layers``: the modules captum takes the parameters of (None: all)."""
    captum, kron = peer("captum"), peer("kronfluence")
    n, k = len(x), len(xt)

    def ours_self():
        return project_self("ip", model, x, y, names)

    def ours_matrix():
        return project_matrix("ip", model, x, y, names, xt, yt)

    if captum:
        paths = _final_only(model, folder)
        ours, t, theirs, tp = side_by_side(
            ours_self, lambda: captum_tracin(model, x, y, paths, _load_lr, batch, layers=layers).self_influence()
        )
        record(f"{label} self IP ({scope})", as_np(ours), t, f"captum {version('captum')}", as_np(theirs), tp, True, mask)
    if kron:
        ours, t, theirs, tp = side_by_side(ours_self, lambda: kronfluence_scores(model, x, y, "identity", batch=batch, folder=folder))
        record(f"{label} self IP ({scope})", as_np(ours), t, f"kronfluence {version('kronfluence')}", as_np(theirs), tp, True, mask)
    if captum:
        paths = _final_only(model, folder)
        ours, t, theirs, tp = side_by_side(
            ours_matrix, lambda: captum_tracin(model, x, y, paths, _load_lr, batch, layers=layers).influence((xt, yt))
        )
        record(f"{label} matrix IP {k}×{n}", as_np(ours), t, f"captum {version('captum')}", -as_np(theirs), tp, True)
    if kron:
        ours, t, theirs, tp = side_by_side(
            ours_matrix, lambda: kronfluence_scores(model, x, y, "identity", xt, yt, batch=batch, folder=folder)
        )
        record(f"{label} matrix IP {k}×{n}", as_np(ours), t, f"kronfluence {version('kronfluence')}", -as_np(theirs), tp, True)


def resnet_rows(n: int, k: int, seed: int, folder: str, batch: int) -> None:
    """ResNet18 (torchvision, ImageNet stem) on random 3×32×32 images, untrained, eval mode: speed and agreement of
    the IP self-influence and the k × n matrix over every Conv2d and Linear parameter (11.2 M; BatchNorms frozen)."""
    from influence_core.models import resnet18

    torch.manual_seed(seed)
    model = resnet18(3, 10).eval()
    layers = [name for name, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    names = [f"{layer}.{p}" for layer in layers for p, _ in model.get_submodule(layer).named_parameters(recurse=False)]
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    xt, yt = torch.randn(k, 3, 32, 32, generator=g), torch.randint(0, 10, (k,), generator=g)
    p = sum(model.get_parameter(name).numel() for name in names)
    log(f"ResNet18 on random 3×32×32 images: {n} train, {k} queries, {p:,} parameters (every Conv2d and Linear)")
    log_conv_paths(model, (3, 32, 32), names)
    ip_rows("ResNet18", "conv + linear", model, x, y, names, xt, yt, None, folder, batch, layers)


def print_table(gflops: float) -> None:
    print()
    print("| row | project s | peer | peer s | ratio | agreement | AUROC (project / peer) | note |")
    print("|---|--:|---|--:|--:|---|---|---|")
    for r in ROWS:
        ratio = f"{r['peer_s'] / r['ours_s']:.2f}×" if r["peer_s"] else "-"
        peer_s = f"{r['peer_s']:.3f}" if r["peer_s"] else "-"
        print(f"| {r['row']} | {r['ours_s']:.3f} | {r['peer']} | {peer_s} | {ratio} | {r['agree']} | {r['auc']} | {r['note']} |")
    print(f"\nfloat32 GEMM (2048³, best of 5): {gflops:.0f} GFLOP/s; load average now {os.getloadavg()[0]:.1f} (a shared machine)")


CNN_GROUPS = {"cnn-diag", "cnn-ip", "cnn-kfac", "cnn-ekfac", "cnn-tracin"}
GROUPS = (
    "mlp-ip",
    "mlp-diag",
    "mlp-matrix",
    "mlp-kfac",
    "mlp-ekfac",
    "tracin",
    "cnn-diag",
    "cnn-ip",
    "cnn-kfac",
    "cnn-ekfac",
    "cnn-tracin",
    "resnet-ip",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 600 train, 100 queries, short training")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mnist", help="the MLP and CNN rows' data (10 classes)")
    parser.add_argument("--n-train", type=int, default=None, help="training rows (default 6,000; 600 with --quick)")
    parser.add_argument("--n-test", type=int, default=None, help="test queries (default 1,000; 100 with --quick)")
    parser.add_argument("--resnet-n-train", type=int, default=None, help="ResNet18 rows' training images (default 500; 64 with --quick)")
    parser.add_argument("--resnet-n-test", type=int, default=None, help="ResNet18 rows' queries (default 50; 8 with --quick)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own; 1 on a loaded machine, where threads wait)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is reported (default 1)")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated row groups out of {', '.join(GROUPS)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_train = args.n_train or (600 if args.quick else 6000)
    n_test = args.n_test or (100 if args.quick else 1000)
    groups = set(args.only.split(","))
    unknown = groups - set(GROUPS)
    if unknown:
        parser.error(f"unknown row group(s) {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    global REPEAT
    REPEAT = max(1, args.repeat)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    warnings.filterwarnings("ignore")  # the peers' deprecation and autograd-hook warnings

    log(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
        f"captum {version('captum')}, kronfluence {version('kronfluence')}, dattri {version('dattri')}; "
        f"median of {REPEAT} run(s) per cell"
    )
    log(f"load average {os.getloadavg()[0]:.1f} (above the core count: other jobs share the machine, and the seconds vary)")
    gflops = gemm_gflops()
    log(f"float32 GEMM: {gflops:.0f} GFLOP/s")
    epochs = 3 if args.quick else 8
    with tempfile.TemporaryDirectory() as folder:
        if groups - {"resnet-ip"}:
            x, y, xt, yt, mask = load(n_train, n_test, args.seed, args.dataset)
            log(
                f"{DATASETS[args.dataset][0]} 10 classes: {len(x)} train ({int(mask.sum())} labels flipped), {len(xt)} queries; "
                f"weight decay {WEIGHT_DECAY}, damping {DAMPING}"
            )
        if groups & {"mlp-ip", "mlp-diag", "mlp-matrix", "mlp-kfac", "mlp-ekfac", "tracin"}:
            log("training the MLP 784-128-10")
            model, ckpts = train("mlp", x, y, epochs, args.seed)
            mlp_rows(model, ckpts, x, y, xt, yt, mask, groups, gflops, folder)
        if groups & CNN_GROUPS:
            log("training the SmallCNN")
            model, ckpts = train("cnn", x, y, max(2, epochs // 2), args.seed)
            cnn_rows(model, ckpts, x, y, xt, yt, mask, groups, folder)
        if "resnet-ip" in groups:
            n_res = args.resnet_n_train or (64 if args.quick else 500)
            k_res = args.resnet_n_test or (8 if args.quick else 50)
            resnet_rows(n_res, k_res, args.seed, folder, batch=32)
    if "dattri" in sys.modules or peer("dattri"):
        print(
            "dattri: its explicit IF (IFAttributorExplicit) forms the p × p Hessian, 101,770² float32 = 41 GB for this MLP, "
            "and runs out of memory at N = 6,000: skipped; its TRAK self_attribute is not run here (shape bug, issue 15)."
        )
    print_table(gflops)


if __name__ == "__main__":
    main()
