"""The built-in validation suite, user-specified cases, and running a list of cases.

:func:`builtin_cases` covers passive linear tiles (all resistances nonzero, all zero, odd shapes,
per-segment resistances, open cells, nonzero sense voltages, ``drive="both"``), sinh, asymmetric
sinh and Stanford-PKU memristors, and 1T1R tiles (gates off for whole rows, reverse-biased cells),
with negative inputs, all at 16x16 or smaller except one 32x32 tile. :func:`case_from_spec` builds a
case from a dictionary (command-line options or a JSON config file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from circuitsim.netlist import Tile
from circuitsim.netlist.spice import to_spice

import circuitsim as cs

from .compare import Report, compare
from .errors import (
    NgspiceConvergenceError,
    NgspiceError,
    NgspiceMissingError,
    NgspiceTimeoutError,
)

__all__ = ["Case", "Outcome", "builtin_cases", "case_from_spec", "run_cases"]

DEVICES = ("linear", "sinh", "asym-sinh", "stanford-pku")


@dataclass(frozen=True)
class Case:
    """One tile and one input vector to cross-check.

    Attributes
    ----------
    name : str
    tile : Tile
        An unbatched tile.
    v_in : ndarray, shape (m,)
    """

    name: str
    tile: Tile
    v_in: np.ndarray

    @property
    def size(self) -> str:
        return f"{self.tile.m}x{self.tile.n}"


@dataclass(frozen=True)
class Outcome:
    """Result of one case: ``status`` is ``PASS``, ``FAIL`` (disagreement), ``NGSPICE-ERROR``,
    ``NO-CONVERGENCE``, ``TIMEOUT``, ``MISSING`` (no ngspice) or ``CIRCUITSIM-ERROR``."""

    case: Case
    status: str
    report: Report | None = None
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


def _g(rng, m, n, lo=1e-6, hi=1e-4):
    """Conductances uniform in ``[lo, hi]``, shape (m, n)."""
    return rng.uniform(lo, hi, (m, n))


def builtin_cases(seed: int = 0) -> list[Case]:
    """The built-in suite: 16 small tiles, deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    dev = cs.devices
    nmos = dev.Level1(vto=0.5, kp=2e-4, lambda_=0.05, w=1e-6, l=1e-6)
    u = rng.uniform
    specs = [
        (
            "passive-3x4-all-r",
            lambda: cs.crossbar(_g(rng, 3, 4), 2.0, 3.0, 50.0, 20.0),
            u(-0.5, 0.5, 3),
        ),
        ("passive-4x4-zero-r", lambda: cs.crossbar(_g(rng, 4, 4)), u(0, 0.5, 4)),
        (
            "passive-7x13-odd",
            lambda: cs.crossbar(_g(rng, 7, 13), 1.5, 0.8, 0.0, 25.0),
            -u(0, 0.4, 7),
        ),
        (
            "passive-5x6-segments-vsense",
            lambda: cs.crossbar(
                _g(rng, 5, 6),
                u(0.5, 3, (5, 6)),
                u(0.5, 3, (5, 6)),
                u(10, 100, 5),
                u(0, 50, 6),
                v_sense=u(0, 0.1, 6),
            ),
            u(-0.3, 0.5, 5),
        ),
        (
            "passive-8x8-both",
            lambda: cs.crossbar(_g(rng, 8, 8), 2.0, 1.0, 30.0, 0.0, drive="both"),
            u(0, 0.4, 8),
        ),
        (
            "passive-16x16",
            lambda: cs.crossbar(_g(rng, 16, 16), 2.5, 2.5, 100.0, 50.0),
            u(-0.3, 0.3, 16),
        ),
        (
            "passive-12x10-open-cells",
            lambda: cs.crossbar(_g(rng, 12, 10) * (u(0, 1, (12, 10)) > 0.2), 1.0, 0.0, 20.0, 10.0),
            u(0, 0.3, 12),
        ),
        (
            "passive-32x32",
            lambda: cs.crossbar(_g(rng, 32, 32), 1.0, 1.0, 10.0, 10.0),
            u(0, 0.3, 32),
        ),
        (
            "sinh-3x3",
            lambda: cs.crossbar(_g(rng, 3, 3), 1.0, 1.0, 10.0, 10.0, device=dev.Sinh(a=3.0)),
            u(-0.5, 0.5, 3),
        ),
        (
            "sinh-16x16-cell-a",
            lambda: cs.crossbar(
                _g(rng, 16, 16), 1.0, 1.0, 0.0, 5.0, device=dev.Sinh(a=u(2, 4, (16, 16)))
            ),
            u(-0.6, 0.6, 16),
        ),
        (
            "asym-sinh-6x6",
            lambda: cs.crossbar(
                _g(rng, 6, 6),
                1.0,
                2.0,
                10.0,
                10.0,
                device=dev.AsymmetricSinh(a_pos=3.0, a_neg=2.0, k_neg=0.5),
            ),
            u(-0.5, 0.5, 6),
        ),
        (
            "stanford-pku-5x5",
            lambda: cs.crossbar(_g(rng, 5, 5), 1.0, 1.0, 10.0, 10.0, device=dev.StanfordPKU()),
            u(-0.5, 0.5, 5),
        ),
        (
            "1t1r-4x5-row-off",
            lambda: cs.crossbar(
                _g(rng, 4, 5),
                1.0,
                1.0,
                10.0,
                10.0,
                access=nmos,
                v_gate=[[1.8], [0.0], [1.8], [1.2]],
            ),
            u(-0.3, 0.4, 4),
        ),
        (
            "1t1r-sinh-8x8-gates",
            lambda: cs.crossbar(
                _g(rng, 8, 8),
                0.0,
                1.0,
                20.0,
                10.0,
                device=dev.Sinh(a=2.0),
                access=nmos,
                v_gate=u(1.0, 2.0, (8, 8)),
            ),
            u(0, 0.4, 8),
        ),
        (
            "1t1r-sinh-12x9-both-negative",
            lambda: cs.crossbar(
                _g(rng, 12, 9),
                1.0,
                1.0,
                20.0,
                0.0,
                drive="both",
                device=dev.Sinh(a=2.5),
                access=nmos,
                v_gate=np.where(np.arange(12)[:, None] % 4 == 1, 0.0, 1.6),
            ),
            -u(0, 0.4, 12),
        ),
        (
            "1t1r-16x16",
            lambda: cs.crossbar(_g(rng, 16, 16), 1.0, 1.0, 10.0, 10.0, access=nmos, v_gate=1.5),
            u(-0.2, 0.4, 16),
        ),
    ]
    return [Case(name, build(), np.asarray(v)) for name, build, v in specs]


def _device(spec: dict):
    kind = spec.get("device", "linear")
    if kind == "linear":
        return None
    if kind == "sinh":
        return cs.devices.Sinh(a=spec.get("a", 2.0))
    if kind == "asym-sinh":
        return cs.devices.AsymmetricSinh(
            a_pos=spec.get("a", 2.0), a_neg=spec.get("a_neg", 2.0), k_neg=spec.get("k_neg", 1.0)
        )
    if kind == "stanford-pku":
        return cs.devices.StanfordPKU()
    raise ValueError(f"device must be one of {DEVICES}, got {kind!r}")


#: Keys a user case may have (see :func:`case_from_spec`).
SPEC_KEYS = (
    "name", "rows", "cols", "g", "g_min", "g_max", "v_in", "v_min", "v_max", "r_wl", "r_bl",
    "r_source", "r_sense", "v_sense", "drive", "device", "a", "a_neg", "k_neg", "access",
    "v_gate", "vto", "kp", "lambda", "w", "l", "seed",
)
#: Keys that apply only to some devices, and to the access transistor.
_DEVICE_KEYS = {"a": ("sinh", "asym-sinh"), "a_neg": ("asym-sinh",), "k_neg": ("asym-sinh",)}
_ACCESS_KEYS = ("v_gate", "vto", "kp", "lambda", "w", "l")


def check_spec(spec, where: str) -> None:
    """Refuse a case spec with unknown keys, keys that do not apply, or values of the wrong
    kind; the ``ValueError`` names ``where`` (the case) and the key."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: a case must be an object of tile options, got "
                         f"{type(spec).__name__} {spec!r}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; valid: {', '.join(SPEC_KEYS)}")
    device = spec.get("device", "linear")
    for key, devices in _DEVICE_KEYS.items():
        if key in spec and device not in devices:
            raise ValueError(f"{where}: {key!r} applies only with device "
                             f"{' or '.join(map(repr, devices))}, not {device!r}")
    if spec.get("access", "none") != "level1":
        given = [k for k in _ACCESS_KEYS if k in spec]
        if given:
            raise ValueError(f"{where}: {', '.join(map(repr, given))} appl"
                             f"{'ies' if len(given) == 1 else 'y'} only with access 'level1'")
    for key in ("rows", "cols", "seed"):
        value = spec.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "seed"
                                                                                else 1):
            raise ValueError(f"{where}: {key!r} must be a "
                             f"{'non-negative' if key == 'seed' else 'positive'} integer, "
                             f"got {value!r}")
    for key in ("g_min", "g_max", "v_min", "v_max", "a", "a_neg", "k_neg", "vto", "kp",
                "lambda", "w", "l"):
        value = spec.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: {key!r} must be a number, got {value!r}")
    if "name" in spec and not isinstance(spec["name"], str):
        raise ValueError(f"{where}: 'name' must be a string, got {spec['name']!r}")


def case_from_spec(spec: dict) -> Case:
    """A case from a dictionary of tile options (JSON config or command line).

    Keys (all optional): ``name``; ``rows``, ``cols`` (default 8); ``g`` (an explicit (m, n)
    list) or ``g_min``, ``g_max`` (S, default 1e-6, 1e-4, drawn uniformly with ``seed``);
    ``v_in`` (a list) or ``v_min``, ``v_max`` (V, default -0.3, 0.3); ``r_wl``, ``r_bl``,
    ``r_source``, ``r_sense`` (ohm, scalars or nested lists), ``v_sense``, ``drive``; ``device``
    (one of :data:`DEVICES`) with ``a``, ``a_neg``, ``k_neg``; ``access`` (``"none"`` or
    ``"level1"``) with ``v_gate``, ``vto``, ``kp``, ``lambda``, ``w``, ``l``; ``seed`` (default 0).
    Other keys, and keys that do not apply (``a`` without a sinh device, ``v_gate`` without
    ``access``), are refused (:func:`check_spec`).
    """
    check_spec(spec, f"case {spec.get('name', '(unnamed)')!r}" if isinstance(spec, dict)
               else "case")
    rng = np.random.default_rng(spec.get("seed", 0))
    if "g" in spec:
        g = np.asarray(spec["g"], dtype=float)
    else:
        shape = (int(spec.get("rows", 8)), int(spec.get("cols", 8)))
        g = rng.uniform(spec.get("g_min", 1e-6), spec.get("g_max", 1e-4), shape)
    m, n = g.shape
    access = spec.get("access", "none")
    if access not in ("none", "level1"):
        raise ValueError(f"access must be 'none' or 'level1', got {access!r}")
    nmos = None
    if access == "level1":
        nmos = cs.devices.Level1(
            vto=spec.get("vto", 0.5),
            kp=spec.get("kp", 2e-4),
            lambda_=spec.get("lambda", 0.0),
            w=spec.get("w", 1e-6),
            l=spec.get("l", 1e-6),
        )
    tile = cs.crossbar(
        g,
        spec.get("r_wl", 1.0),
        spec.get("r_bl", 1.0),
        spec.get("r_source", 10.0),
        spec.get("r_sense", 10.0),
        v_sense=spec.get("v_sense", 0.0),
        drive=spec.get("drive", "left"),
        device=_device(spec),
        access=nmos,
        v_gate=spec.get("v_gate", 1.5) if nmos is not None else None,
    )
    if "v_in" in spec:
        v_in = np.asarray(spec["v_in"], dtype=float)
    else:
        v_in = rng.uniform(spec.get("v_min", -0.3), spec.get("v_max", 0.3), m)
    return Case(spec.get("name", f"user-{m}x{n}"), tile, v_in)


def run_case(
    case: Case, *, backend: str = "auto", timeout: float = 120.0, decks: Path | None = None
) -> Outcome:
    """Cross-check one case; every failure becomes an :class:`Outcome` with its own status."""
    try:
        deck = to_spice(case.tile, case.v_in, title=f"circuitsim validate {case.name}")
        if decks is not None:
            (decks / f"{case.name}.cir").write_text(deck)
        report = compare(
            case.tile, case.v_in, name=case.name, backend=backend, timeout=timeout, deck=deck
        )
    except NgspiceMissingError as exc:
        return Outcome(case, "MISSING", message=str(exc))
    except NgspiceTimeoutError as exc:
        return Outcome(case, "TIMEOUT", message=str(exc))
    except NgspiceConvergenceError as exc:
        return Outcome(case, "NO-CONVERGENCE", message=str(exc))
    except NgspiceError as exc:
        return Outcome(case, "NGSPICE-ERROR", message=str(exc))
    except (ArithmeticError, ValueError, RuntimeError) as exc:  # circuitsim's own failures
        return Outcome(case, "CIRCUITSIM-ERROR", message=f"{type(exc).__name__}: {exc}")
    if not report.passed:
        return Outcome(case, "FAIL", report, "disagreement: " + report.summary())
    return Outcome(case, "PASS", report)


def run_cases(
    cases: list[Case], *, backend: str = "auto", timeout: float = 120.0, decks: Path | None = None
) -> list[Outcome]:
    """Run :func:`run_case` on every case; stops early only when ngspice is missing."""
    if decks is not None:
        decks.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for case in cases:
        outcome = run_case(case, backend=backend, timeout=timeout, decks=decks)
        outcomes.append(outcome)
        if outcome.status == "MISSING":
            break
    return outcomes
