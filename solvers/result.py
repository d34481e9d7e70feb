"""The result every solver returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import array_module

__all__ = ["SolveResult", "backward_error"]


@dataclass(frozen=True)
class SolveResult:
    """Solution of ``A x = b`` with its diagnostics.

    Attributes
    ----------
    x : ndarray, shape (N,) or (N, K)
        The solution, shaped like ``b``.
    converged : bool
        Whether every right-hand side met the solver's tolerance.
    iterations : int
        Krylov iterations (the most over the right-hand sides); 1 for direct solvers.
    residual : ndarray, shape () or (K,)
        Relative residual ``||b - A x|| / ||b||`` (2-norm) of each right-hand side
        (0 where ``b`` is 0 and so is the residual).
    method : str
        The solver that produced ``x``.
    """

    x: np.ndarray
    converged: bool
    iterations: int
    residual: np.ndarray
    method: str


def backward_error(A, x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Relative residual ``||b - A x||_2 / ||b||_2`` per column (a safe 0/0 -> 0); numpy or
    cupy arrays (the module of ``b``)."""
    xp = _module(b)
    r = b - A @ x
    num = xp.linalg.norm(r, axis=0)
    den = xp.linalg.norm(b, axis=0)
    if xp is np:
        return np.divide(num, den, out=np.where(num > 0, np.inf, 0.0), where=den > 0)
    return xp.where(den > 0, num / xp.where(den > 0, den, 1.0), xp.where(num > 0, np.inf, 0.0))


def _module(x):
    """The array module of ``x`` (cupy for a cupy array; never imports cupy otherwise)."""
    return array_module(x)
