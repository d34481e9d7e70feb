"""Uniform converters: the input DAC and the output ADC (see :class:`~.config.DAC`, :class:`~.config.ADC`).

>>> import numpy as np
>>> from circuitsim.layers import DAC
>>> q, clipped = dac(np.array([-2.0, -0.26, 0.0, 0.49, 1.0]), 1.0, DAC(bits=3, signed=True))
>>> q, clipped   # levels k / 3, |k| <= 3; -2.0 is clipped
(array([-1.        , -0.33333333,  0.        ,  0.33333333,  1.        ]), 1)
"""

from __future__ import annotations

import numpy as np

from .config import ADC, DAC

__all__ = ["adc", "dac", "quantize"]


def quantize(x: np.ndarray, lo: float, hi: float, step: float):
    """Clip ``x`` to ``[lo, hi]`` and round it to the nearest multiple of ``step``.

    Returns the quantized array and the number of entries outside ``[lo, hi]``.
    """
    clipped = int(np.count_nonzero((x < lo) | (x > hi)))
    return np.rint(np.clip(x, lo, hi) / step) * step, clipped


def dac(x: np.ndarray, x_max: float, spec: DAC | None):
    """Inputs ``x`` through the DAC of range ``x_max``; returns ``(x_q, clipped)``."""
    if spec is None:
        return x, 0
    if spec.signed:
        return quantize(x, -x_max, x_max, x_max / (2 ** (spec.bits - 1) - 1))
    return quantize(x, 0.0, x_max, x_max / (2**spec.bits - 1))


def adc(i: np.ndarray, full_scale: float, spec: ADC | None):
    """Currents ``i`` through the ADC of full scale ``full_scale``; returns ``(i_q, clipped)``."""
    if spec is None:
        return i, 0
    return quantize(i, -full_scale, full_scale, full_scale / (2 ** (spec.bits - 1) - 1))
