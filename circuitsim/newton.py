"""Damped Newton-Raphson on the node voltages of many nonlinear systems at once.

A system is one (tile, input vector) pair; all share the plan's sparsity pattern. Each Newton
iteration evaluates every branch of every active system in one vectorized pass, assembles the
block-diagonal Jacobian, solves for the update, limits it, and tests convergence SPICE's way
(ngspice ``NIconvTest``): an iteration converges when the previous update moved every node by at
most ``reltol * max(|v_new|, |v_old|) + vntol``, no update was limited, and every branch current
is within ``reltol * max(|i|, |i_predicted|) + abstol`` of its linear prediction. Never on the first
iteration. Systems that converge leave the batch; the rest go on.

Strategy, in order, for the systems still failing:

1. Warm start from the linearised tile (each device replaced by its conductance at 0 V), then
   Newton. With ``mode="newton-krylov"`` (the default) each update is found by BiCGSTAB
   preconditioned with one factorisation of the tile's linearised matrix, shared by all its input
   vectors (the wire network does not change between inputs); systems where it stalls fall back
   to a direct factorisation of their own Jacobian.
2. gmin stepping: a conductance ``gmin`` in parallel with every nonlinear branch, from 1e-3 S
   down to 0 in decades, each stage starting from the last.
3. Source stepping: the fixed voltages ramped from 0 to their values, the step halved on failure.

Step limiting: a nonlinear memristor's voltage may move outward by at most ``log(1 + d)`` of its
voltage scale when Newton asks for ``d`` scales (as ngspice's ``DEVpnjlim`` does for junctions);
no node moves by more than ``max_step`` volts per iteration (``DEVlimvds`` bounds MOSFET steps).
The whole update of a system is scaled by the tightest of these, so directions are kept.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from circuitsim import solvers

from .branches import branch_values, per_system, select_cells
from . import factor
from .factor import analysis
from .krylov import bicgstab_many
from .mna import Plan

__all__ = ["MODES", "NewtonResult", "solve_newton"]

MODES = ("newton-krylov", "newton")
X_CRIT = 4.0  # limiting starts where a device voltage exceeds this many voltage scales


@dataclasses.dataclass(frozen=True)
class _Options:
    reltol: float
    abstol: float
    vntol: float
    max_iter: int
    max_step: float
    mode: str
    solver: str
    krylov_rtol: float
    krylov_maxiter: int
    clock: _Clock


class _Clock:
    """Elapsed time against ``max_time``, and progress reports after every iteration."""

    def __init__(self, max_time: float | None, progress, total: int):
        self.start = time.perf_counter()
        self.deadline = None if max_time is None else self.start + max_time
        self.max_time = max_time
        self.expired = False
        self.attempt = "newton"
        self.bar = None
        self.report = progress if callable(progress) else None
        if progress is True:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                raise ImportError("progress=True needs tqdm (pip install tqdm); or give a "
                                  "callable") from None
            self.bar = tqdm(total=total, desc="Newton", unit="system")
            self.done = 0

    def tick(self, iteration: int, left: int, worst: float) -> bool:
        """Report one iteration; returns False once ``max_time`` has passed."""
        elapsed = time.perf_counter() - self.start
        if self.report is not None:
            self.report(attempt=self.attempt, iteration=iteration, systems_left=left,
                        worst_residual=worst, elapsed=elapsed)
        if self.bar is not None:
            self.bar.set_postfix(attempt=self.attempt, iteration=iteration,
                                 residual=f"{worst:.1e}", refresh=False)
        if self.deadline is not None and time.perf_counter() > self.deadline:
            self.expired = True
        return not self.expired

    def converged(self, count: int) -> None:
        if self.bar is not None and count:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclasses.dataclass(frozen=True)
class NewtonResult:
    """What :func:`solve_newton` returns; per-system arrays are ``(S,)``.

    ``v`` ``(S, n_free + n_fixed)`` reduced voltages; ``iterations``: total Newton iterations;
    ``why``: ``""`` for a converged system, else the reason it failed; ``error``: the last Newton
    update's largest node change relative to the system's largest fixed voltage; ``models``: the
    per-group models reduced to the systems (for the audit).
    """

    v: np.ndarray
    iterations: np.ndarray
    why: np.ndarray
    error: np.ndarray
    method: str
    models: list


def _take_rows(models, idx):
    """Models whose per-cell parameters ``(S, E)`` keep the rows ``idx``."""
    idx = np.asarray(idx)
    if idx.dtype != bool and len(idx) and idx[0] == 0 and np.all(np.diff(idx) == 1):
        idx = slice(0, len(idx))  # a leading run of rows: a view, not a copy
    out = []
    for model in models:
        # (1, E) parameters are shared by every system (one tile): nothing to select
        names = [n for n in getattr(model, "_cell_params", ())
                 if np.ndim(getattr(model, n)) == 2 and np.shape(getattr(model, n))[0] > 1]
        changes = {n: getattr(model, n)[idx] for n in names}
        out.append(dataclasses.replace(model, **changes) if changes else model)
    return out


class _Linearised:
    """Factorisations of each tile's linearised matrix (devices at their 0 V conductance)."""

    def __init__(self, plan: Plan, tiles: np.ndarray, models, solver: str):
        self.plan = plan
        self.tiles = tiles
        zero = np.zeros((len(tiles), plan.n_free + plan.n_fixed))
        bv = branch_values(plan, zero, tiles, models=models)
        self.coupling = [plan.coupling(bv.p[k : k + 1], bv.q[k : k + 1]) for k in range(len(tiles))]
        self.factors = []
        method = self.method = "auto" if solver not in ("superlu", "cholmod") else solver
        for k in range(len(tiles)):  # one factorisation per tile, not per input vector
            data = _data(plan, bv.p[k : k + 1], bv.q[k : k + 1])
            _hold_floating(plan, data)
            J = plan.block_diagonal(data)
            symbolic = analysis(plan, J, method, symmetric=True, tag="linearised")
            self.factors.append(symbolic.factorize(J))

    def refresh(self, bv, tile_pos: np.ndarray) -> None:
        """Refactor each tile's preconditioner at the mean branch conductances of its active
        systems (symmetrised: a transistor counts as the conductance ``(gd - gs) / 2``), so that
        it follows the devices as Newton moves away from 0 V."""
        method = self.method
        for k in np.unique(tile_pos):
            rows = tile_pos == k
            g = (0.5 * (bv.p[rows] - bv.q[rows])).mean(axis=0, keepdims=True)
            data = _data(self.plan, g, -g)
            _hold_floating(self.plan, data)
            J = self.plan.block_diagonal(data)
            symbolic = analysis(self.plan, J, method, symmetric=True, tag="linearised")
            self.factors[k] = symbolic.factorize(J)

    def solve(self, r: np.ndarray, tile_pos: np.ndarray) -> np.ndarray:
        """Apply each system's tile's inverse linearised matrix to its column of ``r`` (N, S)."""
        tiles = np.unique(tile_pos)
        if len(tiles) == 1:
            return self.factors[tiles[0]].solve(np.ascontiguousarray(r))
        out = np.empty_like(r)
        for k in tiles:
            cols = np.flatnonzero(tile_pos == k)
            out[:, cols] = self.factors[k].solve(r[:, cols])
        return out

    def initial(self, vk: np.ndarray, tile_pos: np.ndarray) -> np.ndarray:
        """Free-node voltages of the linearised tiles for fixed voltages ``vk`` ``(S, n_fixed)``."""
        rhs = np.empty((self.plan.n_free, len(vk)))
        for k in np.unique(tile_pos):
            cols = np.flatnonzero(tile_pos == k)
            rhs[:, cols] = -(self.coupling[k] @ vk[cols].T)
        return self.solve(rhs, tile_pos).T


def _data(plan: Plan, p, q):
    return np.ascontiguousarray((plan.scatter_p @ p.T + plan.scatter_q @ q.T).T)


def _diag_positions(plan: Plan) -> np.ndarray:
    col = np.repeat(np.arange(plan.n_free), np.diff(plan.indptr))
    pos = np.flatnonzero(plan.indices == col)
    return pos[np.argsort(col[pos])]


def _hold_floating(plan: Plan, data: np.ndarray, f: np.ndarray | None = None) -> None:
    """Rows with an empty Jacobian row (a node whose every branch carries no current and has no
    conductance, e.g. behind an open cell and a transistor in cutoff) keep their voltage: any
    value satisfies KCL there, so the Newton update is set to 0 instead of dividing by 0."""
    diag = _diag_positions(plan)
    empty = data[:, diag] == 0
    if empty.any():
        rows, cols = np.nonzero(empty)
        data[rows, diag[cols]] = 1.0
        if f is not None:
            f[rows, cols] = 0.0


def _limit(plan: Plan, models, v, dv, tile_idx, opts: _Options) -> np.ndarray:
    """Per-system step factor in (0, 1] from device voltage limiting and ``max_step``."""
    nf = plan.n_free
    alpha = np.ones(len(v))
    big = np.abs(dv).max(axis=1) if nf else np.zeros(len(v))
    alpha = np.minimum(alpha, opts.max_step / np.maximum(big, opts.max_step))
    start = plan.n_res
    v_new = None
    for group, cells, model in zip(plan.circuit.groups[1:], plan.kept[1:], models[1:]):
        sl = slice(start, start + len(cells))
        start = sl.stop
        if group.kind != "device" or model is None or getattr(model, "linear", False):
            continue
        a, b = plan.a[sl], plan.b[sl]
        scale = model.voltage_scale(per_system(group.value, tile_idx, cells))
        if v_new is None:
            v_new = v.copy()
            v_new[:, :nf] += dv
        # Most steps leave every device within X_CRIT voltage scales: nothing to limit then.
        reach = np.abs(v_new[:, a] - v_new[:, b]).max(initial=0.0)
        if reach * np.max(1.0 / np.asarray(scale)) <= X_CRIT:
            continue
        full = np.concatenate([dv, np.zeros((len(v), plan.n_fixed))], axis=1)
        x_old = (v[:, a] - v[:, b]) / scale
        dx = (full[:, a] - full[:, b]) / scale
        x_new = x_old + dx
        outward = (np.abs(x_new) > X_CRIT) & (np.abs(x_new) > np.abs(x_old)) & (np.abs(dx) > 1)
        allowed = np.where(outward, np.log1p(np.abs(dx)) / np.maximum(np.abs(dx), 1e-300), 1.0)
        alpha = np.minimum(alpha, allowed.min(axis=1, initial=1.0))
    return alpha


class _Jacobian:
    """The Jacobians of the active systems, as an operator and, on demand, as one matrix.

    Newton-Krylov needs only products ``J x``, which the branch partials give directly
    (``F'(v) x = incidence @ (p x_a + q x_b)``) without assembling ``J``; the block-diagonal matrix
    is built only for direct solves. Nodes whose Jacobian row is empty are held (see
    :func:`_hold_floating`): their rows act as the identity.
    """

    def __init__(self, plan: Plan, bv, f: np.ndarray):
        self.plan, self.bv = plan, bv
        maps = plan.analyses.get("jacobian_maps")
        if maps is None:  # per topology: the unknown rows of the incidence, split by sign
            nf = plan.n_free
            inc = plan.incidence[:nf].tocsr()
            a_free, b_free = plan.a < nf, plan.b < nf
            maps = plan.analyses["jacobian_maps"] = (
                inc, (inc > 0).astype(float), (inc < 0).astype(float),
                a_free[:, None], b_free[:, None],
                np.where(a_free, plan.a, 0), np.where(b_free, plan.b, 0))
        self.inc, pos, neg, a_free, b_free, self.a, self.b = maps
        # systems last, (E, S): partials of branch ends at fixed nodes are zeroed, so products
        # need no rows for the fixed nodes (their updates are 0)
        self.pt = np.ascontiguousarray(bv.p.T)
        self.pt *= a_free
        self.qt = np.ascontiguousarray(bv.q.T)
        self.qt *= b_free
        diag = pos @ self.pt - neg @ self.qt  # (nf, S): sum of p at a, -q at b
        held = diag == 0
        self.any_held = bool(held.any())
        if self.any_held:
            f[held.T] = 0.0
        self.held_t = held

    def matvec(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``J_s x_s`` for the columns ``x`` ``(nf, S')`` of the systems in ``mask``."""
        if not len(x):  # every node fixed: nothing to multiply
            return x.copy()
        if mask.all():
            p, q, held = self.pt, self.qt, self.held_t
        else:
            p, q, held = self.pt[:, mask], self.qt[:, mask], self.held_t[:, mask]
        branch = p * x[self.a]
        branch += q * x[self.b]
        y = self.inc @ branch
        if self.any_held:
            y[held] = x[held]
        return y

    def matrix(self, rows: np.ndarray):
        data = _data(self.plan, self.bv.p[rows], self.bv.q[rows])
        _hold_floating(self.plan, data)
        return self.plan.block_diagonal(data)


#: Systems per tile from which Newton-Krylov refactors each tile's preconditioner at the mean
#: conductances of its systems every iteration (1T1R tiles only, whose transistors move far from
#: their 0 V conductance): one factorisation per tile then saves more Krylov iterations than it
#: costs (1T1R sinh 128 x 128, 64 inputs: 111 -> 91 ms per vector, one core).
REFRESH_FROM = 16

#: Loosest inner tolerance of Newton-Krylov (the first iteration's, and a cap on later ones).
FORCING_MAX = 1e-3


def _forcing(f_now, f_prev, floor: float):
    """Inner tolerance per system, Eisenstat and Walker's second choice: ``0.9 (|f_k| /
    |f_k-1|)^2``, between ``floor`` (``krylov_rtol``) and :data:`FORCING_MAX`. Far from the
    solution a loose inner solve costs a few BiCGSTAB iterations instead of many, and as the
    residual falls quadratically so does the tolerance, which keeps Newton's fast convergence
    (S. C. Eisenstat, H. F. Walker, SIAM J. Sci. Comput. 17 (1996) 16-32)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isfinite(f_prev) & (f_prev > 0), f_now / f_prev, np.inf)
    return np.clip(0.9 * ratio**2, floor, FORCING_MAX)


def _step(plan: Plan, jac: _Jacobian, f, lin: _Linearised | None, tile_pos, opts: _Options,
          rtol):
    """Newton updates ``J dv = -f`` for all active systems; returns dv and the method used.
    ``rtol`` ``(S,)``: each system's inner tolerance (Newton-Krylov)."""
    S = len(f)
    if lin is not None:
        def precond(r, mask):
            return lin.solve(r, tile_pos[mask])

        dv, ok, _ = bicgstab_many(jac.matvec, precond, -np.ascontiguousarray(f.T),
                                  rtol=rtol, maxiter=opts.krylov_maxiter)
        dv = np.ascontiguousarray(dv.T)
        if ok.all():
            return dv, "newton-krylov"
        bad = np.flatnonzero(~ok)
        dv[bad] = _direct_chunked(plan, jac, f, bad, opts)
        return dv, "newton-krylov+direct"
    return _direct_chunked(plan, jac, f, np.arange(S), opts), "newton"


def _direct_chunked(plan: Plan, jac: _Jacobian, f, rows, opts: _Options):
    """Direct updates of the systems ``rows``, a block-diagonal factorisation per chunk of at
    most about ``CHUNK_UNKNOWNS`` unknowns (one huge block-diagonal matrix would exhaust memory
    and SuperLU's 32-bit indices)."""
    per = max(1, factor.CHUNK_UNKNOWNS // max(plan.n_free, 1))
    out = np.empty((len(rows), plan.n_free))
    for c0 in range(0, len(rows), per):
        part = rows[c0 : c0 + per]
        out[c0 : c0 + per] = _direct(plan, jac.matrix(part), f[part], opts)
    return out


def _direct(plan: Plan, J, f, opts: _Options):
    """Solve the systems of ``f`` with their own factorisations (one block-diagonal matrix ``J``)."""
    nf = plan.n_free
    method = "superlu" if not plan.symmetric or opts.solver == "superlu" else "auto"
    try:
        factor = solvers.factorize(J, method, symmetric=plan.symmetric, natural=plan.ordered)
    except np.linalg.LinAlgError:
        try:
            factor = solvers.factorize(J, "superlu")
        except RuntimeError:  # SuperLU: exactly singular
            return np.full((len(f), nf), np.nan)
    except RuntimeError:
        return np.full((len(f), nf), np.nan)
    return factor.solve(-f.ravel()).reshape(len(f), nf)


def _newton(plan, v, vk, tile_idx, models, lin, tile_pos, opts: _Options, gmin: float = 0.0):
    """Newton on the systems given.

    Returns final voltages, iteration counts, success flags, the methods used and each system's
    last update (its largest node change, V).
    """
    S = len(v)
    nf = plan.n_free
    v = v.copy()
    v[:, nf:] = vk
    its = np.zeros(S, dtype=np.int64)
    done = np.zeros(S, dtype=bool)
    step = np.full(S, np.inf)
    f_prev = np.full(S, np.inf)  # largest node current of the previous iteration
    vscale = np.abs(vk).max(axis=1) if vk.shape[1] else np.ones(S)
    active = np.arange(S)
    prev = None  # (v_ok, limited, i_predicted) of the active systems
    methods = set()
    clock = opts.clock
    for it in range(1, opts.max_iter + 2):
        sub = _take_rows(models, active)
        bv = branch_values(plan, v[active], tile_idx[active], models=sub, gmin=gmin)
        f = np.asarray(plan.incidence[:nf] @ bv.i.T).T
        finite = np.isfinite(f).all(axis=1) & np.isfinite(bv.p).all(axis=1)
        if prev is not None:
            v_ok, limited, i_pred = prev
            i_now = bv.i[:, plan.n_res:]  # resistors are linear: their prediction is exact
            tol = opts.reltol * np.maximum(np.abs(i_now), np.abs(i_pred)) + opts.abstol
            i_ok = (np.abs(i_now - i_pred) <= tol).all(axis=1)
            conv = v_ok & ~limited & i_ok & finite
            done[active[conv]] = True
            its[active[conv]] = it - 1
            clock.converged(int(conv.sum()))
            keep = ~conv & finite
        else:
            keep = finite
        active, bv, f = active[keep], _rows(bv, keep), f[keep]
        sub = _take_rows(sub, np.flatnonzero(keep))
        if not len(active) or it > opts.max_iter:
            break
        worst = float(np.abs(f).max()) if f.size else 0.0
        if not clock.tick(it, len(active), worst):
            break
        if lin is not None and not plan.symmetric and len(active) >= REFRESH_FROM * len(
                np.unique(tile_pos[active])):
            lin.refresh(bv, tile_pos[active])
        jac = _Jacobian(plan, bv, f)
        f_now = np.abs(f).max(axis=1) if nf else np.zeros(len(active))
        rtol = _forcing(f_now, f_prev[active], opts.krylov_rtol)
        # an update needs no more relative accuracy than makes its error a hundredth of the
        # tolerance Newton converges to (its size is at most the previous update's)
        with np.errstate(divide="ignore", invalid="ignore"):
            enough = 0.01 * opts.reltol * vscale[active] / step[active]
        rtol = np.maximum(rtol, np.minimum(np.nan_to_num(enough, nan=0.0), FORCING_MAX))
        f_prev[active] = f_now
        dv, method = _step(plan, jac, f, lin, tile_pos[active], opts, rtol)
        methods.add(method)
        ok_step = np.isfinite(dv).all(axis=1)
        alpha = _limit(plan, sub, v[active], np.nan_to_num(dv), tile_idx[active], opts)
        dv = alpha[:, None] * np.nan_to_num(dv)
        step[active] = np.abs(dv).max(axis=1) if nf else 0.0
        v_old = v[active, :nf]
        v_new = v_old + dv
        v_ok = (np.abs(dv) <= opts.reltol * np.maximum(np.abs(v_new), np.abs(v_old)) + opts.vntol)
        v_ok = v_ok.all(axis=1) & ok_step
        full = np.concatenate([dv, np.zeros((len(active), plan.n_fixed))], axis=1)
        nr = plan.n_res
        i_pred = (bv.i[:, nr:] + bv.p[:, nr:] * full[:, plan.a[nr:]]
                  + bv.q[:, nr:] * full[:, plan.b[nr:]])
        v[active, :nf] = v_new
        prev = (v_ok, alpha < 1.0, i_pred)
        # Systems whose step failed outright (singular, NaN) stop here and go to the fallbacks.
        if not ok_step.all():
            keep = ok_step
            prev = tuple(x[keep] for x in prev)
            active = active[keep]
    return v, its, done, methods, step


def _rows(bv, keep):
    return type(bv)(bv.i[keep], bv.p[keep], bv.q[keep])


def solve_newton(plan: Plan, vk: np.ndarray, tile_idx: np.ndarray, *, solver: str = "direct",
                 reltol: float = 1e-9, abstol: float = 1e-15, vntol: float = 1e-12,
                 max_iter: int = 100, max_step: float = 1.0, mode: str = "newton-krylov",
                 krylov_rtol: float = 1e-10, krylov_maxiter: int = 40, gmin_stepping: bool = True,
                 source_stepping: bool = True, options: dict | None = None, progress=None,
                 max_time: float | None = None) -> NewtonResult:
    """Solve the nonlinear systems of ``plan`` for fixed voltages ``vk`` ``(S, n_fixed)``.

    Parameters
    ----------
    plan : Plan
    vk : ndarray, (S, n_fixed)
    tile_idx : ndarray of int, (S,)
        Batch index of each system's tile.
    solver : str
        Linear solver for direct factorisations (``"direct"``, ``"superlu"``, ``"cholmod"``).
    reltol, abstol, vntol : float
        Convergence tolerances (relative; A; V), as SPICE's RELTOL, ABSTOL, VNTOL.
    max_iter : int
        Newton iterations per attempt (SPICE's ITL1): plain Newton, each gmin step and each
        source step is one attempt.
    max_step : float
        Largest change of any node voltage in one iteration (V).
    mode : {"newton-krylov", "newton"}
        Update by preconditioned BiCGSTAB (falls back to direct per system) or always direct.
    krylov_rtol, krylov_maxiter : float, int
        Inner tolerance and iteration cap of BiCGSTAB.
    gmin_stepping, source_stepping : bool
        Enable the fallbacks.
    progress : bool or callable, optional
        See :func:`circuitsim.solve`.
    max_time : float, optional
        Seconds after which the systems still running stop, failed.

    Returns
    -------
    NewtonResult
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if solver not in ("direct", "superlu", "cholmod"):
        raise ValueError(f"Newton needs a direct solver for its fallbacks, got solver={solver!r}")
    clock = _Clock(max_time, progress, len(vk))
    try:
        opts = _Options(reltol, abstol, vntol, max_iter, max_step, mode, solver, krylov_rtol,
                        krylov_maxiter, clock)
        return _solve(plan, vk, tile_idx, opts, gmin_stepping, source_stepping)
    finally:
        clock.close()


def _solve(plan, vk, tile_idx, opts: _Options, gmin_stepping: bool, source_stepping: bool):
    models = [select_cells(g.model, tile_idx, cells)
              for g, cells in zip(plan.circuit.groups, plan.kept)]
    tiles, tile_pos = np.unique(tile_idx, return_inverse=True)
    first = np.array([np.flatnonzero(tile_pos == k)[0] for k in range(len(tiles))])
    lin = _Linearised(plan, tiles, _take_rows(models, first), opts.solver)
    S, nf = len(vk), plan.n_free
    v0 = np.zeros((S, nf + plan.n_fixed))
    v0[:, nf:] = vk
    v0[:, :nf] = lin.initial(vk, tile_pos)
    # The warm start, seen as one step from 0 V, is limited like any other step.
    v_zero = np.zeros_like(v0)
    v_zero[:, nf:] = vk
    alpha = _limit(plan, models, v_zero, v0[:, :nf], tile_idx, opts)
    v0[:, :nf] *= alpha[:, None]
    krylov = lin if opts.mode == "newton-krylov" else None
    v, its, done, methods, step = _newton(plan, v0, vk, tile_idx, models, krylov, tile_pos, opts)
    total = its.copy()
    state = (plan, vk, tile_idx, models, krylov, tile_pos, opts, total, done, methods, step)
    attempts = ["plain Newton"]
    clock = opts.clock
    if not done.all() and gmin_stepping and not clock.expired:
        clock.attempt = "gmin-stepping"
        attempts.append("gmin stepping")
        v = _gmin_stepping(v, *state)
    if not done.all() and source_stepping and not clock.expired:
        clock.attempt = "source-stepping"
        attempts.append("source stepping")
        v = _source_stepping(v, *state)
    why = np.full(S, "", dtype=object)
    if not done.all():
        if clock.expired:
            why[~done] = (f"stopped by max_time={clock.max_time:g} s during {clock.attempt} "
                          f"after {total[~done].max()} iterations")
        else:
            why[~done] = (f"Newton did not converge: {', '.join(attempts)} failed within "
                          f"max_iter={opts.max_iter} iterations each")
    scale = np.abs(vk).max(axis=1) if vk.shape[1] else np.ones(S)
    error = np.where(np.isfinite(step), step, np.inf) / np.where(scale > 0, scale, 1.0)
    error[~done] = np.inf
    error[done & (step == np.inf)] = 0.0  # converged without any step (nothing to solve)
    return NewtonResult(v, np.maximum(total, 1), why, error,
                        "+".join(sorted(methods)) or "newton", models)


def _subset(idx, models, tile_idx, tile_pos):
    return _take_rows(models, idx), tile_idx[idx], tile_pos[idx]


def _gmin_stepping(v, plan, vk, tile_idx, models, lin, tile_pos, opts, total, done, methods,
                   step):
    """gmin from 1e-3 S down by decades to 0; a system succeeds when the gmin = 0 stage does."""
    idx = np.flatnonzero(~done)
    methods.add("gmin-stepping")
    sub_models, sub_tiles, sub_pos = _subset(idx, models, tile_idx, tile_pos)
    vs = v[idx].copy()
    alive = np.ones(len(idx), dtype=bool)
    finished = np.zeros(len(idx), dtype=bool)
    for gmin in [10.0**-k for k in range(3, 13)] + [0.0]:
        live = np.flatnonzero(alive)
        if not len(live) or opts.clock.expired:
            break
        m_live = _take_rows(sub_models, live)
        v_new, its, ok, _, last = _newton(plan, vs[live], vk[idx[live]], sub_tiles[live], m_live,
                                          lin, sub_pos[live], opts, gmin=gmin)
        total[idx[live]] += np.where(ok, its, opts.max_iter)
        step[idx[live]] = last
        vs[live[ok]] = v_new[ok]
        alive[live[~ok]] = False
        finished[live[ok]] = gmin == 0.0
    v[idx[finished]] = vs[finished]
    done[idx[finished]] = True
    return v


def _source_stepping(v, plan, vk, tile_idx, models, lin, tile_pos, opts, total, done, methods,
                     step):
    """Ramp the fixed voltages from 0 to their values; halve the step on failure."""
    idx = np.flatnonzero(~done)
    methods.add("source-stepping")
    sub_models, sub_tiles, sub_pos = _subset(idx, models, tile_idx, tile_pos)
    n = len(idx)
    level = np.zeros(n)
    ramp = np.full(n, 0.1)
    vs = np.zeros((n, v.shape[1]))
    alive = np.ones(n, dtype=bool)
    for _ in range(400):  # bounded: each pass either advances or halves every live step
        live = np.flatnonzero(alive & (level < 1.0))
        if not len(live) or opts.clock.expired:
            break
        target = np.minimum(level[live] + ramp[live], 1.0)
        vk_t = target[:, None] * vk[idx[live]]
        v_new, its, ok, _, last = _newton(plan, vs[live], vk_t, sub_tiles[live],
                                          _take_rows(sub_models, live), lin, sub_pos[live], opts)
        total[idx[live]] += np.where(ok, its, opts.max_iter)
        step[idx[live]] = last
        good, bad = live[ok], live[~ok]
        vs[good] = v_new[ok]
        level[good] = target[ok]
        ramp[good] = np.minimum(ramp[good] * 1.5, 0.5)
        ramp[bad] /= 2.0
        alive[bad[ramp[bad] < 1e-4]] = False
    win = alive & (level >= 1.0)
    v[idx[win]] = vs[win]
    done[idx[win]] = True
    return v
