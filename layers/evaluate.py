"""Accuracy of a mapped network per mode, and the error of every analog layer.

For each analog layer and mode the report gives the error of the layer's output against the
ideal network's output of that layer, as relative RMS (``||y - y_ideal|| / ||y_ideal||`` over
all outputs and inputs) and relative max (``max |y - y_ideal| / max |y_ideal|``), both with the
layer fed the ideal network's input (*isolated*: the layer's own error) and fed the previous
layers' outputs in the same mode (*propagated*: what the network carries forward); the ADC and
DAC clip counts and Newton iterations of the propagated run; and the time of each mode's forward
pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .analog import MODES, Validation
from .network import Sequential

__all__ = ["LayerReport", "Report", "evaluate"]


@dataclass
class LayerReport:
    """Errors of one analog layer, per mode (dicts keyed by mode).

    Attributes
    ----------
    index : int
        Position in the network.
    name, description : str
    tiles : int
        Tiles of the layer (G+ and G- tiles count separately).
    rel_rms_isolated, rel_max_isolated, rel_rms_propagated, rel_max_propagated : dict
        Relative errors against the ideal output (see the module docstring).
    adc_clipped, adc_conversions, dac_clipped, dac_conversions : dict
        Clip counts and conversions of the propagated run.
    newton_iterations_max : dict
        Largest Newton iteration count (None where the tiles are linear).
    validation : Validation or None
        ngspice cross-check of some of its tiles (``evaluate(..., validate=N)``).
    """

    index: int
    name: str
    description: str
    tiles: int
    rel_rms_isolated: dict = field(default_factory=dict)
    rel_max_isolated: dict = field(default_factory=dict)
    rel_rms_propagated: dict = field(default_factory=dict)
    rel_max_propagated: dict = field(default_factory=dict)
    adc_clipped: dict = field(default_factory=dict)
    adc_conversions: dict = field(default_factory=dict)
    dac_clipped: dict = field(default_factory=dict)
    dac_conversions: dict = field(default_factory=dict)
    newton_iterations_max: dict = field(default_factory=dict)
    validation: Validation | None = None

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "validation"}
        out["validation"] = None if self.validation is None else self.validation.to_dict()
        return out


@dataclass
class Report:
    """Outcome of :func:`evaluate`.

    Attributes
    ----------
    n : int
        Inputs evaluated.
    modes : tuple of str
    accuracy : dict
        Fraction of correct top-1 predictions per mode.
    seconds : dict
        Wall time of each mode's forward pass over all inputs (s).
    layers : list of LayerReport
        One per analog layer.
    config : str
        The tile configuration of the first analog layer (:meth:`TileConfig.describe`).
    """

    n: int
    modes: tuple
    accuracy: dict
    seconds: dict
    layers: list
    config: str = ""

    def table(self) -> str:
        """The report as text tables."""
        lines = [f"{self.n} inputs; tiles: {self.config}", ""]
        rows = [("mode", "accuracy", "time", "per input")]
        for m in self.modes:
            rows.append((m, f"{100 * self.accuracy[m]:.2f} %", f"{self.seconds[m]:.3f} s",
                         f"{1e3 * self.seconds[m] / max(self.n, 1):.3f} ms"))
        lines += _grid(rows) + [""]
        rows = [("layer", "tiles", "mode", "rms iso", "max iso", "rms prop", "max prop",
                 "ADC clipped", "Newton its")]
        for lay in self.layers:
            for m in self.modes:
                if m == "ideal":
                    continue
                its = lay.newton_iterations_max.get(m)
                conv = lay.adc_conversions.get(m, 0)
                iso = [f"{d[m]:.2e}" if m in d else "-"
                       for d in (lay.rel_rms_isolated, lay.rel_max_isolated)]
                rows.append((
                    f"{lay.name} {lay.description}", str(lay.tiles), m, *iso,
                    f"{lay.rel_rms_propagated[m]:.2e}", f"{lay.rel_max_propagated[m]:.2e}",
                    f"{lay.adc_clipped[m]} / {conv}" if conv else "-",
                    "-" if its is None else str(its),
                ))
        if len(rows) > 1:
            lines += _grid(rows)
        checked = [lay for lay in self.layers if lay.validation is not None]
        if checked:
            lines.append("")
            lines += [f"ngspice, {lay.name}: {lay.validation.summary()}" for lay in checked]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"n": self.n, "modes": list(self.modes), "accuracy": self.accuracy,
                "seconds": self.seconds, "config": self.config,
                "layers": [lay.to_dict() for lay in self.layers]}


def _grid(rows) -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _errors(y: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    e = y - ref
    norm, top = np.linalg.norm(ref), np.abs(ref).max(initial=0.0)
    return (float(np.linalg.norm(e) / norm) if norm > 0 else float(np.linalg.norm(e)),
            float(np.abs(e).max(initial=0.0) / top) if top > 0 else float(np.abs(e).max()))


_COUNTS = ("dac_clipped", "dac_conversions", "adc_clipped", "adc_conversions")


def _forward(net: Sequential, X: np.ndarray, mode: str, batch: int):
    """Every layer's output ``(len(net) + 1)`` and summed call statistics per analog layer."""
    outs = [[] for _ in range(len(net) + 1)]
    stats = {k: dict.fromkeys((*_COUNTS, "newton"), 0)
             for k, layer in enumerate(net) if getattr(layer, "analog", False)}
    for s in range(0, len(X), batch):
        h = X[s : s + batch]
        outs[0].append(h)
        for k, layer in enumerate(net):
            h = layer(h, mode)
            outs[k + 1].append(h)
            if k in stats:
                last = layer.last
                for name in _COUNTS:
                    stats[k][name] += getattr(last, name)
                if last.newton_iterations_max is not None:
                    stats[k]["newton"] = max(stats[k]["newton"], last.newton_iterations_max)
                else:
                    stats[k]["newton"] = None
    return [np.concatenate(o) for o in outs], stats


def _chunked(layer, x: np.ndarray, mode: str, batch: int) -> np.ndarray:
    return np.concatenate([layer(x[s : s + batch], mode) for s in range(0, len(x), batch)])


def evaluate(net, X, labels, modes=MODES, *, calibration=None, isolated: bool = True,
             validate: int = 0, validate_inputs: int = 2, batch_size: int | None = None) -> Report:
    """Run ``X`` through ``net`` in each mode; accuracy against ``labels`` and per-layer errors.

    Parameters
    ----------
    net : Sequential or a single layer
    X : array_like
        Inputs (flat inputs are reshaped to ``net.input_shape``).
    labels : array_like of int, (N,)
        Classes; the prediction is the arg-max of the network's output.
    modes : sequence of str
        Among ``"ideal"``, ``"mapped"``, ``"circuit"``.
    calibration : array_like, optional
        Inputs to calibrate the network on (input and ADC ranges); by default an uncalibrated
        network is calibrated on ``X`` itself (a calibrated one is left as it is).
    isolated : bool
        Also run every analog layer on its ideal input (doubles the cost of each mode).
    validate : int
        Cross-check this many tiles of every analog layer against ngspice after the circuit pass
        (``validate_inputs`` input vectors each); needs ``"circuit"`` in ``modes``.
    batch_size : int, optional
        Inputs per forward pass (memory); results do not depend on it.
    """
    net = net if isinstance(net, Sequential) else Sequential([net])
    modes = tuple(modes)
    for m in modes:
        if m not in MODES:
            raise ValueError(f"modes: unknown mode {m!r}; known: {MODES}")
    if not modes:
        raise ValueError("modes is empty")
    if validate and "circuit" not in modes:
        raise ValueError("validate needs 'circuit' in modes")
    X = net.prepare(X)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(X):
        raise ValueError(f"{len(X)} inputs but {len(labels)} labels")
    if len(X) == 0:
        raise ValueError("no inputs to evaluate")
    batch = len(X) if batch_size is None else int(batch_size)
    if batch < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if calibration is not None:
        net.calibrate(calibration)
    elif not net.calibrated:
        net.calibrate(X)
    analog = [(k, layer) for k, layer in enumerate(net) if getattr(layer, "analog", False)]
    reports = {k: LayerReport(k, getattr(layer, "name", f"layer{k}"), _describe(layer),
                              layer.core.layout.n_tiles) for k, layer in analog}
    t0 = time.perf_counter()
    ideal, _ = _forward(net, X, "ideal", batch)
    seconds = {"ideal": time.perf_counter() - t0}
    accuracy = {}
    for m in modes:
        if m == "ideal":
            trace = ideal
        else:
            t0 = time.perf_counter()
            trace, stats = _forward(net, X, m, batch)
            seconds[m] = time.perf_counter() - t0
            for k, layer in analog:
                rep = reports[k]
                rep.rel_rms_propagated[m], rep.rel_max_propagated[m] = _errors(
                    trace[k + 1], ideal[k + 1])
                for name in _COUNTS:
                    getattr(rep, name)[m] = int(stats[k][name])
                rep.newton_iterations_max[m] = stats[k]["newton"]
                if validate and m == "circuit":
                    rep.validation = layer.validate(tiles=validate, inputs=validate_inputs)
                if isolated:
                    y = _chunked(layer, ideal[k], m, batch)
                    rep.rel_rms_isolated[m], rep.rel_max_isolated[m] = _errors(y, ideal[k + 1])
        accuracy[m] = float(np.mean(np.argmax(trace[-1].reshape(len(X), -1), axis=1) == labels))
    config = analog[0][1].config.describe() if analog else ""
    return Report(len(X), modes, accuracy, {m: seconds[m] for m in modes},
                  [reports[k] for k, _ in analog], config)


def _describe(layer) -> str:
    w = layer.weight
    if w.ndim == 2:
        return f"({w.shape[1]}->{w.shape[0]})"
    return f"({w.shape[1]}->{w.shape[0]}, {w.shape[2]}x{w.shape[3]})"
