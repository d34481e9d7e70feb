"""The solution of a batch of tiles and input vectors, and the error for one that failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

import numpy as np

__all__ = ["ConvergenceError", "Solution", "drop_axes"]


def drop_axes(x, batched: bool, one_vector: bool):
    """An array with leading axes ``(B, K, ...)`` without the axes the caller did not give:
    ``B`` for an unbatched tile, ``K`` for a single input vector ``(m,)``."""
    if not batched:
        x = x[0]
        if one_vector:
            x = x[0]
    elif one_vector:
        x = x[:, 0]
    return x


class ConvergenceError(RuntimeError):
    """A system did not reach its tolerance; nothing is returned for it.

    Attributes
    ----------
    tile, input : int
        Batch index of the tile and index of the input vector of the worst failing system.
    node : str
        Name of the node with the largest KCL residual (or Newton update) in that system.
    residual : float
        That node's KCL residual (A).
    """

    def __init__(self, message: str, *, tile: int, input: int, node: str, residual: float):
        super().__init__(message)
        self.tile, self.input, self.node, self.residual = tile, input, node, residual


@dataclass(frozen=True)
class Solution:
    """Node voltages and currents of solved tiles.

    Leading axes are ``(B, K)`` (tiles, input vectors); ``B`` is absent when the tile was not
    batched and ``K`` when the input was one vector ``(m,)``.

    Attributes
    ----------
    i_out : ndarray, (B, K, n)
        Current from each bit line into its sense node (A), positive for positive inputs.
    v_wl, v_bl : ndarray, (B, K, m, n), or None
        Word-line and bit-line node voltages (V) at each cell; None with ``voltages=False``.
    v_int : ndarray, (B, K, m, n), or None
        Internal node voltages of 1T1R cells (between memristor and transistor drain).
    i_source : ndarray, (B, K, m)
        Current delivered by each word-line driver into the tile (A); the tile draws
        ``sum(v_in * i_source)`` watts from its drivers.
    residual : ndarray, (B, K)
        Largest KCL residual over the unknown nodes (A): the current that does not balance
        (the backward error that the audit bounds).
    converged : ndarray of bool, (B, K)
        Whether the system passed the KCL audit and its forward-error check (and Newton
        converged). True for every returned system unless ``on_fail="mask"`` was asked for.
    iterations : ndarray of int, (B, K)
        Newton iterations in all attempts (1 for a linear solve).
    method : str
        The linear solver and, for nonlinear tiles, the Newton strategy used (``+ refinement``
        when iterative refinement was needed).
    error : ndarray, (B, K)
        Forward-error estimate of the node voltages, relative to the system's largest fixed
        voltage: the size of the last iterative-refinement correction or Newton update (or a
        sketch of it over a block of inputs). At most ``reltol`` for converged systems.
    power : Power
        Read power (W) of every system, delivered and dissipated per part of the tile (drivers,
        wires, sense resistances, memristors, transistors); see :mod:`circuitsim.power`.
    """

    i_out: np.ndarray
    v_wl: np.ndarray | None
    v_bl: np.ndarray | None
    v_int: np.ndarray | None
    i_source: np.ndarray
    residual: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    method: str
    error: np.ndarray
    _power: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def power(self):
        """Read power breakdown (:class:`circuitsim.power.Power`), computed on first access."""
        if self._power is None:
            raise ValueError("power needs the node voltages: solve with voltages=True")
        return self._power()
