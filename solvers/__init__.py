"""circuitsim.solvers: sparse linear algebra only (no circuits), with scipy's manners.

Every solver is a callable ``solve(A, b, **options) -> SolveResult``; ``b`` may hold many
right-hand sides as columns. :func:`get_solver` maps a name to one:

- ``"direct"``: sparse direct, CHOLMOD for symmetric matrices where scikit-sparse is installed,
  SuperLU otherwise;
- ``"superlu"``, ``"cholmod"``: that factorisation explicitly;
- ``"cg"``: preconditioned conjugate gradients (symmetric positive definite only);
- ``"dense"``: LAPACK on the dense matrix, a reference for tests.

``cg``, ``"dense"`` and :func:`backward_error` work on cupy arrays too (the module of the
right-hand side, :func:`circuitsim.solvers.arrays.array_module`). The GPU's direct factorisations
(cuDSS through nvmath-python, cupyx's SuperLU) are in :mod:`circuitsim.solvers.gpu`, which this
package does not import: only the GPU path does.
"""

from functools import partial

from .dense import MAX_DENSE, solve_dense
from .direct import (
    Analysis,
    Factor,
    analyze,
    cholmod_available,
    factorize,
    schur_complement,
    solve_direct,
)
from .iterative import cg, jacobi
from .result import SolveResult, backward_error

__all__ = [
    "MAX_DENSE",
    "SOLVERS",
    "Analysis",
    "Factor",
    "SolveResult",
    "analyze",
    "backward_error",
    "cg",
    "cholmod_available",
    "factorize",
    "get_solver",
    "jacobi",
    "schur_complement",
    "solve_dense",
    "solve_direct",
]

SOLVERS = {
    "direct": partial(solve_direct, method="auto"),
    "superlu": partial(solve_direct, method="superlu"),
    "cholmod": partial(solve_direct, method="cholmod"),
    "cg": cg,
    "dense": solve_dense,
}


def get_solver(name: str):
    """The solver registered under ``name``; the error lists the valid names."""
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; valid: {', '.join(SOLVERS)}") from None
