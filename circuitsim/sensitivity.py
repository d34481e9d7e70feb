"""Branch currents and their derivatives at the original nodes of a tile's circuit.

The solves work on the reduced unknowns of a plan (zero resistances merged); gradients and
tangents are assembled per branch of the circuit as given, from node voltages at its original
nodes ``(S, n_nodes)``: each branch's current, its partials with respect to its two end voltages
and with respect to its own parameter (resistance, state conductance or gate voltage), and the
sums of such branch quantities at the fixed nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from circuitsim import devices

from .branches import select_cells
from .mna import Plan

__all__ = ["LINEAR_IN_G", "Group", "ends", "evaluate", "fixed_sums"]

#: Memristor models of :mod:`circuitsim.devices` whose current is proportional to the state g
#: (``I = g h(V)``), so that ``dI/dg = I / g``; other models need a ``current_dg(v, g)`` method.
LINEAR_IN_G = (devices.Sinh, devices.AsymmetricSinh, devices.StanfordPKU, devices.IVTable)


def _current_dg(model, v, g):
    if hasattr(model, "current_dg"):
        return model.current_dg(v, g)
    if isinstance(model, LINEAR_IN_G):
        safe = np.where(g > 0, g, 1.0)
        return model.current(v, safe) / safe
    raise TypeError(
        f"device model {type(model).__name__}: gradients with respect to g need dI/dg; give the "
        "model a current_dg(v, g) method"
    )


@dataclass
class Group:
    """One branch group evaluated at original node voltages ``V`` ``(S, n_nodes)``."""

    kind: str
    a: np.ndarray
    b: np.ndarray
    i: np.ndarray | None  # (S, E) current a -> b (0 on zero resistors)
    p: np.ndarray | None  # (S, E) di/dv_a
    q: np.ndarray | None  # (S, E) di/dv_b
    dtheta: np.ndarray  # (S, E) di/dtheta at fixed voltages (theta = R, g or v_gate)
    zero: np.ndarray | None = None  # (E,) zero resistors (resistor group only)


def evaluate(plan: Plan, V: np.ndarray, tile_idx: np.ndarray, full: bool = True) -> list[Group]:
    """Every branch group at ``V``; without ``full`` only ``dtheta`` (``i``, ``p``, ``q`` None)
    where that saves work (linear branches)."""
    out = []
    for group in plan.circuit.groups:
        a, b = group.a, group.b
        value = group.value[tile_idx]
        va, vb = V[:, a], V[:, b]
        if group.kind == "resistor":
            zero = group.value[plan.tiles[0]] == 0  # one zero pattern per plan
            g = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, value))
            i = g * (va - vb)
            out.append(Group("resistor", a, b, i if full else None, g if full else None,
                              -g if full else None, -i * g, zero))
            continue
        model = select_cells(group.model, tile_idx, np.arange(len(a)))
        if group.kind == "device":
            dv = va - vb
            if model is None or getattr(model, "linear", False):
                if full:
                    out.append(Group("device", a, b, value * dv, value, -value, dv))
                else:
                    out.append(Group("device", a, b, None, None, None, dv))
            else:
                gp = model.conductance(dv, value)
                out.append(Group("device", a, b, model.current(dv, value), gp, -gp,
                                  _current_dg(model, dv, value)))
        else:
            i, gd, gs = model.drain_current(va, vb, value)
            # i depends on vd - vs and vg - vs only (bulk at 0 V, GAMMA = 0): di/dvg = -(gd + gs)
            out.append(Group("transistor", a, b, i, gd, gs, -(gd + gs)))
    return out


def ends(a, b, n):
    """Sparse ``(n, E)`` maps from branches to their ``a`` and ``b`` ends."""
    e = np.arange(len(a))
    ones = np.ones(len(a))
    return (sp.csr_matrix((ones, (a, e)), shape=(n, len(a))),
            sp.csr_matrix((ones, (b, e)), shape=(n, len(a))))


def fixed_sums(plan: Plan, dev: np.ndarray, res: np.ndarray) -> np.ndarray:
    """Currents leaving the fixed nodes ``(S, n_fixed)`` from node sums ``(n_nodes, S)`` of the
    non-resistor and resistor branches, summed over each fixed node's resistor net (as
    :meth:`Plan.fixed_currents` does, accurate when wire resistances are tiny)."""
    n_red = plan.n_free + plan.n_fixed
    nodes = len(plan.node_map)
    to_red = sp.csr_matrix((np.ones(nodes), (plan.node_map, np.arange(nodes))),
                           shape=(n_red, nodes))
    out = np.asarray(plan.fixed_nets @ (to_red @ dev))
    if plan.shared_fixed.any():
        at = plan.n_free + np.flatnonzero(plan.shared_fixed)
        out[plan.shared_fixed] += np.asarray(to_red @ res)[at]
    return out.T
