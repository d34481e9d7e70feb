"""Argument checks shared by the tile builders: every error names the argument and the index."""

from __future__ import annotations

import numpy as np

__all__ = [
    "MIN_RESISTANCE",
    "as_float_array",
    "broadcast_param",
    "check_finite",
    "check_nonnegative",
    "check_resistance",
]

#: Smallest nonzero resistance accepted (ohm), as ngspice's clamp; 0 itself merges the nodes.
MIN_RESISTANCE = 1e-12


def as_float_array(x, name: str) -> np.ndarray:
    """Convert ``x`` to a float64 array, rejecting non-numeric data with a ``TypeError``.

    Booleans, strings, objects and complex numbers are refused; integer and float32 inputs (and numpy
    scalars) are cast explicitly.
    """
    arr = np.asarray(x)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(k) for k in np.argwhere(mask)[0])


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming the first NaN or infinite entry of ``arr``."""
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = _first_index(bad) if arr.ndim else ()
        raise ValueError(f"{name}{list(idx) if idx else ''} is {arr[idx]}: values must be finite")


def check_nonnegative(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming the first NaN, infinite or negative entry of ``arr``."""
    check_finite(arr, name)
    bad = arr < 0
    if bad.any():
        idx = _first_index(bad) if arr.ndim else ()
        raise ValueError(f"{name}{list(idx) if idx else ''} is {arr[idx]}: values must be >= 0")


def check_resistance(arr: np.ndarray, name: str) -> None:
    """Nonnegative and finite, and either exactly 0 (an ideal wire) or at least MIN_RESISTANCE."""
    check_nonnegative(arr, name)
    bad = (arr > 0) & (arr < MIN_RESISTANCE)
    if bad.any():
        idx = _first_index(bad) if arr.ndim else ()
        raise ValueError(
            f"{name}{list(idx) if idx else ''} is {arr[idx]}: a resistance below "
            f"{MIN_RESISTANCE:g} ohm is numerically a short; give 0 for an ideal connection"
        )


def broadcast_param(x, name: str, shape: tuple[int, ...], batch: int) -> np.ndarray:
    """Broadcast a parameter given per element (``shape``) or per tile (``(batch,) + shape``).

    Returns a float64 array of shape ``(batch,) + shape``. Scalars are allowed. A shape that does
    not broadcast raises ``ValueError`` quoting both shapes.
    """
    arr = as_float_array(x, name)
    try:
        if arr.ndim <= len(shape):
            out = np.broadcast_to(arr, shape)[None]
            out = np.broadcast_to(out, (batch,) + shape)
        else:
            out = np.broadcast_to(arr, (batch,) + shape)
    except ValueError:
        raise ValueError(
            f"{name} has shape {arr.shape}, which does not broadcast to the tile shape {shape} "
            f"or the batched shape {(batch,) + shape}"
        ) from None
    return out
