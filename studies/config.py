"""Load and check a study file: tables, sweep and the list of points it describes.

A study file is TOML (see the embedded default, :func:`default_study_text`). :func:`load_study`
checks every table and key (unknown ones are errors), expands ``[sweep]`` into points (the grid
product of its lists, combined with its explicit ``points``), resolves each point's full
configuration and checks it too, all before anything is solved. Errors are
:class:`~circuitsim.studies.schema.StudyError` naming the file, the table, the key and why.

>>> study = load_study(text='''
... [tile]
... rows = 4
... cols = 3
... [sweep]
... r_wl = [0.5, 1.0]
... ''')
>>> [(p.name, p.params) for p in study.points]
[('p0', {'r_wl': 0.5}), ('p1', {'r_wl': 1.0})]
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from . import schema
from .schema import ALIASES, TABLES, TILE, Key, StudyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Point", "Study", "default_study_text", "display_name", "load_study"]

#: Version of the study configuration format stored with the results.
FORMAT_VERSION = 1

#: Sweepable tables, in the order their paths are written.
SWEEP_TABLES = ("tile", "conductance", "inputs", "solve")


@dataclass(frozen=True)
class Point:
    """One point of a study.

    Attributes
    ----------
    index : int
        Position in the study (grid order, then explicit points).
    name : str
        ``"p"`` and the zero-padded index: the point's group name in the results file.
    key : str
        SHA-256 (first 16 hex digits) of the resolved configuration: equal keys, equal points.
    params : dict
        The swept keys (display names such as ``"r_wl"``, ``"device.a"``) and their values.
    config : dict
        The full resolved configuration: tables ``tile``, ``conductance``, ``inputs``, ``solve``.
    """

    index: int
    name: str
    key: str
    params: dict
    config: dict


@dataclass(frozen=True)
class Study:
    """A checked study: its points, output options and fingerprint.

    Attributes
    ----------
    name, description : str
    text : str
        The study file as given (stored with the results).
    source : Path or None
        The file it came from.
    points : tuple of Point
    sweep_keys : tuple of str
        Display names of the swept keys, in order.
    output : dict
        The checked ``[output]`` table.
    batch : int or None
        ``[solve] batch``: most points per batched tile (None: chosen by size).
    fingerprint : str
        SHA-256 of the format version, the output options and every point's configuration:
        two studies with the same fingerprint compute the same results.
    g_file : ndarray or None
        The conductance map of ``[conductance] file``, loaded.
    """

    name: str
    description: str
    text: str
    source: Path | None
    points: tuple
    sweep_keys: tuple
    output: dict
    batch: int | None
    fingerprint: str
    g_file: np.ndarray | None = field(default=None, repr=False, compare=False)


def default_study_text() -> str:
    """The embedded default study file (commented TOML), as ``circuitsim study init`` writes it."""
    return resources.files("circuitsim.studies").joinpath("default.toml").read_text()


def display_name(path: tuple[str, ...]) -> str:
    """``("tile", "r_wl")`` -> ``"r_wl"``, ``("tile", "device", "a")`` -> ``"device.a"``,
    ``("conductance", "g_max")`` -> ``"conductance.g_max"``."""
    return ".".join(path[1:] if path[0] == "tile" else path)


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Loader:
    """Holds the file name for messages; one method per table."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str):
        raise StudyError(f"{self.source}: {message}")

    def keys(self, table: dict, spec: dict[str, Key], where: str) -> dict:
        """Check the keys of one table; returns the given values, converted."""
        out = {}
        for k, v in table.items():
            if k not in spec:
                self.fail(f"{where} key {k!r}: unknown key; valid keys: {', '.join(spec)}")
            if spec[k].kind != "model":
                out[k] = self.value(spec[k], v, f"{where} key {k!r}")
            else:
                out[k] = v
        return out

    def value(self, key: Key, v, where: str):
        if key.kind == "node_voltages":
            if isinstance(v, bool) or (isinstance(v, int) and v >= 1):
                return v
            self.fail(f"{where}: must be true, false or a number of input vectors >= 1, "
                      f"got {v!r}")
        if key.kind == "list":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                self.fail(f"{where}: must be a list of metric names, got {v!r}")
            bad = [x for x in v if x not in schema.METRICS]
            if bad:
                self.fail(f"{where}: unknown metric {bad[0]!r}; valid: {', '.join(schema.METRICS)}")
            return tuple(v)
        try:
            return key.check(v, where)
        except StudyError as exc:
            self.fail(str(exc))

    def model(self, v, where: str, registry: dict) -> dict:
        """A device or access table (or its model name alone) -> ``{"model": ..., params}``."""
        if isinstance(v, str):
            v = {"model": v}
        if not isinstance(v, dict):
            self.fail(f"{where}: must be a table such as {{ model = \"{next(iter(registry))}\" }}"
                      f" or a model name, got {v!r}")
        if "model" not in v:
            self.fail(f"{where}: needs a 'model' key, one of {', '.join(registry)}")
        name = v["model"]
        if name not in registry:
            self.fail(f"{where} key 'model': unknown model {name!r}; valid: {', '.join(registry)}")
        params = schema.model_params(registry[name])
        out = {"model": name}
        for k, x in v.items():
            if k == "model":
                continue
            if k not in params:
                valid = ", ".join(params) or "none"
                self.fail(f"{where} key {k!r}: model {name!r} has no parameter {k!r}; "
                          f"its parameters: {valid}")
            out[k] = self.value(params[k], x, f"{where} key {k!r}")
        return out

    def resolve_model(self, v: dict, where: str, registry: dict):
        """Fill the defaults of a model table and build the model (which checks its values)."""
        cls = registry[v["model"]]
        full = {"model": v["model"]}
        for k, key in schema.model_params(cls).items():
            full[k] = v.get(k, key.default)
        if cls is not None:
            try:
                cls(**{k: x for k, x in full.items() if k != "model"})
            except (TypeError, ValueError) as exc:
                self.fail(f"{where}: {exc}")
        return full


def _flatten(loader: _Loader, table: dict, where: str, leaf, prefix=("tile",)) -> dict:
    """Paths of a sweep (``leaf`` checks each list) or of an explicit point (``leaf`` None)."""
    out = {}
    for k, v in table.items():
        if prefix == ("tile",) and k in SWEEP_TABLES and isinstance(v, dict):
            out.update(_flatten(loader, v, where, leaf, (k,)))
            continue
        path = (*prefix, k)
        sub = f"{where} key {display_name(path)!r}"
        spec = TABLES[prefix[0]].get(k)
        if spec is None:
            valid = (f"keys of [tile] ({', '.join(TILE)}) or tables {', '.join(SWEEP_TABLES)}"
                     if prefix == ("tile",)
                     else f"keys of [{prefix[0]}] ({', '.join(TABLES[prefix[0]])})")
            loader.fail(f"{sub}: not a sweepable parameter; use {valid}")
        if not spec.sweep:
            loader.fail(f"{sub}: cannot be swept")
        if spec.kind == "model" and isinstance(v, dict) and (leaf is not None or "model" not in v):
            for p, x in v.items():  # parameters of the model: device.a = [...]
                mp = (*path, p)
                out[mp] = leaf(x, f"{where} key {display_name(mp)!r}") if leaf else x
            continue
        out[path] = leaf(v, sub) if leaf else v
    return out


def _grid_leaf(loader: _Loader):
    def leaf(v, where):
        if not isinstance(v, list) or not v:
            loader.fail(f"{where}: a sweep value must be a non-empty list, got {v!r}")
        seen = set()
        for x in v:
            c = _canonical(x)
            if c in seen:
                loader.fail(f"{where}: the value {x!r} is listed twice")
            seen.add(c)
        return v
    return leaf


def _check_item(loader: _Loader, path, value, where):
    """Check one swept value against the key it sets."""
    if len(path) == 3:
        return loader.value(schema._num(None, ""), value, where)
    key = TABLES[path[0]][path[1]]
    if key.kind == "model":
        registry = schema.DEVICE_MODELS if path[1] == "device" else schema.ACCESS_MODELS
        return loader.model(value, where, registry)
    return loader.value(key, value, where)


def _sweep(loader: _Loader, sweep: dict):
    """(grid paths -> checked value lists, explicit points as dicts of path -> value)."""
    sweep = dict(sweep)
    points = sweep.pop("points", None)
    grid = _flatten(loader, sweep, "[sweep]", _grid_leaf(loader))
    for path, values in grid.items():
        where = f"[sweep] key {display_name(path)!r}"
        grid[path] = [_check_item(loader, path, x, f"{where} item {i}")
                      for i, x in enumerate(values)]
    explicit = []
    if points is not None:
        if not isinstance(points, list) or not points or \
                not all(isinstance(p, dict) for p in points):
            loader.fail("[sweep] key 'points': must be a non-empty list of tables, "
                        "e.g. points = [{ rows = 16, r_wl = 0.5 }]")
        for i, p in enumerate(points):
            where = f"[sweep] points item {i}"
            flat = _flatten(loader, p, where, None)
            for path, x in flat.items():
                if path in grid:
                    loader.fail(f"{where} key {display_name(path)!r}: also swept by the grid")
                flat[path] = _check_item(loader, path, x, f"{where} key {display_name(path)!r}")
            explicit.append(flat)
    return grid, explicit


def _apply(loader: _Loader, base: dict, override: dict, name: str) -> dict:
    """The configuration of one point: ``base`` with the swept values of ``override``."""
    cfg = copy.deepcopy(base)
    tile = cfg["tile"]
    set_by: dict[str, str] = {}
    for path in sorted(override, key=len):
        value = override[path]
        where = f"[sweep] key {display_name(path)!r} (point {name})"
        if path[0] == "tile" and len(path) == 2 and path[1] in ALIASES:
            targets = ALIASES[path[1]]
        else:
            targets = (path[-1],) if len(path) == 2 else ()
        for t in targets:
            if path[0] == "tile" and t in set_by:
                loader.fail(f"{where}: sets {t!r}, which {set_by[t]!r} sets too")
            set_by[t] = display_name(path)
        if len(path) == 3:
            table = tile[path[1]]
            params = schema.model_params(
                (schema.DEVICE_MODELS if path[1] == "device" else schema.ACCESS_MODELS)[
                    table["model"]])
            if path[2] not in params:
                loader.fail(f"{where}: {path[1]} model {table['model']!r} has no parameter "
                            f"{path[2]!r}")
            table[path[2]] = value
        elif path[0] == "tile" and path[1] in ALIASES:
            for t in ALIASES[path[1]]:
                tile[t] = value
        else:
            cfg[path[0]][path[1]] = copy.deepcopy(value)
    return cfg


def _base(loader: _Loader, data: dict) -> dict:
    """The checked tables, defaults filled in; tile aliases expanded."""
    for name, table in data.items():
        if not isinstance(table, dict):
            loader.fail(f"key {name!r} outside any table: keys belong in tables such as "
                        "[tile]; a table header must come first")
        if name != "sweep" and name not in TABLES:
            loader.fail(f"[{name}]: unknown table; valid tables: "
                        f"{', '.join([*TABLES, 'sweep'])}")
    cfg = {}
    for name, spec in TABLES.items():
        given = loader.keys(data.get(name, {}), spec, f"[{name}]")
        cfg[name] = {k: key.default for k, key in spec.items() if k not in ALIASES}
        for k, v in given.items():
            if k in ALIASES:
                for t in ALIASES[k]:
                    if t in given:
                        loader.fail(f"[{name}] key {k!r}: sets {t!r}, which is given too")
                    cfg[name][t] = v
            else:
                cfg[name][k] = v
    tile = cfg["tile"]
    tile["device"] = loader.model(tile["device"] or "linear", "[tile] key 'device'",
                                  schema.DEVICE_MODELS)
    tile["access"] = loader.model(tile["access"] or "none", "[tile] key 'access'",
                                  schema.ACCESS_MODELS)
    return cfg


def _conductance_file(loader: _Loader, cfg: dict, given, base_dir: Path):
    cond = cfg["conductance"]
    if cond["file"] is None:
        return None
    given = [k for k in given if k != "file"]
    if given:
        loader.fail(f"[conductance] key {given[0]!r}: not used with 'file' (the map is read "
                    "from the file)")
    path = Path(cond["file"])
    path = path if path.is_absolute() else base_dir / path
    try:
        g = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        loader.fail(f"[conductance] key 'file': cannot read {str(path)!r} as a .npy array: {exc}")
    if g.ndim != 2 or not np.issubdtype(g.dtype, np.number) or np.iscomplexobj(g):
        loader.fail(f"[conductance] key 'file': {str(path)!r} holds a {g.dtype} array of shape "
                    f"{g.shape}; expected real numbers of shape (rows, cols)")
    g = np.ascontiguousarray(g, dtype=np.float64)
    bad = ~np.isfinite(g) | (g < 0)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        loader.fail(f"[conductance] key 'file': {str(path)!r} has g[{idx}] = {g[idx]!r}; "
                    "conductances must be finite and >= 0")
    for k, size in (("rows", g.shape[0]), ("cols", g.shape[1])):
        if cfg["tile"][k] is None:
            cfg["tile"][k] = size
    cond["sha256"] = hashlib.sha256(g.tobytes()).hexdigest()
    cond["shape"] = list(g.shape)
    for k in ("distribution", "g_min", "g_max", "seed"):
        cond.pop(k)
    return g


def _check_point(loader: _Loader, cfg: dict, name: str, g_file) -> dict:
    """Resolve models and check the cross-key rules of one point's configuration."""
    where = f"point {name}"
    tile, cond, inputs = cfg["tile"], cfg["conductance"], cfg["inputs"]
    for k in ("rows", "cols"):
        if tile[k] is None:
            loader.fail(f"[tile] key {k!r}: required (or 'size', or a [conductance] file)")
    tile["device"] = loader.resolve_model(tile["device"], f"[tile] key 'device' ({where})",
                                          schema.DEVICE_MODELS)
    tile["access"] = loader.resolve_model(tile["access"], f"[tile] key 'access' ({where})",
                                          schema.ACCESS_MODELS)
    if tile["access"]["model"] != "none" and tile["v_gate"] is None:
        loader.fail(f"[tile] key 'v_gate': required with access model "
                    f"{tile['access']['model']!r} ({where})")
    if g_file is not None and list(g_file.shape) != [tile["rows"], tile["cols"]]:
        loader.fail(f"[conductance] key 'file': the map has shape {g_file.shape} but {where} has "
                    f"rows = {tile['rows']}, cols = {tile['cols']}")
    if g_file is None:
        if cond["g_min"] > cond["g_max"]:
            loader.fail(f"[conductance] key 'g_min': {cond['g_min']!r} exceeds g_max = "
                        f"{cond['g_max']!r} ({where})")
        if cond["distribution"] == "loguniform" and cond["g_min"] <= 0:
            loader.fail(f"[conductance] key 'g_min': must be > 0 for a loguniform distribution "
                        f"({where})")
    if inputs["v_min"] > inputs["v_max"]:
        loader.fail(f"[inputs] key 'v_min': {inputs['v_min']!r} exceeds v_max = "
                    f"{inputs['v_max']!r} ({where})")
    if inputs["count"] == 0 and not inputs["all_on"]:
        loader.fail(f"[inputs] key 'count': 0 random vectors and all_on = false leave no input "
                    f"({where})")
    nonlinear = tile["device"]["model"] != "linear" or tile["access"]["model"] != "none"
    if nonlinear and cfg["solve"]["solver"] not in ("direct", "superlu", "cholmod"):
        loader.fail(f"[solve] key 'solver': {cfg['solve']['solver']!r} cannot solve the nonlinear"
                    f" tiles of Newton's method ({where}); use direct, superlu or cholmod")
    return cfg


def load_study(path: str | Path | None = None, *, text: str | None = None) -> Study:
    """Read and check a study file (or its ``text``); nothing is solved.

    Raises
    ------
    StudyError
        For any error in the file, naming the table, the key and why.
    """
    if (path is None) == (text is None):
        raise TypeError("load_study takes a path or text=, not both")
    source = "<text>"
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise StudyError(f"{source}: cannot read the study file: {exc.strerror}") from None
        base_dir = path.resolve().parent
    loader = _Loader(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{source}: not valid TOML: {exc}") from None
    base = _base(loader, data)
    g_file = _conductance_file(loader, base, list(data.get("conductance", {})), base_dir)
    grid, explicit = _sweep(loader, data.get("sweep", {}))
    if g_file is not None:
        for path_ in [*grid, *(p for e in explicit for p in e)]:
            if path_[:2] in (("tile", "rows"), ("tile", "cols"), ("tile", "size")):
                loader.fail(f"[sweep] key {display_name(path_)!r}: the tile shape is fixed by "
                            "[conductance] file")
            if path_[0] == "conductance":
                loader.fail(f"[sweep] key {display_name(path_)!r}: not used with "
                            "[conductance] file")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    overrides = [{**c, **e} for c in combos for e in (explicit or [{}])]
    width = len(str(len(overrides) - 1))
    sweep_keys = list(dict.fromkeys(display_name(p) for o in overrides for p in o))
    batch = base["solve"].pop("batch")
    model_base = {k: v for k, v in base.items() if k in SWEEP_TABLES}
    points, seen = [], {}
    for i, override in enumerate(overrides):
        name = f"p{i:0{width}d}"
        cfg = _check_point(loader, _apply(loader, model_base, override, name), name, g_file)
        key = _sha(_canonical(cfg))[:16]
        if key in seen:
            loader.fail(f"[sweep]: points {seen[key]} and {name} have the same configuration")
        seen[key] = name
        params = {display_name(p): v for p, v in override.items()}
        points.append(Point(i, name, key, params, cfg))
    if base["tile"]["v_gate"] is not None and all(
            p.config["tile"]["access"]["model"] == "none" for p in points):
        loader.fail("[tile] key 'v_gate': no point has an access transistor "
                    "(set [tile] access, or sweep it)")
    output = dict(base["output"])
    fingerprint = _sha(_canonical({"format": FORMAT_VERSION, "output": output,
                                   "points": [p.config for p in points]}))
    return Study(
        name=base["study"]["name"], description=base["study"]["description"], text=text,
        source=None if path is None else path, points=tuple(points),
        sweep_keys=tuple(sweep_keys), output=output, batch=batch,
        fingerprint=fingerprint, g_file=g_file,
    )


def describe(value: Any) -> str:
    """Short text of a swept value: numbers as given, model tables as ``sinh(a=3)``."""
    if isinstance(value, dict):
        params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in value.items() if k != "model")
        return f"{value['model']}({params})" if params else value["model"]
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
