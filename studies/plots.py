"""Figures of study results (matplotlib, PNG and SVG).

- :func:`heatmap_figure`: word-line and bit-line node voltages of one point and input vector,
  and the cell-voltage error ``(v_wl - v_bl) - (v_in[i] - v_sense)`` that the wires cause;
- :func:`error_figure`: output-current error against a swept parameter, one line per value of a
  second one (one panel per combination of any others);
- :func:`currents_figure`: actual against ideal output currents, and the all-rows-on profile.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global backend state).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .results import PointData, Summary, read_point, read_summary

__all__ = ["currents_figure", "error_figure", "heatmap_figure", "plot_study"]

METRIC_LABELS = {"err_rms": "RMS output-current error (%)",
                 "err_max": "max output-current error (%)",
                 "wl_drop": "worst word-line drop (mV)", "bl_rise": "worst bit-line rise (mV)",
                 "power_delivered": "read power (mW)"}
METRIC_SCALE = {"err_rms": 100, "err_max": 100, "wl_drop": 1e3, "bl_rise": 1e3,
                "power_delivered": 1e3}


def _params_text(point: PointData) -> str:
    parts = []
    for k, v in point.params.items():
        if isinstance(v, dict):
            v = v["model"]
        parts.append(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}")
    return ", ".join(parts)


def _input_text(point: PointData, k: int) -> str:
    if k == 0 and point.config["inputs"]["all_on"]:
        return f"input {k} (all rows at {point.config['inputs']['v_max']:g} V)"
    return f"input {k}"


def heatmap_figure(point: PointData, k: int = 0, title: str = "") -> Figure:
    """WL and BL node voltages and the cell-voltage error of input vector ``k`` of a point."""
    if "v_wl" not in point.arrays:
        raise ValueError(f"point {point.name} has no node voltages (the study stored none: "
                         "[output] node_voltages)")
    kept = point.arrays["v_wl"].shape[0]
    if not 0 <= k < kept:
        raise ValueError(f"point {point.name} keeps node voltages of inputs 0..{kept - 1}, "
                         f"not of input {k}")
    v_wl, v_bl = point.arrays["v_wl"][k], point.arrays["v_bl"][k]
    v_in = point.arrays["v_in"][k]
    v_sense = point.config["tile"]["v_sense"]
    err = (v_wl - v_bl) - (v_in[:, None] - v_sense)
    m, n = v_wl.shape
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [
        (v_wl, "word-line node voltage", "V", "viridis", None, 1.0),
        (v_bl, "bit-line node voltage", "mV", "viridis", None, 1e3),
        (err, "cell-voltage error (v_wl - v_bl) - (v_in - v_sense)", "mV", None, True, 1e3),
    ]
    for ax, (data, name, unit, cmap, centred, scale) in zip(axes, panels):
        data = data * scale
        norm = None
        if centred:  # diverging around 0 when both signs occur, else a one-sided scale
            lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
            if lo < 0 < hi:
                cmap, norm = "RdBu_r", TwoSlopeNorm(0.0, lo, hi)
            else:
                cmap = "Blues_r" if hi <= 0 else "Reds"
        im = ax.imshow(data, cmap=cmap, norm=norm, origin="upper", aspect="auto",
                       interpolation="nearest", extent=(-0.5, n - 0.5, m - 0.5, -0.5))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("bit line (column) j")
        ax.set_ylabel("word line (row) i")
        fig.colorbar(im, ax=ax, label=f"{name.split(' (')[0]} ({unit})")
    fig.suptitle(f"{title}{point.name}: {_params_text(point)}; {_input_text(point, k)}; "
                 f"{m} x {n} tile", fontsize=11)
    return fig


def _numeric(summary: Summary, key: str) -> bool:
    return summary.column(key).dtype.kind in "if"


def _log_scale(values) -> bool:
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    return values.size > 1 and values.min() > 0 and values.max() / values.min() >= 10


def _plain_log_ticks(axis, values) -> None:
    """Label a log axis with plain numbers (0.3, 1, 3, 10), minor ticks too when it spans
    two decades or less."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if values.size and math.log10(values.max() / values.min()) <= 2:
        def minor(v, _):
            lead = round(v / 10 ** math.floor(math.log10(v) + 1e-9))
            return f"{v:g}" if lead in (2, 3, 5) else ""
        axis.set_minor_formatter(FuncFormatter(minor))
    else:
        axis.set_minor_formatter(NullFormatter())


def choose_axes(summary: Summary, x: str | None = None, line: str | None = None):
    """``(x, line, facets)``: the swept key on the x axis (default: the first numeric one that
    varies), the one that makes the lines (default: the next) and the rest."""
    keys = list(summary.sweep_keys)
    if not keys:
        raise ValueError("the study sweeps nothing: there is no parameter to plot against")
    for name, key in (("x", x), ("line", line)):
        if key is not None and key not in keys:
            raise ValueError(f"{name} = {key!r} is not a swept key; swept: {', '.join(keys)}")
    if x is None:  # the numeric key with the most values
        numeric = [k for k in keys if _numeric(summary, k) and k != line]
        counts = [len(set(summary.column(k))) for k in numeric]
        x = numeric[int(np.argmax(counts))] if numeric and max(counts) > 1 else \
            next(k for k in keys if k != line)
    rest = [k for k in keys if k != x]
    if line is None and rest:
        line = rest[0]
    return x, line, [k for k in rest if k != line]


def error_figure(summary: Summary, x: str | None = None, line: str | None = None,
                 metrics=("err_rms", "err_max"), title: str = "") -> Figure:
    """Metrics against the swept key ``x``, one line per value of ``line``; the remaining swept
    keys make one row of panels per combination. Points that are not ``ok`` are left out (and
    counted in the panel title)."""
    x, line, facets = choose_axes(summary, x, line)
    fields = summary.table.dtype.names
    metrics = [m for m in metrics if m in fields]
    if not metrics:
        raise ValueError("the summary keeps none of the error metrics")
    status = summary.column("status")
    combos = list(itertools.product(*(list(dict.fromkeys(summary.column(k))) for k in facets)))
    fig = Figure(figsize=(5.2 * len(metrics), 3.8 * len(combos)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(combos), len(metrics), squeeze=False))
    xs_all = summary.column(x)
    ok_all = status == "ok"
    log_x = _numeric(summary, x) and _log_scale(xs_all[ok_all])
    log_y = {m: _log_scale(summary.column(m)[ok_all]) for m in metrics}
    x_unit = summary.units.get(x, "")
    l_unit = summary.units.get(line, "") if line else ""
    for row, combo in enumerate(combos):
        sel = np.ones(len(summary.table), dtype=bool)
        for k, v in zip(facets, combo):
            sel &= summary.column(k) == v
        lines = list(dict.fromkeys(summary.column(line)[sel])) if line else [None]
        dropped = int(np.sum(sel & (status != "ok")))
        for col, metric in enumerate(metrics):
            ax = axes[row, col]
            scale = METRIC_SCALE.get(metric, 1.0)
            for value in lines:
                s = sel & (status == "ok")
                if line:
                    s &= summary.column(line) == value
                order = np.argsort(xs_all[s], kind="stable")
                xv, yv = xs_all[s][order], summary.column(metric)[s][order] * scale
                label = f"{line} = {value:g}" if isinstance(value, float) else f"{line} = {value}"
                label += f" {l_unit}" if l_unit not in ("", "1") else ""
                ax.plot(xv, yv, marker="o", label=label if line else None)
            if log_x:
                ax.set_xscale("log")
                _plain_log_ticks(ax.xaxis, xs_all[ok_all])
            if log_y[metric]:
                ax.set_yscale("log")
                _plain_log_ticks(ax.yaxis, summary.column(metric)[sel & ok_all] * scale)
            ax.set_xlabel(f"{x} ({x_unit})" if x_unit not in ("", "1") else x)
            ax.set_ylabel(METRIC_LABELS.get(metric, metric), fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            head = ", ".join(f"{k} = {v}" for k, v in zip(facets, combo))
            if dropped:
                head += f" ({dropped} points not converged, left out)"
            if head:
                ax.set_title(head, fontsize=10)
            if line:
                ax.legend(fontsize=8)
    fig.suptitle(f"{title}output-current error against the ideal crossbar", fontsize=11)
    return fig


def currents_figure(point: PointData, title: str = "") -> Figure:
    """Actual against ideal output currents of every input vector, and the profile along the
    bit lines of input 0."""
    i_out, ideal = point.arrays["i_out"] * 1e6, point.arrays["i_ideal"] * 1e6
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ok = np.isfinite(i_out)
    ax1.plot(ideal[ok], i_out[ok], ".", ms=3, alpha=0.6, label="bit-line outputs")
    lim = [float(np.nanmin([ideal.min(), np.nanmin(i_out)])),
           float(np.nanmax([ideal.max(), np.nanmax(i_out)]))]
    ax1.plot(lim, lim, "k--", lw=1, label="ideal = actual")
    ax1.set_xlabel("ideal output current (µA)")
    ax1.set_ylabel("actual output current (µA)")
    ax1.set_title(f"all {i_out.shape[0]} input vectors", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(True, alpha=0.3)
    cols = np.arange(i_out.shape[1])
    ax2.plot(cols, ideal[0], label="ideal crossbar")
    ax2.plot(cols, i_out[0], label="solved circuit")
    ax2.set_xlabel("bit line (column) j")
    ax2.set_ylabel("output current (µA)")
    ax2.set_title(_input_text(point, 0), fontsize=10)
    ax2.legend(fontsize=8)
    ax2.grid(True, alpha=0.3)
    fig.suptitle(f"{title}{point.name}: {_params_text(point)}", fontsize=11)
    return fig


def _default_point(summary: Summary) -> str:
    """The converged point with the largest RMS error (else the first point)."""
    names, status = summary.column("name"), summary.column("status")
    if not len(names):
        raise ValueError("the results hold no point yet")
    if "err_rms" in summary.table.dtype.names:
        err = np.where(status == "ok", summary.column("err_rms"), -math.inf)
        err = np.where(np.isnan(err), -math.inf, err)
        if np.isfinite(err).any():
            return str(names[int(np.argmax(err))])
    return str(names[0])


def plot_study(path, outdir, *, point: str | None = None, input: int = 0, x: str | None = None,
               line: str | None = None, formats=("png", "svg")) -> list[Path]:
    """Write the heatmaps and currents of one point (default: the converged point with the
    largest RMS error) and the error curves of the sweep to ``outdir``; returns the files."""
    for fmt in formats:
        if fmt not in ("png", "svg", "pdf"):
            raise ValueError(f"format {fmt!r}: use png, svg or pdf")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    summary = read_summary(path)
    curves = bool(summary.sweep_keys) and len(summary.table) > 1
    if curves:  # check the axes before drawing anything
        x, line, _ = choose_axes(summary, x, line)
    title = f"{summary.study_name} - "
    name = point or _default_point(summary)
    data = read_point(path, name)
    figures = []
    if "v_wl" in data.arrays:
        figures.append((f"heatmap-{name}", heatmap_figure(data, input, title)))
    elif point is not None:
        raise ValueError(f"point {name} has no node voltages (the study stored none)")
    if "i_out" in data.arrays:
        figures.append((f"currents-{name}", currents_figure(data, title)))
    if curves:
        figures.append((f"error-vs-{x}", error_figure(summary, x, line, title=title)))
    files = []
    for stem, fig in figures:
        for fmt in formats:
            out = outdir / f"{stem}.{fmt}"
            fig.savefig(out, dpi=110)
            files.append(out)
    return files
