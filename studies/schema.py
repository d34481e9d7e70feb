"""The keys of a study file: their tables, types, allowed values, defaults and units.

Every table of a study file is described here by a dict of :class:`Key`; the loader
(:mod:`circuitsim.studies.config`) checks each value against its key and reports the table, the
key and the reason for anything wrong. Device and access models take their parameters from the
model dataclasses of :mod:`circuitsim.devices`, so a new parameter there is a study key at once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from circuitsim import devices

__all__ = ["ACCESS_MODELS", "DEVICE_MODELS", "METRICS", "TABLES", "Key", "StudyError"]


class StudyError(ValueError):
    """A study file is wrong; the message names the file, the table, the key and why."""


@dataclass(frozen=True)
class Key:
    """One key of a study table.

    Attributes
    ----------
    kind : str
        ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"model"`` (a device table) or ``"list"``.
    default : Any
        Value when the key is absent; ``None`` for no value.
    unit : str
        SI unit of the value (``"1"`` for pure numbers, ``""`` for text).
    lower : float or None
        Smallest allowed value (numbers).
    strict : bool
        Whether ``lower`` itself is excluded.
    choices : tuple
        Allowed strings (``kind == "str"``), empty for any.
    sweep : bool
        Whether ``[sweep]`` may vary the key.
    doc : str
        One line for the documentation and the error messages.
    """

    kind: str
    default: Any = None
    unit: str = ""
    lower: float | None = None
    strict: bool = False
    choices: tuple = ()
    sweep: bool = True
    doc: str = ""

    def check(self, value, where: str):
        """Return ``value`` converted (ints to floats for ``float`` keys), or raise StudyError.

        ``where`` names the table and key, e.g. ``"[tile] key 'r_wl'"``.
        """
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise StudyError(f"{where}: must be true or false, got {value!r}")
            return value
        if self.kind in ("int", "float"):
            ok = isinstance(value, int) if self.kind == "int" else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok:
                kind = "an integer" if self.kind == "int" else "a number"
                raise StudyError(f"{where}: must be {kind}, got {value!r}")
            value = int(value) if self.kind == "int" else float(value)
            if not math.isfinite(value):
                raise StudyError(f"{where}: must be finite, got {value!r}")
            if self.lower is not None and (value <= self.lower if self.strict
                                           else value < self.lower):
                op = ">" if self.strict else ">="
                raise StudyError(f"{where}: must be {op} {self.lower:g}, got {value!r}")
            return value
        if self.kind == "str":
            if not isinstance(value, str):
                raise StudyError(f"{where}: must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise StudyError(f"{where}: must be one of {', '.join(map(repr, self.choices))}, "
                                 f"got {value!r}")
            return value
        return value


def _num(default, unit, lower=None, strict=False, doc="", sweep=True):
    return Key("float", default, unit, lower, strict, doc=doc, sweep=sweep)


def _int(default, lower=None, strict=False, doc="", sweep=True, unit="1"):
    return Key("int", default, unit, lower, strict, doc=doc, sweep=sweep)


TILE = {
    "rows": _int(None, 1, doc="word lines m (inputs)"),
    "cols": _int(None, 1, doc="bit lines n (outputs)"),
    "size": _int(None, 1, doc="sets rows and cols together (square tiles)"),
    "r_wl": _num(0.0, "ohm", 0.0, doc="word-line segment resistance per cell"),
    "r_bl": _num(0.0, "ohm", 0.0, doc="bit-line segment resistance per cell"),
    "r_wire": _num(None, "ohm", 0.0, doc="sets r_wl and r_bl together"),
    "r_source": _num(0.0, "ohm", 0.0, doc="driver resistance of each word line"),
    "r_sense": _num(0.0, "ohm", 0.0, doc="sense resistance of each bit line"),
    "v_sense": _num(0.0, "V", doc="voltage held by the sense amplifiers"),
    "drive": Key("str", "left", choices=("left", "both"), doc="word lines driven at one end or both"),
    "device": Key("model", None, doc="memristor model table {model = ..., parameters}"),
    "access": Key("model", None, doc="access transistor table {model = ..., parameters}"),
    "v_gate": _num(None, "V", doc="gate voltage of the access transistors"),
}

#: Aliases of the tile table: key -> the keys it sets.
ALIASES = {"size": ("rows", "cols"), "r_wire": ("r_wl", "r_bl")}

CONDUCTANCE = {
    "distribution": Key("str", "uniform", choices=("uniform", "loguniform", "binary"),
                        doc="uniform in g, uniform in log g, or g_min/g_max with probability 1/2"),
    "g_min": _num(1e-6, "S", 0.0, doc="lowest conductance"),
    "g_max": _num(1e-4, "S", 0.0, strict=True, doc="highest conductance"),
    "seed": _int(0, 0, doc="seed of the conductance map"),
    "file": Key("str", None, sweep=False, doc=".npy file of a (rows, cols) map, S"),
}

INPUTS = {
    "count": _int(16, 0, doc="random input vectors, uniform in [v_min, v_max]"),
    "v_min": _num(0.0, "V", doc="lowest random input voltage"),
    "v_max": _num(0.3, "V", doc="highest input voltage, and that of the all-rows-on vector"),
    "seed": _int(1, 0, doc="seed of the random inputs"),
    "all_on": Key("bool", True, doc="add the all-rows-on vector (first): every row at v_max"),
}

SOLVE = {
    "solver": Key("str", "direct", choices=("direct", "superlu", "cholmod", "cg", "dense"),
                  doc="linear solver of circuitsim.solve"),
    "reltol": _num(1e-9, "1", 0.0, strict=True, doc="relative tolerance of the KCL audit"),
    "abstol": _num(1e-15, "A", 0.0, strict=True, doc="absolute current tolerance"),
    "vntol": _num(1e-12, "V", 0.0, strict=True, doc="Newton voltage tolerance"),
    "max_iter": _int(100, 1, doc="Newton iterations per attempt"),
    "max_step": _num(1.0, "V", 0.0, strict=True, doc="largest Newton voltage step"),
    "mode": Key("str", "newton-krylov", choices=("newton-krylov", "newton"), doc="Newton update"),
    "gmin_stepping": Key("bool", True, doc="gmin stepping fallback"),
    "source_stepping": Key("bool", True, doc="source stepping fallback"),
    "batch": _int(None, 1, sweep=False, doc="most points solved as one batched tile"),
}

#: Solver options passed to every solve, and those only nonlinear tiles take (Newton's).
SOLVE_LINEAR = ("solver", "reltol", "abstol")
SOLVE_NEWTON = ("vntol", "max_iter", "max_step", "mode", "gmin_stepping", "source_stepping")

#: Metric groups that ``[output] metrics`` may keep, with their summary columns and units.
METRICS = {
    "err_rms": {"err_rms": "1"},
    "err_max": {"err_max": "1"},
    "wl_drop": {"wl_drop": "V", "wl_drop_row": "1", "wl_drop_col": "1", "wl_drop_input": "1"},
    "bl_rise": {"bl_rise": "V", "bl_rise_row": "1", "bl_rise_col": "1", "bl_rise_input": "1"},
    "power": {f"power_{p}": "W" for p in
              ("delivered", "drivers", "wires", "sense", "devices", "transistors")},
    "iterations": {"iterations": "1"},
    "residual": {"residual": "A"},
    "solve_time": {"solve_time": "s"},
}

OUTPUT = {
    "node_voltages": Key("node_voltages", True, sweep=False,
                         doc="store node voltages: true (all inputs), false, or the first N"),
    "metrics": Key("list", tuple(METRICS), sweep=False, doc="metric groups kept per point"),
    "compression": Key("str", "gzip", choices=("gzip", "lzf", "none"), sweep=False,
                       doc="HDF5 compression of the datasets"),
}

STUDY = {
    "name": Key("str", "study", sweep=False, doc="name shown in tables and plots"),
    "description": Key("str", "", sweep=False, doc="free text, stored in the results"),
}

#: The tables of a study file (``[sweep]`` is handled by the loader).
TABLES = {"study": STUDY, "tile": TILE, "conductance": CONDUCTANCE, "inputs": INPUTS,
          "solve": SOLVE, "output": OUTPUT}

#: Device models by study name: (class or None, its parameter names).
DEVICE_MODELS = {
    "linear": devices.Linear,
    "sinh": devices.Sinh,
    "asym-sinh": devices.AsymmetricSinh,
    "stanford-pku": devices.StanfordPKU,
}
ACCESS_MODELS = {"none": None, "level1": devices.Level1}

#: Units of model parameters (SI), by parameter name.
PARAM_UNITS = {"a": "1/V", "a_pos": "1/V", "a_neg": "1/V", "k_neg": "1", "i0": "A", "g0": "m",
               "v0": "V", "gap_min": "m", "gap_max": "m", "vto": "V", "kp": "A/V^2",
               "lambda_": "1/V", "w": "m", "l": "m"}


def model_params(cls) -> dict[str, Key]:
    """Parameter keys of a model dataclass, with its defaults (all numbers, SI units)."""
    if cls is None:
        return {}
    return {f.name: _num(f.default, PARAM_UNITS.get(f.name, ""), doc=f"{cls.__name__}.{f.name}")
            for f in dataclasses.fields(cls) if f.init}


def units(path: tuple[str, ...]) -> str:
    """Unit of a configuration entry given by its path, e.g. ``("tile", "device", "a")``."""
    if len(path) == 3:
        return PARAM_UNITS.get(path[2], "")
    table = TABLES.get(path[0], {})
    key = table.get(path[1])
    return key.unit if key is not None else ""
