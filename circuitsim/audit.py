"""The KCL audit of nonlinear solutions, and node names for error messages."""

from __future__ import annotations

import numpy as np

from .branches import branch_values
from .mna import Plan

__all__ = ["audit", "node_name"]


def audit(plan: Plan, v_red: np.ndarray, tile_idx: np.ndarray, reltol: float, abstol: float,
          models=None):
    """KCL audit at the solution of ``S`` systems.

    At every unknown node the net current ``f`` must satisfy ``|f| <= reltol * s + abstol``, where
    ``s`` sums, over the branches meeting there, ``|i| + |di/dv_a| |v_a| + |di/dv_b| |v_b|``: the
    size of the terms whose rounding ``f`` inherits (a 1e-8 ohm wire turns one rounding of its node
    voltages into nanoamperes; this is the componentwise backward error of the linear case).
    Returns the largest ``|f|`` per system ``(S,)``, whether the system passes, the reduced index
    of its worst node, and the currents leaving the fixed nodes ``(S, n_fixed)``. On a GPU plan
    the arrays stay on the device.
    """
    xp, _ = plan.modules()
    bv = branch_values(plan, v_red, tile_idx, models=models)
    nf = plan.n_free
    inc, abs_inc = plan.maps("incidence")
    i_t = xp.ascontiguousarray(bv.i.T)  # (E, S): sparse products want the systems last
    excess = xp.asarray(inc @ i_t)
    del i_t
    xp.abs(excess, out=excess)
    residual = excess.max(axis=0) if nf else xp.zeros(len(v_red))
    # |i| + |p v_a| + |q v_b| per branch, in two arrays of the branches' size
    terms = xp.abs(bv.i)
    part = xp.take(v_red, plan.a, axis=1)
    part *= bv.p
    terms += xp.abs(part, out=part)
    part = xp.take(v_red, plan.b, axis=1)
    part *= bv.q
    terms += xp.abs(part, out=part)
    del part
    sums = xp.asarray(abs_inc @ xp.ascontiguousarray(terms.T))
    del terms
    sums *= reltol
    excess -= sums
    excess -= abstol
    ok = excess.max(axis=0) <= 0 if nf else xp.ones(len(v_red), dtype=bool)
    worst = xp.zeros(len(v_red), dtype=np.int64)
    if not bool(ok.all()):
        worst[~ok] = xp.argmax(excess[:, ~ok], axis=0)
    return residual, ok, worst, plan.fixed_currents(bv.i)


def node_name(plan: Plan, reduced: int) -> str:
    """Name of a node of the circuit in the reduced class ``reduced``."""
    node_map = plan.node_map if plan.host is None else plan.host.node_map
    return plan.circuit.node_name(int(np.flatnonzero(node_map == reduced)[0]))
