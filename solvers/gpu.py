"""Sparse direct factorisation on an NVIDIA GPU: cuDSS through nvmath-python, or cupyx's SuperLU.

Only the GPU path imports this module (``circuitsim.solvers`` does not), and it imports neither
cupy nor nvmath at import time: the providers take the array module from the matrices they are
given, and :func:`best_provider` imports nvmath when it is called.

**cuDSS** (:class:`CudssProvider`, ``nvmath.sparse.advanced.DirectSolver``). A solver object holds
its matrix, the symbolic analysis (``plan``: reordering and symbolic factorisation) and the
numeric factor. Factorisations with the same ``key`` (the caller's name for one sparsity pattern,
e.g. a plan's block-diagonal matrix of ``S`` tiles) reuse one solver object: the new values are
copied into its matrix in place and refactored, never analysed again (factor once, refactor
across Newton steps and chunks of tiles, reuse across input vectors). The right-hand side is a
column-major buffer of fixed width ``W`` owned by the solver (nvmath's ``reset_operands`` wants
the same shape): narrower requests are padded with zero columns, wider ones are solved ``W``
columns at a time. A newer factorisation under the same key makes older :class:`GpuFactor`
handles stale: using one raises instead of solving with the wrong matrix.

**SuperLU** (:class:`SpluProvider`, ``cupyx.scipy.sparse.linalg.splu``): the factorisation runs
on the host (SciPy's SuperLU), the triangular solves on the GPU (cuSPARSE). The fallback where
nvmath-python or its cuDSS library is absent.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from .arrays import array_module

__all__ = ["CudssProvider", "GpuFactor", "SpluProvider", "best_provider"]

#: cuDSS solver objects kept per cache (one cache per analysed plan): each holds a factor in GPU
#: memory, so only the most recently used few are kept.
SLOTS_PER_CACHE = 4

#: cuDSS status ALLOC_FAILED (cudssStatus_t).
_ALLOC_FAILED = 2


def _quiet_logger() -> logging.Logger:
    """A logger outside the logging hierarchy (nothing global is configured): nvmath logs every
    phase at INFO and warns about its optional threading library on every solver."""
    logger = logging.Logger("circuitsim.cudss", level=logging.ERROR)  # noqa: LOG001
    logger.addHandler(logging.NullHandler())
    return logger


class GpuFactor:
    """A factorisation on the GPU: ``solve(b)`` for ``b`` ``(N,)`` or ``(N, K)``."""

    def __init__(self, method: str, solve, check=None):
        self.method = method
        self._solve = solve
        self._check = check

    def solve(self, b):
        if self._check is not None:
            self._check()
        return self._solve(b)


class _Slot:
    """One cuDSS solver object: its matrix (values updated in place), RHS buffer and factor."""

    def __init__(self, nv, a, spd: bool, logger):
        self.nv, self.a, self.spd, self.logger = nv, a, spd, logger
        self._box = [None]  # the solver object, freed with this slot (nvmath wants free())
        weakref.finalize(self, _free_box, self._box)
        self.b = None
        self.width = 0
        self.generation = 0
        self.factored = False

    def _make(self, width: int, xp) -> None:
        """A solver whose right-hand side holds ``width`` columns, analysed (planned)."""
        self.free()
        nv = self.nv
        kind = nv.DirectSolverMatrixType.SPD if self.spd else nv.DirectSolverMatrixType.GENERAL
        options = nv.DirectSolverOptions(sparse_system_type=kind, logger=self.logger)
        self.b = xp.zeros((self.a.shape[0], width), order="F")
        self._box[0] = nv.DirectSolver(self.a, self.b, options=options)
        self.width = width
        with _alloc_errors("analysis"):
            self.solver.plan()
        self.factored = False

    def factorize(self, data) -> None:
        """New values (in the stored order of ``a``), refactored with the existing analysis."""
        self.a.data[...] = data
        self.generation += 1
        self.factored = False
        if self.solver is not None:
            self._factor()

    def _factor(self) -> None:
        with _alloc_errors("factorisation"):
            self.solver.factorize()
        info = int(self.solver.factorization_info.info)
        if info != 0:
            what = "not positive definite" if self.spd else "singular"
            raise np.linalg.LinAlgError(f"cuDSS: the matrix is {what} (info {info})")
        self.factored = True

    def solve(self, rhs):
        xp = array_module(rhs)
        one = rhs.ndim == 1
        r = rhs[:, None] if one else rhs
        w = r.shape[1]
        if self.solver is None or (w > self.width and self.width < _MAX_WIDTH):
            self._make(min(max(w, self.width), _MAX_WIDTH), xp)
        if not self.factored:
            self._factor()
        W = self.width
        out = xp.empty((r.shape[0], w))
        for c0 in range(0, w, W):
            part = r[:, c0 : c0 + W]
            k = part.shape[1]
            self.b[:, :k] = part
            if k < W:
                self.b[:, k:] = 0.0
            with _alloc_errors("solve"):
                x = self.solver.solve()
            out[:, c0 : c0 + k] = x[:, :k]
        return out[:, 0] if one else out

    @property
    def solver(self):
        return self._box[0]

    def free(self) -> None:
        _free_box(self._box)


def _free_box(box) -> None:
    if box[0] is not None:
        box[0].free()
        box[0] = None


#: Widest right-hand side a cuDSS solver object is made for (wider requests are split).
_MAX_WIDTH = 4096


class _alloc_errors:
    """Turn cuDSS's ALLOC_FAILED status into :class:`MemoryError` (the engine names the batch)."""

    def __init__(self, phase: str):
        self.phase = phase

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and getattr(exc, "status", None) == _ALLOC_FAILED:
            raise MemoryError(f"cuDSS {self.phase}: out of GPU memory ({exc})") from exc
        return False


def _int32(J):
    """``J`` with int32 index arrays (cuDSS takes no other)."""
    if J.indices.dtype == np.int32 and J.indptr.dtype == np.int32:
        return J
    return type(J)((J.data, J.indices.astype(np.int32), J.indptr.astype(np.int32)),
                   shape=J.shape)


class CudssProvider:
    """Direct factorisations by NVIDIA cuDSS (see the module docstring).

    ``advanced`` is the ``nvmath.sparse.advanced`` module (or an object with its
    ``DirectSolver``, ``DirectSolverOptions`` and ``DirectSolverMatrixType``).
    """

    name = "cudss"

    def __init__(self, advanced: Any):
        self.nv = advanced
        self.logger = _quiet_logger()
        self.oom_errors = ()

    def factorize(self, J, *, spd: bool, natural: bool = False, cache: dict | None = None,
                  key=None) -> GpuFactor:
        """Factor the CSR matrix ``J`` (a ``cupyx.scipy.sparse.csr_matrix`` with int32 indices).

        ``spd``: Cholesky for a symmetric positive definite ``J`` (raises
        ``numpy.linalg.LinAlgError`` when it is not), else LU with pivoting. ``cache`` and
        ``key``: where the solver object for this pattern is kept between calls (the caller
        guarantees that one key always means one sparsity pattern). ``natural`` is accepted for
        the providers' common signature; cuDSS always reorders.
        """
        del natural
        J = _int32(J)
        slots = cache.setdefault(("cudss-slots",), OrderedDict()) if cache is not None else None
        full_key = (key, J.shape, J.nnz, spd)
        slot = slots.get(full_key) if slots is not None else None
        if slot is None:
            slot = _Slot(self.nv, J.copy(), spd, self.logger)
            if slots is not None:
                slots[full_key] = slot
                while len(slots) > SLOTS_PER_CACHE:
                    slots.popitem(last=False)[1].free()
            slot.generation += 1
        else:
            slots.move_to_end(full_key)
            slot.factorize(J.data)
        generation = slot.generation

        def check():
            if slot.generation != generation:
                raise RuntimeError("internal error: a cuDSS factorisation was used after a newer "
                                   "one replaced it under the same key")

        return GpuFactor("cudss", slot.solve, check)


class SpluProvider:
    """Factorisation by SciPy's SuperLU on the host, solves on the GPU (cupyx ``splu``)."""

    name = "cupyx-splu"

    def __init__(self, linalg: Any, why: str = ""):
        self.linalg = linalg
        self.why = why
        self.oom_errors = ()

    def factorize(self, J, *, spd: bool, natural: bool = False, cache: dict | None = None,
                  key=None) -> GpuFactor:
        """Factor ``J`` (cupyx sparse). For ``spd`` matrices in a fill-reducing order already
        (``natural``), diagonal pivots in the given order; SuperLU raises ``RuntimeError`` for
        an exactly singular matrix, turned into ``numpy.linalg.LinAlgError``."""
        del cache, key
        options = {"SymmetricMode": True} if spd else {}
        try:
            lu = self.linalg.splu(J.tocsc(), permc_spec="NATURAL" if natural else "COLAMD",
                                  diag_pivot_thresh=0.0 if spd else None, options=options)
        except RuntimeError as exc:
            raise np.linalg.LinAlgError(str(exc)) from None
        return GpuFactor("cupyx-splu", lu.solve)


def best_provider():
    """cuDSS where nvmath-python and its cuDSS library work (checked on a 2 x 2 system), else
    cupyx's SuperLU with the reason in its ``why``."""
    import cupy
    import cupyx.scipy.sparse as csp
    import cupyx.scipy.sparse.linalg as cspla

    try:
        from nvmath.sparse import advanced
    except Exception as exc:  # noqa: BLE001 - not installed, or its libraries do not load
        return SpluProvider(cspla, f"nvmath-python is unavailable ({type(exc).__name__}: {exc})")
    try:
        provider = CudssProvider(advanced)
        A = csp.csr_matrix(cupy.array([[4.0, 1.0], [1.0, 3.0]]))
        x = provider.factorize(A, spd=True).solve(cupy.array([1.0, 2.0]))
        if not bool(cupy.allclose(A @ x, cupy.array([1.0, 2.0]))):
            raise RuntimeError("wrong result on a 2 x 2 test system")
    except Exception as exc:  # noqa: BLE001 - any failure means: use the fallback
        return SpluProvider(cspla, f"cuDSS does not run ({type(exc).__name__}: {exc})")
    return provider
