"""circuitsim: exact, batched circuit solves of memristive crossbar tiles.

>>> import circuitsim as cs
>>> tile = cs.crossbar([[1e-3, 2e-3]], r_wl=0.0, r_bl=0.0)
>>> cs.solve(tile, [1.0]).i_out
array([0.001, 0.002])
"""

from circuitsim.netlist import FloatingNodeError, Tile, crossbar

from . import devices
from .adjoint import jvp, transfer_matrix_vjp, vjp
from .compensate import compensate
from .engine import solve, transfer_matrix
from .mna import ShortCircuitError
from .result import ConvergenceError, Solution

__version__ = "0.1.0"

__all__ = [
    "ConvergenceError",
    "FloatingNodeError",
    "ShortCircuitError",
    "Solution",
    "Tile",
    "compensate",
    "crossbar",
    "devices",
    "jvp",
    "solve",
    "transfer_matrix",
    "transfer_matrix_vjp",
    "vjp",
]
