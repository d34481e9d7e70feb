"""Sparse direct solvers: SuperLU (always there) and CHOLMOD (scikit-sparse, symmetric only).

``analyze(A)`` does what can be shared between matrices of one sparsity pattern (CHOLMOD's
fill-reducing ordering and symbolic factorisation) and returns an :class:`Analysis`; its
``factorize(A)`` gives a :class:`Factor` whose ``solve(b)`` takes many right-hand sides at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .result import SolveResult, backward_error

__all__ = [
    "Analysis",
    "Factor",
    "analyze",
    "cholmod_available",
    "factorize",
    "schur_complement",
    "solve_direct",
]

try:  # optional: CHOLMOD through scikit-sparse (pip extra "cholmod")
    from sksparse import cholmod as _cholmod
except ImportError:  # pragma: no cover - depends on the installation
    _cholmod = None

_DIRECT = ("auto", "superlu", "cholmod")


def cholmod_available() -> bool:
    """True when scikit-sparse's CHOLMOD can be imported."""
    return _cholmod is not None


def column_major(b: np.ndarray) -> np.ndarray:
    """``b`` in column-major order, as CHOLMOD takes right-hand sides (it copies any other).

    A C-ordered ``(n, k)`` array is transposed in blocks of rows of about 32 KiB, each a
    vectorized copy: numpy's own copy of a tall, narrow array to column-major order walks the
    output with a stride and is several times slower (32768 x 64: 14.8 ms against 1.9 ms here),
    and CHOLMOD's conversion costs as much.
    """
    if b.ndim != 2 or b.flags.f_contiguous or not b.flags.c_contiguous:
        return b
    n, k = b.shape
    out = np.empty((k, n), dtype=b.dtype)
    step = max(8, 4096 // k)  # rows per block
    for r0 in range(0, n, step):  # blocks of rows, not single rows or nodes
        out[:, r0 : r0 + step] = b[r0 : r0 + step].T
    return out.T


@dataclass(frozen=True)
class Factor:
    """A factorisation of one matrix; ``solve(b)`` accepts ``(N,)`` or ``(N, K)`` and returns
    a C-ordered array (the sparse products that follow want it so; CHOLMOD's own result is
    column-major)."""

    method: str
    _solve: Any

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self._solve(b)


@dataclass(frozen=True)
class Analysis:
    """What factorisations of one sparsity pattern share (CHOLMOD's symbolic analysis, or
    SuperLU's column ordering)."""

    method: str
    _symbolic: Any = None

    def factorize(self, A) -> Factor:
        A = sp.csc_matrix(A)
        if self.method == "cholmod":
            try:
                numeric = self._symbolic.cholesky(A)
            except _cholmod.CholmodNotPositiveDefiniteError as exc:
                raise np.linalg.LinAlgError(f"matrix is not positive definite: {exc}") from None
            return Factor("cholmod", lambda b, numeric=numeric: np.ascontiguousarray(
                numeric(column_major(b))))
        lu = spla.splu(A, permc_spec=self._symbolic)
        return Factor("superlu", lu.solve)


def _pick(method: str, symmetric: bool) -> str:
    if method not in _DIRECT:
        raise ValueError(f"unknown direct method {method!r}; valid: {', '.join(_DIRECT)}")
    if method == "cholmod":
        if _cholmod is None:
            raise ImportError("method 'cholmod' needs scikit-sparse: pip install 'circuitsim[cholmod]'")
        if not symmetric:
            raise ValueError("method 'cholmod' is for symmetric positive definite matrices only")
    if method == "auto":
        return "cholmod" if symmetric and _cholmod is not None else "superlu"
    return method


def analyze(A, method: str = "auto", *, symmetric: bool = False, natural: bool = False,
            mode: str = "auto") -> Analysis:
    """Analyse the sparsity pattern of ``A`` once for later factorisations.

    ``symmetric`` must be True to use CHOLMOD (CHOLMOD reads one triangle only and gives wrong
    answers for nonsymmetric matrices without warning, so it is never chosen otherwise).
    ``natural`` keeps the given order of the unknowns (the caller ordered them already);
    otherwise CHOLMOD picks a fill-reducing ordering (AMD/METIS) and SuperLU uses COLAMD.
    ``mode`` is CHOLMOD's ``"simplicial"``, ``"supernodal"`` or ``"auto"``.
    """
    method = _pick(method, symmetric)
    if method == "cholmod":
        ordering = "natural" if natural else "default"
        symbolic = _cholmod.analyze(sp.csc_matrix(A), mode=mode, ordering_method=ordering)
        return Analysis("cholmod", symbolic)
    return Analysis("superlu", "NATURAL" if natural else "COLAMD")


def factorize(A, method: str = "auto", *, symmetric: bool = False, natural: bool = False,
              mode: str = "auto") -> Factor:
    """Factor ``A`` (see :func:`analyze` for the options)."""
    return analyze(A, method, symmetric=symmetric, natural=natural, mode=mode).factorize(A)


def solve_direct(A, b, method: str = "auto", *, symmetric: bool = False, rtol: float = 1e-10,
                 **_ignored) -> SolveResult:
    """Solve ``A x = b`` by a sparse direct factorisation; all columns of ``b`` share it.

    ``converged`` is False (not an exception) when the relative residual exceeds ``rtol``, so the
    caller decides; a singular matrix raises ``numpy.linalg.LinAlgError``.
    """
    b = np.asarray(b, dtype=np.float64)
    try:
        factor = factorize(A, method, symmetric=symmetric)
    except RuntimeError as exc:  # SuperLU: "Factor is exactly singular"
        raise np.linalg.LinAlgError(str(exc)) from None
    x = factor.solve(b)
    res = backward_error(A, x, b)
    return SolveResult(x, bool(np.all(res <= rtol)), 1, res, factor.method)


def schur_complement(A, k: int, *, symmetric: bool = False, with_solve: bool = False,
                     analysis: Analysis | None = None, lower: bool = False):
    """Dense Schur complement of ``A`` onto its last ``k`` unknowns: ``A_bb - A_bi A_ii^-1 A_ib``.

    Its inverse is the block of ``A^-1`` on those unknowns. For a symmetric positive definite
    ``A`` with CHOLMOD, one factorisation in the given order yields it: with
    ``A = L L^T`` and the last ``k`` unknowns last, the trailing block is ``L_bb L_bb^T``.
    Order the other unknowns for low fill first (the trailing ``k`` become a dense block).
    Otherwise SuperLU factors ``A_ii`` and solves ``k`` right-hand sides.

    With ``with_solve``, returns ``(S, solve)`` where ``solve(b)`` solves ``A x = b`` with the
    same factorisation (None on the SuperLU path, which never factors all of ``A``). ``analysis``:
    a CHOLMOD symbolic analysis of ``A``'s pattern in its given order (:func:`analyze` with
    ``natural=True``), reused instead of analysing again. With ``lower`` (CHOLMOD only), the
    trailing Cholesky block ``L_bb`` is returned in place of ``S = L_bb L_bb^T``.
    """
    A = sp.csc_matrix(A)
    n = A.shape[0]
    if not 0 < k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    nb = n - k
    if symmetric and _cholmod is not None:
        try:
            if analysis is not None and analysis.method == "cholmod":
                factor = analysis._symbolic.cholesky(A)
            else:
                factor = _cholmod.cholesky(A, mode="simplicial", ordering_method="natural")
        except _cholmod.CholmodNotPositiveDefiniteError as exc:
            raise np.linalg.LinAlgError(f"matrix is not positive definite: {exc}") from None
        L_bb = factor.L()[nb:, nb:].toarray()  # L L^T form: far cheaper to read than L_D()
        S = L_bb if lower else L_bb @ L_bb.T
        return (S, factor) if with_solve else S
    A_bb = A[nb:, nb:].toarray()
    if nb == 0:
        return (A_bb, None) if with_solve else A_bb
    A_ib = A[:nb, nb:].toarray()
    try:
        lu = spla.splu(A[:nb, :nb].tocsc(), permc_spec="COLAMD")
    except RuntimeError as exc:
        raise np.linalg.LinAlgError(str(exc)) from None
    S = A_bb - A[nb:, :nb] @ lu.solve(A_ib)
    return (S, None) if with_solve else S
