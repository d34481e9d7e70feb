"""A dense reference solver (LAPACK through numpy), for tests on small systems."""

from __future__ import annotations

import numpy as np

from .result import SolveResult, _module, backward_error

__all__ = ["MAX_DENSE", "solve_dense"]

MAX_DENSE = 20_000


def solve_dense(A, b, *, rtol: float = 1e-10, **_ignored) -> SolveResult:
    """Solve ``A x = b`` densely; refuses systems larger than ``MAX_DENSE`` unknowns."""
    n = A.shape[0]
    if n > MAX_DENSE:
        raise ValueError(f"the dense solver is a test reference for N <= {MAX_DENSE}, got N = {n}")
    xp = _module(b)
    dense = A.toarray() if hasattr(A, "toarray") else xp.asarray(A)
    b = xp.asarray(b, dtype=np.float64)
    x = xp.linalg.solve(dense, b)
    res = backward_error(A, x, b)
    return SolveResult(x, bool(np.all(res <= rtol)), 1, res, "dense")
