"""The engine's KCL audits fail when they should: perturbed solutions, early-stopped iterative
solves, and failed Newton runs are rejected and reported with their true residual."""

import numpy as np
import pytest
from guards_support import (
    analyses_of,
    audit_nodes,
    kcl_imbalance,
    linear_audit,
    reduced_index,
    shichman_hodges,
)

import circuitsim as cs

ACCESS = {"vto": 0.5, "kp": 2e-4, "lambda_": 0.01, "w": 1e-6, "l": 0.1e-6}


def all_nodes(tile, v_in, sol):
    """Every node voltage of one solved system, in the circuit's node numbering."""
    parts = [sol.v_wl.ravel(), sol.v_bl.ravel()]
    if sol.v_int is not None:
        parts.append(sol.v_int.ravel())
    return np.concatenate(parts + [np.asarray(v_in, float), tile.v_sense[0]])


def name_of(tile, node):
    """Node name in the engine's format, from the crossbar docstring's numbering."""
    mn = tile.m * tile.n
    kind, k = divmod(node, mn)
    i, j = divmod(k, tile.n)
    return f"{('wl', 'bl', 'int')[kind]}[{i},{j}]"


def nonlinear_case(kind):
    rng = np.random.default_rng(2)
    g = rng.uniform(1e-6, 1e-4, (4, 5))
    v = rng.uniform(-0.5, 0.5, 4)
    if kind == "sinh":
        return cs.crossbar(g, 1.0, 2.0, 10.0, 5.0, device=cs.devices.Sinh(a=3.0)), v
    vg = np.array([[1.8], [1.2], [1.8], [1.5]])
    return cs.crossbar(g, 1.0, 2.0, 10.0, 5.0, device=cs.devices.Sinh(a=2.0),
                       access=cs.devices.Level1(**ACCESS), v_gate=vg), np.abs(v)


# ---------------------------------------------------------------------------------------------
# The nonlinear audit


@pytest.mark.parametrize("kind", ["sinh", "1t1r"])
def test_audit_accepts_the_converged_solution(kind):
    tile, v = nonlinear_case(kind)
    sol = cs.solve(tile, v)
    residual, passed, _ = audit_nodes(tile, all_nodes(tile, v, sol))
    assert passed
    assert residual < 1e-15


@pytest.mark.parametrize("rel", [1e-7, 1e-6])
@pytest.mark.parametrize("node", [0, 7, 19, 23, 35, 47])
@pytest.mark.parametrize("kind", ["sinh", "1t1r"])
def test_audit_rejects_one_node_slightly_off(kind, node, rel):
    """A node voltage off by 1e-7 relative leaves a KCL imbalance far above 1e-9 of the node's
    currents: the audit must fail and blame that node."""
    tile, v = nonlinear_case(kind)
    sol = cs.solve(tile, v)
    nodes = all_nodes(tile, v, sol)
    if kind == "sinh" and node >= 40:
        node -= 20  # a passive tile has no internal nodes: take a bit-line node instead
    nodes[node] *= 1 + rel
    residual, passed, worst = audit_nodes(tile, nodes)
    assert not passed
    assert worst == name_of(tile, node)
    assert residual > 0


# ---------------------------------------------------------------------------------------------
# The linear audit, through an iterative solver stopped early


def cg_tile(seed=0, shape=(16, 16), r_wire=2.5, r_ends=100.0, g_min=1e-6):
    rng = np.random.default_rng(seed)
    g = rng.uniform(g_min, 1e-3, shape)
    v = rng.uniform(0, 0.5, (3, shape[0]))
    return cs.crossbar(g, r_wire, r_wire, r_ends, r_ends), v


def test_cg_to_full_accuracy_passes_and_agrees_with_direct():
    tile, v = cg_tile()
    ref = cs.solve(tile, v)
    sol = cs.solve(tile, v, solver="cg")
    assert sol.converged.all()
    np.testing.assert_allclose(sol.i_out, ref.i_out, rtol=1e-9)


@pytest.mark.parametrize("rtol", [1e-4, 1e-5])
def test_cg_stopped_early_is_rejected(rtol):
    tile, v = cg_tile()
    options = {"rtol": rtol}
    with pytest.raises(cs.ConvergenceError) as err:
        cs.solve(tile, v, solver="cg", solver_options=options)
    assert err.value.residual > 0
    assert err.value.node.startswith(("wl[", "bl["))
    with pytest.warns(RuntimeWarning, match=r"systems failed \(masked\)"):
        masked = cs.solve(tile, v, solver="cg", solver_options=options, on_fail="mask")
    assert not masked.converged.any()
    # what was rejected is really wrong: outputs off by far more than 1e-9
    ref = cs.solve(tile, v)
    err_out = np.abs(masked.i_out - ref.i_out).max(axis=1) / np.abs(ref.i_out).max(axis=1)
    assert np.all(err_out > 1e-7)


@pytest.mark.parametrize("case, rtol", [
    ({}, 1e-6),
    ({"seed": 1, "shape": (32, 32), "r_wire": 1.0, "r_ends": 10.0, "g_min": 1e-5}, 1e-7),
])
def test_cg_stopped_near_1e_6_is_rejected_by_the_forward_error_check(case, rtol):
    # The backward-error audit alone accepts these (|J x - b| is tiny against 1 S wires at
    # 0.5 V) although the outputs are 1e-6 off; the forward-error estimate refuses them.
    tile, v = cg_tile(**case)
    ref = cs.solve(tile, v)
    with pytest.raises(cs.ConvergenceError, match="forward error estimate"):
        cs.solve(tile, v, solver="cg", solver_options={"rtol": rtol})
    with pytest.warns(RuntimeWarning, match="forward error estimate"):
        masked = cs.solve(tile, v, solver="cg", solver_options={"rtol": rtol}, on_fail="mask")
    err = np.abs(masked.i_out - ref.i_out).max(axis=1) / np.abs(ref.i_out).max(axis=1)
    assert np.all(err[~masked.converged] > 1e-8)  # what was flagged is really off


def test_tiny_bit_line_resistance_is_accurate():
    # With 1e-12 ohm bit lines the audit's terms |p v| are 1e12 S x V, so it would pass a solve
    # 5e-4 off; iterative refinement with the branch-form residual makes the solve accurate.
    rng = np.random.default_rng(3)
    g = rng.uniform(1e-6, 1e-4, (32, 32))
    limit = cs.solve(cs.crossbar(g, 1.0, 0.0, 10.0, 10.0), np.eye(32)).i_out
    # 32 segments of 1e-12 ohm carry at most 3 mA: a 1e-13 V drop on a bit line at 30 mV
    tiny = cs.solve(cs.crossbar(g, 1.0, 1e-12, 10.0, 10.0), np.eye(32))
    assert tiny.converged.all()
    np.testing.assert_allclose(tiny.i_out, limit, rtol=1e-9, atol=1e-9 * np.abs(limit).max())


# ---------------------------------------------------------------------------------------------
# A failed nonlinear solve reports its residual


def strong_tile():
    rng = np.random.default_rng(6)
    g = rng.uniform(1e-5, 1e-4, (4, 4))
    return cs.crossbar(g, 1.0, 1.0, device=cs.devices.Sinh(a=60.0)), g


STOP_EARLY = {"max_iter": 2, "gmin_stepping": False, "source_stepping": False}


def test_failed_newton_reports_the_kcl_residual_of_what_it_reached():
    tile, g = strong_tile()
    v = np.array([np.ones(4), np.full(4, 0.8)])
    with pytest.raises(cs.ConvergenceError) as err:
        cs.solve(tile, v, **STOP_EARLY)
    with pytest.warns(RuntimeWarning, match="KCL residual .*Newton did not converge"):
        masked = cs.solve(tile, v, on_fail="mask", **STOP_EARLY)
    assert not masked.converged.any()

    def current(x):
        return g / 60.0 * np.sinh(60.0 * x)

    imbalance = [np.abs(kcl_imbalance(tile, 0, v[k], masked.v_wl[k], masked.v_bl[k],
                                      device_current=current)) for k in range(2)]
    worst = [float(f.max()) for f in imbalance]
    np.testing.assert_allclose(masked.residual, worst, rtol=1e-9)
    e = err.value
    k = int(np.argmax(worst))
    assert (e.tile, e.input) == (0, k)
    assert e.residual == pytest.approx(worst[k], rel=1e-9, abs=0)
    assert e.residual > 0.1  # amperes: far from converged
    assert e.node == name_of(tile, int(np.argmax(imbalance[k])))
    assert f"{e.residual:.3e}" in str(e)


def test_failed_1t1r_newton_reports_the_kcl_residual():
    rng = np.random.default_rng(6)
    g = rng.uniform(1e-5, 1e-4, (3, 4))
    tile = cs.crossbar(g, 1.0, 1.0, 2.0, 2.0, device=cs.devices.Sinh(a=40.0),
                       access=cs.devices.Level1(**ACCESS), v_gate=1.8)
    v = np.full(3, 1.0)
    with pytest.warns(RuntimeWarning, match="KCL residual .*Newton did not converge"):
        masked = cs.solve(tile, v, on_fail="mask", **STOP_EARLY)
    assert not masked.converged

    def drain(vd, vs, vg):
        return np.vectorize(shichman_hodges)(vd, vs, vg, **ACCESS)

    f = kcl_imbalance(tile, 0, v, masked.v_wl, masked.v_bl, masked.v_int,
                      device_current=lambda x: g / 40.0 * np.sinh(40.0 * x), drain_current=drain)
    assert masked.residual == pytest.approx(np.abs(f).max(), rel=1e-9, abs=0)
    assert masked.residual > 1e-6
    with pytest.raises(cs.ConvergenceError) as err:
        cs.solve(tile, v, **STOP_EARLY)
    assert err.value.residual == pytest.approx(np.abs(f).max(), rel=1e-9, abs=0)


# ---------------------------------------------------------------------------------------------
# The analysis cache that the benchmarks clear to time cold solves


def test_clear_caches_gives_the_next_tile_a_fresh_analysis(rng):
    from benchmarks.common import clear_caches

    g = rng.uniform(1e-6, 1e-4, (3, 6, 5))
    first, second = cs.crossbar(g[0], 1.0, 1.0), cs.crossbar(g[1], 2.0, 0.5)
    assert analyses_of(first) is analyses_of(second)  # one topology: one analysis, shared
    clear_caches()
    third = cs.crossbar(g[2], 1.0, 1.0)
    assert analyses_of(third) is not analyses_of(first)
    v = rng.uniform(0, 0.5, 6)
    np.testing.assert_allclose(cs.solve(third, v).i_out,
                               cs.solve(third, v, solver="dense").i_out, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# The linear path's own KCL audit, fed a slightly wrong solution


def test_linear_audit_rejects_one_node_slightly_off():
    rng = np.random.default_rng(9)
    tile = cs.crossbar(rng.uniform(1e-6, 1e-4, (8, 8)), 1.0, 1.0, 2.0, 1.0)
    v = rng.uniform(0.1, 0.5, (3, 8))
    ok, _ = linear_audit(tile, v, lambda x: None)
    assert ok.all()  # the direct solution passes

    def nudge(x):  # one unknown, 1e-7 of its voltage off, in the second input only
        x[5, 1] *= 1 + 1e-7

    ok, worst = linear_audit(tile, v, nudge)
    assert list(ok) == [True, False, True]
    assert reduced_index(tile, worst[1]) == 5  # and it names that node
