"""The IR-drop study's summary, against lines solved by hand: the worst word-line drop and
bit-line rise are the true extremes, at the right node and input."""

import numpy as np
import pytest

import circuitsim as cs
from circuitsim.study import irdrop_summary


def word_line(g, r_wl, r_source, v):
    """Node voltages of one driven word line over cells to ground: admittance recursion."""
    y = np.empty(len(g))
    y[-1] = g[-1]
    for j in range(len(g) - 2, -1, -1):
        y[j] = g[j] + 1.0 / (r_wl + 1.0 / y[j + 1])
    nodes, upstream = np.empty(len(g)), v
    for j in range(len(g)):
        upstream = nodes[j] = upstream / (1.0 + (r_wl + (r_source if j == 0 else 0.0)) * y[j])
    return nodes


def bit_line(g, v, r_bl, r_sense):
    """Node voltages of one bit line under ideally driven word lines: dense nodal analysis."""
    m = len(g)
    G = np.diag(g.astype(float))
    for i in range(m):
        r = r_bl + (r_sense if i == m - 1 else 0.0)
        G[i, i] += 1.0 / r
        if i + 1 < m:
            G[i + 1, i + 1] += 1.0 / r
            G[i, i + 1] -= 1.0 / r
            G[i + 1, i] -= 1.0 / r
    return np.linalg.solve(G, g * v)


def test_worst_word_line_drop_is_the_far_end_of_the_hardest_input():
    rng = np.random.default_rng(0)
    g = rng.uniform(1e-5, 1e-3, 12)
    v = np.array([[0.3], [0.8], [0.5]])
    s = irdrop_summary(cs.crossbar(g[None, :], r_wl=2.0, r_source=15.0), v)
    drops = [x[0] - word_line(g, 2.0, 15.0, x[0])[-1] for x in v]
    assert s["worst_wl_drop"] == pytest.approx(max(drops), rel=1e-12, abs=0)
    assert s["worst_wl_node"] == (0, 11, 1)
    assert s["worst_bl_rise"] == 0.0  # ideal bit lines sit at the sense voltage


def test_worst_bit_line_rise_is_the_top_of_the_line():
    rng = np.random.default_rng(1)
    g = rng.uniform(1e-5, 1e-3, 10)
    v = rng.uniform(0.1, 0.4, (2, 10))
    s = irdrop_summary(cs.crossbar(g[:, None], r_bl=3.0, r_sense=20.0), v)
    rises = np.array([bit_line(g, x, 3.0, 20.0) for x in v])
    k, i = np.unravel_index(np.argmax(rises), rises.shape)
    assert s["worst_bl_rise"] == pytest.approx(rises.max(), rel=1e-12, abs=0)
    assert s["worst_bl_node"] == (i, 0, k)
    assert s["worst_wl_drop"] == 0.0
    ideal = v @ g
    i_out = rises[:, -1] / (3.0 + 20.0)  # through the last segment into the sense node
    err = np.abs(i_out - ideal) / np.abs(ideal)
    assert s["err_max"] == pytest.approx(err.max(), rel=1e-9, abs=0)
    assert s["err_mean"] == pytest.approx(err.mean(), rel=1e-9, abs=0)
