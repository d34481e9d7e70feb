"""The engine internals that the gradient and compensation modules build on, in one place.

``solve`` and ``transfer_matrix`` are public; what is used here is not, and moves between modules
as the engine changes: only this module needs re-pointing. It accepts both layouts of the engine
seen so far (everything in ``engine``; or ``factor``, ``mna.tile_plans`` and a ``_solve_all``
taking a Newton options object and returning a results record).
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np

from . import engine
from .krylov import bicgstab_many
from .newton import _Linearised as Linearised

try:
    from .factor import CHUNK_UNKNOWNS, cholmod_mode
except ImportError:  # the engine before its factorisation policy had a module of its own
    from .engine import CHUNK_UNKNOWNS, cholmod_mode
try:
    from .mna import tile_plans
except ImportError:
    from .engine import tile_plans

__all__ = [
    "CHUNK_UNKNOWNS",
    "Linearised",
    "bicgstab_many",
    "cholmod_mode",
    "solve_fixed",
    "tile_plans",
]

_RECORD = "newton" in inspect.signature(engine._solve_all).parameters


def solve_fixed(tile, vk: np.ndarray, K: int, v_in, *, solver: str, reltol: float,
                abstol: float, newton_options: dict):
    """Solve ``tile`` for fixed-node voltages ``vk`` ``(B, K', n_fixed)`` (the first ``K`` are the
    inputs ``v_in``, any others extra boundary problems in the same factorisation).

    Returns the node voltages ``(B, K', n_nodes)``, the currents leaving the fixed nodes
    ``(B, K', n_fixed)`` and the :class:`Solution` of the first ``K``.
    Raises :class:`ConvergenceError` for any failing system, as ``solve`` does.
    """
    v_arr = np.asarray(v_in)
    v_full = tile.check_inputs(v_in)
    if _RECORD:
        options = engine._linear_options(solver, reltol, abstol, "raise", None)
        newton = engine._NewtonOptions(**newton_options)
        out = engine._solve_all(tile, vk, solver=solver, reltol=reltol, abstol=abstol,
                                on_fail="raise", options=options, newton=newton, voltages=True)
        first = dataclasses.replace(
            out, v_nodes=out.v_nodes[:, :K], i_fixed=out.i_fixed[:, :K],
            residual=out.residual[:, :K], converged=out.converged[:, :K],
            iterations=out.iterations[:, :K], error=out.error[:, :K])
        return out.v_nodes, out.i_fixed, engine._package(tile, v_arr, v_full, first)
    options = {"rtol": 1e-13} if solver == "cg" else {}
    v_nodes, i_fixed, residual, converged, its, method = engine._solve_all(
        tile, vk, solver=solver, reltol=reltol, abstol=abstol, on_fail="raise",
        options=options, newton_options=newton_options)
    f = slice(0, K)
    solution = engine._package(tile, v_arr, v_full, v_nodes[:, f], i_fixed[:, f],
                               residual[:, f], converged[:, f], its[:, f], method)
    return v_nodes, i_fixed, solution
