"""Read power of solved tiles: what the sources deliver and where it is dissipated.

Every branch of a tile dissipates ``I V`` (its current times the voltage across it); by Tellegen's
theorem the sum over all branches equals the power the fixed-voltage sources deliver,
``sum_i v_in[i] i_source[i] - sum_j v_sense[j] i_out[j]``. The breakdown follows the tile's
parts (DESIGN.md section 3): driver resistances, word- and bit-line wire segments, sense
resistances, memristors and access transistors. A driver (sense) resistance is one branch with
the first word-line (last bit-line) segment in the circuit; its share of that branch's ``I^2 R``
is ``r_source / (r_source + r_wl)`` (resp. ``r_sense / (r_bl + r_sense)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .branches import select_cells

__all__ = ["Power", "read_power"]


@dataclass(frozen=True)
class Power:
    """Power of each solved system (W), every field shaped like ``Solution.residual`` ``(B, K)``.

    Attributes
    ----------
    delivered : ndarray
        Delivered by the word-line drivers, less what the sense nodes absorb:
        ``sum_i v_in[i] i_source[i] - sum_j v_sense[j] i_out[j]``.
    drivers : ndarray
        Dissipated in the driver resistances ``r_source``.
    wires : ndarray
        Dissipated in the word-line and bit-line segments (``r_wl``, ``r_bl``).
    sense : ndarray
        Dissipated in the sense resistances ``r_sense``.
    devices : ndarray
        Dissipated in the memristors.
    transistors : ndarray
        Dissipated in the access transistors (zero for passive tiles).
    """

    delivered: np.ndarray
    drivers: np.ndarray
    wires: np.ndarray
    sense: np.ndarray
    devices: np.ndarray
    transistors: np.ndarray

    @property
    def dissipated(self) -> np.ndarray:
        """Sum of the parts; equals ``delivered`` to rounding (energy conservation)."""
        return self.drivers + self.wires + self.sense + self.devices + self.transistors


def _share(dv, r_total, r_part):
    """``dv^2 / r_total`` split in the ratio ``r_part / r_total``; zero-resistance branches
    carry no voltage and dissipate nothing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(r_total > 0, dv**2 / np.where(r_total > 0, r_total, 1.0), 0.0)
        frac = np.where(r_total > 0, r_part / np.where(r_total > 0, r_total, 1.0), 0.0)
    return p * frac, p * (1.0 - frac)


def read_power(tile, v_in: np.ndarray, v_wl, v_bl, v_int, i_source, i_out) -> Power:
    """The power breakdown from a solution's arrays, all with leading axes ``(B, K)``.

    ``v_in`` ``(B, K, m)``, node voltages ``(B, K, m, n)``, ``i_source`` ``(B, K, m)``,
    ``i_out`` ``(B, K, n)``. :attr:`circuitsim.Solution.power` calls this.
    """
    B, K, m, n = v_wl.shape
    r_src = tile.r_source[:, None, :]  # (B, 1, m)
    r_sen = tile.r_sense[:, None, :]  # (B, 1, n)
    r_wl, r_bl = tile.r_wl[:, None], tile.r_bl[:, None]  # (B, 1, m, n)
    v_sense = tile.v_sense[:, None, :]

    # Word lines: the first segment is in series with the driver.
    drv, first = _share(v_in - v_wl[..., 0], r_src + r_wl[..., 0], r_src)
    wires = first.sum(axis=-1)
    wires += _share(v_wl[..., :-1] - v_wl[..., 1:], r_wl[..., 1:], 0.0)[1].sum(axis=(-2, -1))
    drivers = drv.sum(axis=-1)
    if tile.drive == "both":
        drivers += _share(v_wl[..., -1] - v_in, r_src, r_src)[0].sum(axis=-1)
    # Bit lines: the last segment is in series with the sense resistance.
    wires += _share(v_bl[..., :-1, :] - v_bl[..., 1:, :], r_bl[..., :-1, :], 0.0)[1].sum(
        axis=(-2, -1))
    sen, last = _share(v_bl[..., -1, :] - v_sense, r_bl[..., -1, :] + r_sen, r_sen)
    wires += last.sum(axis=-1)
    sense = sen.sum(axis=-1)

    S = B * K
    tile_idx = np.repeat(np.arange(B), K)
    cells = np.arange(m * n)
    g = np.repeat(tile.g.reshape(B, 1, m * n), K, axis=1).reshape(S, m * n)
    low = (v_bl if v_int is None else v_int).reshape(S, m * n)
    dv = v_wl.reshape(S, m * n) - low
    device = select_cells(tile.device, tile_idx, cells)
    i_dev = g * dv if device is None else device.current(dv, g)
    devices = (i_dev * dv).sum(axis=1).reshape(B, K)
    transistors = np.zeros((B, K))
    if v_int is not None:
        access = select_cells(tile.access, tile_idx, cells)
        gate = np.repeat(tile.v_gate.reshape(B, 1, m * n), K, axis=1).reshape(S, m * n)
        vd, vs = v_int.reshape(S, m * n), v_bl.reshape(S, m * n)
        i_d, _, _ = access.drain_current(vd, vs, gate)
        transistors = (i_d * (vd - vs)).sum(axis=1).reshape(B, K)
    delivered = (v_in * i_source).sum(axis=-1) - (v_sense * i_out).sum(axis=-1)
    return Power(delivered, drivers, wires, sense, devices, transistors)
