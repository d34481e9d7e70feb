"""Argument checks shared by the tile builders: every error names the argument and the index."""

from __future__ import annotations

import numpy as np

__all__ = [
    "MAX_CONDUCTANCE",
    "MAX_RESISTANCE",
    "MAX_VOLTAGE",
    "MIN_RESISTANCE",
    "as_float_array",
    "broadcast_cell_param",
    "broadcast_param",
    "check_conductance",
    "check_finite",
    "check_nonnegative",
    "check_resistance",
    "check_voltage",
]

#: Smallest nonzero resistance accepted (ohm), as ngspice's clamp; 0 itself merges the nodes.
MIN_RESISTANCE = 1e-12
#: Largest resistance accepted (ohm): beyond it a branch carries less than ``abstol`` at any
#: voltage; use ``g = 0`` for an open cell.
MAX_RESISTANCE = 1e15
#: Largest cell conductance accepted (S): the conductance of the smallest resistance.
MAX_CONDUCTANCE = 1.0 / MIN_RESISTANCE
#: Largest voltage magnitude accepted (V) for inputs, sense and gate voltages.
MAX_VOLTAGE = 1e6


def as_float_array(x, name: str) -> np.ndarray:
    """Convert ``x`` to a float64 array, rejecting non-numeric data with a ``TypeError``.

    Booleans, strings, objects and complex numbers are refused; integer and float32 inputs (and numpy
    scalars) are cast explicitly.
    """
    if isinstance(x, type):
        raise TypeError(f"{name} must be a real numeric array, got the type {x.__name__}")
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"{name} is not a rectangular array (nested sequences of unequal "
                         f"lengths?): {exc}") from None
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _distinct(arr: np.ndarray) -> np.ndarray:
    """The entries of ``arr`` that are stored: a broadcast axis (stride 0) is read once, so a
    broadcast scalar costs one check, not one per cell (indices stay valid in ``arr``)."""
    if arr.ndim == 0 or 0 not in arr.strides:
        return arr
    return arr[tuple(slice(0, 1) if st == 0 else slice(None) for st in arr.strides)]


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(k) for k in np.argwhere(mask)[0])


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming the first NaN or infinite entry of ``arr``."""
    arr = _distinct(arr)
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = _first_index(bad) if arr.ndim else ()
        raise ValueError(f"{name}{list(idx) if idx else ''} is {arr[idx]}: values must be finite")


def check_nonnegative(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming the first NaN, infinite or negative entry of ``arr``."""
    check_finite(arr, name)
    arr = _distinct(arr)
    bad = arr < 0
    if bad.any():
        idx = _first_index(bad) if arr.ndim else ()
        raise ValueError(f"{name}{list(idx) if idx else ''} is {arr[idx]}: values must be >= 0")


def check_resistance(arr: np.ndarray, name: str) -> None:
    """Nonnegative and finite, and either exactly 0 (an ideal wire) or in
    [MIN_RESISTANCE, MAX_RESISTANCE]."""
    check_nonnegative(arr, name)
    arr = _distinct(arr)
    bad = (arr > 0) & (arr < MIN_RESISTANCE)
    if bad.any():
        idx = _first_index(bad) if arr.ndim else ()
        raise ValueError(
            f"{name}{list(idx) if idx else ''} is {arr[idx]}: a resistance below "
            f"{MIN_RESISTANCE:g} ohm is numerically a short; give 0 for an ideal connection"
        )
    _check_upper(arr, name, MAX_RESISTANCE, "ohm",
                 f"0 or {MIN_RESISTANCE:g} .. {MAX_RESISTANCE:g} ohm")


def _check_upper(arr: np.ndarray, name: str, limit: float, unit: str, usable: str) -> None:
    arr = _distinct(arr)
    bad = np.abs(arr) > limit
    if bad.any():
        idx = _first_index(bad) if arr.ndim else ()
        raise ValueError(
            f"{name}{list(idx) if idx else ''} is {arr[idx]:g} {unit}, beyond the usable range "
            f"({usable}): values this large overflow the nodal equations"
        )


def check_conductance(arr: np.ndarray, name: str) -> None:
    """Nonnegative, finite and at most MAX_CONDUCTANCE (S)."""
    check_nonnegative(arr, name)
    _check_upper(arr, name, MAX_CONDUCTANCE, "S", f"0 .. {MAX_CONDUCTANCE:g} S")


def check_voltage(arr: np.ndarray, name: str) -> None:
    """Finite and at most MAX_VOLTAGE (V) in magnitude."""
    check_finite(arr, name)
    _check_upper(arr, name, MAX_VOLTAGE, "V", f"|v| <= {MAX_VOLTAGE:g} V")


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


def broadcast_cell_param(x, name: str, m: int, n: int, batch: int) -> np.ndarray:
    """Broadcast a per-cell parameter to ``(batch, m, n)``.

    Accepted: a scalar, ``(m, n)`` per cell, ``(m, 1)`` per word line, ``(1, n)`` per bit line,
    or any of these with a leading batch axis ``(B, ...)``. A 1-D array is refused: on a square
    tile a per-word-line vector of length ``m`` would silently be read per bit line.
    """
    arr = as_float_array(x, name)
    if arr.ndim == 1:
        raise ValueError(
            f"{name} has shape {arr.shape}: a 1-D array is ambiguous for a per-cell parameter; "
            f"give ({m}, 1) for one value per word line, (1, {n}) for one per bit line, or "
            f"({m}, {n}) per cell (a leading batch axis is allowed)"
        )
    if arr.ndim > 3:
        raise ValueError(f"{name} has shape {arr.shape}; expected a scalar, ({m}, {n}), "
                         f"({m}, 1), (1, {n}) or one of these with a batch axis")
    return broadcast_param(arr, name, (m, n), batch)
