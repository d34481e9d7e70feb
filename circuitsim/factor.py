"""Factorisation policy and its cache: which solver factors a plan's matrices, in which mode, and
in chunks of what size.

The symbolic analysis of a sparsity pattern (ordering, elimination tree) is computed once per plan
and matrix size and kept in the plan's ``analyses`` (shared by every tile of one topology); each
numeric factorisation is made from it. Both the linear path and Newton's direct steps factor
through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from circuitsim import solvers

from .mna import Plan

__all__ = [
    "CHUNK_ENTRIES",
    "CHUNK_UNKNOWNS",
    "NEWTON_ENTRIES",
    "SUPERNODAL_FROM",
    "LinearSolver",
    "cholmod_mode",
    "linear_solver",
]

#: Unknowns per block-diagonal factorisation: tiles are solved in chunks of about this size.
CHUNK_UNKNOWNS = 1 << 20

#: Entries (unknowns times right-hand sides) per block of right-hand sides: input vectors are
#: solved in blocks of about this size, so memory stays bounded whatever their number.
CHUNK_ENTRIES = 1 << 24

#: Entries (systems times branches and nodes) per Newton solve: the (tile, input) systems of a
#: nonlinear plan are solved in chunks of about this size (about 1 GB of Newton's arrays).
NEWTON_ENTRIES = 1 << 23

#: Unknowns per tile from which CHOLMOD's supernodal factorisation is used (see cholmod_mode).
SUPERNODAL_FROM = 400_000


def cholmod_mode(plan: Plan) -> str:
    """CHOLMOD mode for this plan's matrices.

    With the unknowns in nested-dissection order, the simplicial factorisation beat the
    supernodal one on small and mid-sized tiles (256 x 256, 64 inputs: 0.24 s + 0.40 s against
    0.42 s + 0.57 s for factor + solve; equal at 512 x 512), the separators being small; the
    supernodal one, with dense BLAS on the large separators, won on 1024 x 1024 (factor 8.8 s
    against 21 s).
    """
    if not plan.ordered:
        return "auto"
    return "supernodal" if plan.n_free >= SUPERNODAL_FROM else "simplicial"


def analysis(plan: Plan, J, method: str, *, symmetric: bool, tag: str = "",
             natural: bool | None = None) -> solvers.Analysis:
    """The cached symbolic analysis of ``J``'s pattern for ``method`` (one per plan and size).

    ``natural`` keeps ``J``'s order of unknowns (default: when the plan's unknowns are ordered
    already); a matrix permuted on purpose (the boundary last) must keep it.
    """
    natural = plan.ordered if natural is None else natural
    key = (tag, method, symmetric, natural, J.shape)
    cached = plan.analyses.get(key)
    if cached is None:
        cached = plan.analyses[key] = solvers.analyze(
            J, method, symmetric=symmetric, natural=natural, mode=cholmod_mode(plan)
        )
    return cached


@dataclass(frozen=True)
class LinearSolver:
    """``solve(rhs)`` for one matrix, ``rhs`` ``(N,)`` or ``(N, K)``: a factorisation reused for
    every call, or an iterative solver run afresh each time."""

    solve: Callable[[np.ndarray], np.ndarray]
    method: str


def linear_solver(plan: Plan, J, solver: str, options: dict) -> LinearSolver:
    """A solver for the symmetric matrix ``J`` of ``plan`` by the named method."""
    if solver in ("direct", "superlu", "cholmod"):
        method = "auto" if solver == "direct" else solver
        factor = analysis(plan, J, method, symmetric=plan.symmetric).factorize(J)
        return LinearSolver(factor.solve, factor.method)
    run = solvers.get_solver(solver)

    def solve(rhs):
        return run(J, rhs, **options).x

    return LinearSolver(solve, solver)
