"""Branch currents and their partial derivatives, for a batch of systems at once.

A system is one (tile, input vector) pair; ``tile_idx`` says which tile of the plan's circuit each
system belongs to (an index into the circuit's batch), so per-tile values (resistances, conductances, device parameters) are gathered
by it. The loop below runs over the three branch kinds, never over branches.

On a GPU plan (:func:`circuitsim.mna.on_backend`) the per-tile values and device-model
parameters of the kept branches are on the device already (``plan.values``); ``tile_idx`` stays
on the host (it is small and steers the bookkeeping).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .backend import array_module
from .mna import Plan

__all__ = ["BranchValues", "branch_values", "group_models", "groups", "per_system", "select_cells"]


@dataclasses.dataclass(frozen=True)
class BranchValues:
    """Currents ``i`` (a to b) and partials ``p = di/dv_a``, ``q = di/dv_b``, each ``(S, E)``."""

    i: np.ndarray
    p: np.ndarray
    q: np.ndarray


def select_cells(model, tile_idx: np.ndarray, cells: np.ndarray | None):
    """The model with its per-cell parameters ``(B, E)`` reduced to ``(S, len(cells))`` (or
    ``(1, len(cells))`` when every system belongs to one tile, see :func:`per_system`);
    ``cells`` None: the parameters hold the kept branches already (a GPU plan's models)."""
    if model is None:
        return None
    names = getattr(model, "_cell_params", ())
    changes = {}
    for name in names:
        arr = getattr(model, name)
        if getattr(arr, "ndim", 0) == 2:
            changes[name] = per_system(arr, tile_idx, cells)
    if not changes:
        return model
    if hasattr(model, "with_params"):  # values selected from validated ones: no re-validation
        return model.with_params(**changes)
    return dataclasses.replace(model, **changes)


def _linear(g, dv):
    return g * dv, g, -g


def per_system(values: np.ndarray, tile_idx: np.ndarray, cells: np.ndarray | None) -> np.ndarray:
    """Per-tile values ``(B, E_all)`` of the branches ``cells`` for each system: ``(S, E)``, or
    ``(1, E)`` (broadcasting) when every system belongs to one tile, the common case of many
    input vectors on one tile, which then costs no gather of ``S x E`` values. ``cells`` None:
    ``values`` hold only the branches wanted (``(B, E)``, possibly on a GPU)."""
    if len(tile_idx) and (tile_idx == tile_idx[0]).all():
        row = values[int(tile_idx[0])]
        return (row if cells is None else row[cells])[None, :]
    if cells is None:
        return values[array_module(values).asarray(tile_idx)]
    return values[:, cells][tile_idx]


def groups(plan: Plan):
    """``(kind, value, cells, model)`` of each branch group of ``plan``: the circuit's arrays and
    the kept branches on the CPU; the kept branches' values on the device (``cells`` None) for a
    GPU plan."""
    circuit_groups = plan.circuit.groups
    if plan.values is None:
        return [(g.kind, g.value, cells, g.model) for g, cells in zip(circuit_groups, plan.kept)]
    return [(g.kind, value, None, model)
            for g, (value, model) in zip(circuit_groups, plan.values)]


def group_models(plan: Plan, tile_idx: np.ndarray) -> list:
    """The per-group models of ``plan`` reduced to the systems ``tile_idx`` (see
    :func:`select_cells`), as :func:`branch_values` takes them."""
    return [select_cells(model, tile_idx, cells) for _, _, cells, model in groups(plan)]


def branch_values(plan: Plan, v_red: np.ndarray, tile_idx: np.ndarray, *, models=None,
                  gmin: float = 0.0, skip_resistors: bool = False) -> BranchValues:
    """Evaluate all kept branches of ``plan`` at reduced node voltages ``v_red`` ``(S, n_red)``.

    ``models`` may give the per-group models already reduced with :func:`select_cells` (Newton
    does that once, not every iteration). ``gmin`` adds a conductance in parallel with every
    nonlinear branch (gmin stepping). ``skip_resistors``: only the branches after the resistors
    (the first ``plan.n_res``), ``(S, E - n_res)``; Newton keeps the resistors as one fixed
    matrix per tile instead.
    """
    xp, _ = plan.modules()
    first = plan.n_res if skip_resistors else 0
    a, b = (plan.a[first:], plan.b[first:]) if first else (plan.a, plan.b)
    va, vb = xp.take(v_red, a, axis=1), xp.take(v_red, b, axis=1)
    shape = (len(v_red), len(a))
    i = p = q = None  # made on first use, unless one group holds every branch
    start = -first
    for k, (kind, values, cells, group_model) in enumerate(groups(plan)):
        sl = slice(start, start + len(plan.kept[k]))
        start = sl.stop
        if not len(plan.kept[k]) or (skip_resistors and kind == "resistor"):
            continue
        value = per_system(values, tile_idx, cells)
        model = models[k] if models is not None else select_cells(group_model, tile_idx, cells)
        # a nonlinear device group holding every branch gives its arrays as the result
        whole = (sl.start == 0 and sl.stop == shape[1] and kind == "device"
                 and model is not None and not getattr(model, "linear", False))
        if i is None and not whole:
            i, p, q = xp.empty(shape), xp.empty(shape), xp.empty(shape)
        if kind == "resistor":
            i[:, sl], p[:, sl], q[:, sl] = _linear(1.0 / value, va[:, sl] - vb[:, sl])
        elif kind == "device":
            dv = va[:, sl] - vb[:, sl]
            if model is None or getattr(model, "linear", False):
                i[:, sl], p[:, sl], q[:, sl] = _linear(value, dv)
            else:
                g = model.conductance(dv, value)
                cur = model.current(dv, value)
                if gmin:  # not in place: a model may return arrays it keeps
                    g = g + gmin
                    cur = cur + gmin * dv
                if whole:  # no copies (the models return arrays of their own)
                    i, p, q = cur, g, -g
                else:
                    i[:, sl] = cur
                    p[:, sl] = g
                    xp.negative(g, out=q[:, sl])
        else:  # transistor: a is the drain, b the source, value the gate voltage
            i[:, sl], p[:, sl], q[:, sl] = model.drain_current(va[:, sl], vb[:, sl], value)
            if gmin:
                i[:, sl] += gmin * (va[:, sl] - vb[:, sl])
                p[:, sl] += gmin
                q[:, sl] -= gmin
    if i is None:  # no branches
        i, p, q = xp.empty(shape), xp.empty(shape), xp.empty(shape)
    return BranchValues(i, p, q)
