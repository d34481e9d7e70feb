"""Tangents: the change of a solved tile's currents along a change of its parameters and inputs.

At the solution, a direction ``dtheta`` (conductances, resistances, gate voltages) and ``dv_k``
(fixed voltages) moves the unknowns by ``J dx = -(dF/dtheta dtheta + J_fk dv_k)``; the currents
leaving the fixed nodes then follow branch by branch. A zero resistance that changes opens a
voltage step ``i dR`` across its branch inside a merged node: the nodes beyond it shift by that
much relative to the rest (:meth:`circuitsim.merged.ZeroForest.shifts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from circuitsim.netlist import Tile, as_float_array, broadcast_param, check_finite

from .merged import zero_forest
from .result import ConvergenceError, Solution
from .sensitivity import ends, evaluate, fixed_sums

__all__ = ["Tangent", "check_solved", "direction", "tangent_plan"]


@dataclass(frozen=True)
class Tangent:
    """A directional derivative of a tile's solve (:func:`jvp`).

    Attributes
    ----------
    i_out : ndarray
        Derivative of ``i_out`` along the direction, in the shape of ``solution.i_out`` (A per
        unit step).
    i_source : ndarray
        Derivative of ``i_source``, in the shape of ``solution.i_source``.
    solution : Solution
        The forward solve.
    """

    i_out: np.ndarray
    i_source: np.ndarray
    solution: Solution


def check_solved(x: np.ndarray, tiles: np.ndarray, what: str) -> None:
    """Raise :class:`ConvergenceError` for a system whose solve gave non-finite values."""
    bad = ~np.isfinite(x).all(axis=-1)
    if bad.any():
        t, k = (int(i) for i in np.argwhere(bad)[0])
        raise ConvergenceError(
            f"{what} solve of tile {tiles[t]}, input {k} failed: the Jacobian at the solution is "
            "singular", tile=int(tiles[t]), input=k, node="", residual=float("nan"))


def direction(tile: Tile, v_arr, v, given: dict) -> dict:
    """The direction as per-branch changes ``(B, E)`` of each group and fixed-node changes."""
    m, n, B = tile.m, tile.n, tile.batch
    K = v.shape[1]
    shapes = {"g": (m, n), "r_wl": (m, n), "r_bl": (m, n), "v_gate": (m, n),
              "r_source": (m,), "r_sense": (n,), "v_sense": (n,)}
    arr = {}
    for name, val in given.items():
        if val is None or name == "v_in":
            continue
        if name == "v_gate" and tile.access is None:
            raise ValueError("dv_gate is given but the tile has no access transistors")
        arr[name] = broadcast_param(val, "d" + name, shapes[name], B)
        check_finite(arr[name], "d" + name)
    zeros2 = np.zeros((B, m, n))
    r_wl = arr.get("r_wl", zeros2).reshape(B, m * n).copy()
    r_bl = arr.get("r_bl", zeros2).reshape(B, m * n).copy()
    src = arr.get("r_source", np.zeros((B, m)))
    r_wl[:, ::n] += src  # the first segment of each word line (j = 0)
    r_bl[:, (m - 1) * n :] += arr.get("r_sense", np.zeros((B, n)))
    parts = [r_wl, r_bl] + ([src] if tile.drive == "both" else [])
    out = {"resistor": np.concatenate(parts, axis=1),
           "device": arr.get("g", zeros2).reshape(B, m * n),
           "transistor": arr.get("v_gate", zeros2).reshape(B, m * n)}
    fixed = np.zeros((B, K, m + n))
    if given.get("v_in") is not None:
        dv = as_float_array(given["v_in"], "dv_in")
        if dv.shape != v_arr.shape:
            raise ValueError(f"dv_in has shape {dv.shape}; expected {v_arr.shape}, the shape of "
                             "v_in")
        check_finite(dv, "dv_in")
        fixed[..., :m] = tile.check_inputs(dv)
    fixed[..., m:] = arr.get("v_sense", np.zeros((B, n)))[:, None, :]
    out["fixed"] = fixed
    return out


def tangent_plan(plan, lin, V, tile_idx, direction, tiles, K) -> np.ndarray:
    """Tangent currents leaving the fixed nodes ``(S, n_fixed)`` of one plan's systems."""
    S, n = V.shape
    groups = evaluate(plan, V, tile_idx)
    h = np.zeros((n, S))
    for grp in groups:
        at_a, at_b = ends(grp.a, grp.b, n)
        h += at_a @ grp.i.T - at_b @ grp.i.T
    forest = zero_forest(plan)
    dtheta = {grp.kind: direction[grp.kind][tile_idx] for grp in groups}
    shift = np.zeros((S, n))
    if len(forest.branches):
        loop = forest.branches[~forest.bridge]
        touched = (dtheta["resistor"][:, loop] != 0).any(axis=0)
        if touched.any():
            name = plan.circuit.groups[0].names[loop[np.argmax(touched)]]
            raise ValueError(
                f"the direction changes the zero resistance of branch {name}, which lies on a "
                "loop of zero resistances (a drive='both' row whose r_source and r_wl are all 0; "
                "the first word-line branch includes r_source): the outputs are not "
                "differentiable along it (vjp gives each parameter's one-sided derivative)")
        drops = forest.flows(h.T) * dtheta["resistor"][:, forest.branches]
        shift = forest.shifts(drops, n)
    # current injected by the parameter change and by the shifts within merged nodes
    direct = {}
    inj = np.zeros((n, S))
    for grp in groups:
        di = grp.dtheta * dtheta[grp.kind]
        if grp.zero is not None:
            di[:, grp.zero] = 0.0  # their change enters through the shifts
        direct[grp.kind] = di
        at_a, at_b = ends(grp.a, grp.b, n)
        di = di + grp.p * shift[:, grp.a] + grp.q * shift[:, grp.b]
        inj += at_a @ di.T - at_b @ di.T
    n_red = plan.n_free + plan.n_fixed
    to_red = sp.csr_matrix((np.ones(n), (plan.node_map, np.arange(n))), shape=(n_red, n))
    extra = np.asarray(to_red @ inj)[: plan.n_free].T.reshape(len(tiles), K, -1)
    x = lin.solve_boundary(direction["fixed"][tiles], extra=extra)
    check_solved(x, tiles, "tangent")
    X = x.reshape(S, n_red)[:, plan.node_map] + shift  # tangent voltages of the original nodes
    dev, res = np.zeros((n, S)), np.zeros((n, S))
    for grp in groups:
        di = direct[grp.kind] + grp.p * X[:, grp.a] + grp.q * X[:, grp.b]
        at_a, at_b = ends(grp.a, grp.b, n)
        node = at_a @ di.T - at_b @ di.T
        if grp.kind == "resistor":
            res += node
        else:
            dev += node
    return fixed_sums(plan, dev, res)
