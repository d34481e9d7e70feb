"""``solve`` and ``transfer_matrix``: the public entry points of the engine."""

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

from . import factor
from .audit import audit, node_name
from .linear import solve_linear_plan
from .memory import check_solve_memory
from .mna import tile_plans
from .newton import MODES, solve_newton
from .power import Power, read_power
from .result import ConvergenceError, Solution
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


def _linear_options(solver, reltol, abstol, on_fail, solver_options) -> dict:
    """Validate the options every solve takes; returns the iterative solver's options."""
    solvers.get_solver(solver)
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


_VALID = ("solver", "reltol", "abstol", "on_fail", "solver_options", "voltages",
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
          solver: str) -> ConvergenceError:
    """The error for the failing system ``s`` of one plan; ``why`` is Newton's reason or ''."""
    node = node_name(plan, int(worst[s]))
    tile_s, input_s = int(tile_idx[s]), int(s % K)
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
               voltages: bool = True) -> _Results:
    """Solve every tile and input for fixed voltages ``vk`` ``(B, K, n_fixed)``."""
    B, K, nk = vk.shape
    circuit = tile.circuit
    out = _Results(
        v_nodes=np.empty((B, K, circuit.n_nodes)) if voltages else None,
        i_fixed=np.empty((B, K, nk)), residual=np.empty((B, K)),
        converged=np.empty((B, K), dtype=bool), iterations=np.ones((B, K), dtype=np.int64),
        error=np.zeros((B, K)),
    )
    methods = set()
    for plan in tile_plans(tile):
        tiles = plan.tiles
        tile_idx = np.repeat(tiles, K)
        v_red, why = None, np.full(len(tile_idx), "", dtype=object)
        its = np.ones(len(tile_idx), dtype=np.int64)
        by_transfer = None
        if (tile.is_linear and not voltages and K >= OUTPUTS_BY_TRANSFER_FROM
                and solver == "direct" and solvers.cholmod_available() and plan.n_free):
            by_transfer = transfer_outputs(plan, vk[tiles], reltol=reltol, abstol=abstol)
        if by_transfer is not None:
            fixed, tile_error = by_transfer
            v_plan, method = None, "cholmod (transfer matrix)"
            res = np.full(len(tile_idx), np.nan)  # no per-input solution is formed
            ok = np.ones(len(tile_idx), dtype=bool)
            worst = np.zeros(len(tile_idx), dtype=np.int64)
            error = np.repeat(tile_error, K)
        elif tile.is_linear:
            lr = solve_linear_plan(plan, vk[tiles], solver=solver, options=options,
                                   reltol=reltol, abstol=abstol, voltages=voltages)
            v_plan, fixed, res, ok, worst, error = (
                lr.v_nodes, lr.fixed, lr.residual.ravel(), lr.ok.ravel(), lr.worst.ravel(),
                lr.error.ravel())
            method = lr.method + (" + refinement" if lr.refined.any() else "")
        else:
            v_red, its, method, error, why, res, ok, worst, fixed = _solve_nonlinear(
                plan, vk[tiles].reshape(len(tiles) * K, nk), tile_idx, solver=solver,
                reltol=reltol, abstol=abstol, options=options, newton=newton)
        methods.add(method)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            s = int(bad[np.argmax(np.where(error[bad] > reltol, np.inf, res[bad]))])
            exc = _fail(tile_idx, K, plan, res, worst, why[s], error, reltol, abstol, s, solver)
            if on_fail == "raise":
                raise exc
            warnings.warn(f"{len(bad)} of {len(ok)} systems failed (masked); the worst: {exc}",
                          RuntimeWarning, stacklevel=3)
        if voltages:
            out.v_nodes[tiles] = (v_plan if v_red is None
                                  else plan.expand_voltages(v_red).reshape(len(tiles), K, -1))
        out.i_fixed[tiles] = fixed.reshape(len(tiles), K, nk)
        out.residual[tiles] = res.reshape(len(tiles), K)
        out.converged[tiles] = ok.reshape(len(tiles), K)
        out.iterations[tiles] = its.reshape(len(tiles), K)
        out.error[tiles] = error.reshape(len(tiles), K)
    out.method = ", ".join(sorted(methods))
    return out


def _solve_nonlinear(plan, vk, tile_idx, *, solver, reltol, abstol, options,
                     newton: _NewtonOptions):
    """Newton and the KCL audit on the systems of one plan, in chunks of at most about
    :data:`circuitsim.factor.NEWTON_ENTRIES` entries of branch and node arrays, so that memory
    stays bounded whatever the number of input vectors; ``max_time`` holds for all chunks."""
    S = len(vk)
    per = max(1, factor.NEWTON_ENTRIES // (len(plan.a) + plan.n_free + plan.n_fixed))
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
        ok &= nr.why == ""  # systems Newton gave up on, or that ran out of max_time
        parts.append((nr.v, nr.iterations, nr.error, nr.why, res, ok, worst, fixed))
        methods.add(nr.method)
    v_red, its, error, why, res, ok, worst, fixed = (np.concatenate(x) for x in zip(*parts))
    return v_red, its, "+".join(sorted(methods)), error, why, res, ok, worst, fixed


def solve(tile: Tile, v_in, *, solver: str = "direct", reltol: float = 1e-9,
          abstol: float = 1e-15, on_fail: str = "raise", solver_options: dict | None = None,
          voltages: bool = True, mode: str = "newton-krylov", vntol: float = 1e-12,
          max_iter: int = 100, max_step: float = 1.0, krylov_rtol: float = 1e-10,
          krylov_maxiter: int = 40, gmin_stepping: bool = True, source_stepping: bool = True,
          progress=None, max_time: float | None = None, **unknown) -> Solution:
    """Solve a tile (or batch of tiles) for input voltages ``v_in``.

    Parameters
    ----------
    tile : Tile
        From :func:`circuitsim.crossbar`.
    v_in : array_like, (m,), (K, m) or, for a batched tile, (B, K, m)
        Word-line driver voltages (V).
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
        Inner tolerance and iteration cap of BiCGSTAB in Newton-Krylov.
    gmin_stepping, source_stepping : bool
        Enable Newton's fallbacks.
    progress : bool or callable, optional
        Report long nonlinear solves: True shows a tqdm bar; a callable receives keyword
        arguments ``attempt``, ``iteration``, ``systems_left``, ``worst_residual`` (A) and
        ``elapsed`` (s) after every Newton iteration.
    max_time : float, optional
        Seconds allowed for the nonlinear solve; systems not converged by then fail (raise, or
        masked with ``on_fail="mask"``), the error saying how far they got.

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
    options = _linear_options(solver, reltol, abstol, on_fail, solver_options)
    _check_flag("voltages", voltages)
    newton = _NewtonOptions(mode, vntol, max_iter, max_step, krylov_rtol, krylov_maxiter,
                            gmin_stepping, source_stepping, progress, max_time)
    if not tile.is_linear and solver not in ("direct", "superlu", "cholmod"):
        raise ValueError(f"Newton needs a direct solver for its fallbacks, got solver={solver!r}")
    v = tile.check_inputs(v_in)
    check_solve_memory(tile, v.shape[1], voltages)
    vk = tile.fixed_voltages(v)
    out = _solve_all(tile, vk, solver=solver, reltol=reltol, abstol=abstol, on_fail=on_fail,
                     options=options, newton=newton, voltages=voltages)
    return _package(tile, np.asarray(v_in), v, out)


def _package(tile, v_in, v_full, out: _Results) -> Solution:
    m, n = tile.m, tile.n
    B, K = out.i_fixed.shape[:2]
    mn = m * n

    def shape(x):
        if not tile.batched:
            x = x[0]
            if v_in.ndim == 1:
                x = x[0]
        elif v_in.ndim == 1:
            x = x[:, 0]
        return x

    grid = (B, K, m, n)
    v_nodes = out.v_nodes
    v_wl = v_bl = v_int = None
    if v_nodes is not None:
        v_wl, v_bl = v_nodes[..., :mn].reshape(grid), v_nodes[..., mn : 2 * mn].reshape(grid)
        if tile.access is not None:
            v_int = v_nodes[..., 2 * mn : 3 * mn].reshape(grid)
    i_out, i_source = -out.i_fixed[..., m:], out.i_fixed[..., :m]

    def power():
        p = read_power(tile, v_full, v_wl, v_bl, v_int, i_source, i_out)
        return Power(*(shape(getattr(p, f.name)) for f in dataclasses.fields(p)))

    return Solution(
        i_out=shape(i_out),
        v_wl=None if v_wl is None else shape(v_wl),
        v_bl=None if v_bl is None else shape(v_bl),
        v_int=None if v_int is None else shape(v_int),
        i_source=shape(i_source),
        residual=shape(out.residual),
        converged=shape(out.converged),
        iterations=shape(out.iterations),
        method=out.method,
        error=shape(out.error),
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
                    abstol: float = 1e-15, full_output: bool = False, **unknown):
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
    _reject_unknown("transfer_matrix", unknown, ("solver", "reltol", "abstol", "full_output"))
    _check_tile("transfer_matrix", tile)
    options = _linear_options(solver, reltol, abstol, "raise", None)
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
    if solver == "direct" and solvers.cholmod_available():
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
        T[todo], error[todo] = _transfer_by_solves(tile, todo, solver, options, reltol, abstol)
    T = T if tile.batched else T[0]
    if not full_output:
        return T
    info = TransferInfo(method.astype(str), check_error, error, reason.astype(str))
    return T, info


def _transfer_by_solves(tile: Tile, which: np.ndarray, solver, options, reltol, abstol):
    """``T`` of the tiles ``which`` from ``m`` unit right-hand sides through the linear path."""
    m, n = tile.m, tile.n
    sub = tile.select(np.flatnonzero(which))
    eye = np.broadcast_to(np.eye(m), (sub.batch, m, m))
    vk = np.concatenate([eye, np.zeros((sub.batch, m, n))], axis=2)
    out = _solve_all(sub, vk, solver=solver, reltol=reltol, abstol=abstol, on_fail="raise",
                     options=options, newton=_NewtonOptions(), voltages=False)
    return np.ascontiguousarray(-out.i_fixed[..., m:].transpose(0, 2, 1)), out.error.max(axis=1)
