"""Exact gradients (cs.vjp, cs.jvp, cs.transfer_matrix_vjp) against references that do not use
the adjoint code: closed forms derived here (one cell, one ladder row), central and one-sided
finite differences of cs.solve and cs.transfer_matrix, and the duality of jvp and vjp."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.optimize import brentq

import circuitsim as cs
from circuitsim import devices

TIGHT = {"reltol": 1e-12, "abstol": 1e-18}

M, N, K = 3, 4, 2
ACCESS = devices.Level1(vto=0.5, kp=2e-4, lambda_=0.05, w=1e-6, l=1e-6)
#: Gate voltage per column: cutoff, saturation, triode, triode (checked in test_regions).
GATES = np.array([[0.3, 0.8, 3.0, 2.5]])


def _params(kind: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    p = {"g": rng.uniform(1e-4, 1e-3, (M, N)), "r_wl": rng.uniform(1, 5, (M, N)),
         "r_bl": rng.uniform(1, 5, (M, N)), "r_source": rng.uniform(10, 50, M),
         "r_sense": rng.uniform(10, 50, N)}
    if kind == "linear-both":
        p["drive"] = "both"
    elif kind == "sinh":
        p["device"] = devices.Sinh(a=3.0)
    elif kind == "1t1r":
        p.update(access=ACCESS, v_gate=np.broadcast_to(GATES, (M, N)).copy())
    return p


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed + 100)
    return rng.uniform(0.3, 1.0, (K, M)), rng.standard_normal((K, N))


def _readout(params, v, d) -> float:
    sol = cs.solve(cs.crossbar(**params), v, **TIGHT)
    return float(np.sum(d * sol.i_out))


def _central(params, v, d, name, rel=1e-5):
    """Central differences of the read-out with respect to every entry of ``params[name]``."""
    base = np.asarray(params[name], dtype=float)
    out = np.zeros(base.shape)
    for idx in np.ndindex(base.shape):
        h = rel * abs(base[idx])
        vals = []
        for sign in (1, -1):
            x = base.copy()
            x[idx] += sign * h
            vals.append(_readout(dict(params, **{name: x}), v, d))
        out[idx] = (vals[0] - vals[1]) / (2 * h)
    return out


def _rel(got, ref):
    return np.abs(np.asarray(got) - ref).max() / np.abs(ref).max()


KINDS = ["linear", "linear-both", "sinh", "1t1r"]
PARAMS = ["g", "r_wl", "r_bl", "r_source", "r_sense"]


@pytest.mark.parametrize(("kind", "name"),
                         [(k, p) for k in KINDS for p in PARAMS] + [("1t1r", "v_gate")])
def test_vjp_parameters_match_finite_differences(kind, name):
    params = _params(kind)
    v, d = _inputs()
    grads = cs.vjp(cs.crossbar(**params), v, d)
    ref = _central(params, v, d, name)
    assert _rel(getattr(grads, name), ref) < 2e-6


@pytest.mark.parametrize("kind", KINDS)
def test_vjp_inputs_match_finite_differences(kind):
    params = _params(kind)
    v, d = _inputs()
    grads = cs.vjp(cs.crossbar(**params), v, d)
    ref = np.zeros(v.shape)
    h = 1e-6
    for idx in np.ndindex(v.shape):
        vp, vm = v.copy(), v.copy()
        vp[idx] += h
        vm[idx] -= h
        ref[idx] = (_readout(params, vp, d) - _readout(params, vm, d)) / (2 * h)
    assert grads.v_in.shape == v.shape
    assert _rel(grads.v_in, ref) < 1e-7


def test_regions():
    """The 1T1R tile above has transistors in cutoff, saturation and triode (level-1 equations,
    forward mode: vgst = v_gate - v_bl - vto against vds = v_int - v_bl)."""
    params = _params("1t1r")
    v, _ = _inputs()
    sol = cs.solve(cs.crossbar(**params), v)
    vds = sol.v_int - sol.v_bl
    vgst = GATES - sol.v_bl - ACCESS.vto
    assert (vds > 0).all()
    assert (vgst[..., 0] <= 0).all()  # cutoff
    assert ((vgst[..., 1] > 0) & (vgst[..., 1] <= vds[..., 1])).all()  # saturation
    assert (vgst[..., 2:] > vds[..., 2:]).all()  # triode


def test_vjp_of_cutoff_cells_is_zero():
    params = _params("1t1r")
    v, d = _inputs()
    grads = cs.vjp(cs.crossbar(**params), v, d)
    assert np.all(grads.g[:, 0] == 0) and np.all(grads.v_gate[:, 0] == 0)
    assert np.all(grads.g[:, 1:] != 0)


# -- closed forms ---------------------------------------------------------------------------------

SERIES = [(5.0, 2.0, 3.0, 7.0), (0.0, 2.0, 0.0, 7.0), (5.0, 0.0, 3.0, 0.0), (0.0, 0.0, 0.0, 0.0)]


@pytest.mark.parametrize("r", SERIES, ids=lambda r: "r=" + ",".join(f"{x:g}" for x in r))
def test_one_cell_closed_form(r):
    """i = v g / (1 + g R), R the series resistance: di/dg = v / (1 + g R)^2, di/dR =
    -v g^2 / (1 + g R)^2, di/dv = g / (1 + g R); R = 0 merges every node (one-sided there)."""
    r_source, r_wl, r_bl, r_sense = r
    g, v, d = 2e-3, 0.7, 1.3
    tile = cs.crossbar([[g]], r_wl=r_wl, r_bl=r_bl, r_source=r_source, r_sense=r_sense)
    R = sum(r)
    grads = cs.vjp(tile, [v], [d])
    den = 1 + g * R
    assert grads.g[0, 0] == pytest.approx(d * v / den**2, rel=1e-12)
    for name in ("r_wl", "r_bl", "r_source", "r_sense"):
        assert getattr(grads, name).ravel()[0] == pytest.approx(-d * v * g**2 / den**2, rel=1e-12)
    assert grads.v_in[0] == pytest.approx(d * g / den, rel=1e-12)
    assert grads.v_sense[0] == pytest.approx(-d * g / den, rel=1e-12)


@pytest.mark.parametrize("r_total", [0.0, 40.0])
def test_one_sinh_cell_closed_form(r_total):
    """i = (g/a) sinh(a u), u = v - i R: implicitly di (1 + g c R) = sinh(a u)/a dg
    + g c (dv - i dR) with c = cosh(a u); the current found by bracketing, not by the engine."""
    g, a, v, d = 1e-3, 4.0, 0.9, 1.0
    tile = cs.crossbar([[g]], r_source=r_total / 2, r_sense=r_total / 2,
                       device=devices.Sinh(a=a))
    if r_total:
        i = brentq(lambda x: x - (g / a) * np.sinh(a * (v - x * r_total)), 0.0, v / r_total,
                   xtol=1e-300, rtol=1e-15)
    else:
        i = (g / a) * np.sinh(a * v)
    u = v - i * r_total
    c = np.cosh(a * u)
    den = 1 + g * c * r_total
    grads = cs.vjp(tile, [v], [d])
    assert grads.solution.i_out[0] == pytest.approx(i, rel=1e-10)
    assert grads.g[0, 0] == pytest.approx(np.sinh(a * u) / a / den, rel=1e-9)
    assert grads.r_source[0] == pytest.approx(-g * c * i / den, rel=1e-9)
    assert grads.v_in[0] == pytest.approx(g * c / den, rel=1e-9)


def _ladder(g, R, v):
    """One word line, cells to ground: input admittances from the far end, then voltages."""
    n = len(g)
    Y = np.empty(n)
    Y[-1] = g[-1]
    for j in range(n - 2, -1, -1):
        Y[j] = g[j] + 1.0 / (R[j + 1] + 1.0 / Y[j + 1])
    V = np.empty(n)
    V[0] = v / (1 + R[0] * Y[0])
    for j in range(n - 1):
        V[j + 1] = V[j] / (1 + R[j + 1] * Y[j + 1])
    return Y, V


def _ladder_tangent(g, R, v, dg, dR, dv):
    """The chain rule through :func:`_ladder`, written out: d(i_out) for a direction."""
    n = len(g)
    Y, V = _ladder(g, R, v)
    dY = np.empty(n)
    dY[-1] = dg[-1]
    for j in range(n - 2, -1, -1):
        Z = R[j + 1] + 1.0 / Y[j + 1]
        dZ = dR[j + 1] - dY[j + 1] / Y[j + 1] ** 2
        dY[j] = dg[j] - dZ / Z**2
    dV = np.empty(n)
    q = 1 + R[0] * Y[0]
    dV[0] = dv / q - v * (dR[0] * Y[0] + R[0] * dY[0]) / q**2
    for j in range(n - 1):
        q = 1 + R[j + 1] * Y[j + 1]
        dV[j + 1] = dV[j] / q - V[j] * (dR[j + 1] * Y[j + 1] + R[j + 1] * dY[j + 1]) / q**2
    return dg * V + g * dV


@pytest.mark.parametrize("zeros", [(), (0,), (2, 3), (0, 1, 2, 3, 4)])
def test_ladder_row_closed_form(zeros):
    """A single word line with its bit lines shorted to the sense nodes (r_bl = r_sense = 0):
    the ladder recursion and its hand-derived derivatives, zero segments included."""
    rng = np.random.default_rng(7)
    n = 5
    g = rng.uniform(1e-3, 5e-3, n)
    r_wl = rng.uniform(1.0, 20.0, n)
    r_source = 15.0
    r_wl[list(zeros)] = 0.0
    if 0 in zeros:
        r_source = 0.0
    R = r_wl.copy()
    R[0] += r_source
    v, d = 0.8, rng.standard_normal(n)
    tile = cs.crossbar(g[None, :], r_wl=r_wl[None, :], r_source=[r_source])
    _, V = _ladder(g, R, v)
    grads = cs.vjp(tile, [v], d)
    assert grads.solution.i_out == pytest.approx(g * V, rel=1e-12)
    eye = np.eye(n)
    zero = np.zeros(n)
    ref_g = [d @ _ladder_tangent(g, R, v, eye[k], zero, 0.0) for k in range(n)]
    ref_r = [d @ _ladder_tangent(g, R, v, zero, eye[k], 0.0) for k in range(n)]
    ref_v = d @ _ladder_tangent(g, R, v, zero, zero, 1.0)
    assert _rel(grads.g[0], np.array(ref_g)) < 1e-12
    assert _rel(grads.r_wl[0], np.array(ref_r)) < 1e-11
    assert grads.r_source[0] == pytest.approx(ref_r[0], rel=1e-11)
    assert grads.v_in[0] == pytest.approx(ref_v, rel=1e-12)


# -- zero resistances: one-sided finite differences --------------------------------------------

def _zero_params(kind: str, drive: str) -> dict:
    p = _params(kind, seed=3)
    p["drive"] = drive
    r_wl, r_bl = p["r_wl"].copy(), p["r_bl"].copy()
    r_source, r_sense = p["r_source"].copy(), p["r_sense"].copy()
    r_wl[0, 1:3] = 0.0  # two zero segments in a row: bridges
    r_wl[1, 0] = r_source[1] = 0.0  # driver merged with the first node
    r_bl[M - 1, 2] = r_sense[2] = 0.0  # bit line merged with its sense node
    r_bl[0, 3] = 0.0
    if drive == "both":
        r_wl[2, :] = r_source[2] = 0.0  # a loop of zero resistances through the driver
    p.update(r_wl=r_wl, r_bl=r_bl, r_source=r_source, r_sense=r_sense)
    return p


def _one_sided(params, v, d, name, idx, h=1e-2):
    """Second-order forward difference (resistances cannot go below 0); h = 10 mohm: below
    about 1 mohm the rounding of the tiny resistance swamps the difference."""
    base = np.asarray(params[name], dtype=float)
    vals = []
    for k in range(3):
        x = base.copy()
        x[idx] += k * h
        vals.append(_readout(dict(params, **{name: x}), v, d))
    return (-3 * vals[0] + 4 * vals[1] - vals[2]) / (2 * h)


ZERO_ENTRIES = [("r_wl", (0, 1)), ("r_wl", (0, 2)), ("r_wl", (1, 0)), ("r_source", (1,)),
                ("r_bl", (M - 1, 2)), ("r_sense", (2,)), ("r_bl", (0, 3))]
LOOP_ENTRIES = [("r_wl", (2, 0)), ("r_wl", (2, 1)), ("r_wl", (2, 3)), ("r_source", (2,))]


@pytest.mark.parametrize("kind", ["linear", "sinh", "1t1r"])
@pytest.mark.parametrize("drive", ["left", "both"])
def test_zero_resistance_gradients_are_one_sided_derivatives(kind, drive):
    params = _zero_params(kind, drive)
    v, d = _inputs(3)
    grads = cs.vjp(cs.crossbar(**params), v, d)
    entries = ZERO_ENTRIES + (LOOP_ENTRIES if drive == "both" else [])
    scale = max(np.abs(getattr(grads, name)).max() for name in PARAMS[1:])
    for name, idx in entries:
        assert params[name][idx] == 0.0
        ref = _one_sided(params, v, d, name, idx)
        got = getattr(grads, name)[idx]
        assert abs(got - ref) <= 1e-5 * scale, (name, idx, got, ref)
    if drive == "both":  # shorted by the rest of the loop: exactly 0; the driver is not
        assert all(grads.r_wl[2, j] == 0.0 for j in range(N))
        assert grads.r_source[2] != 0.0


def test_jvp_refuses_directions_on_a_zero_loop():
    tile = cs.crossbar(**_zero_params("linear", "both"))
    v, _ = _inputs(3)
    with pytest.raises(ValueError, match=r"loop of zero resistances"):
        cs.jvp(tile, v, dr_source=[0.0, 0.0, 1.0])
    dr = np.zeros((M, N))
    dr[2, 1] = 1.0
    with pytest.raises(ValueError, match=r"r_wl\[2,1\]"):
        cs.jvp(tile, v, dr_wl=dr)


# -- jvp ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_jvp_is_the_transpose_of_vjp(kind):
    """<d, J x> = <J^T d, x> for a random direction x in every parameter at once."""
    params = _params(kind)
    tile = cs.crossbar(**params)
    v, d = _inputs()
    rng = np.random.default_rng(5)
    dirs = {"dg": rng.standard_normal((M, N)) * 1e-4, "dv_in": rng.standard_normal((K, M)),
            "dr_wl": rng.standard_normal((M, N)), "dr_bl": rng.standard_normal((M, N)),
            "dr_source": rng.standard_normal(M), "dr_sense": rng.standard_normal(N),
            "dv_sense": rng.standard_normal(N)}
    if kind == "1t1r":
        dirs["dv_gate"] = rng.standard_normal((M, N))
    tangent = cs.jvp(tile, v, **dirs)
    grads = cs.vjp(tile, v, d)
    lhs = np.sum(d * tangent.i_out)
    rhs = sum(np.sum(getattr(grads, k[1:]) * x) for k, x in dirs.items())
    assert lhs == pytest.approx(rhs, rel=1e-10)


@pytest.mark.parametrize("kind", ["linear", "1t1r"])
def test_jvp_matches_finite_differences(kind):
    params = _params(kind)
    tile = cs.crossbar(**params)
    v, _ = _inputs()
    dg = np.random.default_rng(2).standard_normal((M, N)) * 1e-4
    h = 1e-3
    up = cs.solve(cs.crossbar(**dict(params, g=params["g"] + h * dg)), v, **TIGHT).i_out
    down = cs.solve(cs.crossbar(**dict(params, g=params["g"] - h * dg)), v, **TIGHT).i_out
    tangent = cs.jvp(tile, v, dg=dg)
    assert tangent.i_out.shape == (K, N) and tangent.i_source.shape == (K, M)
    assert _rel(tangent.i_out, (up - down) / (2 * h)) < 1e-6


def test_jvp_of_the_sense_voltage_moves_the_driver_currents():
    tile = cs.crossbar(**_params("linear"))
    v, _ = _inputs()
    dvs = np.zeros(N)
    dvs[1] = 1.0
    h = 1e-3
    up = cs.solve(dataclasses.replace(tile, v_sense=tile.v_sense + h * dvs), v)
    down = cs.solve(dataclasses.replace(tile, v_sense=tile.v_sense - h * dvs), v)
    tangent = cs.jvp(tile, v, dv_sense=dvs)
    assert _rel(tangent.i_source, (up.i_source - down.i_source) / (2 * h)) < 1e-8


# -- transfer matrix ------------------------------------------------------------------------------

def _sum_ct(params, C, name, idx, h):
    x = np.asarray(params[name], dtype=float).copy()
    x[idx] += h
    return float(np.sum(C * cs.transfer_matrix(cs.crossbar(**dict(params, **{name: x})))))


@pytest.mark.parametrize("drive", ["left", "both"])
def test_transfer_matrix_vjp_matches_finite_differences(drive):
    params = _params("linear", seed=4)
    params["drive"] = drive
    params["r_wl"][1, 2] = 0.0
    C = np.random.default_rng(4).standard_normal((N, M))
    grads = cs.transfer_matrix_vjp(cs.crossbar(**params), C)
    for name in ("g", "r_wl", "r_source"):
        base = params[name]
        ref = np.zeros(base.shape)
        for idx in np.ndindex(base.shape):
            if base[idx] == 0:  # one-sided, second order
                h = 1e-2
                f = [_sum_ct(params, C, name, idx, k * h) for k in range(3)]
                ref[idx] = (-3 * f[0] + 4 * f[1] - f[2]) / (2 * h)
            else:
                h = 1e-5 * abs(base[idx])
                ref[idx] = (_sum_ct(params, C, name, idx, h)
                            - _sum_ct(params, C, name, idx, -h)) / (2 * h)
        assert _rel(getattr(grads, name), ref) < 1e-6, name
    assert grads.v_in is None and grads.solution is None


def test_transfer_matrix_vjp_is_vjp_with_unit_inputs():
    tile = cs.crossbar(**_params("linear"))
    C = np.random.default_rng(1).standard_normal((N, M))
    a = cs.transfer_matrix_vjp(tile, C)
    b = cs.vjp(tile, np.eye(M), C.T)
    for name in PARAMS:
        assert _rel(getattr(a, name), getattr(b, name)) < 1e-12


# -- batches and shapes ----------------------------------------------------------------------------

@pytest.mark.parametrize("device", [None, devices.Sinh(a=2.0)], ids=["linear", "sinh"])
def test_batched_tile_matches_tile_by_tile(device):
    # linear: tiles 0 and 2 form a plan of their own (no zero resistance) whose gradient sums
    # take a subset of the batch's tiles
    rng = np.random.default_rng(9)
    B = 3
    g = rng.uniform(1e-4, 1e-3, (B, M, N))
    r_wl = rng.uniform(1, 5, (B, M, N))
    r_wl[1] = 0.0  # a second zero pattern: a second plan
    tile = cs.crossbar(g, r_wl=r_wl, r_bl=2.0, r_source=20.0, device=device)
    v = rng.uniform(0, 1, (B, K, M))
    d = rng.standard_normal((B, K, N))
    grads = cs.vjp(tile, v, d)
    assert grads.g.shape == (B, M, N) and grads.v_in.shape == (B, K, M)
    assert grads.r_source.shape == (B, M) and grads.r_sense.shape == (B, N)
    for b in range(B):
        one = cs.vjp(cs.crossbar(g[b], r_wl=r_wl[b], r_bl=2.0, r_source=20.0,
                                 device=device), v[b], d[b])
        for name in ("g", "v_in", "r_wl", "r_bl", "r_source", "r_sense", "v_sense"):
            assert _rel(getattr(grads, name)[b], getattr(one, name)) < 1e-9, (b, name)


def test_shared_inputs_sum_over_the_batch():
    rng = np.random.default_rng(10)
    g = rng.uniform(1e-4, 1e-3, (2, M, N))
    tile = cs.crossbar(g, r_wl=2.0, r_bl=2.0)
    v = rng.uniform(0, 1, (K, M))
    d = rng.standard_normal((2, K, N))
    grads = cs.vjp(tile, v, d)
    single = [cs.vjp(cs.crossbar(g[b], r_wl=2.0, r_bl=2.0), v, d[b]).v_in for b in range(2)]
    assert grads.v_in.shape == (K, M)
    assert _rel(grads.v_in, single[0] + single[1]) < 1e-12
    one = cs.vjp(tile, v[0], d[:, 0])
    assert one.v_in.shape == (M,) and one.g.shape == (2, M, N)


# -- errors ---------------------------------------------------------------------------------------

def test_bad_arguments_name_themselves():
    tile = cs.crossbar(**_params("linear"))
    v, d = _inputs()
    with pytest.raises(ValueError, match=r"d_i_out has shape \(4,\); expected \(2, 4\)"):
        cs.vjp(tile, v, d[0])
    with pytest.raises(ValueError, match="d_i_out"):
        cs.vjp(tile, v, np.full((K, N), np.nan))
    with pytest.raises(TypeError, match="max_iterations"):
        cs.vjp(tile, v, d, max_iterations=3)
    with pytest.raises(ValueError, match=r"C has shape"):
        cs.transfer_matrix_vjp(tile, np.ones((M, N)))
    with pytest.raises(ValueError, match="linear tile"):
        cs.transfer_matrix_vjp(cs.crossbar(**_params("sinh")), np.ones((N, M)))
    with pytest.raises(ValueError, match="dv_gate"):
        cs.jvp(tile, v, dv_gate=1.0)
    with pytest.raises(ValueError, match="dv_in has shape"):
        cs.jvp(tile, v, dv_in=np.ones(M))
    with pytest.raises(ValueError, match="dr_wl"):
        cs.jvp(tile, v, dr_wl=np.ones((N, M)))


@dataclasses.dataclass(frozen=True)
class _Cubic:
    """A device model outside circuitsim.devices: I = g (V + V^3)."""

    def current(self, v, g):
        return g * (v + v**3)

    def conductance(self, v, g):
        return g * (1 + 3 * v**2)

    def voltage_scale(self, g=None):
        return np.inf if g is None else np.full(np.shape(g), np.inf)


@dataclasses.dataclass(frozen=True)
class _CubicWithDerivative(_Cubic):
    def current_dg(self, v, g):
        return v + v**3


def test_foreign_device_models_need_their_g_derivative():
    params = dict(_params("linear"), device=_Cubic())
    v, d = _inputs()
    with pytest.raises(TypeError, match=r"_Cubic.*current_dg"):
        cs.vjp(cs.crossbar(**params), v, d)
    params["device"] = _CubicWithDerivative()
    grads = cs.vjp(cs.crossbar(**params), v, d)
    assert _rel(grads.g, _central(params, v, d, "g")) < 2e-6


def test_linear_gradient_sums_over_many_inputs_and_branch_blocks(monkeypatch):
    """Linear tiles sum their gradient terms over the inputs directly, in blocks of branches:
    with 150 inputs the 312 resistors of a 12 x 12 tile span two blocks. The result must be the
    per-input terms' sum (the path nonlinear tiles take) and the transpose of jvp."""
    import circuitsim.adjoint as adjoint

    rng = np.random.default_rng(12)
    m = n = 12
    tile = cs.crossbar(rng.uniform(1e-5, 1e-3, (m, n)), r_wl=rng.uniform(0.5, 2, (m, n)),
                       r_bl=rng.uniform(0.5, 2, (m, n)), r_source=rng.uniform(1, 5, m),
                       r_sense=rng.uniform(1, 5, n))
    v = rng.uniform(0, 1, (150, m))
    d = rng.standard_normal((150, n))
    fast = cs.vjp(tile, v, d)
    monkeypatch.setattr(adjoint, "_all_linear", lambda plan: False)
    general = cs.vjp(tile, v, d)
    names = ("g", "v_in", "r_wl", "r_bl", "r_source", "r_sense", "v_sense")
    for name in names:
        assert _rel(getattr(fast, name), getattr(general, name)) < 1e-12, name
    dirs = {"dg": rng.standard_normal((m, n)) * 1e-4, "dr_wl": rng.standard_normal((m, n)),
            "dr_bl": rng.standard_normal((m, n)), "dr_source": rng.standard_normal(m),
            "dr_sense": rng.standard_normal(n)}
    lhs = np.sum(d * cs.jvp(tile, v, **dirs).i_out)
    rhs = sum(np.sum(getattr(fast, k[1:]) * x) for k, x in dirs.items())
    assert lhs == pytest.approx(rhs, rel=1e-10)
