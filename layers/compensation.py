"""What a layer programs on the circuit's tiles: IR-drop compensation and column gains.

With ``TileConfig(compensate=True)`` every tile of a layer is programmed, before the programming
non-idealities, with the conductances that :func:`circuitsim.compensate` finds, so that the exact
circuit computes the ideal crossbar of the mapped conductances:

- linear tiles match their transfer matrix to ``G.T`` (no inputs needed);
- nonlinear and 1T1R tiles match their outputs to ``v @ G`` on ``compensate_inputs`` of the
  word-line voltage vectors of the calibration inputs (so they need :meth:`calibrate`); the
  columns of edge tiles outside the layer, whose outputs are discarded, are matched to what they
  give uncompensated (their ``g_min`` cells may not reach ``v @ g_min``: a sinh device gives
  more).

The compensated conductances then go through the same programming non-idealities (levels,
variability, drift, faults, with the layer's random streams) as the plain mapping's; cells of
edge tiles outside the layer keep their compensated values.

With ``column_gain=True`` each bit line's current is multiplied by a gain before the ADC (the
sense amplifier's, trimmed once): the least-squares gain of the column's transfer-matrix row to
the ideal ``G.T`` row (linear tiles), or of its outputs to ``v @ G`` on the calibration inputs
(nonlinear, 1T1R); with ``compensate`` as well (linear tiles), the gains are fitted jointly with
the conductances (``cs.compensate(..., gain="column")``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import circuitsim as cs

from . import circuit, mapping
from .programming import program

__all__ = ["CircuitProgram", "circuit_program", "least_squares_gain"]


@dataclass(frozen=True)
class CircuitProgram:
    """What a layer's circuit tiles hold.

    Attributes
    ----------
    G : ndarray, (B, rows, cols)
        Conductances on the tiles (S).
    gain : ndarray, (B, cols), or None
        Gain of every bit line (``column_gain``), applied to its current before the ADC.
    report : circuitsim.Compensation or None
        The compensation of all tiles (``compensate``): errors before and after per tile,
        iterations, cells at a bound; its ``g`` is before the programming non-idealities.
    """

    G: np.ndarray
    gain: np.ndarray | None = None
    report: cs.Compensation | None = None


def least_squares_gain(actual: np.ndarray, ideal: np.ndarray, axis: int) -> np.ndarray:
    """``sum(actual * ideal) / sum(actual**2)`` along ``axis``: the gain that brings ``actual``
    closest to ``ideal`` in least squares (1 where ``actual`` is all zero)."""
    num = np.sum(actual * ideal, axis=axis)
    den = np.sum(actual * actual, axis=axis)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)


def _used_columns(lay: mapping.Layout) -> np.ndarray:
    """Physical columns in use on every tile ``(B,)`` (the others are discarded)."""
    c = (np.arange(lay.n_tiles) // lay.sides) % lay.n_col_blocks
    outputs = np.minimum(lay.per_tile, lay.n_out - c * lay.per_tile)
    return outputs * (2 if lay.mapping == "interleaved" else 1)


def _calibration_voltages(core) -> np.ndarray:
    if core._calibration_v is None:
        raise ValueError(f"{core.name}: compensate / column_gain on nonlinear or 1T1R tiles match "
                         "the circuit on calibration inputs: call calibrate(x) first")
    return core._calibration_v


def _programmed(core, G: np.ndarray) -> np.ndarray:
    """``G`` ``(B, rows, cols)`` with the layer's devices put through the programming
    non-idealities (the layer's random streams); unused cells as they are."""
    sides = core.devices.shape[0]
    index = mapping.place_index(core.layout, sides)
    used = index >= 0
    logical = np.empty(core.devices.size)
    logical[index[used]] = G[used]
    devices, _ = program(logical.reshape(core.devices.shape), core.config, core.stream)
    out = G.copy()
    out[used] = devices.ravel()[index[used]]
    return out


def _compensated(core) -> CircuitProgram:
    cfg = core.config
    G0 = mapping.place(core.target, core.layout, cfg.g_min)
    tile = circuit.build(G0, cfg)
    if cfg.linear:
        report = cs.compensate(tile, g_min=cfg.g_min, g_max=cfg.g_max,
                               gain="column" if cfg.column_gain else None)
    else:
        v = _calibration_voltages(core)
        target = np.matmul(v, G0)  # the ideal crossbar (sense nodes at 0 V)
        used = _used_columns(core.layout)
        if (used < core.layout.cols).any():
            # columns outside the layer are discarded: match them to what they give now, the
            # nearest reachable target (their g_min cells may be unable to reach v @ g_min)
            plain, _ = circuit.solve_currents(tile, v)
            unused = np.arange(core.layout.cols)[None, :] >= used[:, None]  # (B, cols)
            target = np.where(unused[:, None, :], plain, target)
        report = cs.compensate(tile, target, v_in=v, g_min=cfg.g_min, g_max=cfg.g_max)
    return CircuitProgram(_programmed(core, np.asarray(report.g)), report.gain, report)


def _column_gains(core) -> CircuitProgram:
    cfg, G = core.config, core.G
    tile = circuit.build(G, cfg)
    if cfg.linear:
        T = circuit.transfer(tile)  # (B, cols, rows)
        gain = least_squares_gain(T, G.transpose(0, 2, 1), axis=2)
    else:
        v = _calibration_voltages(core)
        i_out, _ = circuit.solve_currents(tile, v)
        gain = least_squares_gain(i_out, np.matmul(v, G), axis=1)
    return CircuitProgram(G, gain, None)


def circuit_program(core) -> CircuitProgram:
    """The circuit's tiles of an :class:`~.analog.AnalogMatrix` under its ``config``."""
    cfg = core.config
    if cfg.compensate:
        return _compensated(core)
    if cfg.column_gain:
        return _column_gains(core)
    return CircuitProgram(core.G)
