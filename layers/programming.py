"""Programming non-idealities, applied to the target conductances before any solve.

In order: finite levels (the target is rounded to the nearest of ``levels`` conductances evenly
spaced over ``[g_min, g_max]``, ends included), device-to-device variability, drift
``G (t / t0)^-nu``, and stuck-at faults (``g_max`` or ``g_min``). Each step draws from its own
random stream of ``SeedSequence([seed, stream, step])``, over the logical device array of the
layer, so the programmed devices depend only on the seed, the layer's stream and its weights:
not on the tile size, nor on the inputs or how they are batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import TileConfig

__all__ = ["ProgrammingStats", "program"]

_LEVELS, _VARIABILITY, _DRIFT, _FAULTS = range(4)


@dataclass(frozen=True)
class ProgrammingStats:
    """What programming did to a layer's devices.

    Attributes
    ----------
    devices : int
        Programmed devices (two per weight for the differential mappings).
    stuck_on, stuck_off : int
        Devices stuck at ``g_max`` and at ``g_min``.
    clipped : int
        Devices whose conductance variability drew below 0 (set to 0).
    """

    devices: int
    stuck_on: int = 0
    stuck_off: int = 0
    clipped: int = 0


def _rng(config: TileConfig, stream: int, step: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, stream, step]))


def quantize_levels(g: np.ndarray, config: TileConfig) -> np.ndarray:
    """Round ``g`` to the nearest of ``config.levels`` evenly spaced conductances."""
    n = config.levels - 1
    step = (config.g_max - config.g_min) / n
    k = np.clip(np.rint((g - config.g_min) / step), 0, n)
    return config.g_min + k * step


def _vary(g: np.ndarray, config: TileConfig, rng: np.random.Generator):
    var = config.variability
    z = rng.standard_normal(g.shape)
    if var.on == "R":
        with np.errstate(divide="ignore"):
            r = 1.0 / g
        if var.distribution == "lognormal":
            r = r * np.exp(var.sigma * z)
        elif var.relative:
            r = r * (1.0 + var.sigma * z)
        else:
            r = r + var.sigma * z
        bad = ~(r > 0)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"Variability on R drew a non-positive resistance ({r[idx]:.3g} ohm at device "
                f"{idx} of the (side, input, output) array); sigma {var.sigma:g} is too large "
                "for a normal spread: use distribution='lognormal'"
            )
        return 1.0 / r, 0
    if var.distribution == "lognormal":
        out = g * np.exp(var.sigma * z)
    elif var.relative:
        out = g * (1.0 + var.sigma * z)
    else:
        out = g + var.sigma * z
    clipped = int(np.count_nonzero(out < 0))
    return np.maximum(out, 0.0), clipped


def program(g: np.ndarray, config: TileConfig, stream: int = 0):
    """Apply ``config``'s programming non-idealities to target conductances ``g``.

    Parameters
    ----------
    g : ndarray, (S, in, out)
        Target conductances (S), the logical device array of :func:`~.mapping.conductances`.
    config : TileConfig
    stream : int
        The layer's random stream (networks number their analog layers 0, 1, ...).

    Returns
    -------
    g : ndarray, (S, in, out)
        Programmed conductances.
    stats : ProgrammingStats
    """
    g = np.array(g, dtype=np.float64)
    clipped = stuck_on = stuck_off = 0
    if config.levels is not None:
        g = quantize_levels(g, config)
    if config.variability is not None and config.variability.sigma > 0:
        g, clipped = _vary(g, config, _rng(config, stream, _VARIABILITY))
    if config.drift is not None:
        d = config.drift
        nu = np.full(g.shape, d.nu)
        if d.nu_std > 0:
            nu = np.maximum(nu + d.nu_std * _rng(config, stream, _DRIFT).standard_normal(g.shape),
                            0.0)
        g = g * (d.t / d.t0) ** (-nu)
    if config.faults is not None:
        f = config.faults
        u = _rng(config, stream, _FAULTS).random(g.shape)
        on = u < f.stuck_on
        off = (u >= f.stuck_on) & (u < f.stuck_on + f.stuck_off)
        g[on] = config.g_max
        g[off] = config.g_min
        stuck_on, stuck_off = int(on.sum()), int(off.sum())
    return g, ProgrammingStats(int(g.size), stuck_on, stuck_off, clipped)
