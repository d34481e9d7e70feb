"""BiCGSTAB for many systems at once, each with its own matrix (a block-diagonal operator).

Used by Newton-Krylov: every (tile, input) system has its own Jacobian, all share one sparsity
pattern and are preconditioned by the factorisation of their tile's linearised matrix. Vectors are
``(N, S)`` arrays, one column per system; every system has its own scalars and stops updating
once it meets its tolerance. The arrays may be numpy or cupy (the module of ``b`` is used).
"""

from __future__ import annotations

import numpy as np

from .backend import array_module

__all__ = ["bicgstab_many"]


def _dot(x, y):
    return array_module(x).einsum("ij,ij->j", x, y)


def _ratio(num, den, active):
    xp = array_module(num, den)
    return xp.where(active, num / xp.where(active & (den != 0), den, 1.0), 0.0)


def bicgstab_many(matvec, precond, b: np.ndarray, *, rtol, maxiter: int, size_tol=None):
    """Right-preconditioned BiCGSTAB on ``S`` systems ``A_s x_s = b_s``.

    Vectors are columns: ``(N, S)`` arrays, system ``s`` in column ``s`` (sparse products with
    many right-hand sides want them so).

    Parameters
    ----------
    matvec, precond : callable
        ``(N, S') -> (N, S')`` for the systems selected by a boolean mask ``(S,)``:
        ``matvec(x, mask)`` applies ``A_s``, ``precond(r, mask)`` applies ``M_s^{-1}``.
    b : ndarray, (N, S)
    rtol : float or ndarray, (S,)
        A system stops when ``||b - A x|| <= rtol ||b||``.
    maxiter : int
    size_tol : (ndarray (S,), float), optional
        ``(c, cap)``: a system may also stop once ``||b - A x|| <= min(cap, c / max|x|) ||b||``
        where that is looser than ``rtol``: a tolerance that grows as the solution shrinks,
        judged on each iterate. (Newton's update needs its error small against the tolerance
        on the node voltages, not against its own size; a small last update needs little
        relative accuracy.)

    Returns
    -------
    x : ndarray, (N, S)
    converged : ndarray of bool, (S,)
    iterations : int
    """
    xp = array_module(b)
    S = b.shape[1]
    x = xp.zeros_like(b)
    r = b.copy()
    r0 = b  # the shadow residual: never written (nor is b)
    b_norm = xp.sqrt(_dot(b, b))
    target = rtol * b_norm
    active = xp.sqrt(_dot(r, r)) > target
    rho = alpha = omega = xp.ones(S)
    # p and v are 0 before the first iteration, which sets p = r: only the columns of systems
    # active then are ever read, and the first iteration writes them
    v = xp.empty_like(b)
    p = None
    everyone = xp.ones(S, dtype=bool)
    it = 0
    while bool(active.any()) and it < maxiter:
        it += 1
        a = active
        every = bool(a.all())
        cols = slice(None) if every else a
        rho_new = _dot(r0, r)
        beta = _ratio(rho_new, rho, a) * _ratio(alpha, omega, a)
        # p = r + beta (p - omega v), in place where every system is active
        if p is None:
            p = r.copy()
        elif every:
            tmp = v * omega
            p -= tmp
            p *= beta
            p += r
        else:
            p[:, cols] = r[:, cols] + beta[cols] * (p[:, cols] - omega[cols] * v[:, cols])
        phat = precond(p[:, cols], a)
        v[:, cols] = matvec(phat, a)
        alpha = xp.where(a, _ratio(rho_new, _dot(r0, v), a), alpha)
        s = v[:, cols] * alpha[cols]
        xp.subtract(r[:, cols], s, out=s)
        shat = precond(s, a)
        t = matvec(shat, a)
        omega_a = _ratio(_dot(t, s), _dot(t, t), everyone if every else xp.ones(s.shape[1],
                                                                                  dtype=bool))
        phat *= alpha[cols]
        shat *= omega_a
        phat += shat
        t *= omega_a
        xp.subtract(s, t, out=s)  # s is now the new residual
        if every:
            x += phat
            r = s
        else:
            x[:, cols] += phat
            r[:, cols] = s
        omega = omega.copy()
        omega[cols] = omega_a
        rho = xp.where(a, rho_new, rho)
        res = xp.sqrt(_dot(r, r))
        if size_tol is not None:
            c, cap = size_tol
            size = xp.maximum(x.max(axis=0), -x.min(axis=0))
            with np.errstate(divide="ignore", invalid="ignore"):
                loose = xp.minimum(cap, xp.nan_to_num(c / size, nan=0.0, posinf=cap))
            target = xp.where(a, xp.maximum(rtol, loose) * b_norm, target)
        breakdown = a & ((omega == 0) | ~xp.isfinite(res))
        active = a & (res > target) & ~breakdown
    # The recursively updated residual can drift from the true one: judge by the true residual,
    # allowing it twice the target.
    final = matvec(x, everyone)
    xp.subtract(b, final, out=final)
    residual = xp.sqrt(_dot(final, final))
    converged = xp.isfinite(residual) & (residual <= 2.0 * target)
    return x, converged, it
