"""Engine hardening: strict arguments, unambiguous shapes, bounded memory, accurate or flagged
results on ill-conditioned tiles, a transfer matrix that never falls back silently, and long
nonlinear solves that report progress and stop on time."""

import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from reference import reference_solve

import circuitsim as cs
from circuitsim import factor, memory

G = np.full((3, 3), 1e-4)
SINH = cs.devices.Sinh(a=3.0)
ACCESS = cs.devices.Level1(vto=0.5, kp=2e-4, lambda_=0.01, w=1e-6, l=1e-7)

# ---------------------------------------------------------------------------------------------
# Strict arguments


def _tiles():
    return {
        "linear": cs.crossbar(G, 1.0, 1.0),
        "sinh": cs.crossbar(G, 1.0, 1.0, device=SINH),
        "1t1r": cs.crossbar(G, 1.0, 1.0, access=ACCESS, v_gate=1.8),
    }


@pytest.mark.parametrize("kind", ["linear", "sinh", "1t1r"])
@pytest.mark.parametrize("kwarg, suggestion", [("reltoll", "reltol"), ("max_iterz", "max_iter"),
                                               ("verbose", None)])
def test_misspelt_keywords_are_rejected_for_every_tile_kind(kind, kwarg, suggestion):
    with pytest.raises(TypeError) as err:
        cs.solve(_tiles()[kind], np.ones(3), **{kwarg: 1})
    text = str(err.value)
    assert f"unknown keyword argument {kwarg!r}" in text
    assert "valid: " in text and "reltol" in text and "max_iter" in text and "voltages" in text
    if suggestion:
        assert f"did you mean {suggestion!r}" in text


def test_transfer_matrix_rejects_unknown_keywords():
    with pytest.raises(TypeError, match=r"unknown keyword argument 'rtol'.*valid: abstol"):
        cs.transfer_matrix(_tiles()["linear"], rtol=1e-3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"reltol": -1}, ValueError, r"reltol must be in \(0, 1\), got -1"),
        ({"reltol": 0.0}, ValueError, r"reltol must be in \(0, 1\)"),
        ({"reltol": np.nan}, ValueError, r"reltol must be in \(0, 1\), got nan"),
        ({"abstol": -1e-15}, ValueError, r"abstol must be finite and > 0"),
        ({"abstol": np.inf}, ValueError, r"abstol must be finite and > 0"),
        ({"vntol": 0}, ValueError, r"vntol must be finite and > 0"),
        ({"max_iter": 0}, ValueError, r"max_iter must be a positive integer, got 0"),
        ({"max_iter": 2.5}, ValueError, r"max_iter must be a positive integer, got 2.5"),
        ({"max_iter": True}, ValueError, r"max_iter must be a positive integer"),
        ({"max_step": -1.0}, ValueError, r"max_step must be finite and > 0"),
        ({"max_time": 0}, ValueError, r"max_time must be finite and > 0"),
        ({"reltol": "1e-9"}, TypeError, r"reltol must be a real number, got str"),
        ({"voltages": "no"}, TypeError, r"voltages must be True or False"),
        ({"mode": "chord"}, ValueError, r"mode must be one of"),
        ({"on_fail": "ignore"}, ValueError, r"on_fail must be 'raise' or 'mask'"),
        ({"solver": "magic"}, ValueError, r"unknown solver 'magic'; valid:"),
        ({"solver_options": {"rtol": 1e-3}}, ValueError,
         r"solver_options \['rtol'\] do not apply to solver='direct' \(it takes none\)"),
        ({"solver": "cg", "solver_options": {"tol": 1e-3}}, ValueError,
         r"solver_options \['tol'\] do not apply to solver='cg'; valid: rtol, atol"),
        ({"progress": 3}, TypeError, r"progress must be True, False, None or a callable"),
    ],
)
@pytest.mark.parametrize("kind", ["linear", "sinh"])
def test_options_are_validated_before_solving(kind, kwargs, error, match):
    with pytest.raises(error, match=match):
        cs.solve(_tiles()[kind], np.ones(3), **kwargs)


@pytest.mark.parametrize("tile", [None, G, G.tolist()])
def test_solve_needs_a_tile(tile):
    with pytest.raises(TypeError, match=r"solve\(\) needs a tile built by circuitsim.crossbar"):
        cs.solve(tile, np.ones(3))


def test_transfer_matrix_needs_a_tile():
    with pytest.raises(TypeError, match=r"transfer_matrix\(\) needs a tile"):
        cs.transfer_matrix(G)


@pytest.mark.parametrize("name, model", [("device", cs.devices.Sinh),
                                         ("access", cs.devices.Level1)])
def test_model_classes_instead_of_instances_are_refused(name, model):
    kw = {name: model}
    if name == "access":
        kw["v_gate"] = 1.8
    with pytest.raises(TypeError, match=rf"{name} must be a model instance, got the class "
                                        rf"{model.__name__}: write {name}={model.__name__}\(\.\.\.\)"):
        cs.crossbar(G, **kw)


def test_ragged_conductances_name_g():
    with pytest.raises(ValueError, match=r"^g is not a rectangular array"):
        cs.crossbar([[1e-4, 1e-4], [1e-4]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"g": np.full((2, 2), 1e300)}, r"g\[0, 0\] is 1e\+300 S, beyond the usable range "
                                        r"\(0 .. 1e\+12 S\)"),
        ({"g": G, "r_wl": 1e300}, r"r_wl is 1e\+300 ohm, beyond the usable range "
                                  r"\(0 or 1e-12 .. 1e\+15 ohm\)"),
        ({"g": G, "r_sense": [1.0, 1e20, 1.0]}, r"r_sense\[1\] is 1e\+20 ohm, beyond"),
        ({"g": G, "v_sense": 1e9}, r"v_sense is 1e\+09 V, beyond the usable range"),
        ({"g": G, "access": ACCESS, "v_gate": 1e300}, r"v_gate is 1e\+300 V, beyond"),
    ],
)
def test_values_that_would_overflow_are_refused_with_the_usable_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cs.crossbar(**kwargs)


def test_input_voltages_that_would_overflow_are_refused():
    with pytest.raises(ValueError, match=r"v_in\[1\] is 1e\+300 V, beyond the usable range"):
        cs.solve(_tiles()["linear"], [0.1, 1e300, 0.1])


# ---------------------------------------------------------------------------------------------
# Ambiguous one-dimensional arrays


@pytest.mark.parametrize("name", ["r_wl", "r_bl"])
def test_one_dimensional_wire_resistances_are_refused(name):
    with pytest.raises(ValueError, match=rf"{name} has shape \(3,\): a 1-D array is ambiguous "
                                         r".*\(3, 1\) for one value per word line, \(1, 3\) for "
                                         r"one per bit line"):
        cs.crossbar(G, **{name: [1.0, 2.0, 3.0]})


def test_one_dimensional_gate_voltages_are_refused():
    with pytest.raises(ValueError, match=r"v_gate has shape \(3,\): a 1-D array is ambiguous"):
        cs.crossbar(G, access=ACCESS, v_gate=[1.8, 1.8, 0.0])


def test_one_dimensional_device_parameters_are_refused():
    with pytest.raises(ValueError, match=r"Sinh: parameter a has shape \(3,\): a 1-D array is "
                                         r"ambiguous"):
        cs.crossbar(G, device=cs.devices.Sinh(a=np.array([1.0, 2.0, 3.0])))


@pytest.mark.parametrize("name", ["r_wl", "r_bl"])
def test_per_line_shapes_mean_what_they_say(name, rng):
    g = rng.uniform(1e-5, 1e-3, (4, 4))
    per_row, per_col = np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([[1.0, 2.0, 3.0, 4.0]])
    v = rng.uniform(0, 1, 4)
    for given, full in ((per_row, np.repeat(per_row, 4, axis=1)),
                        (per_col, np.repeat(per_col, 4, axis=0))):
        a = cs.solve(cs.crossbar(g, **{name: given}), v).i_out
        b = cs.solve(cs.crossbar(g, **{name: full}), v).i_out
        np.testing.assert_allclose(a, b, rtol=1e-14)
    # rows and columns differ: the two readings of a square tile are not the same circuit
    assert not np.allclose(cs.solve(cs.crossbar(g, **{name: per_row}), v).i_out,
                           cs.solve(cs.crossbar(g, **{name: per_col}), v).i_out, rtol=1e-6)


def test_batched_per_line_shapes_and_per_line_drivers(rng):
    g = rng.uniform(1e-5, 1e-3, (2, 3, 3))
    r = np.array([[[1.0], [2.0], [3.0]], [[3.0], [2.0], [1.0]]])  # (B, m, 1)
    tile = cs.crossbar(g, r_wl=r, r_source=[5.0, 6.0, 7.0], r_sense=[1.0, 2.0, 3.0])
    assert tile.r_wl.shape == (2, 3, 3) and np.all(tile.r_wl[1, 0] == 3.0)
    assert np.all(tile.r_source[0] == [5.0, 6.0, 7.0])  # (m,) stays per word line


# ---------------------------------------------------------------------------------------------
# Many input vectors: outputs only, blocks over K, refusal of tiles too large


@pytest.mark.parametrize("kind", ["linear", "sinh", "1t1r"])
def test_outputs_only(kind, rng):
    tile = _tiles()[kind]
    v = rng.uniform(0, 0.5, (4, 3))
    full = cs.solve(tile, v)
    lean = cs.solve(tile, v, voltages=False)
    assert lean.v_wl is None and lean.v_bl is None and lean.v_int is None
    for name in ("i_out", "i_source", "converged", "iterations"):
        np.testing.assert_allclose(getattr(lean, name), getattr(full, name), rtol=1e-12,
                                   atol=1e-20)
    with pytest.raises(ValueError, match="power needs the node voltages"):
        _ = lean.power


def test_inputs_solved_in_blocks_equal_one_block(rng, monkeypatch):
    g = rng.uniform(1e-6, 1e-4, (2, 6, 5))
    tile = cs.crossbar(g, 1.0, 1.0, 2.0, 1.0)
    v = rng.uniform(-0.3, 0.3, (2, 50, 6))
    whole = cs.solve(tile, v)
    monkeypatch.setattr(factor, "CHUNK_ENTRIES", 200)  # 66 unknowns a tile: 3 inputs a block
    blocks = cs.solve(tile, v)
    i_scale, v_scale = np.abs(whole.i_out).max(), np.abs(v).max()
    np.testing.assert_allclose(blocks.i_out, whole.i_out, rtol=0, atol=1e-12 * i_scale)
    np.testing.assert_allclose(blocks.v_bl, whole.v_bl, rtol=0, atol=1e-12 * v_scale)
    lean = cs.solve(tile, v, voltages=False)
    np.testing.assert_allclose(lean.i_out, whole.i_out, rtol=0, atol=1e-12 * i_scale)


def test_a_tile_too_large_is_refused_before_anything_large_is_made():
    # 20000 x 20000 cells: the conductances are one broadcast value, the wires scalars. Run in
    # a subprocess limited to 4 GB of address space, so that a missing check fails the test
    # (numpy's own MemoryError, or a crash) instead of exhausting the machine.
    script = textwrap.dedent("""
        import resource, numpy as np, circuitsim as cs
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        g = np.broadcast_to(1e-4, (20000, 20000))
        tile = cs.crossbar(g, 1.0, 1.0)
        assert 0 in tile.r_wl.strides  # scalar wires stay views of one value
        try:
            cs.solve(tile, np.full(20000, 0.1))
        except MemoryError as exc:
            print("MemoryError:", exc)
        print("circuit built:", "circuit" in tile.__dict__)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"MemoryError: solving this 1 x 20000 x 20000 tile for 1 input vectors "
                     r"needs about [\d.e+]+ GB but only [\d.e+]+ GB of memory is available",
                     done.stdout), done.stdout
    assert "circuit built: False" in done.stdout  # refused before the circuit arrays existed


def test_memory_estimate_is_checked_against_what_is_available(monkeypatch):
    tile = cs.crossbar(np.full((64, 64), 1e-4), 1.0, 1.0)
    need = memory.solve_bytes(tile, 10, True)
    monkeypatch.setattr(memory, "available_bytes", lambda: need - 1)
    with pytest.raises(MemoryError, match=r"or voltages=False"):
        cs.solve(tile, np.ones((10, 64)))
    monkeypatch.setattr(memory, "available_bytes", lambda: need + 1)
    assert cs.solve(tile, np.ones((10, 64))).converged.all()


def test_memory_estimate_grows_like_the_factor():
    small = memory.solve_bytes(cs.crossbar(np.full((64, 64), 1e-4), 1.0, 1.0), 1, False)
    large = memory.solve_bytes(cs.crossbar(np.full((256, 256), 1e-4), 1.0, 1.0), 1, False)
    assert 16 < large / small < 16 * 1.6  # N log N: 16 times the unknowns, a bit more per unknown


# ---------------------------------------------------------------------------------------------
# Ill-conditioned tiles: accurate, or they say so


def _lumped(g, v, r_source, r_sense):
    """Every line one node (zero-resistance wires): 64 unknowns, solved densely."""
    m, n = g.shape
    A = np.zeros((m + n, m + n))
    A[:m, :m] = np.diag(g.sum(axis=1) + 1.0 / r_source)
    A[m:, m:] = np.diag(g.sum(axis=0) + 1.0 / r_sense)
    A[:m, m:] = -g
    A[m:, :m] = -g.T
    b = np.concatenate([v / r_source, np.zeros((len(v), n))], axis=1)
    x = np.linalg.solve(A, b.T).T
    return x[:, m:] / r_sense  # current into each sense node


@pytest.fixture
def stiff_tile():
    g = np.random.default_rng(6).uniform(1e-6, 1e-3, (32, 32))
    return g, cs.crossbar(g, 1e-12, 1e-12, 1.0, 1e-6)


@pytest.mark.parametrize("solver", ["direct", "superlu", "dense"])
def test_tiny_wires_are_accurate_against_the_lumped_network(stiff_tile, solver):
    g, tile = stiff_tile
    v = np.random.default_rng(7).uniform(0, 1, (3, 32))
    ref = _lumped(g, v, 1.0, 1e-6)  # exact here to about 32 x 1e-12 ohm / 1 ohm
    sol = cs.solve(tile, v, solver=solver)
    assert sol.converged.all() and "refinement" in sol.method
    np.testing.assert_allclose(sol.i_out, ref, rtol=1e-9)
    assert np.all(sol.error <= 1e-9)


def test_tiny_wires_transfer_matrix_is_accurate_and_says_how(stiff_tile):
    g, tile = stiff_tile
    v = np.random.default_rng(7).uniform(0, 1, (3, 32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        T, info = cs.transfer_matrix(tile, full_output=True)
    np.testing.assert_allclose(v @ T.T, _lumped(g, v, 1.0, 1e-6), rtol=1e-9)
    if info.method[0] == "solves":  # the Schur result could not be trusted here: said so
        assert any("tile 0: the Schur-complement result failed its check" in str(w.message)
                   for w in caught)
        assert info.check_error[0] > 1


def test_a_stagnating_iterative_solve_is_flagged_not_returned():
    g = np.random.default_rng(6).uniform(1e-6, 1e-3, (16, 16))
    tile = cs.crossbar(g, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(cs.ConvergenceError, match=r"forward error estimate .* exceeds "
                                                  r"reltol=1e-09: the iterative solver 'cg'"):
        cs.solve(tile, np.ones(16), solver="cg", solver_options={"rtol": 1e-6})
    with pytest.warns(RuntimeWarning, match="systems failed"):
        sol = cs.solve(tile, np.ones((3, 16)), solver="cg", solver_options={"rtol": 1e-6},
                       on_fail="mask")
    assert not sol.converged.any() and np.all(sol.error > 1e-9)


def test_relative_accuracy_holds_only_above_abstol():
    # A 1e12 ohm sense resistance: output currents of about 1e-13 A, near abstol = 1e-15 A.
    rng = np.random.default_rng(3)
    g = rng.uniform(1e-6, 1e-4, (6, 6))
    v = rng.uniform(0, 1, (1, 6))
    tile = cs.crossbar(g, 1.0, 1.0, 0.0, 1e12)
    _, ref = reference_solve(g, v, r_wl=1.0, r_bl=1.0, r_source=0.0, r_sense=1e12,
                             iterations=20)
    sol = cs.solve(tile, v)
    err = np.abs(sol.i_out - ref.astype(float))
    assert np.all(err <= 1e-15)  # within abstol ...
    assert np.max(err / np.abs(ref.astype(float))) > 1e-9  # ... but not within reltol


# ---------------------------------------------------------------------------------------------
# transfer_matrix: the fast path holds on well-posed tiles


@pytest.mark.parametrize("size", [16, 64, 128])
@pytest.mark.parametrize("r_wire", [0.01, 1.0, 10.0])
@pytest.mark.parametrize("g_range", [(1e-7, 1e-7), (1e-7, 1e-3), (1e-3, 1e-3)])
def test_transfer_fast_path_holds_and_is_accurate(size, r_wire, g_range):
    rng = np.random.default_rng(size)
    g = rng.uniform(*g_range, (size, size))
    tile = cs.crossbar(g, r_wire, r_wire, 0.0, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback warns; here none may happen
        T, info = cs.transfer_matrix(tile, full_output=True)
    assert info.method[0] == "schur" and info.check_error[0] <= 1.0
    v = rng.uniform(-1, 1, (2, size))
    _, ref = reference_solve(g, v, r_wl=r_wire, r_bl=r_wire, r_source=0.0, r_sense=0.0)
    scale = np.abs(v) @ np.abs(T.T)
    assert np.max(np.abs(v @ T.T - ref.astype(float)) / scale) < 1e-11


def test_transfer_fast_path_holds_where_it_used_to_fall_back():
    # 256 x 256, 1.5 ohm wires: the former check (1e3 roundings of |T| |v|) failed here
    rng = np.random.default_rng(0)
    g = rng.uniform(1e-6, 1e-4, (256, 256))
    tile = cs.crossbar(g, 1.5, 1.5, 0.0, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        T, info = cs.transfer_matrix(tile, full_output=True)
    assert info.method[0] == "schur"
    v = rng.uniform(-1, 1, (1, 256))
    _, ref = reference_solve(g, v, r_wl=1.5, r_bl=1.5, r_source=0.0, r_sense=0.0)
    assert np.max(np.abs(v @ T.T - ref.astype(float)) / (np.abs(v) @ np.abs(T.T))) < 1e-11


# ---------------------------------------------------------------------------------------------
# Long nonlinear solves: progress and max_time


def _hard_tile():
    g = np.random.default_rng(2).uniform(1e-6, 1e-4, (8, 8))
    return cs.crossbar(g, 1.0, 1.0, 2.0, 1.0, device=cs.devices.Sinh(a=3.0))


def test_progress_callback_sees_every_iteration():
    calls = []
    sol = cs.solve(_hard_tile(), np.full((3, 8), 2.0), progress=lambda **kw: calls.append(kw))
    assert sol.converged.all()
    assert len(calls) >= sol.iterations.max()
    assert set(calls[0]) == {"attempt", "iteration", "systems_left", "worst_residual",
                             "elapsed"}
    assert calls[0]["attempt"] == "newton" and calls[0]["systems_left"] == 3
    assert [c["iteration"] for c in calls[:3]] == [1, 2, 3]
    assert calls[-1]["systems_left"] <= calls[0]["systems_left"]


def test_max_time_stops_a_long_solve_and_says_how_far_it_got():
    tile = _hard_tile()
    v = np.full((2, 8), 1e4)  # about 1e4 V across sinh devices: hundreds of limited steps
    with pytest.raises(cs.ConvergenceError, match=r"stopped by max_time=0.05 s during newton "
                                                  r"after \d+ iterations"):
        cs.solve(tile, v, max_time=0.05)
    with pytest.warns(RuntimeWarning, match="stopped by max_time"):
        sol = cs.solve(tile, v, max_time=0.05, on_fail="mask")
    assert not sol.converged.any()


def test_progress_bar_needs_tqdm_or_shows_one(capsys):
    try:
        import tqdm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="progress=True needs tqdm"):
            cs.solve(_hard_tile(), np.full(8, 1.0), progress=True)
        return
    sol = cs.solve(_hard_tile(), np.full(8, 1.0), progress=True)
    assert sol.converged and "Newton" in capsys.readouterr().err


def test_outputs_only_for_many_inputs_go_through_the_transfer_matrix(rng):
    g = rng.uniform(1e-6, 1e-4, (2, 7, 5))
    tile = cs.crossbar(g, 1.0, 2.0, 3.0, 1.5, v_sense=[0.0, 0.01, -0.02, 0.0, 0.03])
    v = rng.uniform(-0.3, 0.3, (2, 40, 7))
    full = cs.solve(tile, v)
    lean = cs.solve(tile, v, voltages=False)
    assert "transfer matrix" in lean.method
    scale = np.abs(full.i_out).max()
    np.testing.assert_allclose(lean.i_out, full.i_out, rtol=0, atol=1e-12 * scale)
    # driver currents come from F v = C^T v_b + J_kk v: a difference of driver-branch terms
    np.testing.assert_allclose(lean.i_source, full.i_source, rtol=0, atol=1e-11 * scale)
    assert lean.converged.all() and np.all(lean.error <= 1e-9)
    assert np.all(np.isnan(lean.residual))  # no per-input solution was formed


def test_nonlinear_systems_solved_in_chunks_equal_one_chunk(monkeypatch):
    rng = np.random.default_rng(4)
    g = rng.uniform(1e-6, 1e-4, (2, 5, 4))
    tile = cs.crossbar(g, 1.0, 1.0, 2.0, 1.0, device=SINH, access=ACCESS, v_gate=1.8)
    v = rng.uniform(0, 0.5, (2, 9, 5))
    whole = cs.solve(tile, v)
    monkeypatch.setattr(factor, "NEWTON_ENTRIES", 300)  # 90 entries a system: 3 a chunk
    chunks = cs.solve(tile, v)
    np.testing.assert_allclose(chunks.i_out, whole.i_out, rtol=1e-12, atol=1e-20)
    np.testing.assert_array_equal(chunks.iterations, whole.iterations)


def test_memory_estimate_counts_newton_arrays():
    g = np.full((64, 64), 1e-4)
    linear = memory.solve_bytes(cs.crossbar(g, 1.0, 1.0), 64, False)
    one_t = memory.solve_bytes(cs.crossbar(g, 1.0, 1.0, device=SINH, access=ACCESS,
                                           v_gate=1.8), 64, False)
    assert one_t > 2 * linear  # Newton keeps a dozen arrays per branch and system
    many = memory.solve_bytes(cs.crossbar(g, 1.0, 1.0, device=SINH), 100_000, False)
    few = memory.solve_bytes(cs.crossbar(g, 1.0, 1.0, device=SINH), 1_000, False)
    assert many < 3 * few  # systems are solved in chunks: only the outputs grow with K
