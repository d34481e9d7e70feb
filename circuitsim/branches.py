"""Branch currents and their partial derivatives, for a batch of systems at once.

A system is one (tile, input vector) pair; ``tile_idx`` says which tile of the plan's circuit each
system belongs to (an index into the circuit's batch), so per-tile values (resistances, conductances, device parameters) are gathered
by it. The loop below runs over the three branch kinds, never over branches.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .mna import Plan

__all__ = ["BranchValues", "branch_values", "per_system", "select_cells"]


@dataclasses.dataclass(frozen=True)
class BranchValues:
    """Currents ``i`` (a to b) and partials ``p = di/dv_a``, ``q = di/dv_b``, each ``(S, E)``."""

    i: np.ndarray
    p: np.ndarray
    q: np.ndarray


def select_cells(model, tile_idx: np.ndarray, cells: np.ndarray):
    """The model with its per-cell parameters ``(B, E)`` reduced to ``(S, len(cells))`` (or
    ``(1, len(cells))`` when every system belongs to one tile, see :func:`per_system`)."""
    if model is None:
        return None
    names = getattr(model, "_cell_params", ())
    changes = {}
    for name in names:
        arr = np.asarray(getattr(model, name))
        if arr.ndim == 2:
            changes[name] = per_system(arr, tile_idx, cells)
    return dataclasses.replace(model, **changes) if changes else model


def _linear(g, dv):
    return g * dv, g, -g


def per_system(values: np.ndarray, tile_idx: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Per-tile values ``(B, E_all)`` of the branches ``cells`` for each system: ``(S, E)``, or
    ``(1, E)`` (broadcasting) when every system belongs to one tile, the common case of many
    input vectors on one tile, which then costs no gather of ``S x E`` values."""
    if len(tile_idx) and (tile_idx == tile_idx[0]).all():
        return values[tile_idx[0], cells][None, :]
    return values[:, cells][tile_idx]


def branch_values(plan: Plan, v_red: np.ndarray, tile_idx: np.ndarray, *, models=None,
                  gmin: float = 0.0) -> BranchValues:
    """Evaluate all kept branches of ``plan`` at reduced node voltages ``v_red`` ``(S, n_red)``.

    ``models`` may give the per-group models already reduced with :func:`select_cells` (Newton
    does that once, not every iteration). ``gmin`` adds a conductance in parallel with every
    nonlinear branch (gmin stepping).
    """
    va, vb = v_red[:, plan.a], v_red[:, plan.b]
    shape = (len(v_red), len(plan.a))
    i, p, q = np.empty(shape), np.empty(shape), np.empty(shape)
    start = 0
    for k, (group, cells) in enumerate(zip(plan.circuit.groups, plan.kept)):
        sl = slice(start, start + len(cells))
        start = sl.stop
        if not len(cells):
            continue
        value = per_system(group.value, tile_idx, cells)
        model = models[k] if models is not None else select_cells(group.model, tile_idx, cells)
        if group.kind == "resistor":
            i[:, sl], p[:, sl], q[:, sl] = _linear(1.0 / value, va[:, sl] - vb[:, sl])
        elif group.kind == "device":
            dv = va[:, sl] - vb[:, sl]
            if model is None or getattr(model, "linear", False):
                i[:, sl], p[:, sl], q[:, sl] = _linear(value, dv)
            else:
                g = model.conductance(dv, value) + gmin
                i[:, sl] = model.current(dv, value) + gmin * dv
                p[:, sl], q[:, sl] = g, -g
        else:  # transistor: a is the drain, b the source, value the gate voltage
            i[:, sl], p[:, sl], q[:, sl] = model.drain_current(va[:, sl], vb[:, sl], value)
            if gmin:
                i[:, sl] += gmin * (va[:, sl] - vb[:, sl])
                p[:, sl] += gmin
                q[:, sl] -= gmin
    return BranchValues(i, p, q)
