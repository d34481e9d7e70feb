"""ngspice goldens: small tiles' decks and ngspice's operating points, stored beside each other.

For each case of :func:`golden_cases`, ``goldens/{name}.cir`` is the deck that
:func:`circuitsim.netlist.to_spice` wrote and ``goldens/{name}.npz`` holds ngspice's ``v_wl``,
``v_bl``, ``v_int`` (1T1R only), ``i_out``, ``i_source`` and the inputs ``v_in``, so tests check
SPICE agreement where ngspice is not installed. Regenerate with::

    python -m circuitsim.validation.goldens [DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from circuitsim.netlist.spice import to_spice

import circuitsim as cs

from .compare import spice_arrays
from .ngspice import run_deck
from .suite import Case

__all__ = ["GOLDEN_DIR", "generate", "golden_cases", "load"]

GOLDEN_DIR = Path(__file__).with_name("goldens")


def _pattern(m: int, n: int, lo: float, hi: float) -> np.ndarray:
    """A fixed, irregular (m, n) pattern in ``[lo, hi]`` (no random generator, so it never
    changes with numpy's)."""
    i, j = np.divmod(np.arange(m * n), n)
    return lo + (hi - lo) * ((7 * i + 3 * j + i * j) % 11).reshape(m, n) / 10


def golden_cases() -> list[Case]:
    """The golden tiles: passive 3x4 with every resistance nonzero, passive 4x4 with zero
    wire, driver and sense resistances, sinh 3x3 and 1T1R 3x3 (one row's gates off)."""
    nmos = cs.devices.Level1(vto=0.5, kp=2e-4, lambda_=0.05, w=1e-6, l=1e-6)
    return [
        Case(
            "linear_3x4",
            cs.crossbar(_pattern(3, 4, 1e-6, 1e-4), 2.0, 3.0, 50.0, 20.0),
            np.array([0.3, -0.2, 0.25]),
        ),
        Case(
            "linear_4x4_zero_r",
            cs.crossbar(_pattern(4, 4, 1e-5, 2e-4)),
            np.array([0.1, 0.2, -0.3, 0.4]),
        ),
        Case(
            "sinh_3x3",
            cs.crossbar(
                _pattern(3, 3, 1e-5, 1e-4), 1.0, 1.5, 10.0, 20.0, device=cs.devices.Sinh(a=3.0)
            ),
            np.array([0.5, -0.4, 0.3]),
        ),
        Case(
            "1t1r_3x3",
            cs.crossbar(
                _pattern(3, 3, 1e-5, 1e-4),
                1.0,
                1.0,
                10.0,
                10.0,
                device=cs.devices.Sinh(a=2.0),
                access=nmos,
                v_gate=[[1.5], [0.0], [1.8]],
            ),
            np.array([0.4, 0.3, -0.2]),
        ),
    ]


def deck_of(case: Case) -> str:
    """The deck of a golden case, as stored."""
    return to_spice(case.tile, case.v_in, title=f"circuitsim golden {case.name}")


def generate(directory: Path = GOLDEN_DIR, *, backend: str = "auto") -> list[Path]:
    """Write ``{name}.cir`` and ngspice's ``{name}.npz`` for every golden case; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in golden_cases():
        deck = deck_of(case)
        run = run_deck(deck, backend=backend)
        arrays = spice_arrays(case.tile, run.vectors)
        cir, npz = directory / f"{case.name}.cir", directory / f"{case.name}.npz"
        cir.write_text(deck)
        np.savez(npz, v_in=case.v_in, ngspice_version=run.version or -1, **arrays)
        paths += [cir, npz]
    return paths


def load(name: str, directory: Path = GOLDEN_DIR) -> tuple[str, dict[str, np.ndarray]]:
    """The stored deck and ngspice arrays of golden ``name``."""
    directory = Path(directory)
    with np.load(directory / f"{name}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return (directory / f"{name}.cir").read_text(), arrays


def main(argv: list[str] | None = None) -> int:
    """``python -m circuitsim.validation.goldens [DIR]``: regenerate the goldens."""
    argv = sys.argv[1:] if argv is None else argv
    for path in generate(Path(argv[0]) if argv else GOLDEN_DIR):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
