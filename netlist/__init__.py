"""circuitsim.netlist: tiles and circuits as plain data (no solving here).

A :class:`Tile` holds validated crossbar parameters; its :attr:`Tile.circuit` is the generic
:class:`Circuit` (nodes, fixed-voltage nodes, branch groups) that the engine solves and the SPICE
writer exports.
"""

from .checks import as_float_array, broadcast_param, check_finite, check_nonnegative
from .circuit import BranchGroup, Circuit, FloatingNodeError, find_floating
from .crossbar import Tile, crossbar
from .spice import to_spice

__all__ = [
    "BranchGroup",
    "Circuit",
    "FloatingNodeError",
    "Tile",
    "as_float_array",
    "broadcast_param",
    "check_finite",
    "check_nonnegative",
    "crossbar",
    "find_floating",
    "to_spice",
]
