"""Failures of a cross-check, one class per kind, so callers and the CLI can tell them apart.

A numerical disagreement is not an exception of ngspice's: :func:`circuitsim.validation.compare`
returns a :class:`~circuitsim.validation.Report` whose ``passed`` is False, and
:meth:`~circuitsim.validation.Report.check` raises :class:`DisagreementError` from it.
"""

from __future__ import annotations

__all__ = [
    "DisagreementError",
    "NgspiceConvergenceError",
    "NgspiceError",
    "NgspiceMissingError",
    "NgspiceTimeoutError",
    "ValidationError",
]

#: How to install ngspice and its shared library on Debian and Ubuntu.
INSTALL = "sudo apt-get install ngspice libngspice0 libngspice0-dev"


class ValidationError(RuntimeError):
    """Base class of every failure of a cross-check."""


class NgspiceMissingError(ValidationError):
    """Neither a usable ngspice shared library nor an ``ngspice`` executable was found (or the one
    found has an unsupported version)."""


class NgspiceError(ValidationError):
    """ngspice rejected the deck or failed; the message quotes ngspice's error lines.

    Attributes
    ----------
    output : str
        ngspice's full output (stdout and stderr).
    """

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


class NgspiceConvergenceError(NgspiceError):
    """ngspice found no DC operating point (singular matrix, gmin and source stepping failed)."""


class NgspiceTimeoutError(ValidationError):
    """ngspice did not finish within the time limit; its process was killed."""


class DisagreementError(ValidationError):
    """circuitsim and ngspice disagree beyond the tolerance; the message names the worst node."""
