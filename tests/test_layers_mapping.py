"""Layer adapter: mapping, tiling, the ideal limit and the circuit of each tile.

References are computed here from the issue's formulas, by direct convolution loops and by
solving single tiles with ``cs.solve``; never from the layer code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

import circuitsim as cs
from circuitsim import layers as L

MAPPINGS = ("separate", "interleaved", "offset")
# (rows, cols): the first divides a 16-input, 12-output layer under every mapping
# (interleaved: 3 outputs per tile); the others do not
TILES = [(8, 6), (5, 7), (16, 24), (3, 4)]


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def _ideal_cfg(mapping, rows, cols, **kw):
    return L.TileConfig(rows=rows, cols=cols, r_wl=0.0, r_bl=0.0, r_source=0.0, r_sense=0.0,
                        mapping=mapping, **kw)


@pytest.fixture
def dense():
    rng = np.random.default_rng(7)
    return rng.normal(size=(12, 16)), rng.normal(size=12), rng.uniform(-1.0, 1.0, (9, 16))


@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("tile", TILES, ids=lambda t: f"{t[0]}x{t[1]}")
def test_linear_ideal_limit(dense, mapping, tile):
    W, b, x = dense
    layer = L.Linear(W, b, config=_ideal_cfg(mapping, *tile), x_max=1.0)
    ref = x @ W.T + b
    assert _rel(layer(x, mode="ideal"), ref) < 1e-14
    assert _rel(layer(x, mode="mapped"), ref) < 1e-9
    assert _rel(layer(x, mode="circuit"), ref) < 1e-9


def _direct_conv(x, w, b, stride, pad):
    """Cross-correlation by explicit loops over images, channels and pixels."""
    K, C, H, Wd = x.shape
    O, _, kh, kw = w.shape
    top, left, bottom, right = pad
    xp = np.zeros((K, C, H + top + bottom, Wd + left + right))
    xp[:, :, top : top + H, left : left + Wd] = x
    ho = (H + top + bottom - kh) // stride[0] + 1
    wo = (Wd + left + right - kw) // stride[1] + 1
    y = np.zeros((K, O, ho, wo))
    for k in range(K):
        for o in range(O):
            for i in range(ho):
                for j in range(wo):
                    r, c = i * stride[0], j * stride[1]
                    y[k, o, i, j] = np.sum(xp[k, :, r : r + kh, c : c + kw] * w[o]) + b[o]
    return y


@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("tile", [(9, 8), (7, 5)], ids=lambda t: f"{t[0]}x{t[1]}")
def test_conv2d_ideal_limit(mapping, tile):
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4)  # 18 inputs, 4 outputs
    x = rng.uniform(0.0, 1.0, (2, 2, 6, 5))
    conv = L.Conv2d(w, b, stride=1, padding=1, config=_ideal_cfg(mapping, *tile), x_max=1.0)
    ref = _direct_conv(x, w, b, (1, 1), (1, 1, 1, 1))
    assert _rel(conv(x, mode="mapped"), ref) < 1e-9
    assert _rel(conv(x, mode="circuit"), ref) < 1e-9


@pytest.mark.parametrize("stride, padding, pad4", [
    (1, 0, (0, 0, 0, 0)),
    (2, 1, (1, 1, 1, 1)),
    ((2, 1), (1, 2), (1, 2, 1, 2)),
    (3, (0, 1, 2, 0), (0, 1, 2, 0)),
])
def test_conv2d_unfolding_matches_direct_convolution(stride, padding, pad4):
    rng = np.random.default_rng(11)
    w, b = rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3)
    x = rng.normal(size=(2, 2, 7, 6))
    conv = L.Conv2d(w, b, stride=stride, padding=padding)
    st = (stride, stride) if isinstance(stride, int) else stride
    ref = _direct_conv(x, w, b, st, pad4)
    y = conv(x)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def _direct_pool(x, k, s, pad, op, fill):
    K, C, H, Wd = x.shape
    top, left, bottom, right = pad
    xp = np.full((K, C, H + top + bottom, Wd + left + right), fill)
    xp[:, :, top : top + H, left : left + Wd] = x
    real = np.zeros(xp.shape[2:])
    real[top : top + H, left : left + Wd] = 1
    ho, wo = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
    y = np.zeros((K, C, ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, :, i * s : i * s + k, j * s : j * s + k]
            y[:, :, i, j] = op(win, real[i * s : i * s + k, j * s : j * s + k])
    return y


@pytest.mark.parametrize("pad", [(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 1, 0)])
def test_pooling_matches_direct_loops(pad):
    x = np.random.default_rng(5).normal(size=(2, 3, 7, 6))
    mx = _direct_pool(x, 3, 2, pad, lambda w, r: w.max(axis=(2, 3)), -np.inf)
    avg = _direct_pool(x, 3, 2, pad, lambda w, r: w.sum(axis=(2, 3)) / r.sum(), 0.0)
    avg_all = _direct_pool(x, 3, 2, pad, lambda w, r: w.sum(axis=(2, 3)) / 9, 0.0)
    np.testing.assert_allclose(L.MaxPool2d(3, 2, pad)(x), mx, rtol=1e-14)
    np.testing.assert_allclose(L.AvgPool2d(3, 2, pad)(x), avg, rtol=1e-13)
    np.testing.assert_allclose(L.AvgPool2d(3, 2, pad, count_include_pad=True)(x), avg_all,
                               rtol=1e-13)


def test_conductances_follow_the_mapping_formulas():
    W = np.array([[0.5, -1.0, 0.0], [2.0, -0.25, 1.0]])  # (out 2, in 3); max |W| = 2
    g_min, g_max = 1e-6, 1e-4
    span = g_max - g_min
    base = {"rows": 3, "cols": 4, "g_min": g_min, "g_max": g_max}
    sep = L.Linear(W, config=L.TileConfig(mapping="separate", **base))
    gp, gm = sep.tiles[0].g, sep.tiles[1].g
    assert [t.side for t in sep.tiles] == ["+", "-"]
    np.testing.assert_allclose(gp[:, :2], g_min + span * np.maximum(W.T, 0) / 2.0, rtol=1e-15)
    np.testing.assert_allclose(gm[:, :2], g_min + span * np.maximum(-W.T, 0) / 2.0, rtol=1e-15)
    assert np.all(gp[:, 2:] == g_min) and np.all(gm[:, 2:] == g_min)  # unused columns
    inter = L.Linear(W, config=L.TileConfig(mapping="interleaved", **base))
    g = inter.tiles[0].g
    np.testing.assert_array_equal(g[:, 0::2], gp[:, :2])  # G+ on column 2j
    np.testing.assert_array_equal(g[:, 1::2], gm[:, :2])  # G- on column 2j + 1
    off = L.Linear(W, config=L.TileConfig(mapping="offset", **base))
    w_lo, w_hi = -1.0, 2.0
    np.testing.assert_allclose(off.tiles[0].g[:, :2],
                               g_min + span * (W.T - w_lo) / (w_hi - w_lo), rtol=1e-15)
    given = L.Linear(W, config=L.TileConfig(mapping="separate", **base), w_max=4.0)
    np.testing.assert_allclose(given.tiles[0].g[:, :2],
                               g_min + span * np.maximum(W.T, 0) / 4.0, rtol=1e-15)


def test_edge_tiles_hold_g_min_and_layout():
    W = np.ones((5, 7))
    layer = L.Linear(W, config=L.TileConfig(rows=4, cols=3, g_min=2e-6))
    # inputs 7 -> 2 row blocks, outputs 5 -> 2 column blocks, 2 sides
    assert len(layer.tiles) == 8
    last = layer.tiles[-1]
    assert (last.row_block, last.col_block, last.side) == (1, 1, "-")
    assert last.inputs == (4, 7) and last.outputs == (3, 5) and last.columns == 2
    plus = layer.tiles[-2].g
    assert np.all(plus[3:, :] == 2e-6) and np.all(plus[:, 2:] == 2e-6)  # unused row and column
    assert np.all(plus[:3, :2] == 1e-4)


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_tiling_leaves_ideal_and_mapped_unchanged(mapping):
    rng = np.random.default_rng(2)
    W, b = rng.normal(size=(40, 70)), rng.normal(size=40)
    x = rng.uniform(-1.0, 1.0, (6, 70))
    prog = {"levels": 16, "variability": L.Variability(0.05), "faults": L.Faults(0.01, 0.01),
                "drift": L.Drift(t=100.0, nu=0.05, nu_std=0.01), "seed": 4}
    outs = []
    for rows, cols in ((16, 16), (64, 64), (70, 80)):
        layer = L.Linear(W, b, config=L.TileConfig(rows=rows, cols=cols, mapping=mapping, **prog),
                         x_max=1.0)
        outs.append((layer(x, "ideal"), layer(x, "mapped"), len(layer.tiles)))
    assert outs[0][2] > outs[1][2] > outs[2][2] >= 1
    for ideal, mapped, _ in outs[1:]:
        np.testing.assert_allclose(ideal, outs[0][0], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(mapped, outs[0][1], rtol=1e-11, atol=1e-11)
    assert _rel(outs[0][1], outs[0][0]) > 1e-3  # the non-idealities did act


def test_circuit_error_grows_with_tile_size():
    rng = np.random.default_rng(9)
    W = rng.normal(size=(48, 96))
    x = rng.uniform(0.0, 1.0, (8, 96))
    errs = []
    for rows, cols in ((16, 16), (32, 32), (64, 64), (96, 96)):
        layer = L.Linear(W, config=L.TileConfig(rows=rows, cols=cols, r_wl=1.0, r_bl=1.0),
                         x_max=1.0)
        errs.append(_rel(layer(x, "circuit"), layer(x, "ideal")))
    assert errs == sorted(errs) and errs[0] > 0 and errs[-1] > 2 * errs[0]


def _tile_voltages(x, rows, b_row_block, v_read, x_max):
    v = np.zeros((len(x), rows))
    part = x[:, b_row_block * rows : (b_row_block + 1) * rows]
    v[:, : part.shape[1]] = part * v_read / x_max
    return v


@pytest.mark.parametrize("cell", ["passive", "1t1r-sinh"])
def test_one_tile_solved_directly_equals_its_share(cell):
    rng = np.random.default_rng(13)
    W, bias = rng.normal(size=(7, 11)), rng.normal(size=7)
    x = rng.uniform(0.0, 1.0, (3, 11))
    extra = {}
    if cell != "passive":
        extra = {"device": cs.devices.Sinh(a=2.0), "v_gate": 1.8,
                     "access": cs.devices.Level1(vto=0.5, kp=2e-4, lambda_=0.01, w=1e-6, l=0.1e-6)}
    cfg = L.TileConfig(rows=4, cols=5, r_wl=1.0, r_bl=2.0, r_source=3.0, r_sense=4.0,
                       g_min=1e-5, g_max=1e-4, v_read=0.3, **extra)
    layer = L.Linear(W, bias, config=cfg, x_max=1.5)
    currents = layer.tile_currents(x, "circuit")
    voltages = layer.tile_voltages(x)
    y = np.tile(bias, (len(x), 1))
    for t in layer.tiles:
        v = _tile_voltages(x, cfg.rows, t.row_block, cfg.v_read, 1.5)
        np.testing.assert_allclose(voltages[t.index], v, rtol=1e-15, atol=0.0)
        tile = cs.crossbar(t.g, r_wl=1.0, r_bl=2.0, r_source=3.0, r_sense=4.0,
                           device=cfg.device, access=cfg.access, v_gate=cfg.v_gate)
        i_out = cs.solve(tile, v).i_out
        np.testing.assert_allclose(currents[t.index], i_out, rtol=1e-9,
                                   atol=1e-9 * np.abs(i_out).max())
        o0, o1 = t.outputs
        sign = 1.0 if t.side == "+" else -1.0
        y[:, o0:o1] += sign * i_out[:, : o1 - o0] * (np.abs(W).max() / (1e-4 - 1e-5)) * (1.5 / 0.3)
    np.testing.assert_allclose(layer(x, "circuit"), y, rtol=1e-9, atol=1e-9 * np.abs(y).max())


def test_ir_drop_figures():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(20, 30))
    x = rng.uniform(0.0, 1.0, (4, 30))

    def layer(r):
        return L.Linear(W, config=L.TileConfig(rows=16, cols=16, r_wl=r, r_bl=r), x_max=1.0)

    assert layer(0.0).ir_drop(x).rel_max.max() < 1e-12
    wired = layer(2.0)
    drop = wired.ir_drop(x)
    assert drop.rel_rms.shape == (len(wired.tiles),)
    for t in wired.tiles:  # the definition, from a direct solve of each tile
        v = _tile_voltages(x, 16, t.row_block, 0.2, 1.0)
        real = cs.solve(cs.crossbar(t.g, r_wl=2.0, r_bl=2.0), v).i_out[:, : t.columns]
        ideal = (v @ t.g)[:, : t.columns]
        rms = np.sqrt(np.mean((real - ideal) ** 2)) / np.sqrt(np.mean(ideal**2))
        assert drop.rel_rms[t.index] == pytest.approx(rms, rel=1e-6)
        assert drop.rel_max[t.index] == pytest.approx(
            np.abs(real - ideal).max() / np.abs(ideal).max(), rel=1e-6)
    assert drop.worst_tile == int(np.argmax(drop.rel_max))
    assert np.all(layer(4.0).ir_drop(x).rel_rms > drop.rel_rms)


def test_bad_input_is_named():
    W = np.ones((2, 3))
    with pytest.raises(ValueError, match="mapping"):
        L.TileConfig(mapping="diagonal")
    with pytest.raises(ValueError, match="g_max"):
        L.TileConfig(g_min=1e-4, g_max=1e-5)
    with pytest.raises(ValueError, match="cols"):
        L.TileConfig(cols=1, mapping="interleaved")
    with pytest.raises(ValueError, match="v_gate"):
        L.TileConfig(access=cs.devices.Level1())
    with pytest.raises(TypeError, match="variability"):
        L.TileConfig(variability=0.1)
    with pytest.raises(ValueError, match="r_wl"):
        L.TileConfig(r_wl=-1.0)
    layer = L.Linear(W, config=L.TileConfig(rows=4, cols=4))
    with pytest.raises(ValueError, match="mode must be one of"):
        layer(np.ones((1, 3)), mode="analog")
    with pytest.raises(ValueError, match=r"expected \(K, 3\)"):
        layer(np.ones((1, 4)), mode="ideal")
    with pytest.raises(ValueError, match="not calibrated: x_max"):
        layer(np.ones((1, 3)), mode="mapped")
    with pytest.raises(ValueError, match="bias has 3 entries"):
        L.Linear(W, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="w_max"):
        L.Linear(W, w_max=0.5)
    with pytest.raises(ValueError, match="expected .out_c, in_c, kh, kw."):
        L.Conv2d(W)
