"""A weight matrix on crossbar tiles: ``y = x @ W.T`` in the modes ``ideal``, ``mapped``, ``circuit``.

:class:`AnalogMatrix` is the analog core of :class:`~.layers.Linear` and :class:`~.layers.Conv2d`:

1. inputs ``x`` ``(K, in)`` go through the DAC (range ``x_max``) and become word-line voltages
   ``v = x v_read / x_max``, cut into row blocks (unused rows of edge tiles at 0 V);
2. every tile gives its bit-line currents: ``"mapped"`` as the product ``v @ G`` (ideal wires and
   devices), ``"circuit"`` from the engine (wires, driver and sense resistances, devices, access
   transistors) with all tiles of the layer as one batched tile;
3. in ``"circuit"`` mode each bit line's current is multiplied by its column gain where
   ``config.column_gain`` (:mod:`~.compensation`); per tile and output the differential current
   ``I+ - I-`` (or the column current for the offset mapping) goes through the ADC, is scaled
   back to the weight domain, and row blocks add up digitally (the offset mapping also adds its
   offset times the digital input sum).

With no non-idealities and no converters ``"mapped"`` equals ``"ideal"`` to round-off, and so
does ``"circuit"`` with all resistances 0 and linear devices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import circuit, compensation, converters, mapping
from .config import TileConfig
from .programming import program

__all__ = ["MODES", "AnalogMatrix", "CallStats", "IRDrop", "TileInfo", "Validation"]

MODES = ("ideal", "mapped", "circuit")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


@dataclass(frozen=True)
class TileInfo:
    """One mapped tile of a layer.

    Attributes
    ----------
    index : int
        Position in the layer's batched tile.
    row_block, col_block : int
        Block of inputs (word lines) and of outputs (bit lines) it holds.
    side : {"+", "-"} or None
        G+ or G- tile of the ``"separate"`` mapping; None otherwise (both sides, or offset).
    inputs, outputs : tuple of int
        Half-open ranges of the layer's inputs on rows ``0 .. inputs[1] - inputs[0]`` and of its
        outputs on the tile.
    columns : int
        Physical columns in use (the others hold ``g_min`` devices whose currents are discarded).
    g : ndarray, (rows, cols)
        Programmed conductances (S).
    """

    index: int
    row_block: int
    col_block: int
    side: str | None
    inputs: tuple[int, int]
    outputs: tuple[int, int]
    columns: int
    g: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class CallStats:
    """What the last call of a layer did (``layer.last``).

    Attributes
    ----------
    mode : str
    inputs : int
        Input vectors ``K`` (image patches for a convolution).
    dac_clipped, dac_conversions : int
        Inputs beyond the DAC range, and inputs converted (0 without a DAC).
    adc_clipped, adc_conversions : int
        ADC conversions that clipped, and conversions (0 without an ADC).
    newton_iterations_max : int or None
        Largest Newton iteration count of the batched solve (nonlinear circuit mode only).
    newton_iterations_mean : float or None
    seconds : float
    """

    mode: str
    inputs: int
    dac_clipped: int = 0
    dac_conversions: int = 0
    adc_clipped: int = 0
    adc_conversions: int = 0
    newton_iterations_max: int | None = None
    newton_iterations_mean: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class IRDrop:
    """IR-drop figures of a layer's tiles: the circuit's bit-line currents against the ideal-wire
    currents ``v @ G`` of the same programmed devices and voltages, before the ADC.

    Attributes
    ----------
    rel_rms, rel_max : ndarray, (B,)
        Per tile: RMS and largest current error over its used columns and the inputs, relative to
        the RMS and the largest ideal-wire current.
    worst_tile : int
        Tile with the largest ``rel_max``.
    """

    rel_rms: np.ndarray
    rel_max: np.ndarray
    worst_tile: int


@dataclass(frozen=True)
class Validation:
    """A layer's mapped tiles cross-checked against ngspice (``layer.validate``).

    Attributes
    ----------
    reports : list of circuitsim.validation.Report
        One per (tile, input vector): circuitsim's ``solve`` of the tile against ngspice, node by
        node.
    cases : list of tuple
        ``(tile index, input index, relative error of the layer's own bit-line currents against
        ngspice's)``, aligned with ``reports``.
    """

    reports: list
    cases: list

    @property
    def passed(self) -> bool:
        """Every node and every layer current agrees within the report's tolerance."""
        return all(r.passed and e <= r.rtol for r, (_, _, e) in zip(self.reports, self.cases))

    @property
    def v_rel(self) -> float:
        return max((r.v_rel for r in self.reports), default=0.0)

    @property
    def i_rel(self) -> float:
        """Worst relative error of the currents: ``solve``'s and the layer's own."""
        return max([r.i_rel for r in self.reports] + [e for *_, e in self.cases], default=0.0)

    def summary(self) -> str:
        tiles = sorted({t for t, _, _ in self.cases})
        status = "agree" if self.passed else "DISAGREE"
        return (f"{len(self.reports)} ngspice runs (tiles {tiles}): max rel error V "
                f"{self.v_rel:.1e}, I {self.i_rel:.1e}: {status}")

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "v_rel": self.v_rel,
            "i_rel": self.i_rel,
            "cases": [
                {"tile": t, "input": k, "v_rel": r.v_rel, "i_rel": r.i_rel, "layer_i_rel": e,
                 "rtol": r.rtol, "ngspice_s": r.ngspice_s}
                for r, (t, k, e) in zip(self.reports, self.cases)
            ],
        }


class AnalogMatrix:
    """``y = x @ W.T`` on mapped tiles.

    Parameters
    ----------
    W : array_like, (out, in)
        Weights.
    config : TileConfig
    x_max : float, optional
        Input full scale (``v_read`` on the word line); default from :meth:`calibrate`.
    w_max : float, optional
        Weight full scale; default ``max |W|`` (offset mapping: the range of ``W``).
    stream : int
        Random stream of the programming non-idealities (distinct per layer of a network).
    name : str
        Used in error messages.
    """

    def __init__(self, W, config: TileConfig, *, x_max: float | None = None,
                 w_max: float | None = None, stream: int = 0, name: str = "layer"):
        if not isinstance(config, TileConfig):
            raise TypeError(f"{name}: config must be a circuitsim.layers.TileConfig, "
                            f"got {type(config).__name__}")
        W = np.array(W, dtype=np.float64)
        if W.ndim != 2 or 0 in W.shape:
            raise ValueError(f"{name}: weights have shape {W.shape}; expected (out, in)")
        if not np.isfinite(W).all():
            raise ValueError(f"{name}: weights contain NaN or inf")
        if x_max is not None and (not np.isfinite(x_max) or x_max <= 0):
            raise ValueError(f"{name}: x_max must be a positive number, got {x_max}")
        self.name = name
        self.W = W
        self.config = config
        self.stream = stream
        self.x_max_given = None if x_max is None else float(x_max)
        self.x_max = self.x_max_given
        self.scaling = mapping.scaling(W, config, w_max)
        self.layout = mapping.layout(W.shape[1], W.shape[0], config)
        self.adc_full_scale = self._fixed_full_scale()
        self.last: CallStats | None = None
        self._last_v = None
        self._calibration_v = None
        self._program(W)

    def _program(self, W: np.ndarray) -> None:
        """Map and program ``W`` with the layer's scaling; forget the circuit built before."""
        self.W = W
        self.target = mapping.conductances(W, self.config, self.scaling)
        self.devices, self.programming = program(self.target, self.config, self.stream)
        self.G = mapping.place(self.devices, self.layout, self.config.g_min)
        self._forget_circuit()

    def _forget_circuit(self) -> None:
        self._tile = None
        self._T = None
        self._circuit = None

    @property
    def weight_range(self) -> tuple[float, float]:
        """Weights the scaling can program: ``(-w_max, w_max)`` (differential) or
        ``(w_lo, w_hi)`` (offset)."""
        s = self.scaling
        return (-s.w_max, s.w_max) if self.config.differential else (s.w_lo, s.w_hi)

    def reprogram(self, W) -> AnalogMatrix:
        """Program new weights ``W`` ``(out, in)`` on the same tiles: the scaling, the input and
        ADC ranges and the random streams of the programming non-idealities are kept (what
        fine-tuning does after each step). Weights outside :attr:`weight_range` are an error.
        Returns self."""
        W = np.array(W, dtype=np.float64)
        if W.shape != self.W.shape:
            raise ValueError(f"{self.name}: new weights have shape {W.shape}; expected "
                             f"{self.W.shape}")
        if not np.isfinite(W).all():
            raise ValueError(f"{self.name}: new weights contain NaN or inf")
        lo, hi = self.weight_range
        if W.min() < lo or W.max() > hi:
            raise ValueError(f"{self.name}: new weights span [{W.min():g}, {W.max():g}], beyond "
                             f"the programmable range [{lo:g}, {hi:g}] of the layer's scaling")
        self._program(W)
        return self

    # --- structure --------------------------------------------------------------------------

    @property
    def n_in(self) -> int:
        return self.W.shape[1]

    @property
    def n_out(self) -> int:
        return self.W.shape[0]

    @property
    def tiles(self) -> list[TileInfo]:
        """The layer's mapped tiles, in the order of its batched tile."""
        lay, cfg = self.layout, self.config
        G = self.G_circuit
        out = []
        for b in range(lay.n_tiles):
            rc, s = divmod(b, lay.sides)
            r, c = divmod(rc, lay.n_col_blocks)
            i0, o0 = r * lay.rows, c * lay.per_tile
            i1, o1 = min(i0 + lay.rows, lay.n_in), min(o0 + lay.per_tile, lay.n_out)
            side = ("+", "-")[s] if cfg.mapping == "separate" else None
            used = (o1 - o0) * (2 if cfg.mapping == "interleaved" else 1)
            out.append(TileInfo(b, r, c, side, (i0, i1), (o0, o1), used, G[b]))
        return out

    def circuit_program(self) -> compensation.CircuitProgram:
        """What the circuit's tiles hold: the programmed conductances (compensated where
        ``config.compensate``), the column gains (``config.column_gain``) and the compensation
        report (:class:`~.compensation.CircuitProgram`); computed once, on first use."""
        if self._circuit is None:
            self._circuit = compensation.circuit_program(self)
        return self._circuit

    @property
    def G_circuit(self) -> np.ndarray:
        """Conductances on the circuit's tiles ``(B, rows, cols)``: :attr:`G`, or the
        compensated programming where ``config.compensate``."""
        return self.circuit_program().G

    def circuit_tile(self):
        """The layer's tiles as one batched :class:`circuitsim.Tile` ``(B, rows, cols)``."""
        if self._tile is None:
            self._tile = circuit.build(self.G_circuit, self.config)
        return self._tile

    @property
    def calibrated(self) -> bool:
        return self.x_max is not None and self.adc_full_scale is not None

    # --- calibration ------------------------------------------------------------------------

    def _fixed_full_scale(self) -> float | None:
        adc, cfg = self.config.adc, self.config
        if adc is None:
            return np.inf
        if adc.range == "max":
            g = cfg.g_max - cfg.g_min if cfg.differential else cfg.g_max
            return cfg.rows * cfg.v_read * g
        if adc.range == "calibrated":
            return None
        return float(adc.range)

    def calibrate(self, x) -> AnalogMatrix:
        """Fix the input range (unless ``x_max`` was given) and a calibrated ADC range on sample
        inputs ``x`` ``(K, in)``: ``x_max = max |x|``; the ADC full scale from the ``"mapped"``
        currents (:class:`~.config.ADC`). Returns self."""
        x = self._check_input(x)
        if self.x_max_given is None:
            top = float(np.abs(x).max())
            self.x_max = top if top > 0 else 1.0
        cfg = self.config
        if (cfg.compensate or cfg.column_gain) and not cfg.linear:
            v = self._voltages(x)[0]
            K = v.shape[1]
            pick = np.unique(np.linspace(0, K - 1, min(K, cfg.compensate_inputs)).round())
            self._calibration_v = v[:, pick.astype(int)]
            self._forget_circuit()  # matched on these inputs: match again
        adc = self.config.adc
        if adc is not None and adc.range == "calibrated":
            v, _, _ = self._voltages(x)
            d = self._differential(np.matmul(v, self.G))
            full = float(np.quantile(np.abs(d), adc.quantile))
            if not full > 0:
                raise ValueError(f"{self.name}: the calibration inputs give zero currents; "
                                 "calibrate on non-zero inputs or give ADC(range=...)")
            self.adc_full_scale = full
        return self

    # --- evaluation -------------------------------------------------------------------------

    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"{self.name}: input has shape {x.shape}; expected (K, {self.n_in})")
        if not np.isfinite(x).all():
            raise ValueError(f"{self.name}: input contains NaN or inf")
        return x

    def _require_calibration(self):
        missing = []
        if self.x_max is None:
            missing.append("x_max (give x_max= or call calibrate)")
        if self.adc_full_scale is None:
            missing.append("the ADC range (call calibrate)")
        if missing:
            raise ValueError(f"{self.name} is not calibrated: {' and '.join(missing)}; "
                             "evaluate() calibrates networks on its inputs")

    def _voltages(self, x: np.ndarray):
        """DAC and scaling: word-line voltages per tile ``(B, K, rows)``, the quantized inputs
        ``(K, in)`` and the DAC clip count."""
        xq, clipped = converters.dac(x, self.x_max, self.config.dac)
        blocks = mapping.block_inputs(xq, self.layout) * (self.config.v_read / self.x_max)
        return blocks[self.layout.row_block()], xq, clipped

    def _differential(self, currents: np.ndarray) -> np.ndarray:
        """Tile currents ``(B, K, cols)`` to the used outputs' (differential) currents
        ``(R, K, out)``."""
        lay = self.layout
        i = mapping.unplace(currents, lay)  # (S, R, C, K, q)
        d = i[0] - i[1] if self.config.differential else i[0]
        R, C, K, q = d.shape
        return d.transpose(0, 2, 1, 3).reshape(R, K, C * q)[:, :, : lay.n_out]

    def _currents(self, v: np.ndarray, mode: str):
        """Bit-line currents ``(B, K, cols)`` and Newton iterations (or None)."""
        if mode == "mapped":
            return np.matmul(v, self.G), None
        tile = self.circuit_tile()
        if self.config.linear:
            if self._T is None:
                self._T = circuit.transfer(tile)
            return circuit.linear_currents(self._T, v), None
        return circuit.solve_currents(tile, v)

    def tile_voltages(self, x) -> np.ndarray:
        """Word-line voltages of every tile ``(B, K, rows)`` (V) for inputs ``x`` ``(K, in)``:
        after the DAC, ``x v_read / x_max``, 0 V on unused rows."""
        self._require_calibration()
        return self._voltages(self._check_input(x))[0]

    def tile_currents(self, x, mode: str = "circuit") -> np.ndarray:
        """Bit-line currents of every tile ``(B, K, cols)`` (A) for inputs ``x`` ``(K, in)``, as
        the layer computes them in ``mode`` (``"mapped"`` or ``"circuit"``), before the column
        gains and the ADC."""
        if check_mode(mode) == "ideal":
            raise ValueError("tile_currents: mode 'ideal' has no tiles; use 'mapped' or 'circuit'")
        self._require_calibration()
        v, _, _ = self._voltages(self._check_input(x))
        return self._currents(v, mode)[0]

    def __call__(self, x, mode: str = "ideal") -> np.ndarray:
        """``x @ W.T`` ``(K, out)`` for ``x`` ``(K, in)`` in ``mode`` (no bias)."""
        check_mode(mode)
        x = self._check_input(x)
        start = time.perf_counter()
        if mode == "ideal":
            y = x @ self.W.T
            self.last = CallStats(mode, len(x), seconds=time.perf_counter() - start)
            return y
        self._require_calibration()
        cfg = self.config
        v, xq, dac_clipped = self._voltages(x)
        self._last_v = v
        currents, its = self._currents(v, mode)
        if mode == "circuit" and self.circuit_program().gain is not None:
            currents = currents * self.circuit_program().gain[:, None, :]
        d = self._differential(currents)
        d, adc_clipped = converters.adc(d, self.adc_full_scale, cfg.adc)
        scale = self.scaling.weight_per_siemens(cfg) * self.x_max / cfg.v_read
        y = d.sum(axis=0) * scale
        if not cfg.differential:
            offset = self.scaling.w_lo - cfg.g_min * self.scaling.weight_per_siemens(cfg)
            y += offset * xq.sum(axis=1, keepdims=True)
        self.last = CallStats(
            mode, len(x),
            dac_clipped=dac_clipped,
            dac_conversions=x.size if cfg.dac is not None else 0,
            adc_clipped=adc_clipped,
            adc_conversions=d.size if cfg.adc is not None else 0,
            newton_iterations_max=None if its is None else int(its.max()),
            newton_iterations_mean=None if its is None else float(its.mean()),
            seconds=time.perf_counter() - start,
        )
        return y

    # --- inspection -------------------------------------------------------------------------

    def _used_columns(self) -> list[np.ndarray]:
        return [np.arange(t.columns) for t in self.tiles]

    def ir_drop(self, x) -> IRDrop:
        """IR-drop figures of every tile on inputs ``x`` ``(K, in)`` (see :class:`IRDrop`)."""
        self._require_calibration()
        v, _, _ = self._voltages(self._check_input(x))
        ideal = np.matmul(v, self.G_circuit)
        real = self._currents(v, "circuit")[0]
        rms, top = np.zeros(len(ideal)), np.zeros(len(ideal))
        for b, cols in enumerate(self._used_columns()):
            e, i = (real[b] - ideal[b])[:, cols], ideal[b][:, cols]
            scale = np.sqrt(np.mean(i**2))
            rms[b] = np.sqrt(np.mean(e**2)) / scale if scale > 0 else 0.0
            big = np.abs(i).max()
            top[b] = np.abs(e).max() / big if big > 0 else 0.0
        return IRDrop(rms, top, int(np.argmax(top)))

    def validate(self, tiles: int = 2, inputs: int = 4, *, x=None, backend: str = "auto",
                 timeout: float = 120.0) -> Validation:
        """Cross-check ``tiles`` of the layer's mapped tiles against ngspice.

        Each chosen tile (evenly spaced over the layer's tiles) is solved with ``inputs`` of its
        actual word-line voltage vectors (evenly spaced over the non-zero ones) from the last
        ``"mapped"`` or ``"circuit"`` call, or from inputs ``x`` ``(K, in)``, by
        :func:`circuitsim.validation.compare` (every node against ngspice), and the layer's own
        bit-line currents for those vectors (from its batched solve or transfer matrices) are
        compared with ngspice's.
        """
        from circuitsim.validation import compare

        if x is not None:
            self._require_calibration()
            v = self._voltages(self._check_input(x))[0]
        elif self._last_v is not None:
            v = self._last_v
        else:
            raise ValueError(f"{self.name}.validate: no input vectors yet; call the layer in "
                             "mode 'mapped' or 'circuit' first, or give x")
        if tiles < 1 or inputs < 1:
            raise ValueError(f"validate: tiles and inputs must be >= 1, got {tiles}, {inputs}")
        B, K, _ = v.shape
        chosen = np.unique(np.linspace(0, B - 1, min(tiles, B)).round().astype(int))
        picks = []
        for b in chosen:
            live = np.flatnonzero(np.abs(v[b]).max(axis=1) > 0)
            live = live if live.size else np.arange(K)
            sel = np.unique(np.linspace(0, live.size - 1, min(inputs, live.size)).round())
            picks += [(int(b), int(live[int(s)])) for s in sel]
        ks = sorted({k for _, k in picks})
        ours = self._currents(v[:, ks], "circuit")[0]  # the layer's own path, for these vectors
        tile = self.circuit_tile()
        reports, cases = [], []
        for b, k in picks:
            rep = compare(tile, v[b, k], tile_index=b, backend=backend, timeout=timeout,
                          name=f"{self.name} tile {b} input {k}")
            theirs = rep.ngspice["i_out"]
            mine = ours[b, ks.index(k)]
            err = float(np.abs(mine - theirs).max() / max(np.abs(theirs).max(), 1e-300))
            reports.append(rep)
            cases.append((b, k, err))
        return Validation(reports, cases)
