"""Currents through the zero-resistance branches that a plan merges away.

A zero resistance joins its two nodes into one unknown (see :mod:`circuitsim.mna`), so no solve
ever sees the current it carries. That current is still fixed, by Kirchhoff's current law at the
original nodes: the zero branches of one merged class form a graph, and a branch that is a bridge of
it (its removal splits the class in two) carries exactly the net current that the other branches
feed into the side without a fixed node. A zero branch on a loop of zero branches carries an
undetermined share; its resistance is shorted by the rest of the loop whatever its value near 0.

Gradients need these currents: the derivative of a read-out ``L`` with respect to a resistance
is ``dL/dR = -i j`` (``i`` the branch current, ``j`` the current of the adjoint circuit in it), a
formula that stays finite as ``R -> 0``. :class:`ZeroForest` holds a spanning forest of the zero
branches, rooted at the fixed node of each class where it has one, and computes the bridge
currents from the node injections with one sparse triangular solve (subtree sums), and, for
tangents, the voltage each node gains relative to its class when bridges get a resistance
(path sums, the transposed solve).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse import csgraph

from .mna import Plan

__all__ = ["ZeroForest", "zero_forest"]


@dataclass(frozen=True)
class ZeroForest:
    """A rooted spanning forest of the zero-resistance branches of one plan.

    Attributes
    ----------
    branches : ndarray of int, (Z,)
        Positions of the zero branches in the circuit's resistor group.
    bridge : ndarray of bool, (Z,)
        Whether each is a bridge of the zero-branch graph (not on a loop of zero branches).
    nodes : ndarray of int, (N,)
        Original ids of the nodes that zero branches touch, in breadth-first order from the roots.
    child : ndarray of int, (T,)
        For each tree branch, the position in ``nodes`` of its end away from the root.
    edge : ndarray of int, (T,)
        For each tree branch, its position in ``branches``.
    down : ndarray of float, (T,)
        +1 where the branch runs from its parent node (``a``) to its child (``b``), else -1.
    lu : scipy.sparse.linalg.SuperLU
        Factorisation of ``I - P`` (``P[parent, child] = 1``), unit triangular in this order.
    """

    branches: np.ndarray
    bridge: np.ndarray
    nodes: np.ndarray
    child: np.ndarray
    edge: np.ndarray
    down: np.ndarray
    lu: object

    def flows(self, h: np.ndarray) -> np.ndarray:
        """Current from ``a`` to ``b`` in every zero branch, ``(S, Z)``.

        ``h`` ``(S, n_nodes)`` is the current leaving each original node through all the other
        branches. Branches on a loop of zero branches get 0.
        """
        out = np.zeros((h.shape[0], len(self.branches)))
        if not len(self.child):
            return out
        sub = self.lu.solve(np.ascontiguousarray(h[:, self.nodes].T))  # subtree sums (N, S)
        phi = sub[self.child]  # current from each parent into its child's subtree
        out[:, self.edge] = (self.down[:, None] * phi).T
        out[:, ~self.bridge] = 0.0
        return out

    def shifts(self, drops: np.ndarray, n_nodes: int) -> np.ndarray:
        """Tangent voltage of every node relative to the root of its class, ``(S, n_nodes)``.

        ``drops`` ``(S, Z)`` is the tangent voltage ``d(v_a - v_b)`` across each zero branch
        (its current times the change of its resistance); loop branches must carry 0.
        """
        S = drops.shape[0]
        out = np.zeros((S, n_nodes))
        if not len(self.child):
            return out
        d = np.zeros((len(self.nodes), S))
        # going from parent to child across a branch a -> b lowers the voltage by its drop
        d[self.child] = -(self.down[:, None] * drops[:, self.edge].T)
        out[:, self.nodes] = self.lu.solve(d, trans="T").T
        return out


def zero_forest(plan: Plan) -> ZeroForest:
    """The :class:`ZeroForest` of ``plan``, built once per topology and zero pattern."""
    cached = plan.analyses.get("zero_forest")
    if cached is None:
        cached = plan.analyses["zero_forest"] = _build(plan)
    return cached


def _build(plan: Plan) -> ZeroForest:
    circuit = plan.circuit
    res = circuit.groups[0]
    branches = np.flatnonzero(res.value[plan.tiles[0]] == 0)
    a, b = res.a[branches], res.b[branches]
    n = circuit.n_nodes
    empty = np.zeros(0, dtype=np.int64)
    if not len(branches):
        return ZeroForest(branches, np.zeros(0, bool), empty, empty, empty, np.zeros(0), None)
    adj = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)).tocsr()
    n_comp, labels = csgraph.connected_components(adj, directed=False)
    touched = np.zeros(n, dtype=bool)
    touched[a] = touched[b] = True
    # Root of each class: its fixed node where it has one (at most one), else its first node.
    root = np.full(n_comp, n, dtype=np.int64)
    np.minimum.at(root, labels[touched], np.flatnonzero(touched))
    fixed = np.arange(n - circuit.n_fixed, n)
    fixed = fixed[touched[fixed]]
    root[labels[fixed]] = fixed
    roots = np.unique(root[labels[touched]])
    # One breadth-first search from a super-root joined to every root.
    sup = n
    ra = np.concatenate([a, np.full(len(roots), sup)])
    rb = np.concatenate([b, roots])
    graph = sp.coo_matrix((np.ones(len(ra)), (ra, rb)), shape=(n + 1, n + 1)).tocsr()
    order, pred = csgraph.breadth_first_order(graph, sup, directed=False, return_predecessors=True)
    nodes = order[1:]
    pos = np.full(n + 1, -1, dtype=np.int64)
    pos[nodes] = np.arange(len(nodes))
    parent = pred[nodes]
    inner = parent != sup
    child_nodes, parent_nodes = nodes[inner], parent[inner]
    # The zero branch that joins each child to its parent (the first of parallel ones).
    key = np.minimum(a, b) * (n + 1) + np.maximum(a, b)
    uniq, first = np.unique(key, return_index=True)
    tkey = np.minimum(child_nodes, parent_nodes) * (n + 1) + np.maximum(child_nodes, parent_nodes)
    edge = first[np.searchsorted(uniq, tkey)]
    down = np.where(a[edge] == parent_nodes, 1.0, -1.0)
    child = pos[child_nodes]
    rows, cols = pos[parent_nodes], child
    N = len(nodes)
    eye_minus_p = sp.csc_matrix(
        (np.concatenate([np.ones(N), -np.ones(len(rows))]),
         (np.concatenate([np.arange(N), rows]), np.concatenate([np.arange(N), cols]))),
        shape=(N, N),
    )
    lu = spla.splu(eye_minus_p, permc_spec="NATURAL", diag_pivot_thresh=0.0)
    bridge = _bridges(a, b, labels, n_comp, touched)
    return ZeroForest(branches, bridge, nodes, child, edge, down, lu)


def _bridges(a, b, labels, n_comp, touched) -> np.ndarray:
    """Which branches of the graph (a, b) are bridges: all of them in tree components; in the
    rare components with loops (``drive="both"`` rows of zero resistance), networkx finds them."""
    edges_per = np.bincount(labels[a], minlength=n_comp)
    nodes_per = np.bincount(labels[np.flatnonzero(touched)], minlength=n_comp)
    cyclic = edges_per > nodes_per - 1
    bridge = ~cyclic[labels[a]]
    loop = np.flatnonzero(cyclic[labels[a]])
    if len(loop):
        key = np.minimum(a[loop], b[loop]) * (len(labels) + 1) + np.maximum(a[loop], b[loop])
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        graph = nx.Graph()
        graph.add_edges_from(zip(a[loop].tolist(), b[loop].tolist()))
        found = {frozenset(e) for e in nx.bridges(graph)}
        single = counts[inverse] == 1  # a branch with a parallel twin is on a loop
        bridge[loop] = single & np.array([frozenset((x, y)) in found
                                          for x, y in zip(a[loop].tolist(), b[loop].tolist())])
    return bridge
