"""Damped Newton-Raphson on the node voltages of many nonlinear systems at once.

A system is one (tile, input vector) pair; all share the plan's sparsity pattern. Each Newton
iteration evaluates every nonlinear branch (memristors, access transistors) of every active
system in one vectorized pass (the resistors, linear and the same for all inputs of a tile, are
one fixed sparse matrix per tile: :class:`~circuitsim.network.ResistorNetwork`), solves for the
update, limits it, and tests convergence SPICE's way (ngspice ``NIconvTest``): an iteration
converges when the previous update moved every node by at most ``reltol * max(|v_new|, |v_old|)
+ vntol``, no update was limited, and every branch current is within ``reltol * max(|i|,
|i_predicted|) + abstol`` of its linear prediction. Never on the first iteration. Systems that
converge leave the batch; the rest go on.

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

from . import factor
from .backend import array_module, numpy_backend
from .branches import branch_values, group_models, groups, per_system
from .krylov import bicgstab_many
from .mna import Plan
from .network import ResistorNetwork
from .precondition import hold_floating, linearised

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


def _backend(plan: Plan):
    """The plan's backend (the CPU's for a host plan)."""
    return plan.backend if plan.backend is not None else numpy_backend()


def _take_rows(models, idx):
    """Models whose per-cell parameters ``(S, E)`` keep the rows ``idx`` (host indices)."""
    idx = np.asarray(idx)
    if idx.dtype != bool and len(idx) and idx[0] == 0 and np.all(np.diff(idx) == 1):
        idx = slice(0, len(idx))  # a leading run of rows: a view, not a copy
    out = []
    for model in models:
        # (1, E) parameters are shared by every system (one tile): nothing to select
        names = [n for n in getattr(model, "_cell_params", ())
                 if getattr(getattr(model, n), "ndim", 0) == 2 and getattr(model, n).shape[0] > 1]
        changes = {}
        for n in names:
            param = getattr(model, n)
            changes[n] = param[idx if isinstance(idx, slice) else array_module(param).asarray(idx)]
        if changes and not hasattr(model, "with_params"):
            out.append(dataclasses.replace(model, **changes))
        else:
            out.append(model.with_params(**changes) if changes else model)
    return out


def _absmax(x, axis=None):
    """``max |x|`` along ``axis`` without an array of ``|x|`` (NaN propagates as in ``max``)."""
    xp = array_module(x)
    return xp.maximum(x.max(axis=axis), -x.min(axis=axis))


def _limit(plan: Plan, models, v, dv, tile_idx, opts: _Options):
    """Per-system step factor in (0, 1] from device voltage limiting and ``max_step``."""
    xp, _ = plan.modules()
    nf, S = plan.n_free, len(v)
    alpha = xp.ones(S)
    if not S:
        return alpha
    big = _absmax(dv, axis=1) if nf else xp.zeros(S)
    alpha = xp.minimum(alpha, opts.max_step / xp.maximum(big, opts.max_step))
    start = plan.n_res
    v_new = None
    # |v_a - v_b| after the step is at most twice the largest |v| at a device end plus the
    # largest |dv|: when that bound leaves every device within X_CRIT voltage scales (most
    # steps), no device voltage needs to be formed
    step_max = float(big.max()) if nf else 0.0
    free_max = float(_absmax(v[:, :nf])) if nf else 0.0
    for (kind, values, cells, _), kept, model in zip(groups(plan)[1:], plan.kept[1:], models[1:]):
        sl = slice(start, start + len(kept))
        start = sl.stop
        if kind != "device" or model is None or getattr(model, "linear", False) or not len(kept):
            continue
        a, b = plan.a[sl], plan.b[sl]
        scale = model.voltage_scale(per_system(values, tile_idx, cells))
        inv_scale = float(xp.max(1.0 / xp.asarray(scale)))
        ends = xp.concatenate([a[a >= nf], b[b >= nf]])
        fixed_max = float(_absmax(v[:, ends])) if len(ends) else 0.0
        if 2.0 * (max(free_max, fixed_max) + step_max) * inv_scale <= X_CRIT:
            continue
        if v_new is None:
            v_new = v.copy()
            v_new[:, :nf] += dv
        reach = float(xp.abs(v_new[:, a] - v_new[:, b]).max())  # the exact largest device voltage
        if reach * inv_scale <= X_CRIT:
            continue
        full = xp.concatenate([dv, xp.zeros((S, plan.n_fixed))], axis=1)
        x_old = (v[:, a] - v[:, b]) / scale
        dx = (full[:, a] - full[:, b]) / scale
        x_new = x_old + dx
        outward = (xp.abs(x_new) > X_CRIT) & (xp.abs(x_new) > xp.abs(x_old)) & (xp.abs(dx) > 1)
        allowed = xp.where(outward, xp.log1p(xp.abs(dx)) / xp.maximum(xp.abs(dx), 1e-300), 1.0)
        alpha = xp.minimum(alpha, allowed.min(axis=1))
    return alpha


class _Jacobian:
    """The Jacobians of the active systems, as an operator and, on demand, as one matrix.

    Newton-Krylov needs only products ``J x``, which the resistor network and the branch partials
    of the other branches give directly (``F'(v) x = G_f x + incidence @ (p x_a + q x_b)``)
    without assembling ``J``; the block-diagonal matrix is built only for direct solves. Nodes
    whose Jacobian row is empty are held (see :func:`~circuitsim.precondition.hold_floating`):
    their rows act as the identity. ``bv`` holds the branches after the resistors;
    ``tile_pos`` (host) each system's tile in ``net``.
    """

    def __init__(self, plan: Plan, bv, f, net: ResistorNetwork, tile_pos: np.ndarray):
        xp, _ = plan.modules()
        self.plan, self.bv, self.net, self.tile_pos = plan, bv, net, tile_pos
        self.inc, pos, neg, a_free, b_free, self.a, self.b = plan.maps("nonlinear")
        # systems last, (E', S): partials of branch ends at fixed nodes are zeroed, so products
        # need no rows for the fixed nodes (their updates are 0)
        self.pt = xp.ascontiguousarray(bv.p.T)
        self.pt *= a_free
        self.qt = xp.ascontiguousarray(bv.q.T)
        self.qt *= b_free
        # (nf, S): the resistors' diagonal plus the sum of p at a, -q at b
        diag = net.diagonal(tile_pos) + pos @ self.pt - neg @ self.qt
        held = diag == 0
        self.any_held = bool(held.any())
        if self.any_held:
            f[held.T] = 0.0
        self.held_t = held

    def matvec(self, x, mask):
        """``J_s x_s`` for the columns ``x`` ``(nf, S')`` of the systems in ``mask``."""
        if not len(x):  # every node fixed: nothing to multiply
            return x.copy()
        if bool(mask.all()):
            p, q, held, pos = self.pt, self.qt, self.held_t, self.tile_pos
        else:
            p, q, held = self.pt[:, mask], self.qt[:, mask], self.held_t[:, mask]
            pos = self.tile_pos[_backend(self.plan).to_host(mask)]
        xp = array_module(x)
        branch = xp.take(x, self.a, axis=0)
        branch *= p
        other = xp.take(x, self.b, axis=0)
        other *= q
        branch += other
        del other
        y = self.net.matvec(x, pos)
        y += self.inc @ branch
        if self.any_held:
            y[held] = x[held]
        return y

    def matrix(self, rows: np.ndarray):
        """The block-diagonal Jacobian of the systems ``rows`` (host indices), in the form the
        plan's factorisations take."""
        xp, _ = self.plan.modules()
        r = xp.asarray(rows)
        g = self.net.partials(self.tile_pos[rows])
        p = xp.concatenate([g, self.bv.p[r]], axis=1)
        q = xp.concatenate([-g, self.bv.q[r]], axis=1)
        data = self.plan.data(p, q)
        hold_floating(self.plan, data)
        return factor.block_matrix(self.plan, data)


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
    xp = array_module(f_now, f_prev)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = xp.where(xp.isfinite(f_prev) & (f_prev > 0), f_now / f_prev, np.inf)
    return xp.clip(0.9 * ratio**2, floor, FORCING_MAX)


def _step(plan: Plan, jac: _Jacobian, f, lin, tile_pos, opts: _Options, rtol, enough):
    """Newton updates ``J dv = -f`` for all active systems; returns dv and the method used.
    ``rtol`` ``(S,)``: each system's inner tolerance (Newton-Krylov), loosened as BiCGSTAB's
    ``size_tol`` ``enough`` allows; ``tile_pos`` on the host."""
    bk = _backend(plan)
    xp = bk.xp
    S = len(f)
    if lin is not None:
        def precond(r, mask):
            return lin.solve(r, tile_pos[bk.to_host(mask)])

        dv, ok, _ = bicgstab_many(jac.matvec, precond, -xp.ascontiguousarray(f.T),
                                  rtol=rtol, maxiter=opts.krylov_maxiter, size_tol=enough)
        dv = xp.ascontiguousarray(dv.T)
        ok = bk.to_host(ok)
        if ok.all():
            return dv, "newton-krylov"
        bad = np.flatnonzero(~ok)
        dv[xp.asarray(bad)] = _direct_chunked(plan, jac, f, bad, opts)
        return dv, "newton-krylov+direct"
    return _direct_chunked(plan, jac, f, np.arange(S), opts), "newton"


def _direct_chunked(plan: Plan, jac: _Jacobian, f, rows, opts: _Options):
    """Direct updates of the systems ``rows`` (host indices), a block-diagonal factorisation per
    chunk of at most about ``CHUNK_UNKNOWNS`` unknowns (one huge block-diagonal matrix would
    exhaust memory and 32-bit indices)."""
    xp, _ = plan.modules()
    per = max(1, factor.chunk_unknowns(plan) // max(plan.n_free, 1))
    out = xp.empty((len(rows), plan.n_free))
    for c0 in range(0, len(rows), per):
        part = rows[c0 : c0 + per]
        out[c0 : c0 + per] = _direct(plan, jac.matrix(part), f[xp.asarray(part)], opts)
    return out


def _direct(plan: Plan, J, f, opts: _Options):
    """Solve the systems of ``f`` with their own factorisations (one block-diagonal matrix ``J``)."""
    xp, _ = plan.modules()
    nf = plan.n_free
    failed = xp.full((len(f), nf), np.nan)
    if plan.backend is not None and plan.backend.device_path:
        # Cholesky where the Jacobians are symmetric (positive definite unless a device has a
        # negative differential conductance), else or then LU; the solver objects of this
        # size are refactored in place from one Newton iteration to the next
        method = "superlu" if opts.solver == "superlu" else "auto"
        attempts = [(True, "jacobian-spd"), (False, "jacobian-lu")] if plan.symmetric else [
            (False, "jacobian-lu")]
        for spd, tag in attempts:
            try:
                fac = factor.factorize(plan, J, method, symmetric=spd, tag=tag)
                return fac.solve(-f.ravel()).reshape(len(f), nf)
            except np.linalg.LinAlgError:
                continue
        return failed
    method = "superlu" if not plan.symmetric or opts.solver == "superlu" else "auto"
    try:
        fac = solvers.factorize(J, method, symmetric=plan.symmetric, natural=plan.ordered)
    except np.linalg.LinAlgError:
        try:
            fac = solvers.factorize(J, "superlu")
        except RuntimeError:  # SuperLU: exactly singular
            return failed
    except RuntimeError:
        return failed
    return fac.solve(-f.ravel()).reshape(len(f), nf)


def _newton(plan, v, vk, tile_idx, models, lin, tile_pos, opts: _Options, net: ResistorNetwork,
            gmin: float = 0.0):
    """Newton on the systems given.

    ``v``, ``vk`` are on the plan's backend, ``tile_idx`` and ``tile_pos`` on the host (the
    bookkeeping of which systems are still active stays there). Returns final voltages, iteration
    counts and success flags (host), the methods used and each system's last update (its largest
    node change, V; on the backend).
    """
    bk = _backend(plan)
    xp, host = bk.xp, bk.to_host
    S = len(v)
    nf = plan.n_free
    inc = plan.maps("nonlinear")[0]
    nr = plan.n_res
    v = v.copy()
    v[:, nf:] = vk
    its = np.zeros(S, dtype=np.int64)
    done = np.zeros(S, dtype=bool)
    step = xp.full(S, np.inf)
    f_prev = xp.full(S, np.inf)  # largest node current of the previous iteration
    vscale = xp.abs(vk).max(axis=1) if vk.shape[1] else xp.ones(S)
    active = np.arange(S)
    prev = None  # (v_ok, limited, i_predicted) of the active systems
    methods = set()
    clock = opts.clock
    for it in range(1, opts.max_iter + 2):
        sub = _take_rows(models, active)
        every = len(active) == S  # all systems still run: views, not gathers
        v_act = v if every else v[xp.asarray(active)]
        # the branches after the resistors; the resistors are the fixed network
        bv = branch_values(plan, v_act, tile_idx[active], models=sub, gmin=gmin,
                           skip_resistors=True)
        f = net.current(v_act, tile_pos[active])
        f += inc @ bv.i.T
        f = f.T
        del v_act
        finite = xp.isfinite(f).all(axis=1) & xp.isfinite(bv.p).all(axis=1)
        if prev is not None:
            v_ok, limited, i_pred = prev
            i_now = bv.i  # resistors are linear: their prediction is exact
            tol = xp.abs(i_now)
            xp.maximum(tol, xp.abs(i_pred), out=tol)
            tol *= opts.reltol
            tol += opts.abstol
            i_pred -= i_now  # the prediction is not used after this test
            i_ok = (xp.abs(i_pred, out=i_pred) <= tol).all(axis=1)
            del tol
            conv = host(v_ok & ~limited & i_ok & finite)
            done[active[conv]] = True
            its[active[conv]] = it - 1
            clock.converged(int(conv.sum()))
            keep = ~conv & host(finite)
        else:
            keep = host(finite)
        if not keep.all():
            keep_d = xp.asarray(keep)
            active, bv, f = active[keep], _rows(bv, keep_d), f[keep_d]
            sub = _take_rows(sub, np.flatnonzero(keep))
        if not len(active) or it > opts.max_iter:
            break
        worst = float(_absmax(f)) if f.size else 0.0
        if not clock.tick(it, len(active), worst):
            break
        if lin is not None and not plan.symmetric and len(active) >= REFRESH_FROM * len(
                np.unique(tile_pos[active])):
            lin.refresh(bv, tile_pos[active], first=nr)
        jac = _Jacobian(plan, bv, f, net, tile_pos[active])
        act = slice(None) if len(active) == S else xp.asarray(active)  # a view where all run
        f_now = _absmax(f, axis=1) if nf else xp.zeros(len(active))
        rtol = _forcing(f_now, f_prev[act], opts.krylov_rtol)
        f_prev[act] = f_now
        # an update needs no more relative accuracy than makes its error a hundredth of the
        # tolerance Newton converges to: judged on the update's own size as BiCGSTAB goes
        enough = (0.01 * opts.reltol * vscale[act], FORCING_MAX)
        dv, method = _step(plan, jac, f, lin, tile_pos[active], opts, rtol, enough)
        methods.add(method)
        ok_step = xp.isfinite(dv).all(axis=1)
        if not bool(ok_step.all()):
            dv = xp.nan_to_num(dv)
        alpha = _limit(plan, sub, v[act], dv, tile_idx[active], opts)
        if not bool((alpha == 1.0).all()):
            dv *= alpha[:, None]
        step[act] = _absmax(dv, axis=1) if nf else 0.0
        v_old = v[act, :nf]
        v_new = v_old + dv
        bound = xp.abs(v_new)  # in place: (S, nf) arrays are large
        xp.maximum(bound, xp.abs(v_old), out=bound)
        bound *= opts.reltol
        bound += opts.vntol
        v_ok = (xp.abs(dv) <= bound).all(axis=1) & ok_step
        del bound
        full = xp.concatenate([dv, xp.zeros((len(active), plan.n_fixed))], axis=1)
        i_pred = xp.take(full, plan.a[nr:], axis=1)
        i_pred *= bv.p
        i_pred += bv.i
        other = xp.take(full, plan.b[nr:], axis=1)
        other *= bv.q
        i_pred += other
        del other, full
        v[act, :nf] = v_new
        prev = (v_ok, alpha < 1.0, i_pred)
        # Systems whose step failed outright (singular, NaN) stop here and go to the fallbacks.
        ok_host = host(ok_step)
        if not ok_host.all():
            keep_d = xp.asarray(ok_host)
            prev = tuple(x[keep_d] for x in prev)
            active = active[ok_host]
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
        Tightest inner tolerance (see :func:`_forcing`; loosened for small updates) and
        iteration cap of BiCGSTAB.
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
    bk = _backend(plan)
    xp = bk.xp
    models = group_models(plan, tile_idx)
    tiles, tile_pos = np.unique(tile_idx, return_inverse=True)
    first = np.array([np.flatnonzero(tile_pos == k)[0] for k in range(len(tiles))])
    lin = linearised(plan, tiles, _take_rows(models, first), opts.solver)
    S, nf = len(vk), plan.n_free
    v0 = xp.zeros((S, nf + plan.n_fixed))
    v0[:, nf:] = vk
    v0[:, :nf] = lin.initial(vk, tile_pos)
    # The warm start, seen as one step from 0 V, is limited like any other step.
    v_zero = xp.zeros_like(v0)
    v_zero[:, nf:] = vk
    alpha = _limit(plan, models, v_zero, v0[:, :nf], tile_idx, opts)
    v0[:, :nf] *= alpha[:, None]
    krylov = lin if opts.mode == "newton-krylov" else None
    net = ResistorNetwork(plan, tiles)
    v, its, done, methods, step = _newton(plan, v0, vk, tile_idx, models, krylov, tile_pos, opts,
                                          net)
    total = its.copy()
    state = (plan, vk, tile_idx, models, krylov, tile_pos, opts, total, done, methods, step, net)
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
    scale = bk.to_host(xp.abs(vk).max(axis=1)) if vk.shape[1] else np.ones(S)
    step = bk.to_host(step)
    error = np.where(np.isfinite(step), step, np.inf) / np.where(scale > 0, scale, 1.0)
    error[~done] = np.inf
    error[done & (step == np.inf)] = 0.0  # converged without any step (nothing to solve)
    return NewtonResult(v, np.maximum(total, 1), why, error,
                        "+".join(sorted(methods)) or "newton", models)


def _subset(idx, models, tile_idx, tile_pos):
    return _take_rows(models, idx), tile_idx[idx], tile_pos[idx]


def _gmin_stepping(v, plan, vk, tile_idx, models, lin, tile_pos, opts, total, done, methods,
                   step, net):
    """gmin from 1e-3 S down by decades to 0; a system succeeds when the gmin = 0 stage does."""
    xp, _ = plan.modules()
    idx = np.flatnonzero(~done)
    methods.add("gmin-stepping")
    sub_models, sub_tiles, sub_pos = _subset(idx, models, tile_idx, tile_pos)
    vs = v[xp.asarray(idx)].copy()
    alive = np.ones(len(idx), dtype=bool)
    finished = np.zeros(len(idx), dtype=bool)
    for gmin in [10.0**-k for k in range(3, 13)] + [0.0]:
        live = np.flatnonzero(alive)
        if not len(live) or opts.clock.expired:
            break
        m_live = _take_rows(sub_models, live)
        v_new, its, ok, _, last = _newton(plan, vs[xp.asarray(live)], vk[xp.asarray(idx[live])],
                                          sub_tiles[live], m_live, lin, sub_pos[live], opts,
                                          net, gmin=gmin)
        total[idx[live]] += np.where(ok, its, opts.max_iter)
        step[xp.asarray(idx[live])] = last
        vs[xp.asarray(live[ok])] = v_new[xp.asarray(ok)]
        alive[live[~ok]] = False
        finished[live[ok]] = gmin == 0.0
    v[xp.asarray(idx[finished])] = vs[xp.asarray(finished)]
    done[idx[finished]] = True
    return v


def _source_stepping(v, plan, vk, tile_idx, models, lin, tile_pos, opts, total, done, methods,
                     step, net):
    """Ramp the fixed voltages from 0 to their values; halve the step on failure."""
    xp, _ = plan.modules()
    idx = np.flatnonzero(~done)
    methods.add("source-stepping")
    sub_models, sub_tiles, sub_pos = _subset(idx, models, tile_idx, tile_pos)
    n = len(idx)
    level = np.zeros(n)
    ramp = np.full(n, 0.1)
    vs = xp.zeros((n, v.shape[1]))
    alive = np.ones(n, dtype=bool)
    for _ in range(400):  # bounded: each pass either advances or halves every live step
        live = np.flatnonzero(alive & (level < 1.0))
        if not len(live) or opts.clock.expired:
            break
        target = np.minimum(level[live] + ramp[live], 1.0)
        vk_t = xp.asarray(target)[:, None] * vk[xp.asarray(idx[live])]
        v_new, its, ok, _, last = _newton(plan, vs[xp.asarray(live)], vk_t, sub_tiles[live],
                                          _take_rows(sub_models, live), lin, sub_pos[live], opts,
                                          net)
        total[idx[live]] += np.where(ok, its, opts.max_iter)
        step[xp.asarray(idx[live])] = last
        good, bad = live[ok], live[~ok]
        vs[xp.asarray(good)] = v_new[xp.asarray(ok)]
        level[good] = target[ok]
        ramp[good] = np.minimum(ramp[good] * 1.5, 0.5)
        ramp[bad] /= 2.0
        alive[bad[ramp[bad] < 1e-4]] = False
    win = alive & (level >= 1.0)
    v[xp.asarray(idx[win])] = vs[xp.asarray(win)]
    done[idx[win]] = True
    return v
