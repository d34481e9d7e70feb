"""Linear (passive, 0T1R) tiles: closed forms, ideal limit, invariants, solver agreement."""

import warnings

import numpy as np
import pytest
from conftest import dissipated_power
from guards_support import kcl_imbalance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import circuitsim as cs
from circuitsim.branches import branch_values
from circuitsim.engine import tile_plans

# ---------------------------------------------------------------------------------------------
# Closed forms


@pytest.mark.parametrize(
    "g, r_source, r_wl, r_bl, r_sense, v",
    [
        (1e-3, 0.0, 0.0, 0.0, 0.0, 1.0),
        (1e-4, 100.0, 2.0, 3.0, 50.0, 0.7),
        (2e-5, 0.0, 5.0, 0.0, 10.0, -0.3),
    ],
)
def test_one_cell_is_a_series_circuit(g, r_source, r_wl, r_bl, r_sense, v):
    tile = cs.crossbar([[g]], r_wl, r_bl, r_source, r_sense)
    sol = cs.solve(tile, [v])
    i = v / (1 / g + r_source + r_wl + r_bl + r_sense)
    assert sol.i_out[0] == pytest.approx(i, rel=1e-13, abs=0)
    assert sol.i_source[0] == pytest.approx(i, rel=1e-13, abs=0)
    assert sol.v_wl[0, 0] == pytest.approx(v - i * (r_source + r_wl), rel=1e-13, abs=1e-15)
    assert sol.v_bl[0, 0] == pytest.approx(i * (r_bl + r_sense), rel=1e-13, abs=1e-15)


def ladder_row(g, r_wl, r_source, v):
    """One word line, bit lines grounded: backward admittance recursion, forward division."""
    n = len(g)
    y = np.empty(n)  # admittance looking right from WL node j, device included
    y[-1] = g[-1]
    for j in range(n - 2, -1, -1):
        y[j] = g[j] + 1.0 / (r_wl + 1.0 / y[j + 1])
    v_node = np.empty(n)
    upstream = v
    r_first = r_source + r_wl
    for j in range(n):
        r = r_first if j == 0 else r_wl
        v_node[j] = upstream / (1.0 + r * y[j])  # divider: series r into admittance y[j]
        upstream = v_node[j]
    return g * v_node, v_node


def test_single_row_ladder(rng):
    n = 17
    g = rng.uniform(1e-5, 1e-3, n)
    tile = cs.crossbar(g[None, :], r_wl=2.5, r_source=30.0)
    sol = cs.solve(tile, [0.8])
    i_ref, v_ref = ladder_row(g, 2.5, 30.0, 0.8)
    np.testing.assert_allclose(sol.i_out, i_ref, rtol=1e-12)
    np.testing.assert_allclose(sol.v_wl[0], v_ref, rtol=1e-12)
    assert sol.i_source[0] == pytest.approx(i_ref.sum(), rel=1e-12, abs=0)


def column_norton(g, v, r_bl, r_last):
    """One bit line, word lines driven ideally: Norton equivalents carried down the line."""
    current, cond = g[0] * v[0], g[0]
    for i in range(1, len(g)):
        r = 1.0 / cond + r_bl  # Thevenin resistance after the segment below node i-1
        current, cond = (current / cond) / r + g[i] * v[i], 1.0 / r + g[i]
    return (current / cond) / (1.0 / cond + r_last)


def test_single_column(rng):
    m = 13
    g = rng.uniform(1e-5, 1e-3, m)
    v = rng.uniform(-1, 1, m)
    tile = cs.crossbar(g[:, None], r_bl=3.0, r_sense=20.0)
    sol = cs.solve(tile, v)
    assert sol.i_out[0] == pytest.approx(column_norton(g, v, 3.0, 3.0 + 20.0), rel=1e-12, abs=0)


def test_ideal_limit_is_the_matrix_product(rng):
    g = rng.uniform(1e-6, 1e-3, (9, 7))
    v = rng.uniform(-1, 1, (5, 9))
    sol = cs.solve(cs.crossbar(g), v)
    np.testing.assert_allclose(sol.i_out, v @ g, rtol=1e-12)
    np.testing.assert_allclose(sol.v_wl, np.broadcast_to(v[:, :, None], (5, 9, 7)), rtol=0)
    np.testing.assert_array_equal(sol.v_bl, 0.0)


def test_zero_wire_resistance_is_the_limit_of_small_ones(rng):
    g = rng.uniform(1e-6, 1e-3, (6, 5))
    v = rng.uniform(0, 1, 6)
    exact = cs.solve(cs.crossbar(g, r_wl=0.0, r_bl=1.0, r_source=0.0), v).i_out
    tiny = cs.solve(cs.crossbar(g, r_wl=1e-9, r_bl=1.0, r_source=0.0), v).i_out
    np.testing.assert_allclose(exact, tiny, rtol=1e-6)


def test_tiny_wire_resistance_keeps_output_currents_accurate(rng):
    """Outputs come from KCL on each bit line, not from the voltage drop over a tiny segment."""
    g = rng.uniform(1e-6, 1e-4, (8, 8))
    v = rng.uniform(0, 1, 8)
    sol = cs.solve(cs.crossbar(g, r_wl=1e-9, r_bl=1e-9), v)
    np.testing.assert_allclose(sol.i_out, v @ g, rtol=1e-6)


def test_uniform_sense_voltage_shifts_inputs(rng):
    g = rng.uniform(1e-6, 1e-3, (4, 3))
    v = rng.uniform(0, 1, (2, 4))
    tile = cs.crossbar(g, 1.0, 2.0, 5.0, 3.0, v_sense=0.25)
    T = cs.transfer_matrix(tile)
    np.testing.assert_allclose(cs.solve(tile, v).i_out, (v - 0.25) @ T.T, rtol=1e-10)


def test_drive_both_ends_halves_the_line_drop():
    # One row of identical cells: with both ends driven the worst word-line node is the middle.
    g = np.full((1, 8), 1e-3)
    left = cs.solve(cs.crossbar(g, r_wl=5.0), [1.0])
    both = cs.solve(cs.crossbar(g, r_wl=5.0, drive="both"), [1.0])
    assert np.argmin(left.v_wl[0]) == 7
    assert np.argmin(both.v_wl[0]) in (3, 4)
    np.testing.assert_allclose(both.v_wl[0], both.v_wl[0][::-1], rtol=2e-2)
    assert both.i_out.sum() > left.i_out.sum()


# ---------------------------------------------------------------------------------------------
# Invariants on random tiles

resistance = st.one_of(st.just(0.0), st.floats(1e-3, 100.0))


@st.composite
def random_tiles(draw):
    m, n, batch = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    g = rng.uniform(1e-6, 1e-3, (batch, m, n))
    g[rng.random(g.shape) < 0.1] = 0.0  # some open cells
    tile = cs.crossbar(
        g,
        r_wl=draw(resistance),
        r_bl=draw(resistance),
        r_source=draw(resistance),
        r_sense=draw(resistance),
        v_sense=draw(st.floats(-0.5, 0.5)),
        drive=draw(st.sampled_from(["left", "both"])),
    )
    v = rng.uniform(-1, 1, (batch, 3, m))
    return tile, v


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tiles())
def test_invariants(case):
    tile, v = case
    sol = cs.solve(tile, v)
    # KCL: what does not balance is round-off of the terms G v summed at a node.
    r = np.concatenate([x.ravel() for x in (tile.r_wl, tile.r_bl, tile.r_source, tile.r_sense)])
    g_max = max(1.0 / r[r > 0].min() if np.any(r > 0) else 0.0, tile.g.max())
    terms = 4 * g_max * max(np.abs(v).max(), np.abs(tile.v_sense).max())
    bound = 1e-13 * terms + 1e-18
    assert np.all(sol.residual <= bound)
    # The reported residual is the imbalance of the returned voltages, recomputed here from the
    # tile's parameters: at the solution it is round-off; for CG stopped at rtol=1e-3 it is
    # well above round-off, and must still be reported as it is (never as 0).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        early = cs.solve(tile, v, solver="cg", solver_options={"rtol": 1e-3}, on_fail="mask")
    # systems CG left short are flagged, and said so in one warning
    failed = [str(w.message) for w in caught if "systems failed (masked)" in str(w.message)]
    assert len(failed) == int(not early.converged.all())
    assert len(caught) == len(failed)  # and no other warning
    for b in range(tile.batch):
        for k in range(v.shape[1]):
            f = kcl_imbalance(tile, b, v[b, k], sol.v_wl[b, k], sol.v_bl[b, k])
            assert np.all(np.abs(f) <= bound)
            f = kcl_imbalance(tile, b, v[b, k], early.v_wl[b, k], early.v_bl[b, k])
            want = np.abs(f).max(initial=0.0)
            assert early.residual[b, k] == pytest.approx(want, rel=1e-6, abs=bound)
    scale = max(np.abs(sol.i_source).max(), np.abs(sol.i_out).max(), 1e-12)
    # Conservation: the sources' power is the power dissipated in every resistor and cell.
    for b in range(tile.batch):
        for k in range(v.shape[1]):
            delivered = v[b, k] @ sol.i_source[b, k] - tile.v_sense[b] @ sol.i_out[b, k]
            dissipated = dissipated_power(tile, b, v[b, k], sol.v_wl[b, k], sol.v_bl[b, k])
            assert delivered == pytest.approx(dissipated, rel=1e-9, abs=1e-18)
    # Charge conservation: what the drivers deliver reaches the sense nodes.
    np.testing.assert_allclose(
        sol.i_source.sum(-1), sol.i_out.sum(-1), rtol=1e-9, atol=1e-15 * scale
    )
    # The transfer matrix reproduces every solve (uniform v_sense: shift the inputs).
    T = cs.transfer_matrix(tile)
    shifted = v - tile.v_sense[:, :1, None]
    pred = np.einsum("bnm,bkm->bkn", T, shifted)
    # T is accurate to a fraction of the terms it sums (|T| |v|), as transfer_matrix promises
    terms = np.einsum("bnm,bkm->bkn", np.abs(T), np.abs(shifted))
    assert np.all(np.abs(pred - sol.i_out) <= 1e-10 * terms + 1e-12 * scale)


@settings(max_examples=30, deadline=None)
@given(random_tiles())
def test_reduced_matrix_is_symmetric_positive_definite(case):
    tile, _ = case
    for plan in tile_plans(tile):
        if plan.n_free == 0:
            continue
        zero = np.zeros((1, plan.n_free + plan.n_fixed))
        bv = branch_values(plan, zero, plan.tiles[:1])
        J = plan.jacobian(bv.p, bv.q).toarray()
        np.testing.assert_array_equal(J, J.T)
        assert np.linalg.eigvalsh(J).min() > 0


# ---------------------------------------------------------------------------------------------
# Solvers and batching


@pytest.mark.parametrize("solver", ["superlu", "cg", "dense", "direct"])
def test_solvers_agree(solver, rng):
    g = rng.uniform(1e-6, 1e-3, (12, 10))
    v = rng.uniform(-1, 1, (4, 12))
    tile = cs.crossbar(g, 0.5, 0.7, 10.0, 5.0)
    ref = cs.solve(tile, v, solver="dense")
    sol = cs.solve(tile, v, solver=solver)
    np.testing.assert_allclose(sol.i_out, ref.i_out, rtol=1e-9)
    np.testing.assert_allclose(sol.v_bl, ref.v_bl, rtol=1e-9, atol=1e-12)


def test_cholmod_when_installed(rng):
    pytest.importorskip("sksparse")
    tile = cs.crossbar(rng.uniform(1e-6, 1e-3, (6, 6)), 1.0, 1.0)
    v = rng.uniform(0, 1, 6)
    sol = cs.solve(tile, v, solver="cholmod")
    assert sol.method == "cholmod"
    np.testing.assert_allclose(sol.i_out, cs.solve(tile, v, solver="superlu").i_out, rtol=1e-12)


def test_batched_equals_one_by_one(rng):
    g = rng.uniform(1e-6, 1e-3, (3, 5, 4))
    r_wl = rng.uniform(0.5, 2.0, (3, 5, 4))
    v = rng.uniform(-1, 1, (3, 2, 5))
    batched = cs.solve(cs.crossbar(g, r_wl=r_wl, r_bl=1.0, r_source=3.0), v)
    for b in range(3):
        single = cs.solve(cs.crossbar(g[b], r_wl=r_wl[b], r_bl=1.0, r_source=3.0), v[b])
        np.testing.assert_allclose(batched.i_out[b], single.i_out, rtol=1e-13)
        np.testing.assert_allclose(batched.v_wl[b], single.v_wl, rtol=1e-13)


def test_batch_with_different_zero_patterns(rng):
    """Tiles whose zero resistances differ get separate plans and still match one-by-one."""
    g = rng.uniform(1e-6, 1e-3, (2, 3, 3))
    r_wl = np.stack([np.zeros((3, 3)), np.full((3, 3), 2.0)])
    v = rng.uniform(0, 1, 3)
    batched = cs.solve(cs.crossbar(g, r_wl=r_wl, r_bl=1.0), v)
    for b in range(2):
        single = cs.solve(cs.crossbar(g[b], r_wl=r_wl[b], r_bl=1.0), v)
        np.testing.assert_allclose(batched.i_out[b], single.i_out, rtol=1e-13)


def test_chunked_batches_match(rng, monkeypatch):
    """Tiles split over several block-diagonal factorisations give the same answers."""
    from circuitsim import factor

    g = rng.uniform(1e-6, 1e-3, (5, 4, 4))
    v = rng.uniform(0, 1, (5, 3, 4))
    tile = cs.crossbar(g, 1.0, 1.0, 2.0)
    whole = cs.solve(tile, v).i_out
    monkeypatch.setattr(factor, "CHUNK_UNKNOWNS", 40)  # 32 unknowns a tile: one tile a chunk
    np.testing.assert_allclose(cs.solve(cs.crossbar(g, 1.0, 1.0, 2.0), v).i_out, whole, rtol=1e-13)


def test_output_shapes(rng):
    g = rng.uniform(1e-6, 1e-3, (4, 3))
    tile = cs.crossbar(g, 1.0, 1.0)
    assert cs.solve(tile, np.ones(4)).i_out.shape == (3,)
    sol = cs.solve(tile, np.ones((2, 4)))
    assert sol.i_out.shape == (2, 3) and sol.v_wl.shape == (2, 4, 3) and sol.i_source.shape == (2, 4)
    assert sol.v_int is None
    batched = cs.crossbar(np.stack([g, g]), 1.0, 1.0)
    assert cs.solve(batched, np.ones(4)).i_out.shape == (2, 3)
    assert cs.solve(batched, np.ones((5, 4))).i_out.shape == (2, 5, 3)
    assert cs.solve(batched, np.ones((2, 5, 4))).v_bl.shape == (2, 5, 4, 3)
    assert cs.transfer_matrix(tile).shape == (3, 4)
    assert cs.transfer_matrix(batched).shape == (2, 3, 4)


def test_transfer_matrix_of_ideal_tile_is_g_transposed(rng):
    g = rng.uniform(1e-6, 1e-3, (5, 6))
    np.testing.assert_allclose(cs.transfer_matrix(cs.crossbar(g)), g.T, rtol=1e-14)


def test_transfer_matrix_rejects_column_dependent_sense_voltage():
    tile = cs.crossbar(np.full((2, 2), 1e-3), 1.0, 1.0, v_sense=[0.0, 0.1])
    with pytest.raises(ValueError, match="v_sense differs"):
        cs.transfer_matrix(tile)


def test_transfer_matrix_rejects_nonlinear_tile():
    tile = cs.crossbar(np.full((2, 2), 1e-3), 1.0, 1.0, device=cs.devices.Sinh(a=2.0))
    with pytest.raises(ValueError, match="linear tile"):
        cs.transfer_matrix(tile)


def test_iterative_failure_raises(rng):
    tile = cs.crossbar(rng.uniform(1e-6, 1e-3, (10, 10)), 1.0, 1.0)
    with pytest.raises(cs.ConvergenceError) as err:
        cs.solve(tile, np.ones(10), solver="cg", solver_options={"maxiter": 2})
    assert err.value.node.startswith(("wl[", "bl["))
    assert err.value.residual > 0
    with pytest.warns(RuntimeWarning, match=r"systems failed \(masked\)"):
        masked = cs.solve(
            tile, np.ones(10), solver="cg", solver_options={"maxiter": 2}, on_fail="mask"
        )
    assert not masked.converged


def test_tiles_of_one_topology_share_their_analysis(rng):
    g1, g2 = rng.uniform(1e-6, 1e-3, (2, 6, 5))
    v = rng.uniform(0, 1, 6)
    a, b = cs.crossbar(g1, 1.0, 2.0), cs.crossbar(g2, 3.0, 0.5)
    plan_a, plan_b = tile_plans(a)[0], tile_plans(b)[0]
    assert plan_a.indices is plan_b.indices and plan_a.analyses is plan_b.analyses
    assert plan_b.circuit is b.circuit  # values come from the tile itself
    np.testing.assert_allclose(cs.solve(b, v).i_out, cs.solve(cs.crossbar(g2, 3.0, 0.5), v,
                                                              solver="dense").i_out, rtol=1e-12)
    zero_wl = tile_plans(cs.crossbar(g1, 0.0, 2.0))[0]
    assert zero_wl.n_free < plan_a.n_free and zero_wl.indices is not plan_a.indices


@pytest.mark.parametrize("r_sense", [0.0, 1e-9, 10.0])
def test_transfer_by_schur_complement_matches_unit_solves(r_sense, rng, monkeypatch):
    pytest.importorskip("sksparse")
    from circuitsim import solvers
    from circuitsim.transfer import schur_transfer

    g = rng.uniform(1e-6, 1e-4, (2, 9, 7))
    tile = cs.crossbar(g, 1.0, 0.5, 20.0, r_sense, drive="both")
    direct = np.stack([cs.solve(cs.crossbar(g[b], 1.0, 0.5, 20.0, r_sense, drive="both"),
                                np.eye(9)).i_out.T for b in range(2)])
    check = np.concatenate([rng.uniform(-1, 1, (2, 9)), np.zeros((2, 7))], axis=1)
    sr = schur_transfer(tile_plans(tile)[0], check, reltol=1e-9, abstol=1e-15)
    np.testing.assert_allclose(-sr.F[:, 9:, :9], direct, rtol=1e-9)
    assert sr.ok.all() and np.all(sr.check_error <= 1.0)
    T, info = cs.transfer_matrix(tile, full_output=True)
    np.testing.assert_allclose(T, direct, rtol=1e-9)
    assert list(info.method) == ["schur", "schur"]
    monkeypatch.setattr(solvers, "cholmod_available", lambda: False)  # the unit-solve path
    T, info = cs.transfer_matrix(tile, full_output=True)
    np.testing.assert_allclose(T, direct, rtol=1e-9)
    assert list(info.method) == ["solves", "solves"]
    assert "CHOLMOD" in info.reason[0]


def test_transfer_falls_back_when_the_check_fails_and_says_so(rng, monkeypatch):
    pytest.importorskip("sksparse")
    from circuitsim import engine
    from circuitsim.transfer import SchurResult

    g = rng.uniform(1e-6, 1e-4, (5, 4))
    tile = cs.crossbar(g, 1.0, 1.0)
    expected = cs.solve(tile, np.eye(5)).i_out.T

    def broken(plan, check, **kw):
        B, nk = check.shape
        return SchurResult(np.zeros((B, nk, nk)), np.zeros(B, bool), np.full(B, 7.0),
                           np.zeros(B))

    monkeypatch.setattr(engine, "schur_transfer", broken)
    with pytest.warns(RuntimeWarning, match=r"tile 0: the Schur-complement result failed its "
                                            r"check.*off by 7 times.*from 5 refined solves"):
        T, info = cs.transfer_matrix(cs.crossbar(g, 1.0, 1.0), full_output=True)
    np.testing.assert_allclose(T, expected, rtol=1e-12)
    assert info.method[0] == "solves" and info.check_error[0] == 7.0


@pytest.mark.parametrize("shape", [(1000, 64), (1003, 7), (5, 3), (2000, 1), (0, 4), (300, 600)])
def test_column_major_copy_is_exact_and_column_major(shape):
    from circuitsim.solvers.direct import column_major

    b = np.random.default_rng(0).standard_normal(shape)
    out = column_major(b)
    assert out.flags.f_contiguous and out.shape == b.shape and out.dtype == b.dtype
    np.testing.assert_array_equal(out, b)
    if b.size and shape[1] > 1:
        assert not np.shares_memory(out, b)
    f = np.asfortranarray(b)
    assert column_major(f) is f  # column-major already: no copy
    view = b[::2]
    assert column_major(view) is view  # neither order: left to CHOLMOD


@pytest.mark.parametrize("c, nf, kk, contiguous", [(1, 1000, 64, True), (1, 1000, 64, False),
                                                   (3, 257, 5, True), (7, 40, 1, False),
                                                   (2, 3, 3000, False)])
def test_put_free_places_every_unknown_at_its_node(c, nf, kk, contiguous):
    from circuitsim.linear import put_free

    rng = np.random.default_rng(nf + kk)
    n_nodes = nf + 9
    xv = rng.standard_normal((c, nf, kk))
    rows = rng.permutation(nf)
    nodes = (np.arange(nf) + 4 if contiguous
             else np.sort(rng.choice(n_nodes, size=nf, replace=False)))
    out = np.full((c, kk, n_nodes), np.nan)
    put_free(out, xv, nodes, rows)
    expected = np.full((c, kk, n_nodes), np.nan)
    for t in range(c):  # element by element, as the definition reads
        for i, (node, row) in enumerate(zip(nodes, rows)):
            expected[t, :, node] = xv[t, row, :]
    np.testing.assert_array_equal(out, expected)  # NaN where no unknown goes: untouched
