"""Shared helpers: independent reference computations that do not use the engine's assembly."""

import numpy as np
import pytest


def dissipated_power(tile, b, v_in, v_wl, v_bl):
    """Power dissipated in all resistors and linear devices of tile ``b``.

    ``v_in`` ``(m,)`` and the node voltages ``(m, n)`` of one input vector. Written from the
    tile's parameters only (DESIGN.md section 3), independently of the engine's circuit.
    """
    v_sense = tile.v_sense[b]

    def seg(dv, r):
        r = np.broadcast_to(r, np.shape(dv))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(r > 0, dv**2 / np.where(r > 0, r, 1.0), 0.0).sum()

    r_wl, r_bl = tile.r_wl[b].copy(), tile.r_bl[b].copy()
    r_wl[:, 0] += tile.r_source[b]
    r_bl[-1, :] += tile.r_sense[b]
    left = np.concatenate([v_in[:, None], v_wl[:, :-1]], axis=1)
    below = np.concatenate([v_bl[1:], v_sense[None, :]], axis=0)
    power = seg(left - v_wl, r_wl) + seg(v_bl - below, r_bl)
    if tile.drive == "both":
        power += seg(v_wl[:, -1] - v_in, tile.r_source[b])
    power += (tile.g[b] * (v_wl - v_bl) ** 2).sum()
    return power


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
