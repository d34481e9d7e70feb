"""Newton's safety nets: its give-up flag, converged systems leaving the batch, and its
convergence test tight enough for closed forms to 1e-14."""

import itertools
from decimal import Decimal, localcontext

import numpy as np
import pytest
from guards_support import audit_nodes, record_newton_steps

import circuitsim as cs

ACCESS = {"vto": 0.5, "kp": 2e-4, "lambda_": 0.01, "w": 1e-6, "l": 0.1e-6}
NO_FALLBACK = {"gmin_stepping": False, "source_stepping": False}


def weak_tile():
    """Sinh cells at about 10 mV: the linearised warm start is within 2e-5 of the solution."""
    rng = np.random.default_rng(1)
    g = rng.uniform(1e-6, 1e-4, (4, 5))
    v = rng.uniform(0, 0.02, (3, 4))
    return cs.crossbar(g, 1.0, 1.0, 10.0, 10.0, device=cs.devices.Sinh(a=1.0)), v


# ---------------------------------------------------------------------------------------------
# The give-up flag


def test_one_iteration_is_not_converged_even_where_kcl_balances():
    tile, v = weak_tile()
    with pytest.warns(RuntimeWarning, match="Newton did not converge"):
        sol = cs.solve(tile, v, max_iter=1, on_fail="mask", **NO_FALLBACK)
    assert not sol.converged.any()
    np.testing.assert_array_equal(sol.iterations, 1)
    # One quadratic step from the warm start already balances KCL to the audit's tolerance:
    # only Newton's own convergence test, which never passes on its first iteration, says no.
    nodes = np.concatenate([sol.v_wl[0].ravel(), sol.v_bl[0].ravel(), v[0], tile.v_sense[0]])
    assert audit_nodes(tile, nodes)[1]
    with pytest.raises(cs.ConvergenceError, match="Newton did not converge"):
        cs.solve(tile, v, max_iter=1, **NO_FALLBACK)
    full = cs.solve(tile, v)
    assert full.converged.all() and np.all(full.iterations >= 2)


# ---------------------------------------------------------------------------------------------
# Converged systems leave the batch


@pytest.mark.parametrize("mode", ["newton-krylov", "newton"])
def test_converged_systems_leave_the_batch(monkeypatch, mode):
    rng = np.random.default_rng(4)
    g = rng.uniform(1e-6, 1e-4, (6, 6))
    tile = cs.crossbar(g, 1.0, 1.0, 5.0, 5.0, device=cs.devices.Sinh(a=4.0))
    v = np.array([np.full(6, x) for x in (0.001, 0.05, 0.3, 0.6, 1.0, 1.5)])  # easy to hard
    sizes = record_newton_steps(monkeypatch)
    sol = cs.solve(tile, v, mode=mode)
    assert sol.converged.all()
    assert "stepping" not in sol.method  # plain Newton did it all
    assert np.all(sol.iterations <= 10)
    assert sizes[0] == len(v)
    assert all(a >= b for a, b in itertools.pairwise(sizes)), sizes  # the batch only shrinks
    assert sizes[-1] == 1
    # each system took exactly as many linear updates as iterations it reports
    assert sum(sizes) == sol.iterations.sum()
    assert len(sizes) == sol.iterations.max()
    assert sol.iterations[0] < sol.iterations[-1]


def test_easy_tile_converges_in_few_iterations(monkeypatch):
    tile, v = weak_tile()
    sizes = record_newton_steps(monkeypatch)
    sol = cs.solve(tile, v)
    assert np.all(sol.iterations <= 3)
    assert sum(sizes) == sol.iterations.sum()


# ---------------------------------------------------------------------------------------------
# Closed forms to 1e-14: Newton stops at the solution, not near it


def _bisect(f, lo: Decimal, hi: Decimal) -> Decimal:
    """Root of an increasing function on [lo, hi] to the 50 digits of the decimal context."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if f(mid) > 0:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def _sinh(x: Decimal) -> Decimal:
    return (x.exp() - (-x).exp()) / 2


@pytest.mark.parametrize(
    "a, v, r",
    [(3.0, 0.3, 200.0), (3.0, -0.8, 200.0), (3.0, 2.5, 200.0), (3.0, -3.0, 200.0),
     (5.0, 2.0, 200.0), (3.0, 4.0, 200.0), (8.0, 1.5, 200.0)],
)
def test_sinh_cell_to_1e_14(a, v, r):
    g = 1e-3
    tile = cs.crossbar([[g]], r_wl=0.1 * r, r_bl=0.05 * r, r_source=0.65 * r, r_sense=0.2 * r,
                       device=cs.devices.Sinh(a=a))
    sol = cs.solve(tile, [v])
    with localcontext() as ctx:
        ctx.prec = 50
        G, A, V = Decimal(g), Decimal(a), Decimal(v)
        R = Decimal(0.1 * r) + Decimal(0.05 * r) + Decimal(0.65 * r) + Decimal(0.2 * r)
        x = _bisect(lambda x: G / A * _sinh(A * x) - (V - x) / R, -abs(V), abs(V))
        i = float(G / A * _sinh(A * x))
        x = float(x)
    assert sol.converged
    assert sol.i_out[0] == pytest.approx(i, rel=1e-14, abs=0)
    assert sol.i_source[0] == pytest.approx(i, rel=1e-14, abs=0)
    assert sol.v_wl[0, 0] - sol.v_bl[0, 0] == pytest.approx(x, rel=1e-14, abs=0)


def _level1(vd: Decimal, vs: Decimal, vg: Decimal) -> Decimal:
    """Shichman-Hodges drain current in decimal arithmetic (bulk at 0, no body effect)."""
    if vd < vs:
        return -_level1(vs, vd, vg)
    p = {k: Decimal(x) for k, x in ACCESS.items()}
    vgst, vds = vg - vs - p["vto"], vd - vs
    beta = p["kp"] * p["w"] / p["l"]
    if vgst <= 0:
        return Decimal(0)
    if vgst <= vds:
        return beta * vgst**2 * (1 + p["lambda_"] * vds) / 2
    return beta * vds * (vgst - vds / 2) * (1 + p["lambda_"] * vds)


@pytest.mark.parametrize(
    "v, vg, region",
    [(1.0, 0.3, "cutoff"), (0.2, 3.0, "linear"), (0.5, 1.5, "linear"), (1.5, 1.2, "linear"),
     (2.0, 0.7, "saturation"), (3.0, 0.9, "saturation"), (-1.0, 2.5, "reverse"),
     (-2.0, 1.0, "reverse")],
)
def test_1t1r_cell_to_1e_14(v, vg, region):
    g, r1, r2 = 1e-4, 100.0, 200.0
    tile = cs.crossbar([[g]], r_source=r1, r_sense=r2, access=cs.devices.Level1(**ACCESS),
                       v_gate=vg)
    sol = cs.solve(tile, [v])
    with localcontext() as ctx:
        ctx.prec = 50
        V, VG, R1, R2, G = (Decimal(x) for x in (v, vg, r1, r2, g))

        def excess(i):  # the series current i against the transistor's at the voltages i sets
            return i - _level1(V - i * (R1 + 1 / G), i * R2, VG)

        lim = abs(V) / (R1 + R2 + 1 / G)
        lo, hi = (Decimal(0), lim) if v > 0 else (-lim, Decimal(0))
        i = _bisect(excess, lo, hi)
        vd, vs = float(V - i * (R1 + 1 / G)), float(i * R2)
        i = float(i)
    assert sol.converged
    if region == "cutoff":
        assert sol.i_out[0] == 0.0 and abs(i) < 1e-40
        return
    assert sol.i_out[0] == pytest.approx(i, rel=1e-14, abs=0)
    assert float(sol.v_int[0, 0]) == pytest.approx(vd, rel=1e-14, abs=0)
    assert float(sol.v_bl[0, 0]) == pytest.approx(vs, rel=1e-14, abs=0)
    vds, vgst = vd - vs, vg - min(vd, vs) - ACCESS["vto"]
    seen = {"linear": 0 < vgst and 0 < vds < vgst, "saturation": 0 < vgst <= vds,
            "reverse": vds < 0 and vgst > 0}
    assert seen[region]


# ---------------------------------------------------------------------------------------------
# Newton-Krylov's inner solve falls back to a direct one when it does not converge


def test_stalled_krylov_updates_fall_back_to_direct_ones():
    rng = np.random.default_rng(7)
    g = rng.uniform(1e-6, 1e-3, (6, 6))
    tile = cs.crossbar(g, 1.0, 1.0, 5.0, 5.0, device=cs.devices.Sinh(a=20.0))
    v = rng.uniform(-1, 1, (3, 6))
    exact = cs.solve(tile, v, mode="newton")  # direct updates throughout
    # One BiCGSTAB iteration cannot meet krylov_rtol: every update must be redone directly, so
    # Newton takes the very same steps as with direct updates.
    starved = cs.solve(tile, v, krylov_maxiter=1, **NO_FALLBACK)
    assert "direct" in starved.method
    np.testing.assert_array_equal(starved.iterations, exact.iterations)
    np.testing.assert_allclose(starved.i_out, exact.i_out, rtol=1e-13)
