"""The engine internals that the gradient and compensation modules build on, in one place.

``solve`` and ``transfer_matrix`` are public; what is used here is not, and may move between
modules as the engine changes: only this module then needs re-pointing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import engine
from .factor import CHUNK_UNKNOWNS, cholmod_mode
from .krylov import bicgstab_many
from .mna import tile_plans
from .precondition import PerTile as Linearised

__all__ = [
    "CHUNK_UNKNOWNS",
    "Linearised",
    "bicgstab_many",
    "cholmod_mode",
    "solve_fixed",
    "tile_plans",
]


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
    options = engine._linear_options(solver, reltol, abstol, "raise", None)
    newton = engine._NewtonOptions(**newton_options)
    out = engine._solve_all(tile, vk, solver=solver, reltol=reltol, abstol=abstol,
                            on_fail="raise", options=options, newton=newton, voltages=True)
    first = dataclasses.replace(
        out, v_nodes=out.v_nodes[:, :K], i_fixed=out.i_fixed[:, :K],
        residual=out.residual[:, :K], converged=out.converged[:, :K],
        iterations=out.iterations[:, :K], error=out.error[:, :K])
    return out.v_nodes, out.i_fixed, engine._package(tile, v_arr, v_full, first)
