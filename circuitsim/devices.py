"""Device models of crossbar cells: memristor read models and the NMOS access transistor.

Every model is a frozen dataclass of parameters in SI units. A parameter is a scalar or an array
broadcastable to the cell grid ``(m, n)`` or to a batch of grids ``(B, m, n)`` (per-cell
variability). Evaluation is pure, vectorized and float64.

Memristors are two-terminal: ``v`` is the voltage across the device (word-line side minus the
other terminal) and ``g`` is the cell's state conductance in siemens, defined as the small-signal
conductance at 0 V. Each memristor gives ``current(v, g)``, ``conductance(v, g) = dI/dv``,
``voltage_scale(g)`` (the voltage over which its differential conductance changes by about a factor
e, for Newton step limiting) and ``spice(names, a, b, g)``, the lines that make ngspice compute the
same equation. The access transistor is :class:`Level1`, ngspice's level-1 MOSFET.

The engine calls ``expand(batch, m, n)`` once per tile batch, which broadcasts every per-cell
parameter to ``(batch, m * n)`` (cells flattened row-major, index ``i * n + j``), and
``take(idx)`` to pick the batch entries of a set of systems, giving parameters of shape ``(S, E)``.

Evaluation works on numpy and on cupy arrays alike: each method computes with the array module of
its inputs (voltages, conductances and per-cell parameters, which the GPU backend moves to the
device with :meth:`_Model.with_params`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy.interpolate import PchipInterpolator

from .backend import array_module

__all__ = ["AsymmetricSinh", "IVTable", "Level1", "Linear", "Sinh", "StanfordPKU"]


def _fail(model: str, message: str, bad: np.ndarray, values: np.ndarray) -> None:
    """Raise ValueError for the first True entry of ``bad``, quoting its value and index."""
    if not np.any(bad):
        return
    if values.ndim == 0:
        raise ValueError(f"{model}: {message}, got {float(values)!r}")
    idx = np.unravel_index(np.flatnonzero(bad)[0], bad.shape)
    idx = tuple(int(k) for k in idx)
    raise ValueError(f"{model}: {message}, got {float(values[idx])!r} at index {idx}")


def _param(obj: object, name: str, lower: float | None = None, inclusive: bool = False) -> None:
    """Validate the field ``name`` of ``obj`` and store it as a float or a read-only float64 array.

    The value must be finite, and ``> lower`` (``>= lower`` when ``inclusive``) if ``lower`` is
    given. Errors name the model, the parameter and, for arrays, the first offending index.
    """
    model = type(obj).__name__
    value = getattr(obj, name)
    if np.iscomplexobj(value):
        raise TypeError(f"{model}: parameter {name} must be real, got {value!r}")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{model}: parameter {name} must be real numbers, got {value!r}") from exc
    _fail(model, f"parameter {name} must be finite", ~np.isfinite(arr), arr)
    if lower is not None:
        bad = arr < lower if inclusive else arr <= lower
        _fail(model, f"parameter {name} must be {'>=' if inclusive else '>'} {lower:g}", bad, arr)
    if arr.ndim == 0:
        object.__setattr__(obj, name, float(arr))
    else:
        arr.flags.writeable = False
        object.__setattr__(obj, name, arr)


def _per_cell(value: float | np.ndarray, size: int) -> np.ndarray:
    """Reduce a parameter given as a scalar, ``(E,)`` or ``(1, E)`` to a float64 array ``(E,)``."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 1:
        return np.full(size, float(arr.reshape(())))
    if arr.size != size:
        raise ValueError(f"parameter of shape {arr.shape} does not match {size} elements")
    return arr.reshape(size)


def _like(scale, g):
    """Broadcast ``scale`` against ``g`` (unchanged when ``g`` is None)."""
    if g is None:
        return scale
    xp = array_module(scale, g)
    scale = xp.asarray(scale)
    shape = g.shape if hasattr(g, "shape") else np.shape(g)
    return xp.broadcast_to(scale, np.broadcast_shapes(shape, scale.shape))


def _host(x):
    """``x`` on the host (error messages only)."""
    return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else x


def piecewise_polynomial(breaks, coeffs, v):
    """Evaluate a piecewise polynomial in SciPy's ``PPoly`` form at ``v``, with the array
    module of ``v``: on ``[breaks[i], breaks[i+1]]`` it is ``sum_j coeffs[j, i] (v -
    breaks[i])**(k-1-j)``, extended beyond the ends by the first and last pieces (Horner's rule).

    >>> from scipy.interpolate import PchipInterpolator
    >>> f = PchipInterpolator([0.0, 1.0, 2.0], [0.0, 1.0, 4.0])
    >>> x = np.array([-0.5, 0.3, 1.0, 1.7, 2.5])
    >>> bool(np.allclose(piecewise_polynomial(f.x, f.c, x), f(x), rtol=1e-14, atol=0))
    True
    """
    xp = array_module(v)
    breaks, coeffs = xp.asarray(breaks), xp.asarray(coeffs)
    i = xp.clip(xp.searchsorted(breaks, v, side="right") - 1, 0, coeffs.shape[1] - 1)
    d = v - breaks[i]
    out = coeffs[0, i]
    for j in range(1, coeffs.shape[0]):
        out = out * d + coeffs[j, i]
    return out


def _fmt(x: float) -> str:
    """Format with 17 significant digits, which parse back to the same float64."""
    return f"{x:.17g}"


def _num(x: float) -> str:
    """Format a number for an ngspice B-source expression, exactly.

    ngspice (39) keeps only 11 significant digits of the numbers in B-source expressions, so
    ``x`` is written as ``(hi+lo)``: ``hi`` is ``x`` to 10 digits and ``lo = x - hi`` (exact) to
    10 digits, and the sum is ``x`` to within an ulp.
    """
    hi = f"{x:.9e}"
    lo = x - float(hi)
    return hi if lo == 0 else f"({hi}{lo:+.9e})"


class _Model:
    """Per-cell parameter mechanics shared by all device models."""

    _cell_params: ClassVar[tuple[str, ...]] = ()

    def expand(self, batch: int, m: int, n: int):
        """Broadcast every per-cell parameter to ``(batch, m, n)``, flattened to ``(batch, m*n)``.

        A scalar parameter stays a scalar: one value for every cell needs no per-cell array, and
        evaluating the model then costs no gathers.

        Raises
        ------
        ValueError
            If a parameter cannot broadcast to the cell grid; the message quotes both shapes.
        """
        shape = (batch, m, n)
        new = {}
        for name in self._cell_params:
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.ndim == 0:
                continue
            if value.ndim == 1:
                raise ValueError(
                    f"{type(self).__name__}: parameter {name} has shape {value.shape}: a 1-D "
                    f"array is ambiguous per cell; give ({m}, 1) per word line, (1, {n}) per "
                    f"bit line or ({m}, {n}) per cell (a leading batch axis is allowed)"
                )
            try:
                full = np.broadcast_to(value, shape)
            except ValueError:
                raise ValueError(
                    f"{type(self).__name__}: parameter {name} of shape {value.shape} "
                    f"cannot broadcast to the cell grid {shape}"
                ) from None
            new[name] = full.reshape(batch, m * n)
        return dataclasses.replace(self, **new)

    def with_params(self, **params):
        """A copy with the per-cell parameters ``params`` replaced, without validation: for
        arrays derived from this model's validated ones (rows selected, or moved to a GPU)."""
        new = copy.copy(self)
        for name, value in params.items():
            object.__setattr__(new, name, value)
        return new

    def take(self, idx):
        """After :meth:`expand`, select batch entries: parameters become ``param[idx]``
        (scalars stay as they are)."""
        new = {}
        for name in self._cell_params:
            value = getattr(self, name)
            if np.ndim(value) == 0:
                continue
            if np.ndim(value) != 2:
                raise ValueError(
                    f"{type(self).__name__}.take: call expand() first "
                    f"(parameter {name} has shape {np.shape(value)})"
                )
            new[name] = value[idx]
        return dataclasses.replace(self, **new) if new else self


class _Memristor(_Model):
    """Shared SPICE writer: one behavioural source per cell with a non-zero state."""

    linear: ClassVar[bool] = False

    def _expressions(self, ab: list[str], g: np.ndarray, on: np.ndarray) -> list[str]:
        """Return the current expressions of cells ``on``; ``ab`` holds their ``V(a,b)``."""
        raise NotImplementedError

    def spice(self, names, a, b, g) -> list[str]:
        """Return ``B{name} {a} {b} I=...`` lines for cells ``(E,)``; none where ``g == 0``.

        ``names``, ``a``, ``b`` are sequences of str (element suffixes, node names), ``g`` is
        ``(E,)``; parameters must already be reduced to a scalar, ``(E,)`` or ``(1, E)``. Positive
        current flows from ``a`` to ``b`` through the device when ``V(a,b) > 0``. Numbers are
        written as ``(hi+lo)`` pairs where needed, since ngspice rounds B-source numbers to 11
        significant digits.
        """
        return self._sources(names, a, b, g)

    def _sources(self, names, a, b, g, **kw) -> list[str]:
        g = np.asarray(g, dtype=np.float64).reshape(-1)
        on = np.flatnonzero(g != 0)
        ab = [f"V({a[k]},{b[k]})" for k in on]
        exprs = self._expressions(ab, g, on, **kw)
        return [f"B{names[k]} {a[k]} {b[k]} I={e}" for k, e in zip(on, exprs, strict=True)]


@dataclass(frozen=True)
class Linear(_Memristor):
    """Linear (ohmic) memristor: ``I = g V``.

    Valid for any ``V``; ``g >= 0``, and ``g == 0`` is an open cell (no SPICE line).

    >>> print(Linear().current(0.2, 1e-4))
    2e-05
    >>> Linear().spice(["c0"], ["w0"], ["b0"], [1e-4])
    ['Rc0 w0 b0 10000']
    """

    linear: ClassVar[bool] = True

    def current(self, v, g):
        """Return the current ``g v`` (A), broadcast over ``v`` and ``g``."""
        return g * v

    def conductance(self, v, g):
        """Return ``dI/dV = g`` (S), broadcast to the shape of ``g * v``."""
        xp = array_module(v, g)
        return g * xp.ones_like(v)

    def voltage_scale(self, g=None):
        """Return ``inf``: no nonlinearity."""
        return _like(np.inf, g)

    def spice(self, names, a, b, g) -> list[str]:
        """Return one resistor ``R{name} {a} {b} {1/g}`` per cell; none where ``g == 0``."""
        g = np.asarray(g, dtype=np.float64).reshape(-1)
        return [f"R{names[k]} {a[k]} {b[k]} {_fmt(1.0 / g[k])}" for k in np.flatnonzero(g != 0)]


@dataclass(frozen=True)
class Sinh(_Memristor):
    """Symmetric sinh memristor, the usual metal-oxide read model.

    ``I = (g / a) sinh(a V)``, ``dI/dV = g cosh(a V)``, so ``g`` is the conductance at 0 V.
    Source: the sinh I-V of metal-oxide memristors (Yang et al., Nature Nanotech. 3, 429, 2008;
    Yakopcic et al., IEEE EDL 32, 1436, 2011). Valid for ``a > 0`` (1/V). ``np.sinh`` is finite
    for ``|a V| < 710.4``; beyond it the current is ``+-inf`` (numpy warns of the overflow). The
    engine's Newton limits steps with :meth:`voltage_scale` so arguments stay moderate.

    >>> m = Sinh(a=2.0)
    >>> print(f"{m.current(0.5, 1e-4):.6e}")  # (1e-4 / 2) sinh(1)
    5.876006e-05
    """

    a: float | np.ndarray = 1.0
    """Nonlinearity coefficient (1/V), > 0."""

    _cell_params: ClassVar[tuple[str, ...]] = ("a",)

    def __post_init__(self):
        """Validate the parameters."""
        _param(self, "a", 0.0)

    def current(self, v, g):
        """Return the current ``(g / a) sinh(a v)`` (A)."""
        xp = array_module(v, g, self.a)
        return (g / self.a) * xp.sinh(self.a * v)

    def conductance(self, v, g):
        """Return ``dI/dV = g cosh(a v)`` (S)."""
        xp = array_module(v, g, self.a)
        return g * xp.cosh(self.a * v)

    def voltage_scale(self, g=None):
        """Return ``1 / a`` (V), broadcast against ``g`` when given."""
        return _like(1.0 / array_module(self.a).asarray(self.a), g)

    def _expressions(self, ab, g, on):
        a = _per_cell(self.a, g.size)
        return [f"{_num(g[k] / a[k])}*sinh({_num(a[k])}*{x})" for k, x in zip(on, ab, strict=True)]


@dataclass(frozen=True)
class AsymmetricSinh(_Memristor):
    """Asymmetric sinh memristor (Yakopcic-style read model with polarity-dependent fits).

    ``I = (g / a_pos) sinh(a_pos V)`` for ``V >= 0`` and ``I = k_neg (g / a_neg) sinh(a_neg V)``
    for ``V < 0``. Source: Yakopcic et al., IEEE EDL 32, 1436 (2011), whose I-V uses separate
    sinh amplitudes and exponents for each polarity. ``g`` is the conductance at ``0+``; at ``0-``
    it is ``k_neg g`` (a kink at 0 V when ``k_neg != 1``). Valid for ``a_pos, a_neg, k_neg > 0``;
    finite while ``|a V| < 710.4``, as for :class:`Sinh`.

    >>> m = AsymmetricSinh(a_pos=2.0, a_neg=1.0, k_neg=0.5)
    >>> print(f"{m.current(-1.0, 1e-4):.6e}")  # 0.5 (1e-4 / 1) sinh(-1)
    -5.876006e-05
    """

    a_pos: float | np.ndarray = 1.0
    """Exponent for V >= 0 (1/V), > 0."""
    a_neg: float | np.ndarray = 1.0
    """Exponent for V < 0 (1/V), > 0."""
    k_neg: float | np.ndarray = 1.0
    """Amplitude ratio of the negative branch, > 0."""

    _cell_params: ClassVar[tuple[str, ...]] = ("a_pos", "a_neg", "k_neg")

    def __post_init__(self):
        """Validate the parameters."""
        for name in self._cell_params:
            _param(self, name, 0.0)

    def _branch(self, v):
        """Return the per-polarity ``(a, k)``: one sinh per cell, the other cannot overflow."""
        xp = array_module(v, self.a_pos, self.a_neg, self.k_neg)
        pos = v >= 0
        return xp.where(pos, self.a_pos, self.a_neg), xp.where(pos, 1.0, self.k_neg)

    def current(self, v, g):
        """Return the current (A), branch chosen by the sign of ``v``."""
        a, k = self._branch(v)
        return k * (g / a) * array_module(a).sinh(a * v)

    def conductance(self, v, g):
        """Return ``dI/dV`` (S); at ``v == 0`` the ``V >= 0`` branch, ``g``."""
        a, k = self._branch(v)
        return k * g * array_module(a).cosh(a * v)

    def voltage_scale(self, g=None):
        """Return ``1 / max(a_pos, a_neg)`` (V), broadcast against ``g`` when given."""
        xp = array_module(self.a_pos, self.a_neg)
        return _like(1.0 / xp.maximum(self.a_pos, self.a_neg), g)

    def _expressions(self, ab, g, on):
        ap, an, kn = (_per_cell(p, g.size) for p in (self.a_pos, self.a_neg, self.k_neg))
        return [
            f"({x} >= 0 ? {_num(g[k] / ap[k])}*sinh({_num(ap[k])}*{x})"
            f" : {_num(kn[k])}*{_num(g[k] / an[k])}*sinh({_num(an[k])}*{x}))"
            for k, x in zip(on, ab, strict=True)
        ]


@dataclass(frozen=True)
class StanfordPKU(_Memristor):
    """Stanford-PKU RRAM read model: ``I = i0 exp(-gap / g0) sinh(V / v0)``.

    The tunnelling gap is mapped from the state conductance so that ``dI/dV`` at 0 V equals
    ``g``: ``gap(g) = g0 ln(i0 / (g v0))``. Hence ``I = g v0 sinh(V / v0)``, restricted to states
    whose gap lies in ``[gap_min, gap_max]``; :meth:`current` and :meth:`conductance` raise
    ValueError for any other ``g``. Source: Guan, Yu and Wong, IEEE EDL 33, 1405 (2012); Jiang
    et al., IEEE TED 63, 1884 (2016). Defaults are the model's published defaults (I0 = 1 mA,
    g0 = 0.25 nm, V0 = 0.25 V, gap_min = 0.1 nm) except ``gap_max``: 2.1 nm instead of 1.7 nm, so
    that the valid states span ``g`` from 9.0e-7 S to 2.7e-3 S (1e-6 to 1e-3 S included); with
    1.7 nm the lowest state would be 4.5e-6 S. Finite while ``|V / v0| < 710.4``.

    >>> m = StanfordPKU()
    >>> print(f"{m.gap(1e-4) * 1e9:.4f} nm")  # 0.25 nm * ln(40)
    0.9222 nm
    >>> print(f"{m.current(0.25, 1e-4):.6e}")  # 1e-4 * 0.25 * sinh(1)
    2.938003e-05
    """

    i0: float | np.ndarray = 1e-3
    """Current amplitude I0 (A), > 0."""
    g0: float | np.ndarray = 0.25e-9
    """Gap decay length g0 (m), > 0."""
    v0: float | np.ndarray = 0.25
    """Voltage scale V0 (V), > 0."""
    gap_min: float | np.ndarray = 0.1e-9
    """Smallest gap (m), >= 0: the highest valid state conductance."""
    gap_max: float | np.ndarray = 2.1e-9
    """Largest gap (m), > gap_min: the lowest valid state conductance."""

    _cell_params: ClassVar[tuple[str, ...]] = ("i0", "g0", "v0", "gap_min", "gap_max")

    def __post_init__(self):
        """Validate the parameters."""
        for name in ("i0", "g0", "v0"):
            _param(self, name, 0.0)
        _param(self, "gap_min", 0.0, inclusive=True)
        _param(self, "gap_max", 0.0)
        lo, hi = np.broadcast_arrays(self.gap_min, self.gap_max)
        _fail("StanfordPKU", "parameter gap_max must be > gap_min", hi <= lo, hi)

    def gap(self, g):
        """Return the gap ``g0 ln(i0 / (g v0))`` (m): inf for g == 0, NaN for g < 0."""
        xp = array_module(g, self.i0, self.v0, self.g0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.g0 * xp.log(xp.divide(self.i0, xp.multiply(g, self.v0)))

    def _checked_gap(self, g):
        gap = self.gap(g)
        bad = ~((gap >= self.gap_min) & (gap <= self.gap_max))
        if bool(bad.any()) if hasattr(bad, "any") else bool(bad):
            arrs = np.broadcast_arrays(*(_host(x) for x in (
                gap, g, self.gap_min, self.gap_max, self.i0, self.v0, self.g0)))
            bad = _host(bad)
            idx = np.unravel_index(np.flatnonzero(bad)[0], bad.shape)
            gp, gv, lo, hi, i0, v0, g0 = (float(x[idx]) for x in arrs)
            where = f" at index {tuple(int(k) for k in idx)}" if bad.ndim else ""
            raise ValueError(
                f"StanfordPKU: state conductance g = {gv!r} S{where} maps to gap {gp!r} m outside "
                f"[gap_min, gap_max] = [{lo!r}, {hi!r}] m; valid g is "
                f"[{i0 / v0 * np.exp(-hi / g0):.6g}, {i0 / v0 * np.exp(-lo / g0):.6g}] S"
            )
        return gap

    def current(self, v, g):
        """Return the current ``i0 exp(-gap(g) / g0) sinh(v / v0)`` (A)."""
        xp = array_module(v, g, self.i0, self.v0, self.g0)
        return self.i0 * xp.exp(-self._checked_gap(g) / self.g0) * xp.sinh(v / self.v0)

    def conductance(self, v, g):
        """Return ``dI/dV = i0 exp(-gap(g) / g0) cosh(v / v0) / v0`` (S)."""
        xp = array_module(v, g, self.i0, self.v0, self.g0)
        return self.i0 * xp.exp(-self._checked_gap(g) / self.g0) * xp.cosh(v / self.v0) / self.v0

    def voltage_scale(self, g=None):
        """Return ``v0`` (V), broadcast against ``g`` when given."""
        return _like(array_module(self.v0).asarray(self.v0), g)

    def _expressions(self, ab, g, on):
        gap = _per_cell(self._checked_gap(g), g.size)
        i0, g0, v0 = (_per_cell(p, g.size) for p in (self.i0, self.g0, self.v0))
        return [
            f"{_num(i0[k])}*exp(-{_num(gap[k])}/{_num(g0[k])})*sinh({x}/{_num(v0[k])})"
            for k, x in zip(on, ab, strict=True)
        ]


@dataclass(frozen=True)
class IVTable(_Memristor):
    """Measured I-V curve, monotone (PCHIP) interpolation, scaled by the state.

    ``I = (g / g_ref) f(V)`` where ``f`` is :class:`scipy.interpolate.PchipInterpolator` of the
    table (Fritsch and Carlson, SIAM J. Numer. Anal. 17, 238, 1980), monotone like the data, and
    ``g_ref = f'(0)``, so ``g`` is the conductance at 0 V. Outside ``[v[0], v[-1]]`` the curve
    extends linearly with the end slopes ``f'(v[0])`` and ``f'(v[-1])``.

    The table needs ``v`` strictly increasing, ``i`` strictly increasing, ``v[0] <= 0 <= v[-1]``
    and the curve through the origin: a zero current at ``v == 0`` if 0 is a table voltage; if it
    is not, the point ``(0, 0)`` is inserted (the stored ``v``, ``i`` include it), which requires
    the currents on either side to have opposite signs. The interpolated conductance must be
    positive across the table (checked on 8 samples per interval), so that the extension increases.

    In SPICE (:meth:`spice`) the curve is a ``pwl`` table, piecewise linear between samples: its
    error is about ``h**2 max|f''| / 8`` for spacing ``h``, so validation needs a dense table.

    >>> m = IVTable(v=[-1.0, 0.0, 1.0], i=[-2e-4, 0.0, 2e-4])
    >>> print(m.g_ref, f"{m.current(0.5, 4e-4):.6e}")
    0.0002 2.000000e-04
    """

    v: np.ndarray
    """Table voltages (V), strictly increasing, spanning 0."""
    i: np.ndarray
    """Table currents (A) at ``v``, strictly increasing, 0 at 0 V."""
    g_ref: float = field(init=False)
    """Slope ``f'(0)`` (S) of the interpolated table at 0 V."""
    _f: PchipInterpolator = field(init=False, repr=False, compare=False)
    _df: PchipInterpolator = field(init=False, repr=False, compare=False)
    _scale: float = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        """Validate the parameters."""
        _param(self, "v")
        _param(self, "i")
        v, i = np.array(self.v), np.array(self.i)
        if v.ndim != 1 or v.shape != i.shape or v.size < 2:
            raise ValueError(
                "IVTable: v and i must be 1-D of equal length >= 2, "
                f"got shapes {v.shape}, {i.shape}"
            )
        for name, x, what in (("v", v, "voltages"), ("i", i, "currents")):
            if np.any(np.diff(x) <= 0):
                k = int(np.flatnonzero(np.diff(x) <= 0)[0]) + 1
                raise ValueError(
                    f"IVTable: {what} {name} must be strictly increasing, got "
                    f"{name}[{k}] = {float(x[k])!r} <= {name}[{k - 1}] = {float(x[k - 1])!r} "
                    f"at index {k}"
                )
        if not v[0] <= 0.0 <= v[-1]:
            raise ValueError(
                f"IVTable: the table must contain V = 0, got v from {float(v[0])!r} to "
                f"{float(v[-1])!r}"
            )
        k = int(np.searchsorted(v, 0.0))
        if v[k] == 0.0 and i[k] != 0.0:
            raise ValueError(
                f"IVTable: the curve must pass through (0, 0), got i = {float(i[k])!r} at V = 0"
            )
        if v[k] != 0.0:
            if not i[k - 1] < 0.0 < i[k]:
                raise ValueError(
                    f"IVTable: the curve must pass through (0, 0), but i[{k - 1}] = "
                    f"{float(i[k - 1])!r} and i[{k}] = {float(i[k])!r} on either side of V = 0 "
                    "do not change sign"
                )
            v, i = np.insert(v, k, 0.0), np.insert(i, k, 0.0)
            for name, x in (("v", v), ("i", i)):
                x.flags.writeable = False
                object.__setattr__(self, name, x)
        f = PchipInterpolator(v, i)
        df, d2f = f.derivative(), f.derivative(2)
        x = np.append((v[:-1, None] + np.diff(v)[:, None] * (np.arange(8) / 8)).ravel(), v[-1])
        slope = df(x)
        if np.min(slope) <= 0:
            raise ValueError(
                f"IVTable: interpolated conductance must be > 0, got {float(np.min(slope))!r} "
                f"at V = {float(x[np.argmin(slope)])!r}; add table points there"
            )
        object.__setattr__(self, "_f", f)
        object.__setattr__(self, "_df", df)
        object.__setattr__(self, "g_ref", float(df(0.0)))
        rate = np.max(np.abs(d2f(x)) / slope)
        object.__setattr__(self, "_scale", np.inf if rate == 0 else float(1.0 / rate))

    def _clip(self, v):
        return array_module(v).clip(v, self.v[0], self.v[-1])

    @staticmethod
    def _eval(pp, v):
        """The piecewise polynomial ``pp`` at ``v``: SciPy's evaluation on the host, the same
        polynomials by :func:`piecewise_polynomial` on a GPU."""
        xp = array_module(v)
        return pp(v) if xp is np else piecewise_polynomial(pp.x, pp.c, v)

    def current(self, v, g):
        """Return the current ``(g / g_ref) f(v)`` (A), linear beyond the table ends."""
        vc = self._clip(v)
        return (g / self.g_ref) * (self._eval(self._f, vc) + self._eval(self._df, vc) * (v - vc))

    def conductance(self, v, g):
        """Return ``dI/dV = (g / g_ref) f'(v)`` (S), the end slopes beyond the table."""
        return (g / self.g_ref) * self._eval(self._df, self._clip(v))

    def voltage_scale(self, g=None):
        """Return ``1 / max |f'' / f'|`` over the table (V), broadcast against ``g`` if given.

        Very large for a straight-line table; for a table of ``sinh(a V)`` on ``[-u, u]`` it is
        about ``1 / (a tanh(a u))``.
        """
        return _like(np.asarray(self._scale), g)

    def spice(self, names, a, b, g, *, points: int = 1001, func: str = "ivtable") -> list[str]:
        """Return ``.func {func}(x) {pwl(x, ...)}``, then ``B{name} {a} {b} I=c*{func}(V(a,b))``.

        The interpolant is sampled at the table voltages and at evenly spaced points inside each
        interval, at least ``points`` in all; ngspice's ``pwl`` is linear between them and extends
        the end segments linearly. ``pwl`` takes only literal points, which ngspice rounds to 11
        significant digits, far below the interpolation error. Cells with ``g == 0`` get no line.
        """
        v, steps = self.v, -(-(points - 1) // (len(self.v) - 1))  # ceil division
        x = np.append(
            (v[:-1, None] + np.diff(v)[:, None] * (np.arange(steps) / steps)).ravel(), v[-1]
        )
        table = ", ".join(f"{_fmt(p)}, {_fmt(q)}" for p, q in zip(x, self._f(x), strict=True))
        return [f".func {func}(x) {{pwl(x, {table})}}", *self._sources(names, a, b, g, func=func)]

    def _expressions(self, ab, g, on, func="ivtable"):
        return [f"{_num(g[k] / self.g_ref)}*{func}({x})" for k, x in zip(on, ab, strict=True)]


@dataclass(frozen=True)
class Level1(_Model):
    """NMOS access transistor, SPICE level 1 (Shichman-Hodges), DC, as ngspice's ``mos1load.c``.

    Bulk at 0 V, GAMMA = 0 (so ``von = vto``), LD = 0, TEMP = TNOM, no bulk junctions (IS = 0).
    With ``beta = kp w / l`` and, in the forward mode ``vds >= 0``, ``vgst = vgs - vto``,
    ``beta' = beta (1 + lambda_ vds)``:

    - cutoff ``vgst <= 0``: ``Id = gm = gds = 0`` (no subthreshold current, no gmin);
    - saturation ``vgst <= vds``: ``Id = beta' vgst**2 / 2``, ``gm = beta' vgst``,
      ``gds = lambda_ beta vgst**2 / 2``;
    - linear: ``Id = beta' vds (vgst - vds / 2)``, ``gm = beta' vds``,
      ``gds = beta' (vgst - vds) + lambda_ beta vds (vgst - vds / 2)``.

    For ``vds < 0`` source and drain swap: the same formulas with ``(vgd, -vds)`` and the
    current reversed. Source: Shichman and Hodges, IEEE JSSC 3, 285 (1968); ngspice manual,
    MOSFET level 1, and ``src/spicelib/devices/mos1/mos1load.c``. ``gm`` and ``gds`` are the
    exact partial derivatives of ``Id``. Valid for ``kp, w, l > 0``, ``lambda_ >= 0``, any
    voltages.

    >>> t = Level1(vto=0.5, kp=2e-5, w=2e-6, l=1e-6)
    >>> i, di_dvd, di_dvs = t.drain_current(1.0, 0.0, 1.5)  # saturation: beta (1 V)**2 / 2
    >>> print(f"{i:.6e} {di_dvd:.6e} {di_dvs:.6e}")
    2.000000e-05 0.000000e+00 -4.000000e-05
    """

    vto: float | np.ndarray = 0.5
    """Threshold voltage VTO (V)."""
    kp: float | np.ndarray = 2e-5
    """Transconductance parameter KP (A/V**2), > 0."""
    lambda_: float | np.ndarray = 0.0
    """Channel-length modulation LAMBDA (1/V), >= 0."""
    w: float | np.ndarray = 1e-6
    """Channel width W (m), > 0."""
    l: float | np.ndarray = 1e-6
    """Channel length L (m), > 0."""

    _cell_params: ClassVar[tuple[str, ...]] = ("vto", "kp", "lambda_", "w", "l")

    def __post_init__(self):
        """Validate the parameters."""
        _param(self, "vto")
        _param(self, "lambda_", 0.0, inclusive=True)
        for name in ("kp", "w", "l"):
            _param(self, name, 0.0)

    def drain_current(self, vd, vs, vg):
        """Return the drain current and its partial derivatives, vectorized.

        Parameters
        ----------
        vd, vs, vg : array_like
            Drain, source and gate node voltages (V), broadcast together and with the parameters.

        Returns
        -------
        i : ndarray
            Current (A) into the drain and out of the source; negative in reverse mode.
        di_dvd, di_dvs : ndarray
            Partial derivatives of ``i`` (S) with respect to ``vd`` and ``vs``, gate held fixed.
        """
        xp = array_module(vd, vs, vg, self.vto, self.kp, self.w, self.l, self.lambda_)
        # In place where it can be: each temporary is as large as the batch of cells.
        shape = np.broadcast_shapes(*(np.shape(x) for x in (vd, vs, vg, self.vto, self.kp,
                                                             self.w, self.l, self.lambda_)))
        vds = xp.empty(shape)
        xp.subtract(vd, vs, out=vds)
        forward = vds >= 0
        vds_m = xp.abs(vds, out=vds)  # vds' = mode * vds
        # vgs' = vg - vs forward, vg - vd reverse: the gate against the lower of the two ends.
        # Cutoff (vgst <= 0) is exactly zero: with vgst clamped at 0 every expression below is 0
        # (a NaN voltage stays NaN).
        vgst = xp.empty(shape)
        xp.minimum(vd, vs, out=vgst)
        xp.subtract(vg, vgst, out=vgst)
        vgst -= self.vto
        xp.maximum(vgst, 0.0, out=vgst)
        beta = self.kp * self.w / self.l
        # One expression for both regions: u = vds' in the linear region, vgst in saturation, so
        # Id = beta' u (vgst - u/2) is beta' vds'(vgst - vds'/2) there and beta'/2 vgst^2 here;
        # gm = beta' u; gds = beta'(vgst - u) + lambda beta u (vgst - u/2).
        u = xp.minimum(vgst, vds_m)
        h = u * -0.5
        h += vgst
        h *= u
        betap = vds_m  # beta' = beta (1 + lambda_ vds'), over vds'
        betap *= self.lambda_
        betap += 1.0
        betap *= beta
        ids = betap * h
        gds = vgst  # gds = beta' (vgst - u) + (lambda_ beta) h, over vgst
        gds -= u
        gds *= betap
        h *= self.lambda_ * beta
        gds += h
        gm = u  # gm = beta' u, over u
        gm *= betap
        # Forward: i = Id(vg - vs, vd - vs). Reverse: i = -Id(vg - vd, vs - vd).
        i = xp.where(forward, ids, -ids)
        di_dvd = xp.where(forward, gds, gm + gds)
        gm += gds  # di_dvs = -(gm + gds) forward, -gds reverse
        di_dvs = xp.where(forward, gm, gds)
        xp.negative(di_dvs, out=di_dvs)
        return i, di_dvd, di_dvs

    def spice(self, names, d, gate, s, model_name_prefix: str = "nmos") -> list[str]:
        """Return ``.model`` cards, one per distinct (vto, kp, lambda_), then ``M`` lines.

        Instance lines read ``M{name} {d} {gate} {s} 0 {model} W={w} L={l}``; cards read
        ``.model {prefix}{k} nmos (level=1 vto=.. kp=.. lambda=.. is=0)``. ``is=0`` removes the
        bulk junction diodes, whose ``-IS + GMIN V`` leakage this model does not have; ngspice still
        puts GMIN across each junction, so a deck meant to match to 1e-12 also sets a tiny
        ``.options gmin`` (``gmin=1e-30`` works). Parameters must already be reduced to a scalar,
        ``(E,)`` or ``(1, E)``.
        """
        size = len(names)
        p = np.stack([_per_cell(getattr(self, k), size) for k in self._cell_params], axis=1)
        cards, which = np.unique(p[:, :3], axis=0, return_inverse=True)
        which = which.reshape(-1)
        lines = [
            f".model {model_name_prefix}{k} nmos (level=1 vto={_fmt(vto)} kp={_fmt(kp)} "
            f"lambda={_fmt(lam)} is=0)"
            for k, (vto, kp, lam) in enumerate(cards)
        ]
        return lines + [
            f"M{names[k]} {d[k]} {gate[k]} {s[k]} 0 {model_name_prefix}{which[k]} "
            f"W={_fmt(p[k, 3])} L={_fmt(p[k, 4])}"
            for k in range(size)
        ]
