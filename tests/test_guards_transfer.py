"""The transfer matrix's self-check: where the Schur-complement currents lose accuracy (tiny
bit-line resistances behind a sense resistance), ``transfer_matrix`` still equals the ordinary
solves. Where CHOLMOD is installed this exercises the check and its fallback; elsewhere
``transfer_matrix`` always takes the ordinary solves and the tests hold trivially."""

import warnings

import numpy as np
import pytest
from circuitsim.solvers import cholmod_available

import circuitsim as cs

TINY = [
    {"r_wl": 1.0, "r_bl": 1e-12, "r_source": 10.0, "r_sense": 10.0},
    {"r_wl": 2.0, "r_bl": 1e-12, "r_source": 20.0, "r_sense": 1.0},
    {"r_wl": 1.0, "r_bl": 1e-12, "r_source": 10.0, "r_sense": 1e-9},
    {"r_wl": 1.0, "r_bl": 1e-12, "r_source": 10.0, "r_sense": 1e-12},
    {"r_wl": 1.0, "r_bl": 1e-12, "r_source": 10.0, "r_sense": 0.0},
    {"r_wl": 1.0, "r_bl": 1e-10, "r_source": 0.0, "r_sense": 1e-10},
    # Schur results 1e-5 off: past the check's bound (1e-9 of the terms) by some 1e4, so a
    # bound loosened a millionfold would return them
    {"r_wl": 1.0, "r_bl": 1e-9, "r_source": 10.0, "r_sense": 10.0},
    {"r_wl": 1.0, "r_bl": 1e-8, "r_source": 10.0, "r_sense": 10.0},
]


@pytest.mark.parametrize("kw", TINY, ids=lambda kw: f"rbl{kw['r_bl']:g}-rsense{kw['r_sense']:g}")
def test_transfer_matrix_of_tiny_bit_lines_equals_unit_solves(kw):
    rng = np.random.default_rng(3)
    g = rng.uniform(1e-6, 1e-4, (32, 32))
    T, info = checked_transfer(cs.crossbar(g, **kw))
    ref = cs.solve(cs.crossbar(g, **kw), np.eye(32)).i_out.T  # column k: input k alone at 1 V
    np.testing.assert_allclose(T, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def checked_transfer(tile):
    """``transfer_matrix`` with its info; a tile that left the Schur path is warned about, by
    name and with the reason, and no other warning is given."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        T, info = cs.transfer_matrix(tile, full_output=True)
    texts = [str(w.message) for w in caught]
    fell_back = [b for b in range(tile.batch) if info.method[b] == "solves"]
    assert all(info.reason[b] for b in fell_back)
    if cholmod_available():
        assert len(texts) == len(fell_back)
        for b, text in zip(fell_back, texts):
            assert f"tile {b}:" in text and "recomputing it from" in text
    else:  # every tile takes the solves path by design, without a warning
        assert not texts
    return T, info


def test_batched_transfer_matrix_checks_every_tile():
    """One tile of the batch needs the fallback, the other does not: both come out right."""
    rng = np.random.default_rng(4)
    g = rng.uniform(1e-6, 1e-4, (2, 32, 32))
    r_sense = np.array([[10.0] * 32, [0.0] * 32])
    kw = {"r_wl": 1.0, "r_bl": 1e-12, "r_source": 10.0}
    T, info = checked_transfer(cs.crossbar(g, r_sense=r_sense, **kw))
    if cholmod_available():  # the sensed tile fails the Schur check, the other passes it
        assert list(info.method) == ["solves", "schur"]
    for b in range(2):
        ref = cs.solve(cs.crossbar(g[b], r_sense=r_sense[b], **kw), np.eye(32)).i_out.T
        np.testing.assert_allclose(T[b], ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_transfer_matrix_predicts_solves_of_random_inputs():
    rng = np.random.default_rng(5)
    g = rng.uniform(1e-6, 1e-4, (32, 32))
    kw = TINY[0]
    v = rng.uniform(-0.5, 0.5, (8, 32))
    i_out = cs.solve(cs.crossbar(g, **kw), v).i_out
    pred = v @ checked_transfer(cs.crossbar(g, **kw))[0].T
    np.testing.assert_allclose(pred, i_out, rtol=0, atol=1e-10 * np.abs(i_out).max())
