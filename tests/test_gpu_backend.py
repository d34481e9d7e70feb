"""The array backends: the same solves on numpy, on the engine's device path, and on a GPU.

The ``backend`` fixture runs every array-level test on:

- ``numpy``: the CPU path;
- ``device-cudss`` and ``device-splu``: the device path on the CPU (``tests/gpu_support.py``):
  every line the GPU runs except the cupy and cuDSS calls, with the cuDSS provider over a SciPy
  stand-in for nvmath's ``DirectSolver`` or with the SuperLU provider;
- ``device-strict``: the device path on arrays that refuse to mix with host arrays, as cupy's
  do (``tests/strict_device.py``), so a host array left on the GPU path fails here;
- ``cupy``: a real GPU (inputs and outputs cupy arrays), skipped where none is usable.

References are independent of the engine: closed forms, the long-double nodal solve of
``tests/reference.py`` for passive tiles, and the KCL imbalance written from the tile's
parameters (``tests/guards_support.py``) for nonlinear ones. Every backend must also equal the
CPU path to 1e-9 (linear) and 1e-6 (nonlinear) relative, as the issue asks.
"""

from __future__ import annotations

import numpy as np
import pytest
from gpu_support import FakeAdvanced, device_backend
from guards_support import kcl_imbalance, shichman_hodges
from reference import reference_solve
from strict_device import strict_backend

import circuitsim as cs
from circuitsim.backend import Backend, GPUUnavailableError, probe, resolve

ACCESS = {"vto": 0.5, "kp": 2e-4, "lambda_": 0.01, "w": 1e-6, "l": 1e-7}
BACKENDS = ("numpy", "device-cudss", "device-splu", "device-strict", "cupy")


def gpu_or_skip() -> Backend:
    found, why = probe()
    if found is None:
        pytest.skip(f"no usable GPU: {why}")
    return found


@pytest.fixture(params=BACKENDS)
def backend(request):
    name = request.param
    if name == "numpy":
        return resolve("numpy")
    if name == "cupy":
        return gpu_or_skip()
    if name == "device-strict":
        return strict_backend()
    return device_backend(name.split("-")[1])


def put(x, backend):
    """``x`` as the backend's input: a cupy array on the GPU (cupy in, cupy out)."""
    x = np.asarray(x, dtype=float)
    return backend.xp.asarray(x) if backend.gpu else x


def host(x):
    return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else np.asarray(x)


def rel(a, b) -> float:
    return float(np.max(np.abs(host(a) - host(b))) / np.max(np.abs(host(b))))


def random_tile(rng, m, n, batch=None, **kw):
    shape = (m, n) if batch is None else (batch, m, n)
    return cs.crossbar(rng.uniform(1e-6, 1e-4, shape), 1.0, 1.0, 2.0, 1.0, **kw)


def sinh_current(tile, b, a):
    return lambda x: tile.g[b] / a * np.sinh(a * x)


def balanced(f, sol) -> bool:
    """The KCL imbalance ``f`` (A) is rounding: below 1e-9 of the largest output current."""
    return float(np.abs(f).max()) <= 1e-9 * float(np.abs(host(sol.i_out)).max())


def drain(vd, vs, vg):
    return np.vectorize(shichman_hodges)(vd, vs, vg, **ACCESS)


# ---------------------------------------------------------------------------------------------
# linear tiles


def test_one_cell_is_its_series_resistance(backend):
    tile = cs.crossbar([[1e-3]], r_wl=10.0, r_bl=20.0, r_source=100.0, r_sense=50.0)
    sol = cs.solve(tile, put([0.5], backend), backend=backend)
    assert type(sol.i_out) is type(put([0.0], backend))  # outputs live where the inputs do
    assert host(sol.i_out)[0] == pytest.approx(0.5 / (100 + 10 + 1000 + 20 + 50), rel=1e-12)
    assert host(sol.converged).all()


def test_passive_tile_equals_the_long_double_reference(backend, rng):
    g = rng.uniform(1e-6, 1e-4, (12, 9))
    v = rng.uniform(0.0, 0.3, (5, 12))
    tile = cs.crossbar(g, 1.0, 1.0, 2.0, 1.0)
    sol = cs.solve(tile, put(v, backend), backend=backend)
    v_ref, i_ref = reference_solve(g, v, r_wl=1.0, r_bl=1.0, r_source=2.0, r_sense=1.0)
    assert rel(sol.i_out, i_ref.astype(float)) < 1e-9
    v_wl = host(sol.v_wl).reshape(5, -1)
    assert np.max(np.abs(v_wl - v_ref[:, : 12 * 9].astype(float))) < 1e-9 * 0.3
    assert rel(sol.i_out, cs.solve(tile, v).i_out) < 1e-9
    assert host(sol.error).max() <= 1e-9


def test_batch_of_tiles_with_two_zero_patterns(backend, rng):
    g = rng.uniform(1e-6, 1e-4, (3, 6, 5))
    r_bl = np.ones((3, 6, 5))
    r_bl[1] = 0.0  # ideal bit lines in tile 1: a second plan
    tile = cs.crossbar(g, 1.0, r_bl, 2.0, 1.0)
    v = rng.uniform(0.0, 0.3, (3, 4, 6))
    sol = cs.solve(tile, put(v, backend), backend=backend)
    for b in range(3):
        for k in range(4):
            f = kcl_imbalance(tile, b, v[b, k], host(sol.v_wl)[b, k], host(sol.v_bl)[b, k])
            assert balanced(f, sol)
    assert rel(sol.i_out, cs.solve(tile, v).i_out) < 1e-9


@pytest.mark.parametrize("solver", ["superlu", "cg", "dense"])
def test_other_linear_solvers(backend, rng, solver):
    tile = random_tile(rng, 5, 4)
    v = rng.uniform(0.0, 0.3, (3, 5))
    sol = cs.solve(tile, put(v, backend), backend=backend, solver=solver)
    assert rel(sol.i_out, cs.solve(tile, v).i_out) < 1e-9


def test_transfer_matrix_equals_unit_solves_of_the_reference(backend, rng):
    g = rng.uniform(1e-6, 1e-4, (2, 6, 4))
    tile = cs.crossbar(g, 1.0, 1.0, 2.0, 1.0)
    T, info = cs.transfer_matrix(tile, backend=backend, full_output=True)
    assert isinstance(T, np.ndarray) and T.shape == (2, 4, 6)
    for b in range(2):
        _, i_ref = reference_solve(g[b], np.eye(6), r_wl=1.0, r_bl=1.0, r_source=2.0, r_sense=1.0)
        assert rel(T[b], i_ref.astype(float).T) < 1e-9
    if backend.device_path:
        assert list(info.method) == ["solves", "solves"] and "CHOLMOD" in info.reason[0]


def test_outputs_only_and_power(backend, rng):
    tile = random_tile(rng, 6, 5)
    v = rng.uniform(0.0, 0.3, (20, 6))
    lean = cs.solve(tile, put(v, backend), backend=backend, voltages=False)
    assert lean.v_wl is None and rel(lean.i_out, cs.solve(tile, v).i_out) < 1e-9
    full = cs.solve(tile, put(v, backend), backend=backend)
    p = full.power
    np.testing.assert_allclose(host(p.delivered), host(p.dissipated), rtol=1e-9)
    np.testing.assert_allclose(host(p.delivered),
                               (v * host(full.i_source)).sum(axis=1), rtol=1e-12)


def test_method_names_the_backend(backend, rng):
    sol = cs.solve(random_tile(rng, 3, 3), put(np.ones(3) * 0.1, backend), backend=backend)
    if backend.gpu:
        assert "[gpu: cupy on" in sol.method
    elif backend.device_path:
        assert backend.direct.name in sol.method and backend.name in sol.method
    else:
        assert "[" not in sol.method


# ---------------------------------------------------------------------------------------------
# nonlinear tiles


def test_sinh_tile_balances_kcl_and_equals_the_cpu(backend, rng):
    tile = random_tile(rng, 8, 6, device=cs.devices.Sinh(a=3.0))
    v = rng.uniform(0.0, 0.3, (4, 8))
    sol = cs.solve(tile, put(v, backend), backend=backend)
    for k in range(4):
        f = kcl_imbalance(tile, 0, v[k], host(sol.v_wl)[k], host(sol.v_bl)[k],
                          device_current=sinh_current(tile, 0, 3.0))
        assert balanced(f, sol)
    assert rel(sol.i_out, cs.solve(tile, v).i_out) < 1e-6


@pytest.mark.parametrize("mode", ["newton-krylov", "newton"])
def test_1t1r_batch_with_preconditioner_refresh(backend, rng, mode, monkeypatch):
    # 2 tiles x 18 inputs: at least REFRESH_FROM systems per tile, so the preconditioners are
    # refactored at the tiles' mean conductances while Newton runs
    from circuitsim import precondition

    layout = precondition.Batched if backend.batched_preconditioner else precondition.PerTile
    refreshed, refresh = [], layout.refresh
    monkeypatch.setattr(layout, "refresh",
                        lambda self, bv, pos, first=0: (refreshed.append(len(pos)),
                                                        refresh(self, bv, pos, first)))
    tile = random_tile(rng, 4, 3, batch=2, device=cs.devices.Sinh(a=3.0),
                       access=cs.devices.Level1(**ACCESS), v_gate=1.8)
    v = rng.uniform(0.0, 0.3, (2, 18, 4))
    sol = cs.solve(tile, put(v, backend), backend=backend, mode=mode)
    assert host(sol.converged).all()
    assert bool(refreshed) == (mode == "newton-krylov")
    for b, k in ((0, 0), (1, 17), (1, 5)):
        f = kcl_imbalance(tile, b, v[b, k], host(sol.v_wl)[b, k], host(sol.v_bl)[b, k],
                          host(sol.v_int)[b, k], device_current=sinh_current(tile, b, 3.0),
                          drain_current=drain)
        assert balanced(f, sol)
    assert rel(sol.i_out, cs.solve(tile, v, mode=mode).i_out) < 1e-6


@pytest.mark.parametrize("device", [
    cs.devices.AsymmetricSinh(a_pos=3.0, a_neg=2.0, k_neg=0.5),
    cs.devices.StanfordPKU(),
    cs.devices.IVTable(v=np.linspace(-1, 1, 21), i=1e-4 * np.sinh(2 * np.linspace(-1, 1, 21))),
], ids=["asymmetric", "stanford", "ivtable"])
def test_device_models_on_the_backend(backend, rng, device):
    tile = random_tile(rng, 4, 3, device=device)
    v = rng.uniform(-0.3, 0.3, (3, 4))
    sol = cs.solve(tile, put(v, backend), backend=backend)
    for k in range(3):
        f = kcl_imbalance(tile, 0, v[k], host(sol.v_wl)[k], host(sol.v_bl)[k],
                          device_current=lambda x, g=tile.g[0]: device.current(x, g))
        assert balanced(f, sol)
    assert rel(sol.i_out, cs.solve(tile, v).i_out) < 1e-6


def test_per_cell_parameters_on_the_backend(backend, rng):
    a = rng.uniform(2.0, 4.0, (5, 4))
    tile = random_tile(rng, 5, 4, device=cs.devices.Sinh(a=a))
    v = rng.uniform(0.0, 0.3, (3, 5))
    sol = cs.solve(tile, put(v, backend), backend=backend)
    f = kcl_imbalance(tile, 0, v[2], host(sol.v_wl)[2], host(sol.v_bl)[2],
                      device_current=lambda x: tile.g[0] / a * np.sinh(a * x))
    assert balanced(f, sol)


def test_failures_are_masked_and_named(backend):
    g = np.full((3, 4), 1e-4)
    tile = cs.crossbar(g, 0.5, 0.5, 1.0, 1.0, device=cs.devices.Sinh(a=60.0))
    v = np.array([np.full(3, 0.001), np.ones(3), np.full(3, 0.002)])
    stop = {"max_iter": 3, "gmin_stepping": False, "source_stepping": False}
    with pytest.raises(cs.ConvergenceError) as err:
        cs.solve(tile, put(v, backend), backend=backend, **stop)
    assert err.value.input == 1
    with pytest.warns(RuntimeWarning, match="systems failed"):
        sol = cs.solve(tile, put(v, backend), backend=backend, on_fail="mask", **stop)
    assert host(sol.converged).tolist() == [True, False, True]


# ---------------------------------------------------------------------------------------------
# the device path's own machinery, on the CPU


def record_batches(monkeypatch) -> list:
    """Record ``(tiles, inputs)`` of every batch the engine solves."""
    from circuitsim import engine

    seen, solve_batch = [], engine._solve_batch

    def spy(plan, vk, **kw):
        seen.append((plan.tiles.tolist(), vk.shape[1]))
        return solve_batch(plan, vk, **kw)

    monkeypatch.setattr(engine, "_solve_batch", spy)
    return seen


@pytest.mark.parametrize("device", [None, cs.devices.Sinh(a=3.0)], ids=["linear", "sinh"])
def test_batches_split_to_the_free_memory_give_the_same_results(rng, monkeypatch, device):
    tile = random_tile(rng, 5, 4, batch=3, device=device)
    v = rng.uniform(0.0, 0.3, (3, 7, 5))
    whole = cs.solve(tile, v, backend=device_backend())
    seen = record_batches(monkeypatch)
    sol = cs.solve(tile, v, backend=device_backend(free_bytes=300_000))
    assert rel(sol.i_out, whole.i_out) < 1e-12 and sol.converged.all()
    assert rel(sol.v_bl, whole.v_bl) < 1e-12
    assert len(seen) > 1  # split: every (tile, input) pair solved once
    pairs = sorted((t, k) for tiles, k in seen for t in tiles)
    assert sum(k for _, k in pairs) == 3 * 7


def test_the_failing_input_is_named_across_batches(monkeypatch):
    g = np.full((3, 4), 1e-4)
    tile = cs.crossbar(g, 0.5, 0.5, 1.0, 1.0, device=cs.devices.Sinh(a=60.0))
    v = np.full((6, 3), 0.001)
    v[4] = 1.0
    stop = {"max_iter": 3, "gmin_stepping": False, "source_stepping": False}
    small = device_backend(free_bytes=60_000)
    seen = record_batches(monkeypatch)
    with pytest.raises(cs.ConvergenceError) as err:
        cs.solve(tile, v, backend=small, **stop)
    assert (err.value.tile, err.value.input) == (0, 4)
    assert len(seen) > 1 and seen[0][1] <= 4  # input 4 was not in the first batch


def test_a_tile_too_large_for_the_device_is_refused(rng):
    tile = random_tile(rng, 8, 8)
    with pytest.raises(MemoryError, match="free; use smaller tiles or the CPU"):
        cs.solve(tile, np.ones(8), backend=device_backend(free_bytes=1000))


class _OutOfMemory:
    """A provider that runs out of memory the way a device does (cupy raises OutOfMemoryError,
    a subclass of MemoryError; cuDSS's ALLOC_FAILED becomes MemoryError)."""

    name = "oom"

    def factorize(self, J, **_):
        raise MemoryError("out of memory allocating 1.2 GB")


def test_out_of_memory_names_the_batch(rng):
    import dataclasses

    tile = random_tile(rng, 4, 4, batch=2)
    be = dataclasses.replace(device_backend(), direct=_OutOfMemory())
    with pytest.raises(MemoryError, match=r"a batch of 2 tile\(s\) x 3 input vector\(s\)"):
        cs.solve(tile, np.ones((2, 3, 4)), backend=be)


def test_cudss_solver_objects_are_analysed_once_and_refactored():
    advanced = FakeAdvanced()
    be = device_backend("cudss", advanced=advanced)
    rng = np.random.default_rng(3)
    tile = random_tile(rng, 6, 5, device=cs.devices.Sinh(a=3.0))
    v = rng.uniform(0.0, 0.3, (4, 6))
    sol = cs.solve(tile, v, backend=be, mode="newton")
    counts = dict(advanced.counts)
    # Newton's direct steps refactor the same solver objects: more factorisations than analyses
    assert counts["factorize"] > counts["plan"] >= 1
    cs.solve(tile, v, backend=be, mode="newton")  # the same topology again: no new analysis
    assert advanced.counts["plan"] == counts["plan"]
    assert advanced.counts["factorize"] > counts["factorize"]
    assert rel(sol.i_out, cs.solve(tile, v, mode="newton").i_out) < 1e-6


def _spd(n, seed):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    A = sp.random(n, n, density=0.3, random_state=seed)
    A = (A + A.T + sp.identity(n) * n).tocsr()
    A.indices = A.indices.astype(np.int32)
    A.indptr = A.indptr.astype(np.int32)
    return A, rng.standard_normal((n, 9))


def test_cudss_provider_pads_splits_and_refuses_stale_factors(monkeypatch):
    from circuitsim.solvers import gpu

    monkeypatch.setattr(gpu, "_MAX_WIDTH", 4)
    provider = gpu.CudssProvider(FakeAdvanced())
    cache = {}
    A, B = _spd(12, 0)
    f = provider.factorize(A, spd=True, cache=cache, key="m")
    exact = np.linalg.solve(A.toarray(), B)
    np.testing.assert_allclose(f.solve(B[:, :3]), exact[:, :3], rtol=1e-12)  # width 3
    np.testing.assert_allclose(f.solve(B), exact, rtol=1e-12)  # 9 columns, 4 at a time
    np.testing.assert_allclose(f.solve(B[:, 0]), exact[:, 0], rtol=1e-12)  # one vector
    A2 = A.copy()
    A2.data *= 2.0
    f2 = provider.factorize(A2, spd=True, cache=cache, key="m")  # refactored in place
    np.testing.assert_allclose(f2.solve(B[:, :2]), exact[:, :2] / 2, rtol=1e-12)
    with pytest.raises(RuntimeError, match="newer one replaced it"):
        f.solve(B[:, :2])
    assert provider.nv.counts["plan"] == 2  # width 3, then 4: analysed per width, not per values
    indefinite = A.copy()
    indefinite.data = -indefinite.data
    g = provider.factorize(indefinite, spd=True, cache=cache, key="other")
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        g.solve(B[:, :1])


def test_cudss_solver_objects_are_freed(monkeypatch):
    import gc

    from circuitsim.solvers import gpu

    made = []

    class Recording(FakeAdvanced):
        def DirectSolver(self, a, b, *, options=None):
            made.append(super().DirectSolver(a, b, options=options))
            return made[-1]

    monkeypatch.setattr(gpu, "SLOTS_PER_CACHE", 1)
    provider, cache = gpu.CudssProvider(Recording()), {}
    A, B = _spd(8, 2)
    provider.factorize(A, spd=True, cache=cache, key="a").solve(B)
    provider.factorize(A, spd=True, cache=cache, key="b").solve(B)
    assert [m.freed for m in made] == [True, False]  # the least recently used one went
    uncached = provider.factorize(A, spd=True)
    uncached.solve(B)
    del uncached
    gc.collect()
    assert made[-1].freed  # freed with its handle when nothing refers to it any more


def test_splu_provider_solves_on_the_backend():
    import scipy.sparse.linalg as spla
    from circuitsim.solvers.gpu import SpluProvider

    A, B = _spd(10, 1)
    f = SpluProvider(spla).factorize(A, spd=True, natural=True)
    np.testing.assert_allclose(f.solve(B), np.linalg.solve(A.toarray(), B), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# the backend argument


def test_backend_argument_is_checked():
    tile = cs.crossbar([[1e-3]])
    with pytest.raises(ValueError, match="backend must be one of 'numpy', 'cupy', 'auto'"):
        cs.solve(tile, [1.0], backend="gpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        cs.transfer_matrix(tile, backend=1)


def test_cholmod_is_cpu_only_on_the_device_path():
    with pytest.raises(ValueError, match="solver='cholmod' runs on the CPU only"):
        cs.solve(cs.crossbar([[1e-3]]), [1.0], backend=device_backend(), solver="cholmod")


def test_auto_and_cupy_without_a_gpu():
    found, why = probe()
    if found is not None:
        pytest.skip("a GPU is usable here; see tests/test_gpu_detection.py for the messages")
    tile = cs.crossbar([[1e-3]])
    sol = cs.solve(tile, [1.0], backend="auto")
    assert sol.method.endswith(f"[cpu: backend='auto' found no usable GPU: {why}]")
    assert sol.i_out[0] == pytest.approx(1e-3)
    with pytest.raises(GPUUnavailableError, match="backend='cupy': "):
        cs.solve(tile, [1.0], backend="cupy")
