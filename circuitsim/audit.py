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
    f = inc @ i_t
    excess = xp.abs(f)
    residual = excess.max(axis=0) if nf else xp.zeros(len(v_red))
    terms = xp.abs(bv.i) + xp.abs(bv.p * v_red[:, plan.a]) + xp.abs(bv.q * v_red[:, plan.b])
    excess -= reltol * (abs_inc @ terms.T)
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
