"""Exact IR-drop compensation: conductances whose real circuit computes the intended map.

For a linear tile the transfer matrix ``T(g)`` (``n x m``, ``i_out = T v_in``) is a smooth map of
the ``m n`` programmed conductances. :func:`compensate` solves ``T(g) = target`` for ``g`` in the
device range ``[g_min, g_max]`` by projected Gauss-Newton on the exact Jacobian:

- one *extraction* solves the tile for the ``m`` unit inputs and the ``n`` unit adjoints (all
  with one factorisation): it gives ``T`` and the voltage ``u_i(c)`` across every cell ``c`` for
  input ``i`` and ``w_j(c)`` for adjoint ``j``, and the Jacobian is exactly
  ``dT[j, i] / dg_c = u_i(c) w_j(c)`` (the adjoint formula of :mod:`circuitsim.adjoint`), so
  products with it and its transpose are two dense matrix products;
- each step solves the linearised least-squares problem ``min |J dg - (target - T)|`` over the
  cells that are not held at a bound (a cell at ``g_min`` or ``g_max`` whose gradient points out
  of the range is held), by LSQR with the columns scaled by the Jacobian's diagonal, then clips
  to the range; a step that does not lower ``|target - T|`` is halved;
- where the target is reachable this is Newton's method on a square system and converges
  quadratically: a few extractions reach round-off. Where it is not, it stops at the bounded
  least-squares point and reports the cells at a bound; steps that do not lower the error are
  damped (Levenberg-Marquardt, LSQR's ``damp``);
- with ``gain="column"`` a digital gain per bit line joins the unknowns (``gain[:, None] * T =
  target``): the column calibration of the read-out, fitted jointly with the programming.

Nonlinear and 1T1R tiles have no transfer matrix; they are matched on given input vectors
(``v_in``): the outputs ``i_out(g)`` for those inputs should equal ``target`` (by default the
ideal crossbar's, ``(v_in - v_sense) @ g``). The same Gauss-Newton runs with the Jacobian applied
through tangent and adjoint solves at each converged Newton point (the Jacobians factored once
per point).

Memory: the linear path holds ``(m + n) m n`` cell voltages (256 x 256: 270 MB).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla

from circuitsim.netlist import Tile, as_float_array, check_finite

from ._internals import tile_plans
from .adjoint import OperatingPoint, _check_newton, transfer_shaped
from .linearised import Linearisation
from .tangent import direction

__all__ = ["Compensation", "compensate"]


@dataclass(frozen=True)
class Compensation:
    """The result of :func:`compensate`.

    Per-tile fields are arrays ``(B,)`` for a batched tile, scalars otherwise.

    Attributes
    ----------
    g : ndarray, the shape of ``tile.g`` as given
        Programmed conductances (S), within ``[g_min, g_max]``.
    tile : Tile
        The tile with ``g`` programmed (everything else as given).
    target : ndarray
        What was matched: the transfer matrix ``(n, m)`` (linear tiles without ``v_in``) or the
        output currents for ``v_in``, shapes as in :func:`circuitsim.transfer_matrix` and
        :func:`circuitsim.solve`.
    error_before, error_after : float or ndarray
        Worst relative error ``max|X - target| / max|target|`` of the plain mapping (``g`` =
        ``target.T`` clipped to the range for a transfer-matrix target, the tile's own ``g``
        clipped for an input target) and of the compensated tile.
    rms_before, rms_after : float or ndarray
        Relative root-mean-square error ``|X - target| / |target|`` (Frobenius), the quantity
        minimised: on an unreachable target the least-squares point can have a larger worst
        error than the plain mapping (the cells that bind get more IR drop once the others are
        matched), but never a larger rms error.
    iterations : int or ndarray
        Gauss-Newton steps taken.
    extractions : int or ndarray
        Evaluations of the circuit: transfer-matrix extractions (each ``m + n`` solves with one
        factorisation), or forward solves of the inputs.
    converged : bool or ndarray
        Whether ``error_after <= tol``.
    at_lower, at_upper : ndarray of bool, the shape of ``g``
        Cells at ``g_min`` / ``g_max``: with ``converged`` False, the cells the range keeps from
        the target.
    gain : ndarray, (n,) or (B, n), or None
        With ``gain="column"``: the digital gain of each bit line (multiply ``i_out`` by it);
        the errors are those of ``gain[:, None] * T``.
    history : tuple of ndarray
        Per tile, the error after each accepted step (the first entry is ``error_before``).
    """

    g: np.ndarray
    tile: Tile
    target: np.ndarray
    error_before: float | np.ndarray
    error_after: float | np.ndarray
    rms_before: float | np.ndarray
    rms_after: float | np.ndarray
    iterations: int | np.ndarray
    extractions: int | np.ndarray
    converged: bool | np.ndarray
    at_lower: np.ndarray
    at_upper: np.ndarray
    history: tuple
    gain: np.ndarray | None = None


def compensate(tile: Tile, target=None, *, g_min=0.0, g_max=np.inf, v_in=None,
               gain: str | None = None, tol=None, max_iter: int = 20, solver: str = "direct",
               reltol: float = 1e-12, abstol: float = 1e-18, **newton_options) -> Compensation:
    """Programmed conductances in ``[g_min, g_max]`` whose exact circuit matches ``target``.

    Parameters
    ----------
    tile : Tile
        The tile as it is (wires, drivers, devices); its ``g`` is the ideal weight map.
    target : array_like, optional
        Without ``v_in`` (linear tiles): the transfer matrix to reach, ``(n, m)`` or ``(B, n, m)``;
        default the ideal crossbar's ``g.T``. With ``v_in``: the output currents for those
        inputs, the shape of ``solve(tile, v_in).i_out``; default ``(v_in - v_sense) @ g``.
    g_min, g_max : float or array_like
        Device range (S): scalars or per cell, broadcastable to ``tile.g``; ``0 <= g_min <
        g_max``, ``g_max`` may be ``inf``.
    v_in : array_like, optional
        Input vectors to match on, as for :func:`circuitsim.solve`; required for nonlinear and
        1T1R tiles.
    gain : {None, "column"}
        ``"column"`` (transfer-matrix targets): each bit line's output also passes through a
        digital gain, fitted together with the conductances, so the match is of
        ``gain[:, None] * T`` (the ADC-side column calibration, but jointly with the
        programming). Where the wires make the target unreachable this scales the currents
        down to what the word lines can deliver.
    tol : float, optional
        Stop when the worst relative error is at most this; default ``1e-12`` for a transfer
        matrix, ``1e-10`` on inputs.
    max_iter : int
        Gauss-Newton steps at most (per tile).
    solver : str
        ``"direct"``, ``"superlu"`` or ``"cholmod"``.
    reltol, abstol, **newton_options
        Solve tolerances (tight by default: the match is only as exact as the solves) and, for
        nonlinear tiles, Newton options, as for :func:`circuitsim.solve`.

    Returns
    -------
    Compensation

    Examples
    --------
    Two cells on one word line with 10 ohm wires: the far cell sees less voltage, so it is
    programmed higher.

    >>> import numpy as np, circuitsim as cs
    >>> tile = cs.crossbar([[1e-3, 1e-3]], r_wl=10.0)
    >>> comp = cs.compensate(tile, g_min=1e-6, g_max=1e-2)
    >>> bool(comp.converged), bool(comp.g[0, 1] > comp.g[0, 0] > 1e-3)
    (True, True)
    >>> print(np.abs(cs.transfer_matrix(comp.tile) - tile.g[0].T).max() < 1e-17)
    True
    """
    _check_newton(newton_options)
    if solver not in ("direct", "superlu", "cholmod"):
        raise ValueError(f"solver must be 'direct', 'superlu' or 'cholmod', got {solver!r}")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 0):
        raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")
    lo, hi = _bounds(tile, g_min, g_max)
    on_inputs = v_in is not None
    if not on_inputs and not tile.is_linear:
        raise ValueError("compensate: a nonlinear or 1T1R tile has no transfer matrix; pass the "
                         "input vectors to match on as v_in")
    if gain not in (None, "column"):
        raise ValueError(f"gain must be None or 'column', got {gain!r}")
    if gain is not None and on_inputs:
        raise ValueError("gain='column' applies to transfer-matrix targets (no v_in)")
    if tol is None:
        tol = 1e-10 if on_inputs else 1e-12
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be finite and >= 0, got {tol!r}")
    opts = {"solver": solver, "reltol": reltol, "abstol": abstol,
            "newton_options": newton_options}
    if on_inputs:
        v = tile.check_inputs(v_in)
        target_b, target_out = _input_target(tile, np.asarray(v_in), v, target)
    else:
        target_b, target_out = _transfer_target(tile, target)
    results = []
    for b in range(tile.batch):
        sub = _subtile(tile, b)
        if on_inputs:
            results.append(_on_inputs(sub, v[b], target_b[b], lo[b], hi[b], tol, max_iter,
                                      opts))
        else:
            results.append(_on_transfer(sub, target_b[b], lo[b], hi[b], tol, max_iter, opts,
                                        gain))
    return _package(tile, results, target_out, lo, hi, tol, gain is not None)


# -- arguments ----------------------------------------------------------------------------------

def _bounds(tile: Tile, g_min, g_max):
    shape = tile.g.shape
    out = []
    for name, value in (("g_min", g_min), ("g_max", g_max)):
        arr = as_float_array(value, name)
        if np.isnan(arr).any() or (name == "g_min" and not np.isfinite(arr).all()):
            raise ValueError(f"{name} must be finite{' or inf' if name == 'g_max' else ''}, "
                             f"got {value!r}")
        try:
            arr = np.broadcast_to(arr if arr.ndim != 2 else arr[None], shape)
        except ValueError:
            raise ValueError(f"{name} has shape {arr.shape}, which does not broadcast to the "
                             f"cells {shape[1:]} or {shape}") from None
        out.append(arr)
    lo, hi = out
    if (lo < 0).any():
        raise ValueError(f"g_min must be >= 0, got {float(lo.min())!r}")
    if (hi <= lo).any():
        idx = tuple(int(k) for k in np.argwhere(hi <= lo)[0])
        raise ValueError(f"g_max must exceed g_min, got g_max = {hi[idx]!r} <= g_min = "
                         f"{lo[idx]!r} at cell {idx[1:]}")
    return lo, hi


def _transfer_target(tile: Tile, target):
    B, m, n = tile.g.shape
    if target is None:
        t = tile.g.transpose(0, 2, 1).copy()
        return t, (t if tile.batched else t[0])
    t = transfer_shaped(tile, target, "target")
    if not np.abs(t).max() > 0:
        raise ValueError("target is all zero: nothing to match")
    return t, t.reshape(((B,) if tile.batched else ()) + (n, m))


def _input_target(tile: Tile, v_arr, v, target):
    B, K = v.shape[:2]
    n = tile.n
    want = ((B,) if tile.batched else ()) + ((K,) if v_arr.ndim >= 2 else ()) + (n,)
    if target is None:
        # the ideal crossbar: every cell sees v_in[i] - v_sense[j]
        t = (np.einsum("bkm,bmn->bkn", v, tile.g)
             - tile.v_sense[:, None, :] * tile.g.sum(axis=1)[:, None, :])
    else:
        t = as_float_array(target, "target")
        if t.shape != want:
            raise ValueError(f"target has shape {t.shape}; expected {want}, the shape of i_out "
                             "for v_in")
        check_finite(t, "target")
        t = np.broadcast_to(t.reshape((B if tile.batched else 1, K, n)), (B, K, n))
    if not (np.abs(t).reshape(B, -1).max(axis=1) > 0).all():
        raise ValueError("target is all zero for a tile: nothing to match")
    return t, t.reshape(want)


def _take(model, b):
    if model is None or not hasattr(model, "take"):
        return model
    return model.take(np.array([b]))


def _subtile(tile: Tile, b: int) -> Tile:
    """Tile ``b`` of a batch as an unbatched tile."""
    return dataclasses.replace(
        tile, g=tile.g[b : b + 1], r_wl=tile.r_wl[b : b + 1], r_bl=tile.r_bl[b : b + 1],
        r_source=tile.r_source[b : b + 1], r_sense=tile.r_sense[b : b + 1],
        v_sense=tile.v_sense[b : b + 1],
        v_gate=None if tile.v_gate is None else tile.v_gate[b : b + 1],
        device=_take(tile.device, b), access=_take(tile.access, b), batched=False)


# -- the solver ---------------------------------------------------------------------------------

@dataclass
class _Result:
    g: np.ndarray
    history: list
    rms: tuple
    iterations: int
    extractions: int
    gain: np.ndarray | None = None


class _Problem:
    """What one Gauss-Newton run needs from a parametrisation: evaluate at ``g`` (the residual
    ``target - X`` and the operators of the Jacobian there)."""

    def evaluate(self, g):  # returns (residual (rows,), matvec, rmatvec, scale (mn,))
        raise NotImplementedError


#: Stop when a step lowers ``|target - X|`` by less than this fraction.
STALL = 1e-6


def _gauss_newton(problem: _Problem, g0, lo, hi, target_scale, tol, max_iter) -> _Result:
    """Projected Gauss-Newton with Levenberg-Marquardt damping: a step that does not lower
    ``|target - X|`` is recomputed from the best point with a larger damping (no new
    extraction is needed for the step, one for its trial); a successful one lowers it."""
    g = np.clip(g0, lo, hi)
    history, iterations, extractions = [], 0, 0
    target_norm = None
    best = None
    damp = 0.0
    rejected = 0
    while True:
        r, matvec, rmatvec, scale = problem.evaluate(g)
        extractions += 1
        obj = float(np.linalg.norm(r))
        if target_norm is None:
            target_norm = float(np.linalg.norm(problem.target))
            rms_first = obj / target_norm
        err = float(np.abs(r).max() / target_scale)
        if best is not None and not obj < best[1]:
            rejected += 1
            if rejected > MAX_REJECTED or iterations >= max_iter:
                break  # no step lowers the error: at the bounded least-squares point
            damp = max(4.0 * damp, 1e-2)
            g = _trial(best, lo, hi, damp)
            iterations += 1
            continue
        previous = None if best is None else best[1]
        best = (g, obj, r, matvec, rmatvec, scale, err)
        history.append(err)
        rejected = 0
        if err <= tol or iterations >= max_iter:
            break
        if previous is not None and previous - obj <= STALL * previous:
            break  # stationary: the bounded least-squares point, or round-off
        damp = damp / 4.0 if damp > 1e-4 else 0.0
        g = _trial(best, lo, hi, damp)
        iterations += 1
    return _Result(best[0], history, (rms_first, best[1] / target_norm), iterations,
                   extractions)


#: Consecutive rejected steps (each with four times the damping) before giving up.
MAX_REJECTED = 4


def _trial(best, lo, hi, damp):
    g, _, r, matvec, rmatvec, scale, err = best
    step = _step(g, r, matvec, rmatvec, scale, lo, hi, eta=min(1e-2, 0.1 * err), damp=damp)
    return np.clip(g + step, lo, hi)


def _step(g, r, matvec, rmatvec, scale, lo, hi, eta, damp=0.0):
    """Gauss-Newton step over the cells not held at a bound: GMRES on Newton's system when none
    is held and there is no damping, else LSQR (damped by ``damp``); columns scaled by the
    Jacobian's diagonal."""
    grad = rmatvec(r)  # J^T r: the direction that lowers |r|
    free = ~(((g <= lo) & (grad < 0)) | ((g >= hi) & (grad > 0)))
    cols = np.flatnonzero(free)
    d = scale[cols]
    mn = len(g)

    def mv(y):
        dg = np.zeros(mn)
        dg[cols] = y / d
        return matvec(dg)

    def rmv(z):
        return rmatvec(z)[cols] / d

    op = spla.LinearOperator((len(r), len(cols)), matvec=mv, rmatvec=rmv, dtype=np.float64)
    tol = max(eta, 1e-15)
    if len(cols) == len(r) and damp == 0:  # square: Newton's system, GMRES needs J only
        y, _ = spla.gmres(op, r, rtol=tol, atol=0.0, restart=100, maxiter=4)
    else:
        y = spla.lsqr(op, r, damp=damp, atol=tol, btol=tol, iter_lim=200)[0]
    out = np.zeros(mn)
    out[cols] = y / d
    return out


def _safe_scale(s):
    s = np.abs(s)
    top = s.max() if s.size else 1.0
    return np.where(s > 1e-6 * top, s, 1e-6 * top if top > 0 else 1.0)


class _Transfer(_Problem):
    """``T(g) = target`` for one linear tile, the Jacobian from cell voltages."""

    def __init__(self, sub: Tile, target: np.ndarray, solver: str):
        self.sub, self.target, self.solver = sub, target, solver

    def fields(self, g):
        """Cell voltages ``(m, mn)`` for the unit inputs, ``(n, mn)`` for the unit adjoints
        (sense node at -1 V), and ``T`` ``(n, m)``."""
        sub = self.sub
        m, n = sub.m, sub.n
        mn, nk = m * n, m + n
        t = dataclasses.replace(sub, g=g.reshape(1, m, n))
        (plan,) = tile_plans(t)
        lin = Linearisation(plan, None, 0, linear=True, solver=self.solver)
        wl, bl = plan.node_map[:mn], plan.node_map[mn : 2 * mn]
        out = np.empty((nk, mn))
        step = max(1, min(nk, 4_000_000 // (plan.n_free + nk)))
        for k0 in range(0, nk, step):
            rows = np.arange(k0, min(k0 + step, nk))
            seeds = np.zeros((nk, len(rows)))
            seeds[rows, np.arange(len(rows))] = np.where(rows < m, 1.0, -1.0)
            x = lin.boundary_columns(seeds)
            out[rows] = (x[wl] - x[bl]).T
        dU, dW = out[:m], out[m:]
        # i_out[j] for unit input i: the cell currents of column j, summed (KCL on the bit line)
        T = np.einsum("iaj,aj->ji", dU.reshape(m, m, n), g.reshape(m, n))
        return dU, dW, T

    def evaluate(self, g):
        m, n = self.sub.m, self.sub.n
        dU, dW, T = self.fields(g)
        r = (self.target - T).ravel()
        dUt = np.ascontiguousarray(dU.T)  # (mn, m): the product below is faster this way

        def matvec(dg):  # dT[j, i] = sum_c w_j(c) dg_c u_i(c)
            return (dW @ (dUt * dg[:, None])).ravel()

        def rmatvec(z):
            return ((z.reshape(n, m) @ dU) * dW).sum(axis=0)

        # the diagonal dT[j, i] / dg_(i, j) = u_i(i, j) w_j(i, j) scales the columns
        u = dU.reshape(m, m, n)[np.arange(m), np.arange(m)]  # (m, n): u_i at cells of row i
        w = dW.reshape(n, m, n)[np.arange(n), :, np.arange(n)].T  # (m, n): w_j at column j
        return r, matvec, rmatvec, _safe_scale((u * w).ravel())


class _TransferGain(_Transfer):
    """``gain[:, None] * T(g) = target``: unknowns ``[g, gain]``, ``m n + n`` of them."""

    def evaluate(self, x):
        m, n = self.sub.m, self.sub.n
        mn = m * n
        g, a = x[:mn], x[mn:]
        dU, dW, T = self.fields(g)
        r = (self.target - a[:, None] * T).ravel()
        dUt = np.ascontiguousarray(dU.T)

        def matvec(dx):
            dT = dW @ (dUt * dx[:mn, None])
            return (a[:, None] * dT + dx[mn:, None] * T).ravel()

        def rmatvec(z):
            Z = z.reshape(n, m)
            return np.concatenate([(((a[:, None] * Z) @ dU) * dW).sum(axis=0),
                                   (Z * T).sum(axis=1)])

        u = dU.reshape(m, m, n)[np.arange(m), np.arange(m)]
        w = dW.reshape(n, m, n)[np.arange(n), :, np.arange(n)].T
        scale = np.concatenate([_safe_scale((u * w * a[None, :]).ravel()),
                                _safe_scale(np.linalg.norm(T, axis=1))])
        return r, matvec, rmatvec, scale


class _Inputs(_Problem):
    """``i_out(g; v_in) = target`` for one tile, the Jacobian through tangent and adjoint
    solves at each converged Newton point."""

    def __init__(self, sub: Tile, v: np.ndarray, target: np.ndarray, opts: dict):
        self.sub, self.v, self.target, self.opts = sub, v, target, opts
        # ideal-crossbar column scale: d i_out[k, j] / d g_(i, j) ~ v[k, i]
        col = np.linalg.norm(v, axis=0)
        self.scale = _safe_scale(np.repeat(col, sub.n))

    def evaluate(self, g):
        sub, opts = self.sub, self.opts
        m, n = sub.m, sub.n
        K = len(self.v)
        t = dataclasses.replace(sub, g=g.reshape(1, m, n))
        point = OperatingPoint(t, self.v, solver=opts["solver"], reltol=opts["reltol"],
                               abstol=opts["abstol"], newton_options=opts["newton_options"],
                               mode="direct")
        r = (self.target - point.solution.i_out).ravel()
        base = direction(t, self.v, point.v, {})

        def matvec(dg):
            direction = dict(base, device=dg.reshape(1, m * n))
            return -point.tangent(direction)[0, :, m:].ravel()

        def rmatvec(z):
            acc, _ = point.adjoint(z.reshape(1, K, n))
            return acc["device"][0]

        return r, matvec, rmatvec, self.scale


def _on_transfer(sub, target, lo, hi, tol, max_iter, opts, gain=None) -> _Result:
    scale = np.abs(target).max()
    g0, lo, hi = target.T.ravel(), lo.ravel(), hi.ravel()
    if gain is None:
        return _gauss_newton(_Transfer(sub, target, opts["solver"]), g0, lo, hi, scale, tol,
                             max_iter)
    n, mn = sub.n, sub.m * sub.n
    res = _gauss_newton(_TransferGain(sub, target, opts["solver"]),
                        np.concatenate([np.clip(g0, lo, hi), np.ones(n)]),
                        np.concatenate([lo, np.zeros(n)]), np.concatenate([hi, np.full(n, np.inf)]),
                        scale, tol, max_iter)
    res.gain = res.g[mn:]
    res.g = res.g[:mn]
    return res


def _on_inputs(sub, v, target, lo, hi, tol, max_iter, opts) -> _Result:
    problem = _Inputs(sub, v, target, opts)
    scale = np.abs(target).max()
    return _gauss_newton(problem, sub.g[0].ravel(), lo.ravel(), hi.ravel(), scale, tol,
                         max_iter)


def _package(tile: Tile, results, target_out, lo, hi, tol, with_gain=False) -> Compensation:
    m, n = tile.m, tile.n
    g = np.stack([r.g.reshape(m, n) for r in results])
    new = dataclasses.replace(tile, g=np.ascontiguousarray(g))

    def per_tile(values, dtype=None):
        arr = np.array(values, dtype=dtype)
        return arr if tile.batched else arr[0].item()

    after = [r.history[-1] for r in results]
    out_g = g if tile.batched else g[0]
    return Compensation(
        g=out_g,
        tile=new,
        target=target_out,
        error_before=per_tile([r.history[0] for r in results]),
        error_after=per_tile(after),
        rms_before=per_tile([r.rms[0] for r in results]),
        rms_after=per_tile([r.rms[1] for r in results]),
        iterations=per_tile([r.iterations for r in results]),
        extractions=per_tile([r.extractions for r in results]),
        converged=per_tile([a <= tol for a in after], dtype=bool),
        at_lower=(g <= lo) if tile.batched else (g <= lo)[0],
        at_upper=(g >= hi) if tile.batched else (g >= hi)[0],
        history=tuple(np.array(r.history) for r in results),
        gain=(None if not with_gain else np.stack([r.gain for r in results]) if tile.batched
              else results[0].gain),
    )
