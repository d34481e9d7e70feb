"""Node-by-node comparison of circuitsim's solution with ngspice's operating point.

Errors are measured against ngspice. A voltage's relative error is ``|v_cs - v_spice|`` divided by
``max(|v_spice|, floor_v)``, with the floor ``floor_v = 1e-3 * max |fixed voltage|`` (the
largest input or sense voltage, at least 1 mV): nodes that sit near 0 V, such as bit lines next to
a virtual ground, are held to the same absolute accuracy as a node at a thousandth of the drive.
Currents (``i_out`` and ``i_source``) likewise, with ``floor_i = 1e-3 * max |current|`` (at least
1e-15 A, SPICE's ``abstol``). A case passes when both maximum relative errors are at most ``rtol``:
:data:`RTOL_LINEAR` for linear tiles, :data:`RTOL_NONLINEAR` for nonlinear and 1T1R tiles.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
from circuitsim.netlist import Tile
from circuitsim.netlist.spice import spice_nodes, to_spice

import circuitsim as cs

from .errors import DisagreementError, NgspiceError
from .ngspice import NgspiceRun, run_deck

__all__ = ["RTOL_LINEAR", "RTOL_NONLINEAR", "Report", "compare", "single_tile", "spice_arrays"]

#: Relative agreement asked of linear tiles (DESIGN.md section 7).
RTOL_LINEAR = 1e-9
#: Relative agreement asked of nonlinear and 1T1R tiles.
RTOL_NONLINEAR = 1e-6
#: Floors of the relative errors, as fractions of the largest voltage and current of the case.
FLOOR = 1e-3


@dataclass(frozen=True)
class Report:
    """Outcome of one cross-check of circuitsim against ngspice.

    Attributes
    ----------
    name : str
        Case name.
    shape : tuple of int
        ``(m, n)``.
    rtol : float
        Relative tolerance the case is held to.
    v_abs, v_rel : float
        Largest absolute (V) and relative error of the node voltages.
    i_abs, i_rel : float
        Largest absolute (A) and relative error of the currents ``i_out`` and ``i_source``.
    worst_node : str
        Node (deck name) with the largest relative voltage error.
    worst_current : str
        ``i_out[j]`` or ``i_source[i]`` with the largest relative current error.
    ngspice_s, circuitsim_s : float
        Seconds taken by ngspice (see :class:`~circuitsim.validation.ngspice.NgspiceRun`) and by
        ``circuitsim.solve`` on the same tile and input.
    backend : str
        ``"shared"`` or ``"cli"``.
    version : int or None
        ngspice's major version.
    notes : tuple of str
        ngspice's warnings and notes.
    ngspice : dict of str to ndarray
        ngspice's values mapped onto circuitsim's arrays (``v_wl``, ``v_bl``, ``v_int`` for
        1T1R tiles, ``i_out``, ``i_source``).
    """

    name: str
    shape: tuple[int, int]
    rtol: float
    v_abs: float
    v_rel: float
    i_abs: float
    i_rel: float
    worst_node: str
    worst_current: str
    ngspice_s: float
    circuitsim_s: float
    backend: str
    version: int | None
    notes: tuple[str, ...] = ()
    ngspice: dict = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        """Whether voltages and currents agree within ``rtol``."""
        return self.v_rel <= self.rtol and self.i_rel <= self.rtol

    def summary(self) -> str:
        """One line: errors, worst node, times."""
        return (
            f"{self.name} ({self.shape[0]}x{self.shape[1]}): max rel error V {self.v_rel:.2e} "
            f"at {self.worst_node}, I {self.i_rel:.2e} at {self.worst_current} "
            f"(rtol {self.rtol:g}); ngspice {self.ngspice_s:.3f} s ({self.backend}), "
            f"circuitsim {self.circuitsim_s:.3f} s"
        )

    def check(self) -> Report:
        """Return self if passed; else raise :class:`DisagreementError` naming the worst node."""
        if not self.passed:
            raise DisagreementError("circuitsim and ngspice disagree: " + self.summary())
        return self


def single_tile(tile: Tile, tile_index: int) -> Tile:
    """Tile ``tile_index`` of a batch as an unbatched tile (per-cell model parameters taken)."""
    if not 0 <= tile_index < tile.batch:
        raise ValueError(f"tile_index {tile_index} is out of range for a batch of {tile.batch}")
    sel = slice(tile_index, tile_index + 1)
    pick = np.array([tile_index])

    def take(model):
        return model.take(pick) if getattr(model, "_cell_params", ()) else model

    return dataclasses.replace(
        tile,
        g=tile.g[sel],
        r_wl=tile.r_wl[sel],
        r_bl=tile.r_bl[sel],
        r_source=tile.r_source[sel],
        r_sense=tile.r_sense[sel],
        v_sense=tile.v_sense[sel],
        device=take(tile.device),
        access=take(tile.access),
        v_gate=None if tile.v_gate is None else tile.v_gate[sel],
        batched=False,
    )


def spice_arrays(tile: Tile, vectors: dict, *, tile_index: int = 0) -> dict[str, np.ndarray]:
    """ngspice's vectors as circuitsim's arrays: ``v_wl``, ``v_bl``, (``v_int``), ``i_out``,
    ``i_source``, each of the shapes of an unbatched :class:`circuitsim.Solution`."""
    names = spice_nodes(tile, tile_index)
    missing = [s for s in dict.fromkeys(names) if s not in vectors]
    if missing:
        raise NgspiceError(f"ngspice's output lacks node(s) {', '.join(missing[:5])}")
    v = np.array([vectors[s] for s in names])
    m, n = tile.m, tile.n
    mn = m * n
    out = {"v_wl": v[:mn].reshape(m, n), "v_bl": v[mn : 2 * mn].reshape(m, n)}
    if tile.access is not None:
        out["v_int"] = v[2 * mn : 3 * mn].reshape(m, n)
    out["i_out"] = np.array([vectors[f"i(vsense_{j})"] for j in range(n)])
    out["i_source"] = -np.array([vectors[f"i(vsrc_{i})"] for i in range(m)])
    return out


def _worst(ours: dict, theirs: dict, keys, floor: float, labels):
    """Largest absolute and relative error over ``keys``, and the label of the worst entry."""
    abs_err = np.concatenate([np.abs(ours[k] - theirs[k]).ravel() for k in keys])
    ref = np.concatenate([np.abs(theirs[k]).ravel() for k in keys])
    rel = abs_err / np.maximum(ref, floor)
    k = int(np.argmax(rel))
    return float(abs_err.max()), float(rel[k]), labels[k]


def errors(tile: Tile, v_in, ours: dict, theirs: dict, *, tile_index: int = 0):
    """``(v_abs, v_rel, worst_node, i_abs, i_rel, worst_current)`` of circuitsim's arrays
    ``ours`` against ngspice's ``theirs`` (both as from :func:`spice_arrays`)."""
    v_keys = [k for k in ("v_wl", "v_bl", "v_int") if k in theirs]
    names = spice_nodes(tile, tile_index)
    v_fixed = np.concatenate([np.ravel(v_in), tile.v_sense[tile_index]])
    floor_v = FLOOR * max(float(np.abs(v_fixed).max()), 1e-3)
    v_abs, v_rel, node = _worst(ours, theirs, v_keys, floor_v, names)
    i_keys = ("i_out", "i_source")
    i_scale = max(float(np.abs(theirs[k]).max()) for k in i_keys)
    labels = [f"i_out[{j}]" for j in range(tile.n)] + [f"i_source[{i}]" for i in range(tile.m)]
    i_abs, i_rel, current = _worst(ours, theirs, i_keys, max(FLOOR * i_scale, 1e-15), labels)
    return v_abs, v_rel, node, i_abs, i_rel, current


def compare(
    tile: Tile,
    v_in,
    *,
    tile_index: int = 0,
    timeout: float = 120.0,
    backend: str = "auto",
    rtol: float | None = None,
    name: str = "tile",
    deck: str | None = None,
    **solve_options,
) -> Report:
    """Solve one tile and input vector with circuitsim and with ngspice, and compare every node.

    Parameters
    ----------
    tile : Tile
        A tile or batch of tiles (:func:`circuitsim.crossbar`).
    v_in : array_like, shape (m,)
        One input vector (V).
    tile_index : int
        Which tile of a batch.
    timeout : float
        Seconds before ngspice's child process is killed.
    backend : {"auto", "shared", "cli"}
        How to run ngspice (:func:`circuitsim.validation.ngspice.run_deck`).
    rtol : float, optional
        Relative tolerance; default :data:`RTOL_LINEAR` for linear tiles, else
        :data:`RTOL_NONLINEAR`.
    name : str
        Case name for the report.
    deck : str, optional
        The deck to run; default ``to_spice(tile, v_in, tile_index=tile_index)``.
    **solve_options
        Passed to :func:`circuitsim.solve`.

    Returns
    -------
    Report
        ``report.passed`` says whether they agree; ``report.check()`` raises
        :class:`~circuitsim.validation.DisagreementError` if not.

    Raises
    ------
    NgspiceMissingError, NgspiceError, NgspiceConvergenceError, NgspiceTimeoutError
        When ngspice is missing, fails or runs too long (see
        :func:`~circuitsim.validation.ngspice.run_deck`).
    circuitsim.ConvergenceError
        When circuitsim itself fails on the tile.
    """
    v = np.asarray(v_in, dtype=np.float64)
    if deck is None:
        deck = to_spice(tile, v, tile_index=tile_index, title=f"circuitsim validate {name}")
    one = single_tile(tile, tile_index)
    start = time.perf_counter()
    sol = cs.solve(one, v, **solve_options)
    circuitsim_s = time.perf_counter() - start
    run: NgspiceRun = run_deck(deck, backend=backend, timeout=timeout)
    theirs = spice_arrays(tile, run.vectors, tile_index=tile_index)
    ours = {k: getattr(sol, k) for k in theirs}
    v_abs, v_rel, node, i_abs, i_rel, current = errors(tile, v, ours, theirs, tile_index=tile_index)
    if rtol is None:
        rtol = RTOL_LINEAR if tile.is_linear else RTOL_NONLINEAR
    return Report(
        name=name,
        shape=(tile.m, tile.n),
        rtol=rtol,
        v_abs=v_abs,
        v_rel=v_rel,
        i_abs=i_abs,
        i_rel=i_rel,
        worst_node=node,
        worst_current=current,
        ngspice_s=run.time_s,
        circuitsim_s=circuitsim_s,
        backend=run.backend,
        version=run.version,
        notes=run.notes,
        ngspice=theirs,
    )
