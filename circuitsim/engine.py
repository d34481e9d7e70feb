"""``solve`` and ``transfer_matrix``: the public entry points of the engine.

Both pick the array backend once (:func:`circuitsim.backend.resolve`, from ``backend=`` or the
input arrays) and pass it down: on the device path every plan is copied to the backend
(:func:`circuitsim.mna.on_backend`) and solved in batches of tiles and input vectors sized to the
device's free memory (:func:`circuitsim.memory.device_batch`). Results are numpy arrays unless the
input voltages were a cupy array (then cupy arrays, on the same device).
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import time
import warnings
from dataclasses import dataclass

import numpy as np

from circuitsim import solvers
from circuitsim.netlist import Tile

from . import factor, heap
from .audit import audit, node_name
from .backend import array_module, is_device_array, resolve
from .linear import solve_linear_plan
from .memory import check_result_memory, check_solve_memory, device_batch
from .mna import on_backend, tile_plans
from .newton import MODES, solve_newton
from .power import Power, read_power
from .result import ConvergenceError, Solution, drop_axes
from .transfer import OUTPUTS_BY_TRANSFER_FROM, schur_transfer, transfer_outputs

__all__ = ["TransferInfo", "solve", "transfer_matrix"]

#: Options of an iterative linear solver that ``solver_options`` may set.
_SOLVER_OPTIONS = {"cg": ("rtol", "atol", "maxiter", "M")}


def _check_positive(name: str, value, *, integer: bool = False, upper: float | None = None):
    """``value`` must be a finite positive number (an integer where it counts)."""
    if integer:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
        if not ok:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not (np.isfinite(value) and value > 0) or (upper is not None and value >= upper):
        rng = f"in (0, {upper:g})" if upper is not None else "finite and > 0"
        raise ValueError(f"{name} must be {rng}, got {value!r}")


def _check_flag(name: str, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _reject_unknown(function: str, unknown: dict, valid) -> None:
    """A ``TypeError`` naming every unknown keyword argument, with the valid ones."""
    if not unknown:
        return
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(
        f"{function}() got unknown keyword argument{'s' if len(parts) > 1 else ''} "
        f"{', '.join(parts)}; valid: {', '.join(sorted(valid))}"
    )


def _check_tile(function: str, tile) -> None:
    if not isinstance(tile, Tile):
        raise TypeError(
            f"{function}() needs a tile built by circuitsim.crossbar(g, ...), got "
            f"{type(tile).__name__}" + (" (build one with cs.crossbar(g))"
                                        if isinstance(tile, (np.ndarray, list)) else "")
        )


def _linear_options(solver, reltol, abstol, on_fail, solver_options, backend=None) -> dict:
    """Validate the options every solve takes; returns the iterative solver's options."""
    solvers.get_solver(solver)
    if backend is not None and backend.device_path and solver == "cholmod":
        raise ValueError(f"solver='cholmod' runs on the CPU only; with backend={backend.name!r} "
                         "use 'direct' (cuDSS, or SuperLU where nvmath-python is absent), "
                         "'superlu', 'cg' or 'dense'")
    _check_positive("reltol", reltol, upper=1.0)
    _check_positive("abstol", abstol)
    if on_fail not in ("raise", "mask"):
        raise ValueError(f"on_fail must be 'raise' or 'mask', got {on_fail!r}")
    given = dict(solver_options or {})
    if solver_options is not None and not isinstance(solver_options, dict):
        raise TypeError(f"solver_options must be a dict, got {type(solver_options).__name__}")
    valid = _SOLVER_OPTIONS.get(solver, ())
    bad = sorted(set(given) - set(valid))
    if bad:
        raise ValueError(
            f"solver_options {bad} do not apply to solver={solver!r}"
            + (f"; valid: {', '.join(valid)}" if valid else " (it takes none)")
        )
    options = {"rtol": 1e-13} if solver == "cg" else {}
    options.update(given)
    return options


@dataclass(frozen=True)
class _NewtonOptions:
    mode: str = "newton-krylov"
    vntol: float = 1e-12
    max_iter: int = 100
    max_step: float = 1.0
    krylov_rtol: float = 1e-10
    krylov_maxiter: int = 40
    gmin_stepping: bool = True
    source_stepping: bool = True
    progress: object = None
    max_time: float | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        _check_positive("vntol", self.vntol)
        _check_positive("max_iter", self.max_iter, integer=True)
        _check_positive("max_step", self.max_step)
        _check_positive("krylov_rtol", self.krylov_rtol, upper=1.0)
        _check_positive("krylov_maxiter", self.krylov_maxiter, integer=True)
        _check_flag("gmin_stepping", self.gmin_stepping)
        _check_flag("source_stepping", self.source_stepping)
        if self.max_time is not None:
            _check_positive("max_time", self.max_time)
        if not (self.progress is None or isinstance(self.progress, bool)
                or callable(self.progress)):
            raise TypeError(f"progress must be True, False, None or a callable, got "
                            f"{type(self.progress).__name__}")


_VALID = ("solver", "reltol", "abstol", "on_fail", "solver_options", "voltages", "backend",
          *(f.name for f in dataclasses.fields(_NewtonOptions)))


@dataclass
class _Results:
    """Per-system results ``(B, K, ...)`` gathered over the plans of a tile."""

    v_nodes: np.ndarray | None
    i_fixed: np.ndarray
    residual: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    error: np.ndarray
    method: str = ""


def _fail(tile_idx, K, plan, res, worst, why, error, reltol, abstol, s,
          solver: str, input0: int = 0) -> ConvergenceError:
    """The error for the failing system ``s`` of one plan; ``why`` is Newton's reason or ''."""
    node = node_name(plan, int(worst[s]))
    tile_s, input_s = int(tile_idx[s]), int(s % K) + input0
    if not why and error[s] > reltol:
        cause = (f"the iterative solver {solver!r} stopped short of it (solver_options rtol, "
                 "maxiter)" if solver in _SOLVER_OPTIONS else
                 "the tile's matrix is too ill-conditioned for this tolerance even after "
                 "iterative refinement (wire resistances many decades below the devices'? give "
                 "0 for ideal wires)")
        message = (f"tile {tile_s}, input {input_s}: forward error estimate {error[s]:.2e} "
                   f"(relative to the largest fixed voltage) exceeds reltol={reltol:g}: {cause}")
    else:
        message = (f"tile {tile_s}, input {input_s}: KCL residual {res[s]:.3e} A at node {node} "
                   f"exceeds reltol={reltol:g} x (node current) + abstol={abstol:g} A"
                   + (f" ({why})" if why else ""))
    return ConvergenceError(message, tile=tile_s, input=input_s, node=node,
                            residual=float(res[s]))


def _solve_all(tile: Tile, vk: np.ndarray, *, solver: str, reltol: float, abstol: float,
               on_fail: str, options: dict, newton: _NewtonOptions,
               voltages: bool = True, backend=None, out_xp=np) -> _Results:
    """Solve every tile and input for fixed voltages ``vk`` ``(B, K, n_fixed)`` (host).

    ``backend``: where to compute (None: the CPU); ``out_xp``: the array module of the results.
    """
    backend = resolve("numpy") if backend is None else backend
    B, K, nk = vk.shape
    circuit = tile.circuit
    out = _Results(
        v_nodes=out_xp.empty((B, K, circuit.n_nodes)) if voltages else None,
        i_fixed=out_xp.empty((B, K, nk)), residual=np.empty((B, K)),
        converged=np.empty((B, K), dtype=bool), iterations=np.ones((B, K), dtype=np.int64),
        error=np.zeros((B, K)),
    )
    move = backend.to_host if out_xp is np else out_xp.asarray
    methods = set()
    for host_plan in tile_plans(tile):
        plan = on_backend(host_plan, backend)
        for tiles, ks in _batches(plan, tile, K, voltages, newton, backend):
            try:
                part = _solve_batch(dataclasses.replace(plan, tiles=tiles),
                                    backend.to_device(vk[tiles][:, ks]), tile=tile,
                                    solver=solver, reltol=reltol, abstol=abstol, options=options,
                                    newton=newton, voltages=voltages, backend=backend)
            except backend.oom_errors as exc:
                if not backend.device_path:
                    raise
                raise MemoryError(
                    f"out of GPU memory solving a batch of {len(tiles)} tile(s) x "
                    f"{ks.stop - ks.start} input vector(s) ({plan.n_free} unknowns per tile, "
                    f"{backend.device}): {exc}. The batch was sized from an estimate of the free "
                    "GPU memory; free memory held elsewhere (other processes, arrays kept "
                    "alive) or solve fewer tiles or input vectors per call") from exc
            methods.add(part.method)
            _check(part, tiles, ks, host_plan, reltol, abstol, on_fail, solver)
            sel = (out_xp.asarray(tiles) if out_xp is not np else tiles, ks)
            if (voltages and out_xp is np and not backend.device_path and _whole(tiles, ks, B, K)
                    and part.v_nodes.shape == out.v_nodes.shape):
                out.v_nodes = part.v_nodes  # one batch holds everything: no copy
            elif voltages:
                out.v_nodes[sel] = move(part.v_nodes)
            out.i_fixed[sel] = move(part.fixed)
            out.residual[tiles, ks] = part.residual
            out.converged[tiles, ks] = part.ok
            out.iterations[tiles, ks] = part.iterations
            out.error[tiles, ks] = part.error
    out.method = backend.label(", ".join(sorted(methods)))
    return out


def _whole(tiles, ks: slice, B: int, K: int) -> bool:
    """Whether a batch is every tile in order and every input vector."""
    return (ks.start in (0, None) and ks.stop == K and len(tiles) == B
            and bool(np.all(np.asarray(tiles) == np.arange(B))))


@dataclass
class _Part:
    """The results of one batch ``(Bb, Kb, ...)``: voltages and fixed currents on the backend,
    the per-system diagnostics on the host."""

    v_nodes: object
    fixed: object
    residual: np.ndarray
    ok: np.ndarray
    worst: np.ndarray
    error: np.ndarray
    iterations: np.ndarray
    why: np.ndarray
    method: str


def _batches(plan, tile, K: int, voltages: bool, newton: _NewtonOptions, backend):
    """``(tiles, inputs)`` of each batch: all tiles and inputs of the plan on the CPU; on a device
    as many as fit in its free memory (:func:`circuitsim.memory.device_batch`)."""
    tiles = plan.tiles
    if not backend.device_path:
        yield tiles, slice(0, K)
        return
    free = backend.free_bytes()
    if free is None:
        per_tiles, per_k = len(tiles), K
    else:
        per_tiles, per_k = device_batch(
            n_free=plan.n_free, n_fixed=plan.n_fixed, n_branches=len(plan.a),
            n_nodes=tile.circuit.n_nodes, tiles=len(tiles), K=K,
            nonlinear=not tile.is_linear, direct=newton.mode == "newton", voltages=voltages,
            free_bytes=free, device=backend.device)
    for t0 in range(0, len(tiles), per_tiles):
        for k0 in range(0, K, per_k):
            yield tiles[t0 : t0 + per_tiles], slice(k0, min(k0 + per_k, K))


def _solve_batch(plan, vk, *, tile, solver, reltol, abstol, options, newton, voltages,
                 backend) -> _Part:
    """Solve the plan's tiles (``plan.tiles``) for fixed voltages ``vk`` ``(Bb, Kb, n_fixed)``
    on the plan's backend."""
    tiles = plan.tiles
    Bb, K, nk = vk.shape
    host = backend.to_host
    S = Bb * K
    tile_idx = np.repeat(tiles, K)
    why = np.full(S, "", dtype=object)
    its = np.ones(S, dtype=np.int64)
    by_transfer = None
    if (tile.is_linear and not voltages and K >= OUTPUTS_BY_TRANSFER_FROM
            and solver == "direct" and solvers.cholmod_available() and plan.n_free
            and not backend.device_path):
        by_transfer = transfer_outputs(plan, vk, reltol=reltol, abstol=abstol)
    if by_transfer is not None:
        fixed, tile_error = by_transfer
        return _Part(None, fixed, np.full((Bb, K), np.nan), np.ones((Bb, K), dtype=bool),
                     np.zeros((Bb, K), dtype=np.int64), np.repeat(tile_error[:, None], K, axis=1),
                     its.reshape(Bb, K), why.reshape(Bb, K), "cholmod (transfer matrix)")
    if tile.is_linear:
        lr = solve_linear_plan(plan, vk, solver=solver, options=options, reltol=reltol,
                               abstol=abstol, voltages=voltages)
        method = lr.method + (" + refinement" if bool(lr.refined.any()) else "")
        return _Part(lr.v_nodes, lr.fixed, host(lr.residual), host(lr.ok), host(lr.worst),
                     host(lr.error), its.reshape(Bb, K), why.reshape(Bb, K), method)
    v, fixed, res, ok, worst, error, its, why, method = _solve_nonlinear(
        plan, vk.reshape(S, nk), tile_idx, solver=solver, reltol=reltol, abstol=abstol,
        options=options, newton=newton, backend=backend)
    v_nodes = plan.expand_voltages(v).reshape(Bb, K, -1) if voltages else None
    return _Part(v_nodes, fixed.reshape(Bb, K, nk), res.reshape(Bb, K), ok.reshape(Bb, K),
                 worst.reshape(Bb, K), error.reshape(Bb, K), its.reshape(Bb, K),
                 why.reshape(Bb, K), method)


@heap.retained
def _solve_nonlinear(plan, vk, tile_idx, *, solver, reltol, abstol, options,
                     newton: _NewtonOptions, backend):
    """Newton and the KCL audit on the systems ``vk`` ``(S, n_fixed)`` of one plan, in chunks of
    at most about :data:`circuitsim.factor.NEWTON_ENTRIES` entries of branch and node arrays
    (on the CPU), so that memory stays bounded whatever the number of input vectors; a device
    batch is already sized to its memory. ``max_time`` holds for all chunks together."""
    S = len(vk)
    host, xp = backend.to_host, backend.xp
    per = S if backend.device_path else max(
        1, factor.NEWTON_ENTRIES // (len(plan.a) + plan.n_free + plan.n_fixed))
    start = time.perf_counter()
    parts, methods = [], set()
    for c0 in range(0, S, per):
        rows = slice(c0, min(c0 + per, S))
        kw = dataclasses.asdict(newton)
        if newton.max_time is not None and c0:  # later chunks get what is left
            kw["max_time"] = max(newton.max_time - (time.perf_counter() - start), 1e-9)
        nr = solve_newton(plan, vk[rows], tile_idx[rows], solver=solver, reltol=reltol,
                          abstol=abstol, options=options, **kw)
        res, ok, worst, fixed = audit(plan, nr.v, tile_idx[rows], reltol, abstol,
                                      models=nr.models)
        ok = host(ok) & (nr.why == "")  # systems Newton gave up on, or out of max_time
        parts.append((nr.v, fixed, host(res), ok, host(worst), nr.error, nr.iterations,
                      nr.why))
        methods.add(nr.method)
    if len(parts) == 1:
        out = parts[0]
    else:
        out = [(xp if k < 2 else np).concatenate(x) for k, x in enumerate(zip(*parts))]
    return (*out, "+".join(sorted(methods)))


def _check(part: _Part, tiles, ks, plan, reltol, abstol, on_fail, solver) -> None:
    """Raise (or warn, with ``on_fail="mask"``) for the worst failing system of a batch."""
    ok = part.ok.ravel()
    if ok.all():
        return
    K = part.ok.shape[1]
    res, error, worst, why = (x.ravel() for x in (part.residual, part.error, part.worst,
                                                   part.why))
    bad = np.flatnonzero(~ok)
    s = int(bad[np.argmax(np.where(error[bad] > reltol, np.inf, res[bad]))])
    tile_idx = np.repeat(tiles, K)
    exc = _fail(tile_idx, K, plan, res, worst, why[s], error, reltol, abstol, s, solver,
                input0=ks.start)
    if on_fail == "raise":
        raise exc
    warnings.warn(f"{len(bad)} of {len(ok)} systems failed (masked); the worst: {exc}",
                  RuntimeWarning, stacklevel=4)


def solve(tile: Tile, v_in, *, solver: str = "direct", reltol: float = 1e-9,
          abstol: float = 1e-15, on_fail: str = "raise", solver_options: dict | None = None,
          voltages: bool = True, mode: str = "newton-krylov", vntol: float = 1e-12,
          max_iter: int = 100, max_step: float = 1.0, krylov_rtol: float = 1e-10,
          krylov_maxiter: int = 40, gmin_stepping: bool = True, source_stepping: bool = True,
          progress=None, max_time: float | None = None, backend=None, **unknown) -> Solution:
    """Solve a tile (or batch of tiles) for input voltages ``v_in``.

    Parameters
    ----------
    tile : Tile
        From :func:`circuitsim.crossbar`.
    v_in : array_like, (m,), (K, m) or, for a batched tile, (B, K, m)
        Word-line driver voltages (V): numpy or cupy (with a cupy array the results are cupy
        arrays too, and the GPU computes them unless ``backend`` says otherwise).
    solver : str
        Linear solver (see :mod:`circuitsim.solvers`): ``"direct"`` (CHOLMOD where installed for
        symmetric systems, else SuperLU), ``"superlu"``, ``"cholmod"``, ``"cg"`` or ``"dense"``.
    reltol, abstol : float
        Accuracy asked for. Every returned system passes a KCL audit (at every unknown node the
        net current is below ``reltol`` times the size of the currents summed there, plus
        ``abstol`` in A) and a forward-error estimate (the node voltages are within ``reltol`` of
        the largest fixed voltage; ill-conditioned linear tiles are iteratively refined to get
        there). Newton uses them for its convergence test too. Relative accuracy of a current
        holds only for currents well above ``abstol``.
    on_fail : {"raise", "mask"}
        ``"raise"``: any failing system raises :class:`ConvergenceError` naming tile, input and
        node. ``"mask"``: return everything, with ``converged`` False for the failing systems,
        and warn.
    solver_options : dict, optional
        Options of an iterative linear solver (``"cg"``: ``rtol``, ``atol``, ``maxiter``, ``M``).
    voltages : bool
        Return the node voltages (``v_wl``, ``v_bl``, ``v_int``); with False only currents and
        diagnostics come back, and memory stays proportional to the outputs.
    mode : {"newton-krylov", "newton"}
        Nonlinear tiles: Newton updates by BiCGSTAB preconditioned with one factorisation of the
        tile's linearised matrix (falling back to a direct factorisation per system), or always
        by a direct factorisation of every Jacobian.
    vntol : float
        Newton's voltage tolerance (V), as SPICE's VNTOL.
    max_iter : int
        Newton iterations per attempt (SPICE's ITL1). It counts per attempt: plain Newton, then
        each gmin step and each source step, so ``max_iter=5`` may run hundreds of iterations in
        all; ``iterations`` reports the total.
    max_step : float
        Largest change of any node voltage in one Newton iteration (V).
    krylov_rtol, krylov_maxiter : float, int
        Tightest inner tolerance and iteration cap of BiCGSTAB in Newton-Krylov (each update's
        tolerance follows the residual's fall from at most 1e-3 down to ``krylov_rtol``, and is
        loosened where the update is so small that its error stays a hundredth of ``reltol``
        times the largest fixed voltage).
    gmin_stepping, source_stepping : bool
        Enable Newton's fallbacks.
    progress : bool or callable, optional
        Report long nonlinear solves: True shows a tqdm bar; a callable receives keyword
        arguments ``attempt``, ``iteration``, ``systems_left``, ``worst_residual`` (A) and
        ``elapsed`` (s) after every Newton iteration.
    max_time : float, optional
        Seconds allowed for the nonlinear solve; systems not converged by then fail (raise, or
        masked with ``on_fail="mask"``), the error saying how far they got.
    backend : {None, "numpy", "cupy", "auto"} or Backend
        Where to compute (:mod:`circuitsim.backend`). None: the GPU for cupy inputs, else the
        CPU. ``"cupy"``: the GPU, or :class:`~circuitsim.backend.GPUUnavailableError` saying why
        there is none. ``"auto"``: the GPU when one is usable, else the CPU, saying so in
        ``method``. On the GPU, ``solver="direct"`` is cuDSS (nvmath-python) or, without it,
        SuperLU on the host with the solves on the GPU; ``"cholmod"`` is CPU-only.

    Returns
    -------
    Solution

    Raises
    ------
    TypeError
        For an unknown keyword argument (the message lists the valid ones), a ``tile`` that is
        not a :class:`~circuitsim.netlist.Tile`, or options of the wrong type.
    ValueError
        For options out of range or inputs of the wrong shape.
    ConvergenceError
        For a system that fails its audit or forward-error check (with ``on_fail="raise"``).
    """
    _reject_unknown("solve", unknown, _VALID)
    _check_tile("solve", tile)
    bk = resolve(backend, v_in)
    options = _linear_options(solver, reltol, abstol, on_fail, solver_options, bk)
    _check_flag("voltages", voltages)
    newton = _NewtonOptions(mode, vntol, max_iter, max_step, krylov_rtol, krylov_maxiter,
                            gmin_stepping, source_stepping, progress, max_time)
    if not tile.is_linear and solver not in ("direct", "superlu", "cholmod"):
        raise ValueError(f"Newton needs a direct solver for its fallbacks, got solver={solver!r}")
    on_device = is_device_array(v_in)
    v_arr = v_in if on_device else np.asarray(v_in)
    v = tile.check_inputs(v_in.get() if on_device else v_in)
    if bk.device_path:
        check_result_memory(tile, v.shape[1], voltages and not on_device)
    else:
        check_solve_memory(tile, v.shape[1], voltages)
    vk = tile.fixed_voltages(v)
    out = _solve_all(tile, vk, solver=solver, reltol=reltol, abstol=abstol, on_fail=on_fail,
                     options=options, newton=newton, voltages=voltages, backend=bk,
                     out_xp=array_module(v_in))
    return _package(tile, v_arr, v, out)


def _package(tile, v_in, v_full, out: _Results) -> Solution:
    """The :class:`Solution` of ``out``; ``v_in`` as given (its ``ndim`` and array module shape
    the results), ``v_full`` the validated inputs ``(B, K, m)`` (host)."""
    m, n = tile.m, tile.n
    B, K = out.i_fixed.shape[:2]
    mn = m * n
    xp = array_module(v_in)
    diag = (lambda x: x) if xp is np else xp.asarray  # per-system diagnostics where i_out is

    def shape(x):
        return drop_axes(x, tile.batched, v_in.ndim == 1)

    grid = (B, K, m, n)
    v_nodes = out.v_nodes
    v_wl = v_bl = v_int = None
    if v_nodes is not None:
        v_wl, v_bl = v_nodes[..., :mn].reshape(grid), v_nodes[..., mn : 2 * mn].reshape(grid)
        if tile.access is not None:
            v_int = v_nodes[..., 2 * mn : 3 * mn].reshape(grid)
    i_out, i_source = -out.i_fixed[..., m:], out.i_fixed[..., :m]

    def power():  # on the host: a read-out of the solution, not part of the solve
        def host(x):
            return None if x is None else (x.get() if is_device_array(x) else x)

        p = read_power(tile, v_full, *(host(x) for x in (v_wl, v_bl, v_int, i_source, i_out)))
        return Power(*(diag(shape(getattr(p, f.name))) for f in dataclasses.fields(p)))

    return Solution(
        i_out=shape(i_out),
        v_wl=None if v_wl is None else shape(v_wl),
        v_bl=None if v_bl is None else shape(v_bl),
        v_int=None if v_int is None else shape(v_int),
        i_source=shape(i_source),
        residual=diag(shape(out.residual)),
        converged=diag(shape(out.converged)),
        iterations=diag(shape(out.iterations)),
        method=out.method,
        error=diag(shape(out.error)),
        _power=power if v_nodes is not None else None,
    )


@dataclass(frozen=True)
class TransferInfo:
    """How :func:`transfer_matrix` obtained each tile's ``T`` (``full_output=True``).

    Attributes
    ----------
    method : ndarray of str, (B,)
        ``"schur"``: the Schur complement, which passed its check; ``"solves"``: recomputed from
        ``m`` refined solves (the check failed, or CHOLMOD is absent, or ``solver`` asked for
        another solver).
    check_error : ndarray, (B,)
        The Schur result's largest difference from a refined solve on its check vector, relative
        to the bound ``reltol s + abstol``, ``s`` the size of the terms summed (NaN where it was
        not computed); it passes at 1.
    error : ndarray, (B,)
        Forward-error estimate of the returned ``T``'s solves, relative to the largest input.
    reason : ndarray of str, (B,)
        Why a tile took the ``"solves"`` path (empty for ``"schur"``).
    """

    method: np.ndarray
    check_error: np.ndarray
    error: np.ndarray
    reason: np.ndarray


def transfer_matrix(tile: Tile, *, solver: str = "direct", reltol: float = 1e-9,
                    abstol: float = 1e-15, full_output: bool = False, backend=None, **unknown):
    """The exact linear map from inputs to outputs of a linear tile: ``i_out = T @ v_in``.

    Obtained from the Schur complement of the tile's matrix onto its boundary (the unknowns
    coupled to drivers and sense nodes): one Cholesky factorisation with the boundary ordered
    last and a dense solve of size about ``m + n`` per tile (:mod:`circuitsim.transfer`). Each
    tile's ``T`` is checked on a random input against an iteratively refined solve from the same
    factorisation, to ``reltol`` times the size of the terms summed plus ``abstol`` at every
    output (the measure of the KCL audit); a tile that fails the check
    (or any tile when CHOLMOD is not installed or another ``solver`` is asked for) is recomputed
    from ``m`` refined solves, with a warning naming the tile and why. Exact IR-drop-aware
    inference of any number of input vectors then costs one matrix product, as an ideal
    crossbar does: ``i_out = v_in @ T.T`` for ``v_in`` of shape ``(K, m)``.

    With a sense voltage ``v_sense`` equal on all bit lines, ``i_out = T @ (v_in - v_sense)``.

    Parameters
    ----------
    tile : Tile
        A linear tile (no access transistors, linear devices), possibly batched.
    solver, reltol, abstol
        As for :func:`solve`.
    full_output : bool
        Also return a :class:`TransferInfo` saying which path each tile took and how well it
        checked.
    backend : {None, "numpy", "cupy", "auto"} or Backend
        As for :func:`solve` (None: the CPU). On a GPU ``T`` comes from ``m`` refined solves of
        one block-diagonal factorisation per batch of tiles (the Schur path needs CHOLMOD);
        ``T`` is returned as a numpy array either way.

    Returns
    -------
    T : ndarray, (n, m) or (B, n, m)
    info : TransferInfo
        Only with ``full_output=True``.

    Examples
    --------
    >>> import circuitsim as cs
    >>> T = cs.transfer_matrix(cs.crossbar([[1e-3]], r_source=1000.0))
    >>> float(T[0, 0])  # one cell: 1 / (1 kohm + 1 kohm)
    0.0005
    """
    _reject_unknown("transfer_matrix", unknown,
                    ("solver", "reltol", "abstol", "full_output", "backend"))
    _check_tile("transfer_matrix", tile)
    bk = resolve(backend)
    options = _linear_options(solver, reltol, abstol, "raise", None, bk)
    _check_flag("full_output", full_output)
    if not tile.is_linear:
        raise ValueError("transfer_matrix needs a linear tile (no access transistor, linear device)")
    v_sense = tile.v_sense
    if not np.all(v_sense == v_sense[:, :1]):
        raise ValueError(
            "transfer_matrix: v_sense differs between bit lines, so i_out is affine, not linear, "
            "in v_in; use solve() instead"
        )
    B, m, n = tile.batch, tile.m, tile.n
    T = np.empty((B, n, m))
    method = np.full(B, "solves", dtype=object)
    reason = np.full(B, "", dtype=object)
    check_error = np.full(B, np.nan)
    error = np.zeros(B)
    todo = np.ones(B, dtype=bool)
    if bk.device_path:
        reason[:] = (f"backend {bk.name!r} ({bk.device}) takes the solves path: the Schur "
                     "path needs CHOLMOD on the CPU")
    elif solver == "direct" and solvers.cholmod_available():
        check = np.random.default_rng(0).uniform(-1.0, 1.0, (B, m + n))
        check[:, m:] = 0.0
        for plan in tile_plans(tile):
            t = plan.tiles
            if plan.n_free == 0:
                reason[t] = "every node is fixed"
                continue
            try:
                sr = schur_transfer(plan, check[t], reltol=reltol, abstol=abstol)
            except np.linalg.LinAlgError as exc:
                reason[t] = f"Schur factorisation failed: {exc}"
                continue
            T[t] = -sr.F[:, m:, :m]
            check_error[t], error[t] = sr.check_error, sr.reference_error
            method[t[sr.ok]] = "schur"
            todo[t[sr.ok]] = False
            for k in np.flatnonzero(~sr.ok):
                reason[t[k]] = (
                    f"its check on a random input is off by {sr.check_error[k]:.2g} times the "
                    f"bound reltol (size of the terms) + abstol (reference forward error "
                    f"{sr.reference_error[k]:.2g})"
                )
                warnings.warn(f"transfer_matrix: tile {int(t[k])}: the Schur-complement result "
                              f"failed its check: {reason[t[k]]}; recomputing it from {m} "
                              "refined solves", RuntimeWarning, stacklevel=2)
    else:
        reason[:] = ("CHOLMOD (scikit-sparse) is not installed" if solver == "direct"
                     else f"solver={solver!r} was asked for")
    if todo.any():
        T[todo], error[todo] = _transfer_by_solves(tile, todo, solver, options, reltol, abstol,
                                                   bk)
    T = T if tile.batched else T[0]
    if not full_output:
        return T
    info = TransferInfo(method.astype(str), check_error, error, reason.astype(str))
    return T, info


def _transfer_by_solves(tile: Tile, which: np.ndarray, solver, options, reltol, abstol,
                        backend=None):
    """``T`` of the tiles ``which`` from ``m`` unit right-hand sides through the linear path."""
    m, n = tile.m, tile.n
    sub = tile.select(np.flatnonzero(which))
    eye = np.broadcast_to(np.eye(m), (sub.batch, m, m))
    vk = np.concatenate([eye, np.zeros((sub.batch, m, n))], axis=2)
    out = _solve_all(sub, vk, solver=solver, reltol=reltol, abstol=abstol, on_fail="raise",
                     options=options, newton=_NewtonOptions(), voltages=False, backend=backend)
    return np.ascontiguousarray(-out.i_fixed[..., m:].transpose(0, 2, 1)), out.error.max(axis=1)
