"""Preconditioned conjugate gradients for many right-hand sides at once.

All columns of ``b`` advance together (one sparse matrix product per iteration for all of them);
each column has its own step lengths and stops updating once it meets its tolerance.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .result import SolveResult, _module, backward_error

__all__ = ["cg", "jacobi"]


def jacobi(A):
    """The Jacobi (diagonal) preconditioner of ``A`` as a callable on ``(N,)`` or ``(N, K)``."""
    d = (A if hasattr(A, "diagonal") else sp.csr_matrix(A)).diagonal()
    if bool((d <= 0).any()):
        raise ValueError("Jacobi preconditioner needs a positive diagonal")
    inv = 1.0 / d

    def apply(r):
        return r * (inv if r.ndim == 1 else inv[:, None])

    return apply


def cg(A, b, *, x0=None, rtol: float = 1e-10, atol: float = 0.0, maxiter: int | None = None,
       M=None, **_ignored) -> SolveResult:
    """Solve ``A x = b`` for symmetric positive definite ``A`` by preconditioned CG.

    Parameters follow ``scipy.sparse.linalg.cg``: a column stops when ``||r|| <= max(rtol ||b||,
    atol)``. ``M`` is a callable applying the preconditioner (default: :func:`jacobi`).
    ``maxiter`` defaults to ``10 N``. Columns that do not meet the tolerance leave
    ``converged`` False; nothing is raised here.
    """
    xp = _module(b)
    b = xp.asarray(b, dtype=np.float64)
    B = b[:, None] if b.ndim == 1 else b
    n = B.shape[0]
    maxiter = 10 * n if maxiter is None else maxiter
    M = jacobi(A) if M is None else M
    X = xp.zeros_like(B) if x0 is None else xp.array(x0, dtype=np.float64).reshape(B.shape)
    R = B - A @ X
    target = xp.maximum(rtol * xp.linalg.norm(B, axis=0), atol)
    active = xp.linalg.norm(R, axis=0) > target
    Z = M(R)
    P = Z.copy()
    rz = xp.einsum("ij,ij->j", R, Z)
    it = 0
    while bool(active.any()) and it < maxiter:
        it += 1
        AP = A @ P
        pap = xp.einsum("ij,ij->j", P, AP)
        alpha = xp.where(active, rz / xp.where(active, pap, 1.0), 0.0)
        X += alpha * P
        R -= alpha * AP
        active &= xp.linalg.norm(R, axis=0) > target
        Z = M(R)
        rz_new = xp.einsum("ij,ij->j", R, Z)
        beta = xp.where(active, rz_new / xp.where(active, rz, 1.0), 0.0)
        P = Z + beta * P
        rz = rz_new
    x = X[:, 0] if b.ndim == 1 else X
    res = backward_error(A, x, b)
    return SolveResult(x, not bool(active.any()), it, res, "cg")
