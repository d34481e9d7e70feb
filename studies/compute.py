"""Solve the points of a study: batches of one topology, one batched tile each, and metrics.

Points that share the tile shape, the number of inputs, the device and access models and the
solver options are solved together as one batched tile (``cs.crossbar`` with a leading batch
axis), which amortises the engine's per-solve overhead on small tiles. The partition into
batches depends on the study alone (not on how many workers run it), so a resumed or
distributed study solves exactly the same systems as an uninterrupted in-process one.

:func:`solve_batch` is the task that runs anywhere (in-process, worker processes, Dask): it
takes plain data and returns plain data, and writes nothing.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

import numpy as np

import circuitsim as cs

from . import schema
from .config import Point, Study

__all__ = ["Batch", "PointResult", "conductance_map", "input_vectors", "plan_batches",
           "solve_batch"]

#: Cell-input products (B * m * n * K) per batched tile when ``[solve] batch`` is not given.
BATCH_BUDGET = 1 << 16
#: Most points per batched tile when ``[solve] batch`` is not given.
BATCH_MAX = 64

POWER_PARTS = ("delivered", "drivers", "wires", "sense", "devices", "transistors")


@dataclass(frozen=True)
class Batch:
    """Points solved as one batched tile, with what a worker needs to solve them.

    Attributes
    ----------
    index : int
    key : str
        SHA-256 prefix of the points' keys: the same batch has the same key in every run.
    points : tuple of Point
    node_voltages : int
        How many input vectors keep their node voltages (0: none).
    metrics : tuple of str
        Metric groups to keep (``[output] metrics``).
    g_file : ndarray or None
        The conductance map of ``[conductance] file``.
    """

    index: int
    key: str
    points: tuple
    node_voltages: int
    metrics: tuple
    g_file: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass
class PointResult:
    """What solving one point gave.

    Attributes
    ----------
    point : Point
    status : str
        ``"ok"``, ``"not converged"`` (some input vectors failed the KCL audit or Newton; their
        values are NaN) or ``"failed"`` (the engine raised; ``reason`` says what).
    reason : str
        Empty for ``"ok"``.
    arrays : dict of str to ndarray
        The datasets: ``g``, ``v_in``, ``i_out``, ``i_ideal``, ``i_source``, ``converged``,
        ``residual``, ``iterations``, ``power/<part>`` and the node voltages kept.
    metrics : dict of str to float or int
        NaN (or -1 for indices and counts) unless ``status == "ok"``.
    method : str
        The engine's solver and Newton strategy.
    """

    point: Point
    status: str
    reason: str
    arrays: dict
    metrics: dict
    method: str = ""


def conductance_map(config: dict, g_file=None) -> np.ndarray:
    """The conductance map ``(rows, cols)`` (S) of a point's configuration.

    Drawn from ``default_rng(seed)``: the same seed and shape give the same map in every point,
    so a sweep over wire resistance compares one programmed array.
    """
    if g_file is not None:
        return np.array(g_file, dtype=np.float64)
    c, t = config["conductance"], config["tile"]
    shape = (t["rows"], t["cols"])
    rng = np.random.default_rng(c["seed"])
    if c["distribution"] == "uniform":
        return rng.uniform(c["g_min"], c["g_max"], shape)
    if c["distribution"] == "loguniform":
        return np.exp(rng.uniform(math.log(c["g_min"]), math.log(c["g_max"]), shape))
    return np.where(rng.random(shape) < 0.5, c["g_min"], c["g_max"])


def input_vectors(config: dict) -> np.ndarray:
    """Input vectors ``(K, rows)`` (V): the all-rows-on vector first (if asked), then ``count``
    vectors uniform in ``[v_min, v_max]`` from ``default_rng(seed)``."""
    c, m = config["inputs"], config["tile"]["rows"]
    v = np.random.default_rng(c["seed"]).uniform(c["v_min"], c["v_max"], (c["count"], m))
    if c["all_on"]:
        v = np.vstack([np.full((1, m), c["v_max"]), v])
    return v


def _inputs_count(config: dict) -> int:
    return config["inputs"]["count"] + int(config["inputs"]["all_on"])


def _group(point: Point) -> tuple:
    t = point.config["tile"]
    return (t["rows"], t["cols"], _inputs_count(point.config), t["drive"], t["device"]["model"],
            t["access"]["model"], tuple(sorted(point.config["solve"].items())))


def plan_batches(study: Study) -> list[Batch]:
    """Partition the study's points into batches of one topology, in point order."""
    groups: dict[tuple, list[Point]] = {}
    for p in study.points:
        groups.setdefault(_group(p), []).append(p)
    nv = study.output["node_voltages"]
    batches = []
    for (m, n, K, *_), pts in groups.items():
        size = study.batch or max(1, min(BATCH_MAX, BATCH_BUDGET // (m * n * K)))
        for s in range(0, len(pts), size):
            chunk = tuple(pts[s:s + size])
            key = hashlib.sha256("".join(p.key for p in chunk).encode()).hexdigest()[:16]
            count = K if nv is True else 0 if nv is False else min(int(nv), K)
            batches.append(Batch(len(batches), key, chunk, count, study.output["metrics"],
                                 study.g_file))
    return batches


def _same(values) -> bool:
    return all(v == values[0] for v in values[1:])


def _per_cell(values, B, m, n):
    """A scalar when every point has the same value, else ``(B, m, n)``."""
    if _same(values):
        return values[0]
    return np.repeat(np.asarray(values, dtype=np.float64)[:, None, None], m * n,
                     axis=1).reshape(B, m, n)


def _per_line(values, B, size):
    if _same(values):
        return values[0]
    return np.repeat(np.asarray(values, dtype=np.float64)[:, None], size, axis=1)


def _model(tables, registry, B, m, n):
    cls = registry[tables[0]["model"]]
    if cls is None:
        return None
    params = {k: _per_cell([t[k] for t in tables], B, m, n) for k in tables[0] if k != "model"}
    return cls(**params)


def build_tile(points, g_file=None):
    """The batched tile ``(B, m, n)`` and inputs ``(B, K, m)`` of points of one group."""
    tiles = [p.config["tile"] for p in points]
    B, m, n = len(points), tiles[0]["rows"], tiles[0]["cols"]
    g = np.stack([conductance_map(p.config, g_file) for p in points])
    v_in = np.stack([input_vectors(p.config) for p in points])
    access = _model([t["access"] for t in tiles], schema.ACCESS_MODELS, B, m, n)
    tile = cs.crossbar(
        g,
        r_wl=_per_cell([t["r_wl"] for t in tiles], B, m, n),
        r_bl=_per_cell([t["r_bl"] for t in tiles], B, m, n),
        r_source=_per_line([t["r_source"] for t in tiles], B, m),
        r_sense=_per_line([t["r_sense"] for t in tiles], B, n),
        v_sense=_per_line([t["v_sense"] for t in tiles], B, n),
        drive=tiles[0]["drive"],
        device=_model([t["device"] for t in tiles], schema.DEVICE_MODELS, B, m, n),
        access=access,
        v_gate=None if access is None else _per_cell([t["v_gate"] for t in tiles], B, m, n),
    )
    return tile, g, v_in


def _solve_options(point: Point, nonlinear: bool) -> dict:
    s = point.config["solve"]
    keys = schema.SOLVE_LINEAR + (schema.SOLVE_NEWTON if nonlinear else ())
    return {k: s[k] for k in keys}


def _empty_metrics(keep) -> dict:
    out = {}
    for group in keep:
        for name in schema.METRICS[group]:
            out[name] = -1 if name.endswith(("_row", "_col", "_input")) or name == "iterations" \
                else math.nan
    return out


def point_metrics(g, v_in, v_sense, i_out, v_wl, v_bl, power, iterations, residual,
                  seconds, keep) -> dict:
    """The summary metrics of one converged point.

    ``g`` ``(m, n)``, ``v_in`` ``(K, m)``, ``i_out`` ``(K, n)``, node voltages ``(K, m, n)``,
    ``power`` a dict of ``(K,)`` arrays. The ideal crossbar gives
    ``i_ideal[k, j] = sum_i g[i, j] (v_in[k, i] - v_sense)``.

    - ``err_rms``: ``||i_out - i_ideal|| / ||i_ideal||`` over all inputs and bit lines;
    - ``err_max``: largest ``|i_out - i_ideal|`` relative to the largest ``|i_ideal|`` of the
      same input vector;
    - ``wl_drop``: largest ``|v_in[k, i] - v_wl[k, i, j]|`` (V), its row, column and input;
    - ``bl_rise``: largest ``|v_bl[k, i, j] - v_sense|`` (V), its row, column and input;
    - ``power_<part>``: read power (W) per part of the tile, mean over input vectors;
    - ``iterations``, ``residual``: largest over inputs; ``solve_time`` (s).
    """
    out = {}
    ideal = ideal_currents(g, v_in, v_sense)
    diff = i_out - ideal
    norm = np.linalg.norm(ideal)
    out["err_rms"] = float(np.linalg.norm(diff) / norm) if norm > 0 else math.nan
    scale = np.abs(ideal).max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(diff) / np.where(scale > 0, scale, np.nan)
    out["err_max"] = float(np.nanmax(rel)) if np.isfinite(rel).any() else math.nan
    for name, dev in (("wl_drop", np.abs(v_in[:, :, None] - v_wl)),
                      ("bl_rise", np.abs(v_bl - v_sense))):
        k, i, j = np.unravel_index(np.argmax(dev), dev.shape)
        out.update({name: float(dev[k, i, j]), f"{name}_row": int(i), f"{name}_col": int(j),
                    f"{name}_input": int(k)})
    for part in POWER_PARTS:
        out[f"power_{part}"] = float(np.mean(power[part]))
    out["iterations"] = int(np.max(iterations))
    out["residual"] = float(np.max(residual))
    out["solve_time"] = float(seconds)
    return {k: v for group in keep for k, v in out.items() if k in schema.METRICS[group]}


def ideal_currents(g, v_in, v_sense: float) -> np.ndarray:
    """Output currents ``(K, n)`` of the ideal crossbar (no wires, linear devices)."""
    return v_in @ g - v_sense * g.sum(axis=0)


def _failed(point: Point, batch: Batch, reason: str, g=None, v_in=None) -> PointResult:
    arrays = {}
    if g is not None:
        arrays.update(g=g, v_in=v_in)
    return PointResult(point, "failed", reason, arrays, _empty_metrics(batch.metrics))


def _extract(batch: Batch, sol, b: int, point: Point, g, v_in, seconds, method) -> PointResult:
    conv = np.asarray(sol.converged[b], dtype=bool)
    K = len(conv)
    nv = batch.node_voltages
    arrays = {"g": g, "v_in": v_in, "converged": conv,
              "residual": np.asarray(sol.residual[b], dtype=np.float64),
              "iterations": np.asarray(sol.iterations[b], dtype=np.int64)}
    nan_rows = ~conv
    for name in ("i_out", "i_source"):
        arrays[name] = np.array(getattr(sol, name)[b], dtype=np.float64)
    power = {part: np.array(getattr(sol.power, part)[b], dtype=np.float64)
             for part in POWER_PARTS}
    v_sense = point.config["tile"]["v_sense"]
    arrays["i_ideal"] = ideal_currents(g, v_in, v_sense)
    volts = {"v_wl": sol.v_wl[b], "v_bl": sol.v_bl[b]}
    if sol.v_int is not None:
        volts["v_int"] = sol.v_int[b]
    if conv.all():
        status, reason = "ok", ""
        metrics = point_metrics(g, v_in, v_sense, arrays["i_out"], volts["v_wl"], volts["v_bl"],
                                power, arrays["iterations"], arrays["residual"], seconds,
                                batch.metrics)
    else:
        bad = np.flatnonzero(nan_rows)
        worst = int(bad[np.argmax(arrays["residual"][bad])])
        status = "not converged"
        reason = (f"{len(bad)} of {K} input vectors did not converge (inputs "
                  f"{', '.join(map(str, bad[:8]))}{', ...' if len(bad) > 8 else ''}); largest "
                  f"KCL residual {arrays['residual'][worst]:.3e} A at input {worst}, after "
                  f"{int(arrays['iterations'][worst])} Newton iterations")
        metrics = _empty_metrics(batch.metrics)
        for name in ("i_out", "i_source"):
            arrays[name][nan_rows] = np.nan
        for part in power.values():
            part[nan_rows] = np.nan
    for part, values in power.items():
        arrays[f"power/{part}"] = values
    for name, v in volts.items():
        v = np.array(v[:nv], dtype=np.float64)
        v[nan_rows[:nv]] = np.nan
        if nv:
            arrays[name] = v
    return PointResult(point, status, reason, arrays, metrics, method)


def solve_batch(batch: Batch) -> list[PointResult]:
    """Solve the points of ``batch`` (one batched tile); one result per point, in order.

    Systems that fail the engine's audit come back masked (``on_fail="mask"``) and make their
    point ``"not converged"``. When the engine raises for the batch (a floating node, a short
    circuit, memory), each point is solved alone so that the error lands on the point that
    caused it, as ``"failed"`` with the error as its reason.
    """
    points = batch.points
    nonlinear = any(p.config["tile"]["device"]["model"] != "linear"
                    or p.config["tile"]["access"]["model"] != "none" for p in points)
    g = v_in = None
    try:
        tile, g, v_in = build_tile(points, batch.g_file)
        t0 = time.perf_counter()
        sol = cs.solve(tile, v_in, on_fail="mask", **_solve_options(points[0], nonlinear))
        _ = sol.power.delivered  # the breakdown is computed once for the whole batch
        seconds = (time.perf_counter() - t0) / len(points)
    except Exception as exc:  # noqa: BLE001 - the engine's error becomes the point's reason
        if len(points) > 1:
            return [r for p in points for r in solve_batch(_single(batch, p))]
        reason = f"{type(exc).__name__}: {exc}"
        return [_failed(points[0], batch, reason, None if g is None else g[0],
                        None if v_in is None else v_in[0])]
    return [_extract(batch, sol, b, p, g[b], v_in[b], seconds, sol.method)
            for b, p in enumerate(points)]


def _single(batch: Batch, point: Point) -> Batch:
    return Batch(batch.index, point.key, (point,), batch.node_voltages, batch.metrics,
                 batch.g_file)
