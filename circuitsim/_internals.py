"""The engine internals that the gradient and compensation modules build on, in one place.

``solve`` and ``transfer_matrix`` are public; what is imported here is not, and may move between
modules as the engine changes: re-point these names and nothing else needs editing.
"""

from .engine import CHUNK_UNKNOWNS, _package, _solve_all, cholmod_mode, tile_plans
from .krylov import bicgstab_many
from .newton import _Linearised as Linearised

__all__ = [
    "CHUNK_UNKNOWNS",
    "Linearised",
    "bicgstab_many",
    "cholmod_mode",
    "package_solution",
    "solve_all",
    "tile_plans",
]

solve_all = _solve_all
package_solution = _package
