"""Read study results: the summary table, one point's data, and a check of every checksum."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .h5io import checksum, read_json_attr
from .layout import FORMAT

__all__ = ["PointData", "Summary", "read_point", "read_summary", "verify"]


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def _open(path) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{str(path)!r} is not an HDF5 file")
    f = h5py.File(path, "r")
    if _text(f.attrs.get("format")) != FORMAT:
        f.close()
        raise ValueError(f"{str(path)!r} is not a circuitsim study file")
    return f


@dataclass(frozen=True)
class Summary:
    """The ``/summary`` table of a results file and the study's state.

    Attributes
    ----------
    table : ndarray
        Structured array, one row per finished point (columns ``index``, ``name``, ``status``,
        ``reason``, the swept keys, the metrics).
    units : dict
        Unit of each column.
    sweep_keys : list of str
    study_name : str
    points_done, points_total : int
    complete : bool
    layout : str
    circuitsim_version : str
    """

    table: np.ndarray
    units: dict
    sweep_keys: list
    study_name: str
    points_done: int
    points_total: int
    complete: bool
    layout: str
    circuitsim_version: str

    def column(self, name: str) -> np.ndarray:
        """One column; strings decoded."""
        col = self.table[name]
        if col.dtype == object:
            return np.array([_text(x) for x in col], dtype=object)
        return col

    def text(self) -> str:
        """The summary as an aligned text table, with the reason of every point not ok."""
        cols = [("point", "name", None), *((k, k, None) for k in self.sweep_keys),
                ("status", "status", None)]
        fields = self.table.dtype.names or ()
        scaled = [("err rms %", "err_rms", 100), ("err max %", "err_max", 100),
                  ("WL drop mV", "wl_drop", 1e3), ("BL rise mV", "bl_rise", 1e3),
                  ("power mW", "power_delivered", 1e3), ("iters", "iterations", None),
                  ("time s", "solve_time", None)]
        cols += [c for c in scaled if c[1] in fields]
        head = [c[0] + (f" ({self.units[c[1]]})" if c[1] in self.sweep_keys
                        and self.units.get(c[1]) not in ("", "1", None) else "") for c in cols]
        rows = [head]
        for r in self.table:
            rows.append([_cell(r[f], scale) for _, f, scale in cols])
        widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
        lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                           enumerate(zip(row, widths))).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        state = "complete" if self.complete else "incomplete"
        lines.insert(0, f"study {self.study_name!r}: {self.points_done} of {self.points_total} "
                        f"points ({state}), circuitsim {self.circuitsim_version}")
        for r in self.table:
            if _text(r["status"]) != "ok":
                lines.append(f"{_text(r['name'])}: {_text(r['status'])}: {_text(r['reason'])}")
        return "\n".join(lines)


def _cell(value, scale) -> str:
    value = _text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return "-" if value < 0 else str(int(value))
    value = float(value)
    if math.isnan(value):
        return "-"
    if scale is not None:
        value *= scale
    return f"{value:.4g}"


def read_summary(path) -> Summary:
    """The summary of a results file (complete, or of a study that stopped or still runs)."""
    with _open(path) as f:
        a = f.attrs
        return Summary(
            table=f["summary"][()], units=read_json_attr(f["summary"], "units", {}),
            sweep_keys=json.loads(_text(f["study"].attrs["sweep_keys"])),
            study_name=_text(a["study_name"]), points_done=int(a["points_done"]),
            points_total=int(a["points_total"]), complete=bool(a["complete"]),
            layout=_text(a["layout"]), circuitsim_version=_text(a["circuitsim_version"]),
        )


@dataclass(frozen=True)
class PointData:
    """One point of a results file.

    Attributes
    ----------
    name, status, reason : str
    config : dict
        The point's full configuration.
    params : dict
        Its swept values.
    attrs : dict
        Every attribute of its group (flattened configuration, metrics, ...).
    units : dict
        Unit of every attribute and dataset.
    arrays : dict of str to ndarray
        Every dataset (``power/<part>`` included).
    """

    name: str
    status: str
    reason: str
    config: dict
    params: dict
    attrs: dict
    units: dict
    arrays: dict


def read_point(path, name: str) -> PointData:
    """All data of point ``name`` (for example ``"p03"``)."""
    with _open(path) as f:
        if name not in f["points"]:
            have = ", ".join(sorted(f["points"])[:10])
            raise KeyError(f"{str(path)!r} has no point {name!r} (it has: {have or 'none'})")
        g = f["points"][name]
        arrays, units = {}, read_json_attr(g, "units", {})

        def visit(key, obj):
            if isinstance(obj, h5py.Dataset):
                arrays[key] = obj[()]
                units[key] = _text(obj.attrs.get("units", ""))

        g.visititems(visit)
        attrs = {k: _text(v) for k, v in g.attrs.items()}
        return PointData(name, attrs["status"], attrs["reason"], json.loads(attrs["config"]),
                         json.loads(attrs["params"]), attrs, units, arrays)


def verify(path) -> list[str]:
    """Read every dataset of every point and compare its SHA-256; returns the problems found
    (empty when the file is sound). HDF5's fletcher32 check raises on a damaged chunk; that is
    reported as a problem too."""
    problems = []
    with _open(path) as f:
        names = sorted(f["points"])
        for name in names:
            try:
                g = f["points"][name]
            except (KeyError, OSError) as exc:
                problems.append(f"{name}: cannot open: {exc}")
                continue

            def visit(key, obj, name=name):
                if not isinstance(obj, h5py.Dataset):
                    return
                try:
                    data = obj[()]
                except OSError as exc:
                    problems.append(f"{name}/{key}: cannot read: {exc}")
                    return
                if _text(obj.attrs.get("sha256")) != checksum(data):
                    problems.append(f"{name}/{key}: SHA-256 does not match")

            g.visititems(visit)
        rows = [_text(x) for x in f["summary"]["name"]]
        if sorted(rows) != names:
            problems.append(f"summary lists {len(rows)} points, /points holds {len(names)}")
    return problems
