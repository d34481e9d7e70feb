"""Sliding windows over images ``(K, C, H, W)``: the unfolding behind convolution and pooling.

>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> im2col(x, (2, 2), (2, 2), (0, 0, 0, 0))[0]     # first window, in (C, kh, kw) order
array([0., 1., 4., 5.])
"""

from __future__ import annotations

import numpy as np

__all__ = ["im2col", "pads4", "pair", "windows"]


def pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints ``>= 1`` as ``(h, w)``."""
    v = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(v) != 2 or not all(isinstance(a, (int, np.integer)) and a >= 1 for a in v):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(v[0]), int(v[1])


def pads4(value, name: str = "padding") -> tuple[int, int, int, int]:
    """Padding as ``(top, left, bottom, right)`` from an int, ``(ph, pw)`` or four ints (the
    order of ONNX's ``pads``)."""
    v = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(v) == 1:
        v = v * 4
    elif len(v) == 2:
        v = (v[0], v[1], v[0], v[1])
    if len(v) != 4 or not all(isinstance(a, (int, np.integer)) and a >= 0 for a in v):
        raise ValueError(f"{name} must be an int >= 0, a pair or four of them (top, left, "
                         f"bottom, right), got {value!r}")
    return tuple(int(a) for a in v)


def windows(x: np.ndarray, kernel, stride, pads, fill: float = 0.0) -> np.ndarray:
    """Windows ``(K, C, Ho, Wo, kh, kw)`` of ``x`` ``(K, C, H, W)`` padded with ``fill``
    (``Ho = (H + top + bottom - kh) // sh + 1``, likewise ``Wo``); a read-only view where no
    padding is needed."""
    if x.ndim != 4:
        raise ValueError(f"input has shape {x.shape}; expected (K, C, H, W)")
    kh, kw = kernel
    sh, sw = stride
    top, left, bottom, right = pads
    if any(pads):
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    H, W = x.shape[2:]
    if H < kh or W < kw:
        raise ValueError(f"padded input {H}x{W} is smaller than the kernel {kh}x{kw}")
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return view[:, :, ::sh, ::sw]


def im2col(x: np.ndarray, kernel, stride, pads) -> np.ndarray:
    """Patches ``(K Ho Wo, C kh kw)`` of ``x`` ``(K, C, H, W)``, image-major then row-major
    positions; features in ``(C, kh, kw)`` order, as ``weight.reshape(out_c, -1)``."""
    w = windows(x, kernel, stride, pads)
    K, C, Ho, Wo, kh, kw = w.shape
    return w.transpose(0, 2, 3, 1, 4, 5).reshape(K * Ho * Wo, C * kh * kw)
