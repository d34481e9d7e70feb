"""The engine's GPU path on the CPU, for tests on machines without a GPU.

:func:`device_backend` is a :class:`circuitsim.backend.Backend` on numpy and scipy whose
``device_path`` is set: the engine copies plans with ``on_backend``, batches to the "free
memory" given, factors through a GPU provider (:mod:`circuitsim.solvers.gpu`), lays out
Newton-Krylov's preconditioner as one block-diagonal factorisation, and moves results with
``to_host``: everything the cupy backend runs except the cupy and cuDSS calls themselves.

:class:`FakeAdvanced` stands in for ``nvmath.sparse.advanced`` as its documentation describes the
stateful ``DirectSolver`` (operands held by reference; ``plan``, ``factorize`` and ``solve``
phases; values of ``a`` and ``b`` updated in place between phases; a fresh result array per
solve; failures reported in ``factorization_info.info``, not raised), computed with SciPy's
SuperLU, so that :class:`~circuitsim.solvers.gpu.CudssProvider`'s reuse of solver objects is
exercised. It counts the phases it runs.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from circuitsim.solvers.gpu import CudssProvider, SpluProvider

from circuitsim.backend import Backend


class _MatrixType:
    GENERAL = 0
    SPD = 3


@dataclasses.dataclass
class _Options:
    sparse_system_type: int = _MatrixType.GENERAL
    logger: object = None


class _DirectSolver:
    """A SciPy-backed stand-in for ``nvmath.sparse.advanced.DirectSolver`` (see the module)."""

    def __init__(self, counts, a, b, *, options=None):
        if not isinstance(a, sp.csr_matrix) or a.indices.dtype != np.int32:
            raise TypeError("DirectSolver takes a CSR matrix with int32 indices")
        if b.ndim != 2 or not b.flags.f_contiguous or b.shape[0] != a.shape[0]:
            raise TypeError("the right-hand side must be column-major (N, K)")
        self.counts = counts
        self.a, self.b = a, b
        self.spd = (options or _Options()).sparse_system_type == _MatrixType.SPD
        self.planned = False
        self.lu = None
        self.factorization_info = SimpleNamespace(info=0)
        self.freed = False
        counts["created"] += 1

    def plan(self):
        self.planned = True
        self.counts["plan"] += 1

    def factorize(self):
        if not self.planned:
            raise RuntimeError("Factorization cannot be performed before plan() has been called.")
        self.counts["factorize"] += 1
        A = self.a.tocsc()  # the values as they are now (updated in place by the caller)
        try:
            if self.spd:  # Cholesky needs positive pivots in the given order
                lu = spla.splu(A, permc_spec="NATURAL", diag_pivot_thresh=0.0)
                ok = bool(np.all(lu.U.diagonal() > 0))
            else:
                lu, ok = spla.splu(A), True
        except RuntimeError:
            lu, ok = None, False
        self.lu = lu if ok else None
        self.factorization_info = SimpleNamespace(info=0 if ok else 1)

    def solve(self):
        if self.lu is None:
            raise RuntimeError("Solver cannot be performed before factorize() has been called.")
        self.counts["solve"] += 1
        return np.asfortranarray(self.lu.solve(np.array(self.b)))

    def free(self):
        self.freed = True


class FakeAdvanced:
    """The part of ``nvmath.sparse.advanced`` that :class:`CudssProvider` uses."""

    DirectSolverMatrixType = _MatrixType
    DirectSolverOptions = _Options

    def __init__(self):
        self.counts = {"created": 0, "plan": 0, "factorize": 0, "solve": 0}

    def DirectSolver(self, a, b, *, options=None):
        return _DirectSolver(self.counts, a, b, options=options)


def device_backend(direct: str = "cudss", *, free_bytes: int | None = None,
                   batched: bool = True, advanced: FakeAdvanced | None = None) -> Backend:
    """A numpy backend on the engine's device path (see the module docstring).

    ``direct``: ``"cudss"`` (:class:`CudssProvider` over :class:`FakeAdvanced`) or ``"splu"``
    (:class:`SpluProvider` over SciPy). ``free_bytes``: the "device memory" batches are sized to
    (None: unbounded). Arrays are copied on the way to and from the "device", so nothing relies on
    sharing memory with the host.
    """
    if direct == "cudss":
        provider = CudssProvider(advanced or FakeAdvanced())
    elif direct == "splu":
        provider = SpluProvider(spla)
    else:
        raise ValueError(f"direct must be 'cudss' or 'splu', got {direct!r}")
    return Backend(
        "numpy-device", np, sp, spla, provider, f"CPU, device path with {provider.name}",
        device_path=True, batched_preconditioner=batched, _to_device=np.array,
        _to_host=np.array, _free_bytes=None if free_bytes is None else (lambda: free_bytes))
