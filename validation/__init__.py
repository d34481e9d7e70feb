"""circuitsim.validation: cross-checks of circuitsim against ngspice, node by node.

>>> import circuitsim as cs
>>> from circuitsim.validation import compare
>>> report = compare(cs.crossbar([[1e-3, 2e-4]], r_wl=1.0, r_bl=2.0), [0.5])  # doctest: +SKIP
>>> report.passed, report.worst_node  # doctest: +SKIP
(True, 'bl_0_1')

:func:`compare` writes the tile as a SPICE deck (:func:`circuitsim.netlist.to_spice`), runs it in
ngspice in a child process (:mod:`circuitsim.validation.ngspice`: PySpice's shared-library
interface, or the ``ngspice -b`` command line), and returns a :class:`Report`. Each kind of
failure has its own exception (:mod:`circuitsim.validation.errors`). ``circuitsim validate`` runs
the built-in suite (:mod:`circuitsim.validation.suite`).
"""

from .compare import RTOL_LINEAR, RTOL_NONLINEAR, Report, compare
from .errors import (
    DisagreementError,
    NgspiceConvergenceError,
    NgspiceError,
    NgspiceMissingError,
    NgspiceTimeoutError,
    ValidationError,
)
from .ngspice import NgspiceRun, run_deck

__all__ = [
    "RTOL_LINEAR",
    "RTOL_NONLINEAR",
    "DisagreementError",
    "NgspiceConvergenceError",
    "NgspiceError",
    "NgspiceMissingError",
    "NgspiceRun",
    "NgspiceTimeoutError",
    "Report",
    "ValidationError",
    "compare",
    "run_deck",
]
