"""Configuration of mapped layers: the tile, the mapping, programming non-idealities, converters.

Every piece is a small frozen dataclass validated on construction; variants are made with
:func:`dataclasses.replace`. SI units throughout (siemens, ohms, volts, seconds).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["ADC", "DAC", "Drift", "Faults", "TileConfig", "Variability"]

MAPPINGS = ("separate", "interleaved", "offset")


def _number(owner: str, name: str, value, *, lower=None, inclusive=True, allow_inf=False):
    """Check that ``value`` is a real number (not bool) within bounds; return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    if lower is not None and (value < lower or (not inclusive and value == lower)):
        op = ">=" if inclusive else ">"
        raise ValueError(f"{owner}: {name} must be {op} {lower}, got {value}")
    return value


def _integer(owner: str, name: str, value, lower: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    if value < lower:
        raise ValueError(f"{owner}: {name} must be >= {lower}, got {value}")
    return value


def _choice(owner: str, name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{owner}: {name} must be one of {options}, got {value!r}")


@dataclass(frozen=True)
class Variability:
    """Device-to-device variability of the programmed state, drawn once per device.

    With ``z`` standard normal per device and ``X`` the programmed conductance (``on="G"``) or
    resistance ``1/G`` (``on="R"``):

    - ``distribution="normal"``, ``relative=True``: ``X' = X (1 + sigma z)``;
    - ``distribution="normal"``, ``relative=False``: ``X' = X + sigma z`` (``sigma`` in S or ohm);
    - ``distribution="lognormal"``: ``X' = X exp(sigma z)`` (``sigma`` is the standard deviation of
      ``ln X``; ``relative`` must be True).

    A conductance drawn below 0 is set to 0 (an open device) and counted
    (``ProgrammingStats.clipped``); a resistance drawn at or below 0 is an error (use the
    lognormal distribution).
    """

    sigma: float
    """Standard deviation (relative, absolute in S or ohm, or of the logarithm)."""
    distribution: str = "normal"
    """``"normal"`` or ``"lognormal"``."""
    on: str = "G"
    """``"G"`` (conductance) or ``"R"`` (resistance)."""
    relative: bool = True
    """Whether ``sigma`` is relative to the programmed value (normal distribution only)."""

    def __post_init__(self):
        _number("Variability", "sigma", self.sigma, lower=0.0)
        _choice("Variability", "distribution", self.distribution, ("normal", "lognormal"))
        _choice("Variability", "on", self.on, ("G", "R"))
        if not isinstance(self.relative, bool):
            raise TypeError("Variability: relative must be True or False")
        if self.distribution == "lognormal" and not self.relative:
            raise ValueError("Variability: a lognormal spread is relative; set relative=True")


@dataclass(frozen=True)
class Faults:
    """Stuck-at faults: each device independently stuck at ON (``g_max``) or OFF (``g_min``)."""

    stuck_on: float = 0.0
    """Probability that a device is stuck at ``g_max``."""
    stuck_off: float = 0.0
    """Probability that a device is stuck at ``g_min``."""

    def __post_init__(self):
        for name in ("stuck_on", "stuck_off"):
            p = _number("Faults", name, getattr(self, name), lower=0.0)
            if p > 1:
                raise ValueError(f"Faults: {name} must be <= 1, got {p}")
        if self.stuck_on + self.stuck_off > 1:
            raise ValueError(
                f"Faults: stuck_on + stuck_off = {self.stuck_on + self.stuck_off} exceeds 1"
            )


@dataclass(frozen=True)
class Drift:
    """Conductance drift ``G(t) = G0 (t / t0)^-nu`` at read time ``t`` after programming.

    ``nu`` is drawn per device from a normal distribution of mean ``nu`` and standard deviation
    ``nu_std`` (0: the same exponent everywhere), clipped at 0. ``t0 = 20 s`` follows the usual
    phase-change-memory convention (Joshi et al., Nat. Commun. 11, 2473, 2020).
    """

    t: float
    """Read time after programming (s), >= t0."""
    nu: float = 0.05
    """Mean drift exponent, >= 0."""
    nu_std: float = 0.0
    """Device-to-device standard deviation of the exponent, >= 0."""
    t0: float = 20.0
    """Reference time (s), > 0."""

    def __post_init__(self):
        t0 = _number("Drift", "t0", self.t0, lower=0.0, inclusive=False)
        t = _number("Drift", "t", self.t, lower=0.0, inclusive=False)
        if t < t0:
            raise ValueError(f"Drift: t = {t} s is before t0 = {t0} s")
        _number("Drift", "nu", self.nu, lower=0.0)
        _number("Drift", "nu_std", self.nu_std, lower=0.0)


@dataclass(frozen=True)
class DAC:
    """Input digital-to-analog converter: uniform levels over the input range ``x_max``.

    ``signed=True``: ``2^bits - 1`` levels ``k x_max / (2^(bits-1) - 1)``,
    ``|k| <= 2^(bits-1) - 1`` (needs ``bits >= 2``); ``signed=False``: ``2^bits`` levels
    ``k x_max / (2^bits - 1)``, ``0 <= k <= 2^bits - 1``. Inputs outside the range are clipped
    to it and counted.
    """

    bits: int = 8
    """Resolution (bits)."""
    signed: bool = True
    """Signed range ``[-x_max, x_max]`` or unsigned ``[0, x_max]``."""

    def __post_init__(self):
        _integer("DAC", "bits", self.bits, 2 if self.signed else 1)
        if not isinstance(self.signed, bool):
            raise TypeError("DAC: signed must be True or False")


@dataclass(frozen=True)
class ADC:
    """Output analog-to-digital converter, one per output column of each tile.

    It digitizes a tile's differential current (``I+ - I-``; the column current for the offset
    mapping) with ``2^bits - 1`` levels ``k I_fs / (2^(bits-1) - 1)``, ``|k| <= 2^(bits-1) - 1``,
    clipping (and counting) currents beyond the full scale ``I_fs``:

    - ``range="calibrated"``: ``I_fs`` is the ``quantile`` of ``|I|`` over every tile and column of
      the layer on the calibration inputs (``calibrate``), in ``"mapped"`` mode;
    - ``range="max"``: the largest possible current, ``rows v_read (g_max - g_min)`` (differential)
      or ``rows v_read g_max`` (offset);
    - a number: ``I_fs`` in amperes.

    The range is fixed once (never per batch), so results do not depend on how inputs are batched.
    """

    bits: int = 8
    """Resolution (bits), >= 2."""
    range: Any = "calibrated"
    """``"calibrated"``, ``"max"`` or a full-scale current (A)."""
    quantile: float = 1.0
    """Quantile of the calibration currents taken as full scale (1.0: their maximum)."""

    def __post_init__(self):
        _integer("ADC", "bits", self.bits, 2)
        if isinstance(self.range, str):
            _choice("ADC", "range", self.range, ("calibrated", "max"))
        else:
            _number("ADC", "range", self.range, lower=0.0, inclusive=False)
        q = _number("ADC", "quantile", self.quantile, lower=0.0, inclusive=False)
        if q > 1:
            raise ValueError(f"ADC: quantile must be in (0, 1], got {q}")


@dataclass(frozen=True)
class TileConfig:
    """How a layer's weights become crossbar tiles, and what the tiles and peripherals are.

    Examples
    --------
    >>> from circuitsim import layers as L
    >>> cfg = L.TileConfig(rows=16, cols=16, r_wl=1.0, r_bl=1.0, mapping="interleaved")
    >>> cfg.outputs_per_tile
    8
    """

    rows: int = 128
    """Word lines (inputs) per tile."""
    cols: int = 128
    """Bit lines (physical columns) per tile."""
    r_wl: float = 1.0
    """Word-line wire resistance per cell segment (ohm)."""
    r_bl: float = 1.0
    """Bit-line wire resistance per cell segment (ohm)."""
    r_source: float = 0.0
    """Driver resistance of each word line (ohm)."""
    r_sense: float = 0.0
    """Sense (input) resistance of each bit line's amplifier (ohm)."""
    device: Any = None
    """Memristor model (:mod:`circuitsim.devices`); None: linear ``I = g V``."""
    access: Any = None
    """Access transistor model (1T1R), e.g. :class:`circuitsim.devices.Level1`; None: passive."""
    v_gate: float | None = None
    """Gate voltage of the access transistors (V); required with ``access``."""
    g_min: float = 1e-6
    """Lowest programmable conductance (S), >= 0."""
    g_max: float = 1e-4
    """Highest programmable conductance (S), > g_min."""
    mapping: str = "separate"
    """``"separate"`` (G+ and G- tiles), ``"interleaved"`` (G+ on column 2j, G- on 2j+1) or
    ``"offset"`` (one device per weight, offset removed digitally)."""
    v_read: float = 0.2
    """Word-line voltage of a full-scale input (V)."""
    levels: int | None = None
    """Number of programmable conductance levels, evenly spaced in G over [g_min, g_max]."""
    variability: Variability | None = None
    """Device-to-device variability (:class:`Variability`)."""
    faults: Faults | None = None
    """Stuck-at faults (:class:`Faults`)."""
    drift: Drift | None = None
    """Conductance drift (:class:`Drift`)."""
    dac: DAC | None = None
    """Input converter (:class:`DAC`); None: ideal (no quantization, no clipping)."""
    adc: ADC | None = None
    """Output converter (:class:`ADC`); None: ideal."""
    seed: int = 0
    """Seed of the programming non-idealities (each layer of a network draws its own stream)."""
    compensate: bool = False
    """Program every tile so that its exact circuit computes the ideal crossbar of the mapped
    conductances (:func:`circuitsim.compensate`, within ``[g_min, g_max]``), before the
    programming non-idealities: linear tiles match their transfer matrix, nonlinear and 1T1R tiles
    the outputs for ``compensate_inputs`` of the calibration inputs. ``"mapped"`` mode is
    unchanged (the ideal-wire reference); only the circuit's tiles are compensated."""
    column_gain: bool = False
    """A gain per bit line (the sense amplifier's, before the ADC), fitted by least squares so
    that each column's output matches the ideal crossbar's: from the transfer matrix (linear
    tiles) or on the calibration inputs (nonlinear, 1T1R). With ``compensate`` (linear tiles
    only) the gains are fitted jointly with the conductances (``gain="column"``)."""
    compensate_inputs: int = 256
    """Calibration inputs (evenly spaced among those given to ``calibrate``) that nonlinear and
    1T1R tiles are compensated or column-calibrated on; more than ``rows`` avoids fitting the
    calibration inputs only."""

    def __post_init__(self):
        owner = "TileConfig"
        _integer(owner, "rows", self.rows, 1)
        _integer(owner, "cols", self.cols, 2 if self.mapping == "interleaved" else 1)
        for name in ("r_wl", "r_bl", "r_source", "r_sense"):
            _number(owner, name, getattr(self, name), lower=0.0)
        g_min = _number(owner, "g_min", self.g_min, lower=0.0)
        g_max = _number(owner, "g_max", self.g_max, lower=0.0, inclusive=False)
        if g_max <= g_min:
            raise ValueError(f"{owner}: g_max ({g_max}) must exceed g_min ({g_min})")
        _choice(owner, "mapping", self.mapping, MAPPINGS)
        _number(owner, "v_read", self.v_read, lower=0.0, inclusive=False)
        if self.levels is not None:
            _integer(owner, "levels", self.levels, 2)
        for name, kind in (("variability", Variability), ("faults", Faults), ("drift", Drift),
                           ("dac", DAC), ("adc", ADC)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise TypeError(
                    f"{owner}: {name} must be a circuitsim.layers.{kind.__name__} or None, "
                    f"got {type(value).__name__}"
                )
        if self.device is not None and not callable(getattr(self.device, "current", None)):
            raise TypeError(f"{owner}: device must be a circuitsim.devices model, "
                            f"got {type(self.device).__name__}")
        if self.access is not None:
            if not callable(getattr(self.access, "drain_current", None)):
                raise TypeError(f"{owner}: access must be a transistor model such as "
                                f"circuitsim.devices.Level1, got {type(self.access).__name__}")
            if self.v_gate is None:
                raise ValueError(f"{owner}: access is given but v_gate is None")
            _number(owner, "v_gate", self.v_gate)
        elif self.v_gate is not None:
            raise ValueError(f"{owner}: v_gate is given but access is None (1T1R only)")
        _integer(owner, "seed", self.seed, 0)
        for name in ("compensate", "column_gain"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{owner}: {name} must be True or False, "
                                f"got {getattr(self, name)!r}")
        _integer(owner, "compensate_inputs", self.compensate_inputs, 1)
        if self.compensate and self.column_gain and not self.linear:
            raise ValueError(f"{owner}: compensate with column_gain fits the gains jointly with "
                             "the transfer matrix, which nonlinear and 1T1R tiles lack; use one "
                             "of them")

    @property
    def differential(self) -> bool:
        """True for the two-device mappings (``"separate"``, ``"interleaved"``)."""
        return self.mapping != "offset"

    @property
    def outputs_per_tile(self) -> int:
        """Layer outputs held by one tile: ``cols``, or ``cols // 2`` when interleaved."""
        return self.cols // 2 if self.mapping == "interleaved" else self.cols

    @property
    def linear(self) -> bool:
        """True when tiles are linear circuits (no access transistor, linear device)."""
        return self.access is None and (self.device is None or getattr(self.device, "linear", False))

    def replace(self, **changes) -> TileConfig:
        """A copy with ``changes`` (as :func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line: tile size, wires, cell kind, mapping, non-idealities, converters."""
        cell = "1T1R" if self.access is not None else "passive"
        dev = "linear" if self.device is None else type(self.device).__name__
        parts = [
            f"{self.rows}x{self.cols} {cell} tiles of {dev} devices",
            (f"r_wl {self.r_wl:g} r_bl {self.r_bl:g} r_source {self.r_source:g} "
            f"r_sense {self.r_sense:g} ohm"),
            f"G {self.g_min:.3g}..{self.g_max:.3g} S",
            self.mapping,
            f"v_read {self.v_read:g} V",
        ]
        if self.levels:
            parts.append(f"{self.levels} levels")
        if self.compensate or self.column_gain:
            parts.append(" + ".join(name for name, on in (("compensated", self.compensate),
                                                        ("column gains", self.column_gain))
                                    if on))
        for name in ("variability", "faults", "drift", "dac", "adc"):
            value = getattr(self, name)
            if value is not None:
                fields = ", ".join(f"{f.name}={getattr(value, f.name)!r}"
                                   for f in dataclasses.fields(value))
                parts.append(f"{name}({fields})")
        return "; ".join(parts)
