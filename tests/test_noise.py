"""Label-noise models of influence_core.data.noise: the look-alike pairs (benchmarks/label_noise.py)."""

from __future__ import annotations

import numpy as np
import pytest

from influence_core.data import noise
from influence_core.errors import InputError

PAIRS = [(4, 9), (3, 8), (1, 7)]


def _labels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, size=2_000)


def test_pair_flip_moves_rows_only_to_their_partner_at_the_exact_rate():
    y = _labels()
    noisy, mask = noise.pair_flip(y, PAIRS, 0.3, seed=1)
    partner = {a: b for p in PAIRS for a, b in (p, p[::-1])}
    assert np.array_equal(mask, noisy != y)
    assert all(noisy[i] == partner[y[i]] for i in np.flatnonzero(mask))
    for c in range(10):  # every paired class loses exactly round(30 %) of its rows, the others none
        flipped = int(mask[y == c].sum())
        assert flipped == (round(0.3 * np.sum(y == c)) if c in partner else 0), c
    assert np.array_equal(y, _labels())  # the input is left as it was


def test_pair_flip_is_seeded():
    y = _labels()
    a, b, c = (noise.pair_flip(y, PAIRS, 0.1, seed=s)[0] for s in (5, 5, 6))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pair_flip_refuses_bad_pairs():
    y = _labels()
    with pytest.raises(InputError):
        noise.pair_flip(y, [(4, 4)], 0.1, seed=0)
    with pytest.raises(InputError):
        noise.pair_flip(y, [(4, 9), (9, 3)], 0.1, seed=0)
    with pytest.raises(InputError):
        noise.pair_flip(y, [(4, 11)], 0.1, seed=0)
    with pytest.raises(InputError):
        noise.pair_flip(y, PAIRS, 1.5, seed=0)
