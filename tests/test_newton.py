"""Nonlinear and 1T1R tiles: hand-solvable circuits, invariants, agreement, stress, failure."""

import math

import numpy as np
import pytest
from guards_support import shichman_hodges
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

import circuitsim as cs

ACCESS = {"vto": 0.5, "kp": 2e-4, "lambda_": 0.01, "w": 1e-6, "l": 0.1e-6}


@pytest.mark.parametrize("v", [0.3, 1.0, 2.5, -0.8, -3.0])
def test_sinh_cell_with_series_resistance(v):
    g, a, r1, r2 = 1e-3, 3.0, 150.0, 50.0
    tile = cs.crossbar([[g]], r_wl=20.0, r_bl=10.0, r_source=r1 - 20.0, r_sense=r2 - 10.0,
                       device=cs.devices.Sinh(a=a))
    sol = cs.solve(tile, [v])
    # scalar KCL in the device voltage x: device current = current through r1 + r2
    x = brentq(lambda x: g / a * math.sinh(a * x) - (v - x) / (r1 + r2), -abs(v), abs(v),
               xtol=1e-16, rtol=1e-15)
    i = g / a * math.sinh(a * x)
    assert sol.i_out[0] == pytest.approx(i, rel=1e-10, abs=0)
    assert sol.v_wl[0, 0] - sol.v_bl[0, 0] == pytest.approx(x, rel=1e-10, abs=0)
    assert sol.iterations >= 2  # never converged on the first iteration


@pytest.mark.parametrize("mode", ["newton-krylov", "newton"])
def test_sinh_row_behind_tiny_wires_keeps_the_device_currents_digits(mode):
    # 0.1 microohm wires (1e7 S) next to 1e-4..1e-3 S cells: a Newton residual summed as
    # G v over the assembled conductances would lose the cells' currents in the rounding of
    # 1e7 S times volts; in branch form it keeps them, and the solution matches the lumped
    # row (every word-line node at one voltage x) to the wires' own effect, about 1e-10.
    rng = np.random.default_rng(3)
    g, a, v = rng.uniform(1e-4, 1e-3, 8), 3.0, 1.0
    r_src, r_out = 100.0, 50.0
    tile = cs.crossbar(g[None, :], r_wl=1e-7, r_bl=1e-7, r_source=r_src, r_sense=r_out,
                       device=cs.devices.Sinh(a=a))
    sol = cs.solve(tile, [v], mode=mode)

    def cell(x, gj):  # current of one cell behind its sense resistance at word-line voltage x
        return brentq(lambda i: gj / a * math.sinh(a * (x - i * r_out)) - i, 0.0, x / r_out,
                      xtol=1e-22, rtol=1e-15)

    x = brentq(lambda x: v - x - r_src * sum(cell(x, gj) for gj in g), 0.0, v,
               xtol=1e-16, rtol=1e-15)
    expected = np.array([cell(x, gj) for gj in g])
    np.testing.assert_allclose(sol.i_out, expected, rtol=1e-8, atol=0)


@pytest.mark.parametrize(
    "v, vg, region",
    [
        (1.0, 0.3, "cutoff"),
        (0.2, 3.0, "linear"),
        (2.0, 0.7, "saturation"),
        (-1.0, 2.5, "reverse"),
    ],
)
def test_one_1t1r_cell_in_each_region(v, vg, region):
    g, r1, r2 = 1e-4, 100.0, 200.0
    tile = cs.crossbar([[g]], r_source=r1, r_sense=r2, access=cs.devices.Level1(**ACCESS), v_gate=vg)
    sol = cs.solve(tile, [v])

    def mismatch(i):  # transistor current at the voltages that a series current i sets
        vd = v - i * (r1 + 1 / g)
        vs = i * r2
        return shichman_hodges(vd, vs, vg, **ACCESS) - i

    lim = abs(v) / (r1 + r2 + 1 / g)
    i = 0.0 if region == "cutoff" else brentq(mismatch, -lim, lim, xtol=1e-20, rtol=1e-15)
    assert sol.i_out[0] == pytest.approx(i, rel=1e-9, abs=1e-18)
    vd, vs = float(sol.v_int[0, 0]), float(sol.v_bl[0, 0])
    vds, vgst = vd - vs, vg - vs - ACCESS["vto"]
    seen = {
        "cutoff": vgst <= 0,
        "linear": 0 < vgst and vds < vgst,
        "saturation": 0 < vgst <= vds,
        "reverse": vds < 0,
    }
    assert seen[region]


def test_cutoff_internal_node_follows_its_memristor():
    g = np.full((2, 2), 1e-4)
    vg = np.array([[0.0], [1.8]])  # row 0 deselected
    tile = cs.crossbar(g, 1.0, 1.0, access=cs.devices.Level1(**ACCESS), v_gate=vg)
    sol = cs.solve(tile, [0.5, 0.5])
    np.testing.assert_allclose(sol.v_int[0], sol.v_wl[0], rtol=1e-12)  # no current through g
    assert np.all(sol.i_out > 0)


def test_open_cell_behind_transistor_in_cutoff_is_not_singular():
    g = np.array([[0.0, 1e-4], [1e-4, 1e-4]])
    tile = cs.crossbar(g, 1.0, 1.0, access=cs.devices.Level1(**ACCESS), v_gate=[[0.0], [1.8]])
    sol = cs.solve(tile, [0.4, 0.4])
    assert np.isfinite(sol.v_int).all() and sol.converged
    # Row 0 is switched off: no current anywhere in it, so its word line sits at the input, the
    # memristor of cell (0, 1) carries nothing, and the bit-line segments below row 0 neither.
    assert abs(sol.i_source[0]) < 1e-20
    np.testing.assert_allclose(sol.v_wl[0], 0.4, rtol=0, atol=1e-15)
    assert sol.v_int[0, 1] == pytest.approx(sol.v_wl[0, 1], abs=1e-15)
    np.testing.assert_allclose(sol.v_bl[0], sol.v_bl[1], rtol=0, atol=1e-15)
    # Row 1 alone, solved by hand: cell currents i0, i1 set every node of the row (1 ohm
    # segments, sense at 0 V), and each must equal its transistor's current.
    def row(i1):
        def cell0(i0):
            w0 = 0.4 - i0 - i1
            return shichman_hodges(w0 - i0 / 1e-4, i0, 1.8, **ACCESS) - i0
        i0 = brentq(cell0, 0.0, 0.4e-4, xtol=1e-22, rtol=1e-15)
        w1 = 0.4 - i0 - 2 * i1
        return i0, shichman_hodges(w1 - i1 / 1e-4, i1, 1.8, **ACCESS) - i1

    i1 = brentq(lambda x: row(x)[1], 0.0, 0.4e-4, xtol=1e-22, rtol=1e-15)
    i0 = row(i1)[0]
    np.testing.assert_allclose(sol.i_out, [i0, i1], rtol=1e-12)
    assert sol.i_source[1] == pytest.approx(i0 + i1, rel=1e-12, abs=0)


# ---------------------------------------------------------------------------------------------
# Random tiles: invariants and agreement


@st.composite
def nonlinear_tiles(draw):
    m, n = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    g = rng.uniform(1e-6, 1e-3, (m, n))
    device = draw(st.sampled_from([
        cs.devices.Sinh(a=3.0), cs.devices.AsymmetricSinh(a_pos=4.0, a_neg=2.0, k_neg=0.5),
        cs.devices.StanfordPKU(), cs.devices.Linear(),
    ]))
    if isinstance(device, cs.devices.StanfordPKU):
        g = rng.uniform(1e-6, 1e-3, (m, n))
    one_t = draw(st.booleans())
    kwargs = {"access": cs.devices.Level1(**ACCESS), "v_gate": rng.choice([0.0, 1.2, 1.8], (m, 1))}
    r = st.one_of(st.just(0.0), st.floats(1e-6, 5.0))
    tile = cs.crossbar(g, draw(r), draw(r), draw(r), draw(r), device=device,
                       **(kwargs if one_t else {}))
    v = rng.uniform(-1.5, 1.5, (3, m))
    return tile, v


def dissipated(tile, v, sol, k):
    """Power in wires and drivers (from node voltages) plus devices and transistors (I V)."""
    v_wl, v_bl = sol.v_wl[k], sol.v_bl[k]
    r_wl, r_bl = tile.r_wl[0].copy(), tile.r_bl[0].copy()
    r_wl[:, 0] += tile.r_source[0]
    r_bl[-1] += tile.r_sense[0]
    left = np.concatenate([v[k][:, None], v_wl[:, :-1]], axis=1)
    below = np.concatenate([v_bl[1:], np.zeros((1, tile.n))], axis=0)
    wires = sum(np.where(r > 0, dv**2 / np.where(r > 0, r, 1), 0).sum()
                for dv, r in ((left - v_wl, r_wl), (v_bl - below, r_bl)))
    lower = v_bl if sol.v_int is None else sol.v_int[k]
    model = tile.device or cs.devices.Linear()
    g = tile.g[0]
    cells = (model.take(np.array([0])).current((v_wl - lower).reshape(1, -1), g.reshape(1, -1))
             if hasattr(model, "take") and tile.device is not None
             else g * (v_wl - lower)).reshape(tile.m, tile.n) * (v_wl - lower)
    total = wires + cells.sum()
    if sol.v_int is not None:
        ids = np.vectorize(shichman_hodges)(sol.v_int[k], v_bl, tile.v_gate[0], **ACCESS)
        total += (ids * (sol.v_int[k] - v_bl)).sum()
    return total


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nonlinear_tiles())
def test_random_nonlinear_tiles(case):
    tile, v = case
    sol = cs.solve(tile, v, mode="newton")
    assert sol.converged.all()
    # KCL audit passed; charge conservation and power balance hold at the returned solution
    scale = max(np.abs(sol.i_out).max(), 1e-12)
    np.testing.assert_allclose(sol.i_source.sum(-1), sol.i_out.sum(-1), rtol=1e-8,
                               atol=1e-12 * scale)
    for k in range(len(v)):
        delivered = v[k] @ sol.i_source[k]
        assert delivered == pytest.approx(dissipated(tile, v, sol, k), rel=1e-7, abs=1e-15)
    # Newton-Krylov agrees with full Newton
    nk = cs.solve(tile, v, mode="newton-krylov")
    np.testing.assert_allclose(nk.i_out, sol.i_out, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(nk.v_bl, sol.v_bl, rtol=1e-9, atol=1e-12)


def test_batched_equals_one_by_one():
    rng = np.random.default_rng(5)
    g = rng.uniform(1e-6, 1e-4, (3, 6, 5))
    vg = rng.choice([0.0, 1.8], (3, 6, 1))
    v = rng.uniform(-1, 1, (3, 4, 6))
    kw = {"device": cs.devices.Sinh(a=4.0), "access": cs.devices.Level1(**ACCESS)}
    batched = cs.solve(cs.crossbar(g, 1.0, 2.0, 5.0, 3.0, v_gate=vg, **kw), v)
    for b in range(3):
        single = cs.solve(cs.crossbar(g[b], 1.0, 2.0, 5.0, 3.0, v_gate=vg[b], **kw), v[b])
        np.testing.assert_allclose(batched.i_out[b], single.i_out, rtol=1e-10, atol=1e-20)
        np.testing.assert_allclose(batched.v_int[b], single.v_int, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("mode", ["newton-krylov", "newton"])
def test_batched_tiles_with_their_own_wires_equal_one_by_one(mode):
    # Newton keeps each tile's resistors as one fixed matrix: a batch whose tiles differ in every
    # wire, source and sense resistance must use each tile's own, in products, preconditioners,
    # direct steps and currents alike.
    rng = np.random.default_rng(8)
    B, m, n = 3, 5, 4
    g = rng.uniform(1e-5, 1e-3, (B, m, n))
    r_wl = rng.uniform(0.5, 20.0, (B, m, n))
    r_bl = rng.uniform(0.5, 20.0, (B, m, n))
    r_source = rng.uniform(1.0, 50.0, (B, m))
    r_sense = rng.uniform(1.0, 50.0, (B, n))
    v = rng.uniform(-0.8, 0.8, (B, 6, m))
    kw = {"device": cs.devices.Sinh(a=4.0), "access": cs.devices.Level1(**ACCESS),
          "v_gate": 1.8}
    batched = cs.solve(cs.crossbar(g, r_wl, r_bl, r_source, r_sense, **kw), v, mode=mode)
    assert batched.converged.all()
    for b in range(B):
        single = cs.solve(cs.crossbar(g[b], r_wl[b], r_bl[b], r_source[b], r_sense[b], **kw),
                          v[b], mode=mode)
        np.testing.assert_allclose(batched.i_out[b], single.i_out, rtol=1e-10, atol=1e-20)
        np.testing.assert_allclose(batched.v_wl[b], single.v_wl, rtol=1e-10, atol=1e-14)
        # each tile's own wires: the same cells behind another tile's wires give other currents
        other = cs.solve(cs.crossbar(g[b], r_wl[b - 1], r_bl[b - 1], r_source[b - 1],
                                     r_sense[b - 1], **kw), v[b], mode=mode)
        assert np.abs(other.i_out - batched.i_out[b]).max() > 1e-3 * np.abs(single.i_out).max()
    # charge is conserved in every system
    np.testing.assert_allclose(batched.i_source.sum(-1), batched.i_out.sum(-1), rtol=1e-8,
                               atol=1e-15)


@pytest.mark.parametrize("wires", [0.0, 1.0])
def test_per_cell_threshold_variability(wires):
    rng = np.random.default_rng(2)
    vg = 0.7  # gates near threshold: the transistors limit the current, so vto matters
    g = rng.uniform(1e-6, 1e-4, (4, 4))
    vto = rng.normal(0.5, 0.05, (4, 4))
    v = rng.uniform(0.2, 0.4, 4)
    access = cs.devices.Level1(**{**ACCESS, "vto": vto})
    sol = cs.solve(cs.crossbar(g, wires, wires, access=access, v_gate=vg), v)
    # Each cell alone, with its own threshold: the series current through g and the transistor.
    def cell(v_i, g_ij, vto_ij):
        p = {**ACCESS, "vto": vto_ij}
        return brentq(lambda c: shichman_hodges(v_i - c / g_ij, 0.0, vg, **p) - c,
                      0.0, v_i * g_ij, xtol=1e-24, rtol=1e-15)

    cells = np.array([[cell(v[i], g[i, j], vto[i, j]) for j in range(4)] for i in range(4)])
    if wires == 0.0:  # ideal wires: the cells are independent
        np.testing.assert_allclose(sol.i_out, cells.sum(axis=0), rtol=1e-12)
    else:  # 1 ohm wires cost a little current, nothing like the threshold spread
        np.testing.assert_allclose(sol.i_out, cells.sum(axis=0), rtol=1e-3)
    # the spread matters: the same tile with every threshold at 0.5 V is visibly different
    uniform = cs.solve(cs.crossbar(g, wires, wires, access=cs.devices.Level1(**ACCESS),
                                   v_gate=vg), v)
    assert np.abs(uniform.i_out / sol.i_out - 1).max() > 1e-3


# ---------------------------------------------------------------------------------------------
# Stress


@pytest.mark.parametrize("a", [10.0, 50.0, 100.0])
def test_strong_sinh_from_zero(a):
    rng = np.random.default_rng(3)
    g = rng.uniform(1e-6, 1e-4, (6, 6))
    tile = cs.crossbar(g, 1.0, 1.0, 2.0, 1.0, device=cs.devices.Sinh(a=a))
    v = rng.uniform(-1.0, 1.0, (3, 6))  # a V up to 100
    with np.errstate(over="raise"):
        sol = cs.solve(tile, v)
    assert sol.converged.all() and np.isfinite(sol.i_out).all()
    assert np.all(sol.iterations <= 100)


def test_whole_rows_of_gates_off_and_negative_inputs():
    rng = np.random.default_rng(4)
    g = rng.uniform(1e-6, 1e-4, (8, 8))
    vg = np.full((8, 1), 1.8)
    vg[[1, 4]] = 0.0
    tile = cs.crossbar(g, 1.0, 1.0, 2.0, 1.0, device=cs.devices.Sinh(a=5.0),
                       access=cs.devices.Level1(**ACCESS), v_gate=vg)
    v = -rng.uniform(0.1, 1.0, (2, 8))
    sol = cs.solve(tile, v)
    assert np.all(sol.i_out < 0)
    on = np.delete(np.arange(8), [1, 4])
    off_current = (g[[1, 4]] * (sol.v_wl[:, [1, 4]] - sol.v_int[:, [1, 4]])).max()
    assert abs(off_current) < 1e-20
    assert np.all(np.abs(sol.v_wl[:, on] - sol.v_int[:, on]) > 0)


# ---------------------------------------------------------------------------------------------
# Failure is reported, never returned silently


def strong_tile():
    rng = np.random.default_rng(6)
    return cs.crossbar(rng.uniform(1e-5, 1e-4, (4, 4)), 1.0, 1.0, device=cs.devices.Sinh(a=60.0))


def test_non_convergence_raises_with_location():
    with pytest.raises(cs.ConvergenceError) as err:
        cs.solve(strong_tile(), np.ones((2, 4)), max_iter=2, gmin_stepping=False,
                 source_stepping=False)
    e = err.value
    assert e.tile == 0 and e.input in (0, 1) and e.node.startswith(("wl[", "bl["))
    assert "Newton did not converge" in str(e)


def test_non_convergence_can_be_masked():
    with pytest.warns(RuntimeWarning, match="Newton did not converge"):
        sol = cs.solve(strong_tile(), np.ones((2, 4)), max_iter=2, gmin_stepping=False,
                       source_stepping=False, on_fail="mask")
    assert not sol.converged.any()


@pytest.mark.parametrize("fallback", ["gmin_stepping", "source_stepping"])
def test_fallbacks_rescue_short_newton_runs(fallback):
    other = {"gmin_stepping": "source_stepping", "source_stepping": "gmin_stepping"}[fallback]
    tile = strong_tile()
    sol = cs.solve(tile, np.ones((2, 4)), max_iter=6, **{other: False})
    assert sol.converged.all()
    assert fallback.replace("_", "-") in sol.method
    ref = cs.solve(tile, np.ones((2, 4)))
    np.testing.assert_allclose(sol.i_out, ref.i_out, rtol=1e-9)


def test_bad_mode_and_solver():
    with pytest.raises(ValueError, match="mode must be one of"):
        cs.solve(strong_tile(), np.ones(4), mode="broyden")
    with pytest.raises(ValueError, match="Newton needs a direct solver"):
        cs.solve(strong_tile(), np.ones(4), solver="cg")


def test_direct_newton_in_chunks_matches(monkeypatch):
    from circuitsim import factor

    rng = np.random.default_rng(8)
    g = rng.uniform(1e-6, 1e-4, (5, 5))
    tile = cs.crossbar(g, 1.0, 1.0, device=cs.devices.Sinh(a=3.0),
                       access=cs.devices.Level1(**ACCESS), v_gate=1.8)
    v = rng.uniform(0, 0.5, (6, 5))
    whole = cs.solve(tile, v, mode="newton").i_out
    monkeypatch.setattr(factor, "CHUNK_UNKNOWNS", 100)  # 75 unknowns a system: one per chunk
    np.testing.assert_allclose(cs.solve(tile, v, mode="newton").i_out, whole, rtol=1e-12)


def test_measured_iv_table_reproduces_the_curve_it_samples():
    """A tile of IVTable devices sampled densely from sinh solves like the Sinh tile."""
    a = 2.0
    v_tab = np.linspace(-1.5, 1.5, 3001)
    table = cs.devices.IVTable(v_tab, np.sinh(a * v_tab) / a)  # g_ref = 1 S: state scales it
    rng = np.random.default_rng(9)
    g = rng.uniform(1e-6, 1e-4, (6, 5))
    v = rng.uniform(-0.8, 0.8, (3, 6))
    ref = cs.solve(cs.crossbar(g, 1.0, 1.0, 5.0, 5.0, device=cs.devices.Sinh(a=a)), v)
    sol = cs.solve(cs.crossbar(g, 1.0, 1.0, 5.0, 5.0, device=table), v)
    np.testing.assert_allclose(sol.i_out, ref.i_out, rtol=1e-6)


@pytest.mark.parametrize("v_drive, v_free, dv, expected", [
    (10.0, 0.0, -0.5, math.log1p(1.5) / 1.5), (10.0, 0.0, 0.5, 1.0), (10.0, 0.0, -0.2, 1.0),
    # ends of opposite sign: 1.2 V -> 1.6 V, 4.8 scales, outward by 1.2 scales, while neither
    # end nor the step exceeds 0.6 V (a bound of max |v| + |dv| = 3 scales would skip it)
    (0.6, -0.6, -0.4, math.log1p(1.2) / 1.2)])
def test_step_limit_sees_device_ends_at_fixed_nodes(v_drive, v_free, dv, expected):
    # One sinh cell (a = 3, voltage scale 1/3 V) between a driver fixed at 10 V (zero word-line
    # and source resistance: the cell's end is the fixed node) and a free bit-line node at 0 V.
    # A step of the free node by dv moves the device voltage from 10 V (30 scales) to 10 - dv:
    # outward by 1.5 scales for dv = -0.5 V, which ngspice-style limiting scales to
    # log(1 + 1.5) / 1.5; inward (dv > 0) or by under one scale (dv = -0.2 V) it is not limited.
    # The free nodes and the step alone never reach 4 scales, so a shortcut that bounds the
    # device voltages without the fixed ends would skip the limit.
    from circuitsim import newton
    from circuitsim.branches import group_models
    from circuitsim.mna import tile_plans

    tile = cs.crossbar([[1e-4]], r_wl=0.0, r_bl=0.0, r_source=0.0, r_sense=1.0,
                       device=cs.devices.Sinh(a=3.0))
    (plan,) = tile_plans(tile)
    assert plan.n_free == 1
    tile_idx = np.zeros(1, dtype=np.int64)
    vk = np.where(np.arange(plan.n_fixed) == 0, v_drive, 0.0)[None, :]  # driver, sense node
    v = np.concatenate([np.full((1, 1), v_free), vk], axis=1)
    opts = newton._Options(1e-9, 1e-15, 1e-12, 100, 1.0, "newton", "direct", 1e-10, 40,
                           newton._Clock(None, None, 1))
    alpha = newton._limit(plan, group_models(plan, tile_idx), v, np.array([[dv]]), tile_idx, opts)
    assert alpha[0] == pytest.approx(expected, rel=1e-12)


def test_small_updates_need_few_inner_iterations_and_stay_accurate(monkeypatch):
    """Newton-Krylov's inner tolerance is judged on the size of BiCGSTAB's iterate: once the
    updates are small, one BiCGSTAB iteration meets it (a tolerance judged on the previous,
    larger update asked two for the second update here), and the result still agrees with
    direct Newton far inside reltol."""
    import circuitsim.newton as newton

    iterations = []
    inner = newton.bicgstab_many

    def counted(*args, **kwargs):
        x, ok, it = inner(*args, **kwargs)
        iterations.append(it)
        return x, ok, it

    monkeypatch.setattr(newton, "bicgstab_many", counted)
    rng = np.random.default_rng(0)
    g = rng.uniform(1e-6, 1e-4, (16, 16))
    tile = cs.crossbar(g, 1.0, 1.0, 2.0, 1.0, device=cs.devices.Sinh(a=3.0))
    v = rng.uniform(0.0, 0.3, (4, 16))
    sol = cs.solve(tile, v)
    assert sol.method == "newton-krylov" and sol.converged.all()
    assert iterations == [1, 1, 1]  # one per Newton update, three updates
    exact = cs.solve(tile, v, mode="newton", reltol=1e-13)
    scale = np.abs(exact.i_out).max()
    np.testing.assert_allclose(sol.i_out, exact.i_out, rtol=0, atol=1e-11 * scale)
