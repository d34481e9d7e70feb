"""Support for the tests that guard the engine's safety nets.

Two parts. First, independent references written from the tile's documented conventions
(DESIGN.md section 3) and nothing of the engine: the branches of a tile and the KCL imbalance of
a set of node voltages. Second, the engine internals those tests need (the KCL audit, the analysed
plans, Newton's linear step): they are imported here and nowhere else in the guard tests, so that
when the internals move only this module changes.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Engine internals: the only import site for the guard tests.
from circuitsim import linear as _linear
from circuitsim import newton as _newton
from circuitsim.audit import audit as _audit
from circuitsim.branches import branch_values as _branch_values
from circuitsim.mna import tile_plans as _tile_plans

# ---------------------------------------------------------------------------------------------
# Engine internals


def audit_nodes(tile, nodes: np.ndarray, *, reltol: float = 1e-9, abstol: float = 1e-15):
    """Run the engine's KCL audit on the node voltages ``nodes`` ``(n_nodes,)`` of tile 0.

    ``nodes`` are all node voltages in the circuit's numbering (cell nodes, then drivers and
    sense nodes). Returns ``(residual, passed, worst)``: the largest net current (A), whether the
    audit accepts the voltages, and the name of the node it blames.
    """
    (plan,) = _tile_plans(tile)
    v_red = np.zeros((1, plan.n_free + plan.n_fixed))
    v_red[0, plan.node_map] = nodes
    residual, ok, worst, _ = _audit(plan, v_red, np.array([0]), reltol, abstol)
    name = plan.circuit.node_name(int(np.flatnonzero(plan.node_map == worst[0])[0]))
    return float(residual[0]), bool(ok[0]), name


def linear_audit(tile, v_in, perturb, *, reltol: float = 1e-9, abstol: float = 1e-15):
    """Run the linear path's KCL audit on the direct solution of tile 0 for inputs ``v_in``
    ``(K, m)``, after ``perturb(x)`` changed the unknown voltages ``x`` ``(n_free, K)`` in place.

    Returns ``(passed (K,), worst node names (K,))``.
    """
    (plan,) = _tile_plans(tile)
    nf, nk = plan.n_free, plan.n_fixed
    bv = _branch_values(plan, np.zeros((1, nf + nk)), plan.tiles)
    ch = _linear._Chunk(plan, bv.p, bv.q, "direct", {})
    vk = tile.fixed_voltages(tile.check_inputs(v_in))[0]  # (K, nk)
    rhs = -(ch.C @ np.ascontiguousarray(vk.T))
    x = np.ascontiguousarray(ch.lin.solve(rhs))
    perturb(x)
    scale = np.abs(vk).max(axis=1)[None, :]
    _, ok, worst, _ = _linear._audit(ch, x, rhs, scale, reltol, abstol)
    names = [plan.circuit.node_name(int(np.flatnonzero(plan.node_map == w)[0]))
             for w in worst[0]]
    return ok[0], names


def reduced_index(tile, name: str) -> int:
    """The engine's unknown number of the node called ``name`` in tile 0."""
    (plan,) = _tile_plans(tile)
    return int(plan.node_map[plan.circuit.node_names.tolist().index(name)])


def record_newton_steps(monkeypatch) -> list[int]:
    """Record, for every Newton iteration, how many systems get a linear update.

    Wraps Newton's update step; returns the list the sizes are appended to.
    """
    sizes: list[int] = []
    step = _newton._step

    def counted(plan, jac, f, *args, **kwargs):
        sizes.append(len(f))
        return step(plan, jac, f, *args, **kwargs)

    monkeypatch.setattr(_newton, "_step", counted)
    return sizes


def analyses_of(tile):
    """The analysis cache object that the tile's (single) plan uses."""
    (plan,) = _tile_plans(tile)
    return plan.analyses


# ---------------------------------------------------------------------------------------------
# Independent references


def node_ids(m: int, n: int, one_t: bool) -> dict[str, np.ndarray]:
    """Node numbers of the crossbar docstring: WL, BL, internal (1T1R), drivers, sense nodes."""
    mn = m * n
    cells = (3 if one_t else 2) * mn
    grid = np.arange(mn).reshape(m, n)
    ids = {"wl": grid, "bl": mn + grid, "src": cells + np.arange(m),
           "sense": cells + m + np.arange(n), "n_nodes": cells + m + n, "n_cells": cells}
    if one_t:
        ids["int"] = 2 * mn + grid
    return ids


def tile_resistors(tile, b: int):
    """Resistor branches ``(a, b, r)`` of tile ``b``, from its parameters alone.

    The WL segment of cell (i, j) joins WL node (i, j-1) (the driver for j = 0, in series with
    ``r_source``) to WL node (i, j); the BL segment of cell (i, j) joins BL node (i, j) to BL
    node (i+1, j) (the sense node for i = m-1, in series with ``r_sense``); ``drive="both"``
    adds ``r_source`` from WL node (i, n-1) back to the driver.
    """
    m, n = tile.m, tile.n
    ids = node_ids(m, n, tile.access is not None)
    wl, bl = ids["wl"], ids["bl"]
    left = np.concatenate([ids["src"][:, None], wl[:, :-1]], axis=1)
    r_wl = tile.r_wl[b].copy()
    r_wl[:, 0] += tile.r_source[b]
    below = np.concatenate([bl[1:], ids["sense"][None, :]], axis=0)
    r_bl = tile.r_bl[b].copy()
    r_bl[-1] += tile.r_sense[b]
    a = [left.ravel(), bl.ravel()]
    z = [wl.ravel(), below.ravel()]
    r = [r_wl.ravel(), r_bl.ravel()]
    if tile.drive == "both":
        a.append(wl[:, -1])
        z.append(ids["src"])
        r.append(tile.r_source[b])
    return np.concatenate(a), np.concatenate(z), np.concatenate(r)


def kcl_imbalance(tile, b: int, v_in, v_wl, v_bl, v_int=None, *, device_current=None,
                  drain_current=None) -> np.ndarray:
    """Net current (A) leaving every class of unknown nodes, for given node voltages.

    Nodes joined by zero resistances form one class (the current in a zero resistance is not
    a function of the voltages); classes holding a driver or sense node are known and left out.
    ``device_current(v)`` gives the memristor currents of the ``(m, n)`` cell voltages (default
    ``g v``); ``drain_current(vd, vs, vg)`` the transistor currents of 1T1R tiles.
    """
    m, n = tile.m, tile.n
    one_t = tile.access is not None
    ids = node_ids(m, n, one_t)
    v = np.empty(ids["n_nodes"])
    v[ids["wl"]] = v_wl
    v[ids["bl"]] = v_bl
    v[ids["src"]] = v_in
    v[ids["sense"]] = tile.v_sense[b]
    if one_t:
        v[ids["int"]] = v_int
    net = np.zeros(ids["n_nodes"])
    a, z, r = tile_resistors(tile, b)
    on = r > 0
    i_r = (v[a[on]] - v[z[on]]) / r[on]
    np.add.at(net, a[on], i_r)
    np.add.at(net, z[on], -i_r)
    low = ids["int"] if one_t else ids["bl"]
    dv = v_wl - v[low]
    i_c = tile.g[b] * dv if device_current is None else device_current(dv)
    np.add.at(net, ids["wl"].ravel(), i_c.ravel())
    np.add.at(net, low.ravel(), -i_c.ravel())
    if one_t:
        i_t = drain_current(v_int, v_bl, tile.v_gate[b])
        np.add.at(net, ids["int"].ravel(), i_t.ravel())
        np.add.at(net, ids["bl"].ravel(), -i_t.ravel())
    zero = ~on
    graph = coo_matrix((np.ones(int(zero.sum())), (a[zero], z[zero])),
                       shape=(ids["n_nodes"],) * 2)
    _, label = connected_components(graph, directed=False)
    per_class = np.bincount(label, weights=net)
    known = np.unique(label[ids["n_cells"]:])
    unknown = np.setdiff1d(np.arange(len(per_class)), known)
    return per_class[unknown]


def shichman_hodges(vd, vs, vg, vto, kp, lambda_, w, l):
    """NMOS level-1 drain current (into the drain), bulk at 0, no body effect; scalar."""
    if vd < vs:
        return -shichman_hodges(vs, vd, vg, vto, kp, lambda_, w, l)
    vgst, vds = vg - vs - vto, vd - vs
    beta = kp * w / l
    if vgst <= 0:
        return 0.0
    if vgst <= vds:
        return 0.5 * beta * vgst**2 * (1 + lambda_ * vds)
    return beta * vds * (vgst - vds / 2) * (1 + lambda_ * vds)
