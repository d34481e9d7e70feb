"""Tests of circuitsim.devices: closed forms, derivatives, invariants, validation, SPICE lines."""

import doctest
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitsim import devices
from circuitsim.devices import AsymmetricSinh, IVTable, Level1, Linear, Sinh, StanfordPKU

NUM = r"(\([^()]*\)|[-+0-9.e]+)"  # a number, or a B-source (hi+lo) pair


def _num(text):
    """Read a number written by the SPICE writers back: ``x`` or ``(hi+lo)``."""
    pair = re.fullmatch(r"\(([-+]?[0-9.]+e[-+]\d+)([-+][0-9.]+e[-+]\d+)\)", text)
    return float(pair[1]) + float(pair[2]) if pair else float(text)


# A sinh-shaped measured curve: 21 points on [-1, 1] V.
_TV = np.linspace(-1.0, 1.0, 21)
SINH_TABLE = IVTable(v=_TV, i=1e-4 * np.sinh(2.0 * _TV))

MEMRISTORS = {
    "linear": Linear(),
    "sinh": Sinh(a=2.5),
    "asym": AsymmetricSinh(a_pos=3.0, a_neg=1.5, k_neg=0.7),
    "pku": StanfordPKU(),
    "table": SINH_TABLE,
}


def test_doctests():
    assert doctest.testmod(devices).failed == 0


# --- closed forms -------------------------------------------------------------------------------


@pytest.mark.parametrize("v", [-1.3, -0.2, 0.0, 0.4, 2.0])
@pytest.mark.parametrize("g", [0.0, 1e-6, 3e-4])
def test_linear_closed_form(v, g):
    assert Linear().current(v, g) == g * v
    assert Linear().conductance(v, g) == g


@pytest.mark.parametrize(("a", "v", "g"), [(2.0, 0.5, 1e-4), (0.3, -2.0, 1e-6), (7.0, 1.1, 5e-5)])
def test_sinh_closed_form(a, v, g):
    m = Sinh(a=a)
    assert m.current(v, g) == pytest.approx(g / a * math.sinh(a * v), rel=1e-14, abs=0)
    assert m.conductance(v, g) == pytest.approx(g * math.cosh(a * v), rel=1e-14, abs=0)


@pytest.mark.parametrize("v", [-1.2, -0.3, 0.0, 0.3, 1.2])
def test_asymmetric_sinh_closed_form(v):
    ap, an, kn, g = 3.0, 1.5, 0.7, 2e-5
    want = g / ap * math.sinh(ap * v) if v >= 0 else kn * g / an * math.sinh(an * v)
    assert AsymmetricSinh(ap, an, kn).current(v, g) == pytest.approx(want, rel=1e-14, abs=0)


@pytest.mark.parametrize("v", [-0.6, -0.1, 0.25, 0.9])
@pytest.mark.parametrize("g", [1e-6, 1e-5, 1e-3])
def test_stanford_pku_closed_form(v, g):
    i0, g0, v0 = 1e-3, 0.25e-9, 0.25
    gap = g0 * math.log(i0 / (g * v0))
    m = StanfordPKU()
    assert m.gap(g) == pytest.approx(gap, rel=1e-14, abs=0)
    assert m.current(v, g) == pytest.approx(i0 * math.exp(-gap / g0) * math.sinh(v / v0), rel=1e-12, abs=0)
    assert m.current(v, g) == pytest.approx(g * v0 * math.sinh(v / v0), rel=1e-12, abs=0)
    assert m.conductance(0.0, g) == pytest.approx(g, rel=1e-12, abs=0)


def test_ivtable_closed_form():
    # PCHIP of (-1, -1), (0, 0), (1, 1), (2, 3) (x 1e-4): equal slopes around 0 give f'(0) = 1e-4;
    # the three-point end formula at V = 2 gives ((2 h0 + h1) m0 - h0 m1) / (h0 + h1) = 2.5e-4.
    m = IVTable(v=[-1.0, 0.0, 1.0, 2.0], i=[-1e-4, 0.0, 1e-4, 3e-4])
    g = 3e-5
    assert m.g_ref == pytest.approx(1e-4, rel=1e-14, abs=0)
    np.testing.assert_allclose(m.current(m.v, g), g / 1e-4 * m.i, rtol=1e-14)
    assert m.current(3.0, g) == pytest.approx(g / 1e-4 * (3e-4 + 2.5e-4), rel=1e-14, abs=0)
    assert m.conductance(3.0, g) == pytest.approx(g / 1e-4 * 2.5e-4, rel=1e-14, abs=0)
    assert m.conductance(0.0, g) == pytest.approx(g, rel=1e-14, abs=0)


def test_ivtable_straight_line_is_linear():
    m = IVTable(v=[-2.0, 0.0, 3.0], i=[-2e-4, 0.0, 3e-4])
    v = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(m.current(v, 7e-6), 7e-6 * v, rtol=1e-14, atol=1e-22)
    assert m.voltage_scale() > 1e12  # inf up to rounding of the PCHIP coefficients


def test_ivtable_inserts_origin():
    m = IVTable(v=[-1.0, 1.0], i=[-1e-4, 2e-4])
    np.testing.assert_array_equal(m.v, [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(m.i, [-1e-4, 0.0, 2e-4])
    assert m.current(0.0, 1e-5) == 0.0


@pytest.mark.parametrize(
    ("model", "scale"),
    [
        (Linear(), np.inf),
        (Sinh(a=4.0), 0.25),
        (AsymmetricSinh(2.0, 5.0), 0.2),
        (StanfordPKU(), 0.25),
    ],
)
def test_voltage_scale(model, scale):
    assert model.voltage_scale() == scale
    assert model.voltage_scale(np.ones((2, 3))).shape == (2, 3)


def test_ivtable_voltage_scale_of_sinh_table():
    v = np.linspace(-1, 1, 401)
    want = 1 / (2.0 * math.tanh(2.0))  # 1 / max |f''/f'| of sinh(2 V) on [-1, 1]
    assert IVTable(v=v, i=np.sinh(2.0 * v)).voltage_scale() == pytest.approx(want, rel=2e-2, abs=0)


@pytest.mark.parametrize(("a", "v"), [(1.0, 700.0), (50.0, -14.0), (100.0, 7.1), (2.0, 355.2)])
def test_sinh_large_arguments(a, v):
    # Up to the documented limit |a V| < 710.4 the closed form holds at full precision.
    m, g = Sinh(a=a), 1e-4
    assert m.current(v, g) == pytest.approx(g / a * math.sinh(a * v), rel=1e-14, abs=0)
    assert m.conductance(v, g) == pytest.approx(g * math.cosh(a * v), rel=1e-14, abs=0)
    assert m.current(-v, g) == -m.current(v, g)
    assert m.conductance(-v, g) == m.conductance(v, g)


def test_sinh_beyond_its_range_is_infinite_not_nan():
    m = Sinh(a=2.0)
    with pytest.warns(RuntimeWarning, match="overflow"):
        i = m.current(np.array([-400.0, 400.0]), 1e-4)  # |a V| = 800
    np.testing.assert_array_equal(i, [-np.inf, np.inf])


# --- derivatives --------------------------------------------------------------------------------

# 40 points, none at 0 V (AsymmetricSinh kinks there) nor at table nodes or ends.
V_GRID = np.linspace(-1.5, 1.5, 40) + 0.0123


@pytest.mark.parametrize("name", MEMRISTORS)
def test_conductance_matches_finite_difference(name):
    m, g, h = MEMRISTORS[name], 1e-4, 1e-6
    fd = (m.current(V_GRID + h, g) - m.current(V_GRID - h, g)) / (2 * h)
    np.testing.assert_allclose(m.conductance(V_GRID, g), fd, rtol=1e-6)


# --- invariants (hypothesis) -------------------------------------------------------------------

volts = st.floats(-3.0, 3.0)
conductances = st.floats(1e-6, 1e-3)


@given(v=st.floats(-20.0, 20.0), a=st.floats(0.01, 30.0), g=conductances)
def test_sinh_is_odd(v, a, g):
    m = Sinh(a=a)
    assert m.current(-v, g) == -m.current(v, g)


@pytest.mark.parametrize("name", MEMRISTORS)
@settings(max_examples=50)
@given(v=volts, dv=st.floats(1e-3, 2.0), g=conductances)
def test_current_increases(name, v, dv, g):
    m = MEMRISTORS[name]
    assert m.current(v + dv, g) > m.current(v, g)


@pytest.mark.parametrize("name", MEMRISTORS)
@settings(max_examples=50)
@given(v=volts, g=conductances)
def test_conductance_positive(name, v, g):
    assert MEMRISTORS[name].conductance(v, g) > 0


# --- Level 1 MOSFET -----------------------------------------------------------------------------

VTO, KP, LAM, W, L = 0.5, 2e-5, 0.02, 2e-6, 1e-6
BETA = KP * W / L


@pytest.mark.parametrize(("vd", "vs", "vg"), [(1.0, 0.0, 0.5), (1.0, 0.2, 0.3), (0.0, 1.0, 0.4)])
def test_level1_cutoff_is_exactly_zero(vd, vs, vg):
    i, di_dvd, di_dvs = Level1(VTO, KP, LAM, W, L).drain_current(vd, vs, vg)
    assert (i, di_dvd, di_dvs) == (0.0, 0.0, 0.0)


def test_level1_saturation():
    vd, vs, vg = 1.2, 0.1, 1.4  # vgst = 0.8 <= vds = 1.1
    vgst, vds = vg - vs - VTO, vd - vs
    betap = BETA * (1 + LAM * vds)
    ids, gm, gds = betap * vgst**2 / 2, betap * vgst, LAM * BETA * vgst**2 / 2
    got = Level1(VTO, KP, LAM, W, L).drain_current(vd, vs, vg)
    np.testing.assert_allclose(got, [ids, gds, -gm - gds], rtol=1e-14)
    assert ids == pytest.approx(1.30816e-5, rel=1e-14, abs=0)


def test_level1_linear():
    vd, vs, vg = 0.3, 0.0, 1.5  # vgst = 1.0 > vds = 0.3
    vgst, vds = vg - vs - VTO, vd - vs
    betap = BETA * (1 + LAM * vds)
    ids = betap * vds * (vgst - vds / 2)
    gm = betap * vds
    gds = betap * (vgst - vds) + LAM * BETA * vds * (vgst - vds / 2)
    got = Level1(VTO, KP, LAM, W, L).drain_current(vd, vs, vg)
    np.testing.assert_allclose(got, [ids, gds, -gm - gds], rtol=1e-14)
    assert ids == pytest.approx(1.02612e-5, rel=1e-14, abs=0)


@pytest.mark.parametrize(("vd", "vs", "vg"), [(0.0, 1.0, 2.5), (0.2, 0.5, 1.5), (-0.4, 0.3, 0.6)])
def test_level1_reverse_mode_is_swapped_device(vd, vs, vg):
    t = Level1(VTO, KP, LAM, W, L)
    i, di_dvd, di_dvs = t.drain_current(vd, vs, vg)
    j, dj_dvd, dj_dvs = t.drain_current(vs, vd, vg)  # the same device, terminals renamed
    assert i < 0
    assert (i, di_dvd, di_dvs) == (-j, -dj_dvs, -dj_dvd)


def test_level1_regions_meet_continuously():
    t, vs, vg = Level1(VTO, KP, LAM, W, L), 0.0, 1.3  # saturation begins at vds = vgst = 0.8
    i = t.drain_current(np.array([0.8 - 1e-9, 0.8, 0.8 + 1e-9]), vs, vg)[0]
    np.testing.assert_allclose(i, i[1], rtol=1e-8)


def _level1_grid():
    axis = np.linspace(-0.5, 2.5, 31) + 0.0037
    vd, vs, vg = (x.ravel() for x in np.meshgrid(axis, axis, [0.3, 0.9, 1.7, 2.6]))
    vgst = vg - np.minimum(vd, vs) - VTO
    vds = np.abs(vd - vs)
    keep = (np.abs(vgst) > 1e-3) & (np.abs(vgst - vds) > 1e-3) & (vds > 1e-3)
    return vd[keep], vs[keep], vg[keep], vgst[keep], vds[keep], (vd - vs)[keep]


@pytest.mark.parametrize("lambda_", [0.0, 0.05])
def test_level1_partials_match_finite_differences(lambda_):
    vd, vs, vg, vgst, vds, signed = _level1_grid()
    # the grid covers cutoff, linear and saturation in both modes
    for region in (vgst < 0, (vgst > 0) & (vgst > vds), (vgst > 0) & (vgst < vds)):
        assert np.any(region & (signed > 0)) and np.any(region & (signed < 0))
    t, h = Level1(VTO, KP, lambda_, W, L), 1e-6
    _, di_dvd, di_dvs = t.drain_current(vd, vs, vg)
    fd_d = (t.drain_current(vd + h, vs, vg)[0] - t.drain_current(vd - h, vs, vg)[0]) / (2 * h)
    fd_s = (t.drain_current(vd, vs + h, vg)[0] - t.drain_current(vd, vs - h, vg)[0]) / (2 * h)
    np.testing.assert_allclose(di_dvd, fd_d, rtol=1e-6, atol=1e-13)
    np.testing.assert_allclose(di_dvs, fd_s, rtol=1e-6, atol=1e-13)


def test_level1_nan_voltage_propagates():
    assert all(np.isnan(x) for x in Level1().drain_current(np.nan, 0.0, 1.0))


def test_level1_per_cell_threshold():
    t = Level1(vto=np.array([0.4, 0.6]))
    i = t.drain_current(1.0, 0.0, 0.5)[0]
    assert i[0] > 0 and i[1] == 0


# --- parameter validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Sinh(a=0.0), r"Sinh: parameter a must be > 0, got 0\.0"),
        (lambda: Sinh(a=-1.0), r"Sinh: parameter a must be > 0, got -1\.0"),
        (lambda: Sinh(a=np.nan), r"Sinh: parameter a must be finite"),
        (lambda: Sinh(a=[[1.0, 2.0], [3.0, -4.0]]), r"Sinh: parameter a .* at index \(1, 1\)"),
        (lambda: AsymmetricSinh(a_pos=0.0), r"AsymmetricSinh: parameter a_pos must be > 0"),
        (lambda: AsymmetricSinh(a_neg=-2.0), r"AsymmetricSinh: parameter a_neg must be > 0"),
        (lambda: AsymmetricSinh(k_neg=np.inf), r"AsymmetricSinh: parameter k_neg must be finite"),
        (lambda: StanfordPKU(i0=0.0), r"StanfordPKU: parameter i0 must be > 0"),
        (lambda: StanfordPKU(v0=-0.25), r"StanfordPKU: parameter v0 must be > 0"),
        (lambda: StanfordPKU(gap_max=0.05e-9), r"StanfordPKU: parameter gap_max must be > gap_min"),
        (lambda: Level1(kp=0.0), r"Level1: parameter kp must be > 0"),
        (lambda: Level1(kp=-2e-5), r"Level1: parameter kp must be > 0"),
        (lambda: Level1(w=0.0), r"Level1: parameter w must be > 0"),
        (lambda: Level1(l=-1e-6), r"Level1: parameter l must be > 0"),
        (lambda: Level1(lambda_=-0.01), r"Level1: parameter lambda_ must be >= 0"),
        (lambda: Level1(vto=np.nan), r"Level1: parameter vto must be finite"),
        (lambda: Level1(vto=[0.5, np.nan]), r"Level1: parameter vto must be finite.* \(1,\)"),
        (lambda: IVTable([-1.0, 0.0, 0.5, 1.0], [-1.0, 0.0, 2.0, 1.0]), r"IVTable: .*index 3"),
        (lambda: IVTable([-1.0, 0.0, 0.0, 1.0], [-1.0, 0.0, 1.0, 2.0]), r"IVTable: voltages .*2"),
        (lambda: IVTable([0.1, 1.0], [1.0, 2.0]), r"IVTable: the table must contain V = 0"),
        (lambda: IVTable([-1.0, 0.0, 1.0], [-1.0, 0.5, 1.0]), r"IVTable: .*through \(0, 0\)"),
        (lambda: IVTable([-1.0, 1.0], [0.5, 1.0]), r"IVTable: .*through \(0, 0\)"),
        (lambda: IVTable([-1.0, 0.0, 1.0], [-1.0, 0.0, np.nan]), r"IVTable: parameter i .*finite"),
    ],
)
def test_bad_parameters_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("method", ["current", "conductance"])
@pytest.mark.parametrize("g", [1e-8, 1e-2, 0.0])
def test_stanford_pku_rejects_out_of_range_state(method, g):
    with pytest.raises(ValueError, match=r"StanfordPKU: state conductance g = .* outside"):
        getattr(StanfordPKU(), method)(0.1, g)


def test_stanford_pku_error_names_index():
    g = np.array([[1e-4, 1e-5], [1e-9, 1e-4]])
    with pytest.raises(ValueError, match=r"g = 1e-09 S at index \(1, 0\)"):
        StanfordPKU().current(0.1, g)


def test_stanford_pku_default_range():
    m = StanfordPKU()
    assert m.gap(1e-3) >= m.gap_min and m.gap(1e-6) <= m.gap_max


# --- expand / take ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "row0"),
    [
        (np.array([[1.0, 2.0, 3.0]]), [1.0, 2.0, 3.0] * 2),  # per column
        (np.array([[1.0], [2.0]]), [1.0] * 3 + [2.0] * 3),  # per row
        (np.arange(12.0).reshape(2, 2, 3) + 1, np.arange(6.0) + 1),  # per tile and cell
    ],
)
def test_expand_broadcasts_and_flattens(a, row0):
    e = Sinh(a=a).expand(2, 2, 3)
    assert e.a.shape == (2, 6) and e.a.dtype == np.float64
    np.testing.assert_array_equal(e.a[0], row0)


def test_expand_keeps_scalars():
    e = Sinh(a=2.0).expand(2, 2, 3)
    assert np.ndim(e.a) == 0 and e.a == 2.0 and e.take(np.array([1, 0])).a == 2.0


def test_expand_shape_error_names_parameter_and_shapes():
    with pytest.raises(ValueError, match=r"Sinh: parameter a of shape \(1, 4\) .*\(2, 2, 3\)"):
        Sinh(a=np.ones((1, 4))).expand(2, 2, 3)


@pytest.mark.parametrize("length", [2, 3])
def test_expand_refuses_one_dimensional_parameters(length):
    # on a 3 x 3 tile a per-row vector would silently be read per column
    with pytest.raises(ValueError, match=r"Sinh: parameter a has shape .*ambiguous.*\(3, 1\) "
                                         r"per word line, \(1, 3\) per bit line"):
        Sinh(a=np.ones(length)).expand(1, 3, 3)


def test_take_selects_batch_entries():
    vto = np.array([0.1, 0.2, 0.3]).reshape(3, 1, 1)
    e = Level1(vto=vto).expand(3, 2, 2)
    assert e.vto.shape == (3, 4)
    assert all(np.ndim(getattr(e, k)) == 0 for k in Level1._cell_params if k != "vto")
    t = e.take(np.array([2, 2, 0, 1]))
    assert t.vto.shape == (4, 4)
    np.testing.assert_array_equal(t.vto[:, 0], [0.3, 0.3, 0.1, 0.2])
    i = t.drain_current(np.ones((4, 4)), 0.0, 0.25)[0]
    assert i.shape == (4, 4) and np.all(i[:2] == 0) and np.all(i[2:] > 0)


def test_take_needs_expand():
    with pytest.raises(ValueError, match="expand"):
        Sinh(a=np.ones((1, 2, 2))).take(np.array([0]))


def test_expand_without_cell_params_keeps_model():
    e = SINH_TABLE.expand(2, 2, 2).take(np.array([1, 0]))
    np.testing.assert_array_equal(e.current(V_GRID, 1e-4), SINH_TABLE.current(V_GRID, 1e-4))


# --- SPICE lines --------------------------------------------------------------------------------

NAMES, A, B = ["c0", "c1", "c2"], ["w0", "w1", "w2"], ["b0", "b1", "b2"]
G = np.array([1e-4, 0.0, 3.3e-5])


def test_linear_spice_lines():
    lines = Linear().spice(NAMES, A, B, G)
    assert len(lines) == 2  # g == 0: open cell, no line
    for line, k in zip(lines, [0, 2], strict=True):
        name, a, b, r = line.split()
        assert (name, a, b) == (f"R{NAMES[k]}", A[k], B[k])
        assert float(r) == 1.0 / G[k]


def test_sinh_spice_lines():
    a = np.array([1.0, 2.0, 3.7])
    lines = Sinh(a=a).spice(NAMES, A, B, G)
    assert len(lines) == 2
    for line, k in zip(lines, [0, 2], strict=True):
        pattern = rf"B{NAMES[k]} {A[k]} {B[k]} I={NUM}\*sinh\({NUM}\*V\({A[k]},{B[k]}\)\)"
        c, ak = map(_num, re.fullmatch(pattern, line).groups())
        assert (c, ak) == (G[k] / a[k], a[k])


def test_asymmetric_sinh_spice_line():
    (line,) = AsymmetricSinh(2.0, 0.5, 0.3).spice(["x"], ["p"], ["q"], [1e-4])
    v = r"V\(p,q\)"
    pattern = (
        rf"Bx p q I=\({v} >= 0 \? {NUM}\*sinh\({NUM}\*{v}\) : {NUM}\*{NUM}\*sinh\({NUM}\*{v}\)\)"
    )
    assert list(map(_num, re.fullmatch(pattern, line).groups())) == [5e-5, 2.0, 0.3, 2e-4, 0.5]


def test_stanford_pku_spice_line():
    m = StanfordPKU()
    (line,) = m.spice(["x"], ["p"], ["q"], [2e-5])
    pattern = rf"Bx p q I={NUM}\*exp\(-{NUM}/{NUM}\)\*sinh\(V\(p,q\)/{NUM}\)"
    i0, gap, g0, v0 = map(_num, re.fullmatch(pattern, line).groups())
    assert (i0, g0, v0) == (1e-3, 0.25e-9, 0.25)  # the published defaults
    assert gap == pytest.approx(0.25e-9 * math.log(1e-3 / (2e-5 * 0.25)), rel=1e-15, abs=0)
    # the line's current at the state's own 0 V conductance is g: i0 exp(-gap/g0) / v0 = 2e-5
    assert i0 * math.exp(-gap / g0) / v0 == pytest.approx(2e-5, rel=1e-14, abs=0)


def _pchip(x, y):
    """Monotone cubic interpolation written out (Fritsch and Carlson, with the weighted
    harmonic mean of Fritsch and Butland inside and the shape-preserving three-point formula at
    the ends); returns the interpolant and its node slopes."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    h, m = np.diff(x), np.diff(y) / np.diff(x)
    d = np.zeros_like(x)
    for k in range(1, len(x) - 1):
        if m[k - 1] * m[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])
    for end, (h0, h1, m0, m1) in ((0, (h[0], h[1], m[0], m[1])),
                                  (-1, (h[-1], h[-2], m[-1], m[-2]))):
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(e) != np.sign(m0):
            e = 0.0
        elif np.sign(m0) != np.sign(m1) and abs(e) > 3 * abs(m0):
            e = 3 * m0
        d[end] = e

    def f(t):
        k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
        s = (t - x[k]) / h[k]
        return ((2 * s**3 - 3 * s**2 + 1) * y[k] + (s**3 - 2 * s**2 + s) * h[k] * d[k]
                + (-2 * s**3 + 3 * s**2) * y[k + 1] + (s**3 - s**2) * h[k] * d[k + 1])

    return f, d


def test_ivtable_spice_lines():
    lines = SINH_TABLE.spice(NAMES, A, B, G, points=101, func="ivt")
    func, *sources = lines
    body = re.fullmatch(r"\.func ivt\(x\) \{pwl\(x, (.*)\)\}", func).group(1)
    table = np.array([float(x) for x in body.split(", ")]).reshape(-1, 2)
    # 20 intervals of 0.1 V, 5 samples each (ceil(100 / 20)) plus the last point
    np.testing.assert_allclose(table[:, 0], np.linspace(-1.0, 1.0, 101), rtol=0, atol=1e-15)
    measured = np.isin(table[:, 0], _TV)
    assert measured.sum() == 21  # the measured points themselves are kept
    np.testing.assert_array_equal(table[measured, 1], 1e-4 * np.sinh(2.0 * _TV))
    f, d = _pchip(_TV, 1e-4 * np.sinh(2.0 * _TV))
    np.testing.assert_allclose(table[:, 1], f(table[:, 0]), rtol=1e-13, atol=1e-20)
    # and the interpolant follows the curve it samples (to 3e-4 of its range at 0.1 V spacing)
    curve = 1e-4 * np.sinh(2.0 * table[:, 0])
    np.testing.assert_allclose(table[:, 1], curve, rtol=0, atol=5e-4 * np.abs(curve).max())
    assert len(sources) == 2
    c = _num(re.fullmatch(rf"Bc2 w2 b2 I={NUM}\*ivt\(V\(w2,b2\)\)", sources[1]).group(1))
    g_ref = d[10]  # the node slope at 0 V
    assert c == pytest.approx(G[2] / g_ref, rel=1e-13, abs=0)


def test_level1_spice_lines_share_model_cards():
    t = Level1(vto=np.array([0.5, 0.6, 0.5]), kp=3e-5, lambda_=0.01, w=np.array([1e-6, 2e-6, 3e-6]))
    lines = t.spice(NAMES, ["d0", "d1", "d2"], ["g0", "g1", "g2"], B, "nm")
    cards = {}
    for line in lines[:2]:
        pattern = rf"\.model (\S+) nmos \(level=1 vto={NUM} kp={NUM} lambda={NUM} is=0\)"
        name, *vals = re.fullmatch(pattern, line).groups()
        cards[name] = [float(x) for x in vals]
    assert sorted(cards.values()) == [[0.5, 3e-5, 0.01], [0.6, 3e-5, 0.01]]
    assert len(lines) == 5
    for line, k in zip(lines[2:], range(3), strict=True):
        pattern = rf"M{NAMES[k]} d{k} g{k} {B[k]} 0 (\S+) W={NUM} L={NUM}"
        model, w, length = re.fullmatch(pattern, line).groups()
        assert cards[model][0] == t.vto[k]
        assert (float(w), float(length)) == (t.w[k], 1e-6)


# --- ngspice runs the same equations (skipped where ngspice is absent) ----------------------------

V_TEST = np.array([-0.7, -0.05, 0.3, 0.95])


def _ngspice_currents(elements, sources, probes):
    deck = "\n".join(
        ["* circuitsim device check", *elements, *sources,
         ".options reltol=1e-12 abstol=1e-20 vntol=1e-15 gmin=1e-30",
         ".control", "op", "set numdgt=17", *(f"print {p}" for p in probes), ".endc", ".end"]
    )  # fmt: skip
    run = subprocess.run(
        ["ngspice", "-b"], input=deck, capture_output=True, text=True, timeout=60, check=False
    )
    found = dict(re.findall(r"^(\S+) = (\S+)$", run.stdout, flags=re.MULTILINE))
    missing = [p for p in probes if p.lower() not in found]
    assert not missing, (
        f"ngspice (exit {run.returncode}) gave no {missing}:\n{run.stdout}{run.stderr}"
    )
    return np.array([float(found[p.lower()]) for p in probes])


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
@pytest.mark.parametrize("name", ["linear", "sinh", "asym", "pku", "table"])
def test_memristor_spice_matches_ngspice(name):
    m, g, n = MEMRISTORS[name], np.full(len(V_TEST), 2e-5), len(V_TEST)
    names, a = [f"x{k}" for k in range(n)], [f"n{k}" for k in range(n)]
    kw = {"points": 4001} if name == "table" else {}
    elements = m.spice(names, a, ["0"] * n, g, **kw)
    sources = [f"V{k} n{k} 0 DC {float(v)!r}" for k, v in enumerate(V_TEST)]
    got = _ngspice_currents(elements, sources, [f"-i(V{k})" for k in range(n)])
    rtol = 1e-6 if name == "table" else 1e-14
    np.testing.assert_allclose(got, m.current(V_TEST, g), rtol=rtol)


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
def test_level1_spice_matches_ngspice():
    vd = np.array([1.2, 0.3, 0.0, 0.2, 1.0])
    vs = np.array([0.1, 0.0, 1.0, 0.5, 0.0])
    vg = np.array([1.4, 1.5, 2.5, 1.5, 0.4])  # saturation, linear, reverse x2, cutoff
    t = Level1(vto=np.array([0.5, 0.5, 0.45, 0.5, 0.5]), kp=2e-5, lambda_=0.02, w=2e-6)
    n = len(vd)
    names = [f"t{k}" for k in range(n)]
    d, gate, s = ([f"{p}{k}" for k in range(n)] for p in "dgs")
    sources = [
        f"V{p}{k} {p}{k} 0 DC {float(val)!r}"
        for p, vals in zip("dgs", (vd, vg, vs), strict=True)
        for k, val in enumerate(vals)
    ]
    got = _ngspice_currents(
        t.spice(names, d, gate, s, "nm"), sources, [f"-i(Vd{k})" for k in range(n)]
    )
    np.testing.assert_allclose(got, t.drain_current(vd, vs, vg)[0], rtol=1e-12, atol=1e-20)
