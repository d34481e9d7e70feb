"""The layout of study results in HDF5: point groups, the summary table, the study itself.

A results file ``results.h5`` holds

- root attributes: ``format`` (``"circuitsim-study"``), ``format_version``,
  ``circuitsim_version``, ``study_name``, ``study_description``, ``fingerprint``,
  ``points_total``, ``points_done``, ``complete``, ``layout``, ``created``, ``updated``;
- ``/study/toml``: the study file as given; ``/study/plan``: one JSON line per planned point
  (name, key, swept values); attribute ``sweep_keys``;
- ``/points/<name>``: one group per finished point. Attributes: ``name``, ``index``, ``key``,
  ``status`` (``ok``, ``not converged``, ``failed``), ``reason``, ``method``,
  ``circuitsim_version``, ``config`` (the full configuration, JSON), ``params`` (the swept
  values, JSON), every configuration entry flattened (``tile.r_wl``, ``tile.device.a``,
  ``conductance.g_max``, ...), the metrics (``err_rms``, ...), and ``units`` (JSON: unit of every
  attribute). Datasets ``g``, ``v_in``, ``i_out``, ``i_ideal``, ``i_source``, ``converged``,
  ``residual``, ``iterations``, ``power/<part>`` and the node voltages ``v_wl``, ``v_bl``,
  ``v_int`` (1T1R) unless switched off; each with ``units`` and ``sha256`` attributes, chunked,
  compressed and ``fletcher32``-checked;
- ``/summary``: a table (compound dataset) with one row per finished point: ``index``, ``name``,
  ``status``, ``reason``, the swept keys and the metrics; attribute ``units`` (JSON).

While a study runs, each point lives in its own file ``results.h5.parts/<name>.h5`` (group
``/point``) and ``/points/<name>`` in ``results.h5`` is an external link to it (``layout =
"index"``); when the study completes, the points are copied into ``results.h5`` itself
(``layout = "single"``) and the parts folder is removed.
"""

from __future__ import annotations

import json
import math
import time

import h5py
import numpy as np

import circuitsim

from . import schema
from .config import FORMAT_VERSION, Point, Study, describe
from .h5io import h5_image, put_dataset

__all__ = ["FORMAT", "POINT_FORMAT", "index_image", "point_image", "summary_columns",
           "summary_row"]

FORMAT = "circuitsim-study"
POINT_FORMAT = "circuitsim-study-point"

DATASET_UNITS = {"g": "S", "v_in": "V", "i_out": "A", "i_ideal": "A", "i_source": "A",
                 "converged": "", "residual": "A", "iterations": "1", "v_wl": "V", "v_bl": "V",
                 "v_int": "V"}
TEXT = h5py.string_dtype()


def flatten(config: dict, prefix: tuple = ()):
    """``(path, value)`` of every leaf of a nested configuration."""
    for k, v in config.items():
        if isinstance(v, dict):
            yield from flatten(v, (*prefix, k))
        else:
            yield (*prefix, k), v


def _attr(value):
    return value if not isinstance(value, (list, tuple)) else json.dumps(value)


def param_value(point: Point, key: str):
    """Value of a swept key at a point (from the configuration when the point does not set it)."""
    if key in point.params:
        return point.params[key]
    tile = point.config["tile"]
    if key == "size":
        return tile["rows"]
    if key == "r_wire":
        return tile["r_wl"]
    parts = key.split(".")
    node = point.config if parts[0] in point.config else tile
    for p in parts:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _labels(values) -> dict:
    """Short labels of swept model tables: the model name where it tells them apart, else the
    model and the parameters that differ between tables of that model."""
    tables = [v for v in values if isinstance(v, dict)]
    out = {}
    for v in tables:
        same = [t for t in tables if t["model"] == v["model"]]
        diff = {k: x for k, x in v.items() if k != "model" and any(t.get(k) != x for t in same)}
        out[json.dumps(v, sort_keys=True)] = describe({"model": v["model"], **diff})
    return out


def summary_columns(study: Study) -> list[tuple[str, object, str, dict | None]]:
    """``(name, dtype, unit, labels)`` of the summary table's columns; ``labels`` maps the JSON
    of a swept model table to its short text (None for other columns)."""
    cols = [("index", np.int64, "1", None), ("name", TEXT, "", None), ("status", TEXT, "", None),
            ("reason", TEXT, "", None)]
    for key in study.sweep_keys:
        values = [param_value(p, key) for p in study.points]
        given = [v for v in values if v is not None]
        if given and all(isinstance(v, bool) for v in given):
            kind = np.bool_
        elif given and all(isinstance(v, int) and not isinstance(v, bool) for v in given):
            kind = np.int64
        elif given and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in given):
            kind = np.float64
        else:
            kind = TEXT
        path = ("tile", *key.split(".")) if key.split(".")[0] not in schema.TABLES else \
            tuple(key.split("."))
        unit = {"size": "1", "r_wire": "ohm"}.get(key, schema.units(path))
        cols.append((key, kind, unit, _labels(given) if kind is TEXT else None))
    for group in study.output["metrics"]:
        for name, unit in schema.METRICS[group].items():
            is_int = name.endswith(("_row", "_col", "_input")) or name == "iterations"
            cols.append((name, np.int64 if is_int else np.float64, unit, None))
    return cols


def summary_row(point: Point, status: str, reason: str, metrics: dict, study: Study,
                columns=None) -> tuple:
    """One summary row (a tuple in the order of ``columns``, default
    ``summary_columns(study)``)."""
    row = []
    for name, kind, _, labels in columns or summary_columns(study):
        if name in ("index", "name", "status", "reason"):
            row.append({"index": point.index, "name": point.name, "status": status,
                        "reason": reason}[name])
        elif name in study.sweep_keys:
            v = param_value(point, name)
            if kind is TEXT:
                text = "" if v is None else describe(v)
                if isinstance(v, dict):
                    text = labels.get(json.dumps(v, sort_keys=True), text)
                row.append(text)
            elif kind is np.int64:
                row.append(-1 if v is None else v)
            else:
                row.append(math.nan if v is None else v)
        else:
            row.append(metrics.get(name, -1 if kind is np.int64 else math.nan))
    return tuple(row)


def summary_table(rows: list[tuple], columns) -> np.ndarray:
    """The structured array of the summary, sorted by point index."""
    dtype = np.dtype([(c[0], c[1]) for c in columns])
    table = np.empty(len(rows), dtype=dtype)
    for i, row in enumerate(sorted(rows, key=lambda r: r[0])):
        table[i] = row
    return table


def point_image(result, study: Study, compression: str) -> bytes:
    """The HDF5 image of one point's file (group ``/point``)."""
    point = result.point

    def build(f):
        f.attrs.update(format=POINT_FORMAT, fingerprint=study.fingerprint, name=point.name)
        g = f.create_group("point")
        units = {}
        for path, value in flatten(point.config):
            name = ".".join(path)
            if value is not None:
                g.attrs[name] = _attr(value)
                units[name] = schema.units(path)
        for name, value in result.metrics.items():
            g.attrs[name] = value
            units[name] = next(u[name] for u in schema.METRICS.values() if name in u)
        g.attrs.update(
            name=point.name, index=point.index, key=point.key, status=result.status,
            reason=result.reason, method=result.method,
            circuitsim_version=circuitsim.__version__,
            config=json.dumps(point.config, sort_keys=True),
            params=json.dumps(point.params, sort_keys=True), units=json.dumps(units),
        )
        for name, data in result.arrays.items():
            unit = "W" if name.startswith("power/") else DATASET_UNITS[name]
            put_dataset(g, name, data, unit, compression)

    return h5_image(build)


def index_image(study: Study, rows: dict, columns, *, complete: bool, created: str,
                parts: str | None, sources: dict | None = None) -> bytes:
    """The HDF5 image of the results file.

    ``rows`` maps point names to summary rows. With ``parts`` (the parts folder's name)
    ``/points/<name>`` are external links into it; with ``sources`` (point name -> open part
    file) the point groups are copied in and the file stands alone.
    """
    def build(f):
        f.attrs.update(
            format=FORMAT, format_version=FORMAT_VERSION,
            circuitsim_version=circuitsim.__version__, study_name=study.name,
            study_description=study.description, fingerprint=study.fingerprint,
            points_total=len(study.points), points_done=len(rows), complete=complete,
            layout="single" if sources is not None else "index", created=created,
            updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        st = f.create_group("study")
        st.create_dataset("toml", data=study.text, dtype=TEXT)
        plan = [json.dumps({"name": p.name, "key": p.key, "params": p.params}, sort_keys=True)
                for p in study.points]
        st.create_dataset("plan", data=np.array(plan, dtype=object), dtype=TEXT)
        st.attrs["sweep_keys"] = json.dumps(list(study.sweep_keys))
        pts = f.create_group("points")
        for name in sorted(rows):
            if sources is not None:
                sources[name].copy(sources[name]["point"], pts, name=name)
            else:
                pts[name] = h5py.ExternalLink(f"{parts}/{name}.h5", "/point")
        table = summary_table(list(rows.values()), columns)
        ds = f.create_dataset("summary", data=table)
        ds.attrs["units"] = json.dumps({c[0]: c[2] for c in columns})

    return h5_image(build)
