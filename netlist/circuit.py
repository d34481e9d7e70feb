"""A circuit as plain data: nodes, fixed-voltage nodes and groups of two-terminal branches.

Every element of a crossbar tile is a branch between two nodes whose current depends on the two node
voltages only: resistors (wires, driver and sense resistances), memristors (a device model and a
state conductance per cell) and access transistors (drain and source are nodes; the gate is held at a
fixed voltage, so it is a parameter, not a node). Branches of one kind form a group with per-branch
index arrays; values carry a leading batch axis ``B`` (one row per tile).

Node ids run over ``0 .. n_nodes - 1``; the last ``n_fixed`` ids are fixed-voltage nodes (ideal
sources: the word-line drivers, then the sense nodes). Everything else is unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

__all__ = ["BranchGroup", "Circuit", "FloatingNodeError", "find_floating", "unique_rows"]


def unique_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a boolean ``(B, E)`` mask: ``(first, inverse)``.

    ``first[k]`` is the first row of the k-th distinct pattern and ``inverse[b]`` the pattern of
    row ``b``. Rows are packed to bytes and compared as one opaque value each (``np.unique`` with
    ``axis=0`` is far slower on long rows).
    """
    if mask.shape[0] == 1:
        return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    packed = np.ascontiguousarray(np.packbits(mask, axis=1))
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first, inverse.ravel()


class FloatingNodeError(ValueError):
    """A node has no DC path to any fixed-voltage node, so its voltage is undetermined."""


@dataclass(frozen=True)
class BranchGroup:
    """Branches of one kind.

    Attributes
    ----------
    kind : str
        ``"resistor"`` (``value`` is the resistance in ohms, >= 0; zero merges its nodes),
        ``"device"`` (``value`` is the state conductance g in siemens, current from ``model``) or
        ``"transistor"`` (``a`` is the drain, ``b`` the source, ``value`` the gate voltage in volts).
    a, b : ndarray of int, shape (E,)
        Terminal node ids. Positive branch current flows from ``a`` to ``b``.
    value : ndarray, shape (B, E)
        Per-tile values, as described for ``kind``.
    model : object or None
        The device model (see :mod:`circuitsim.devices`) for ``device`` and ``transistor`` groups.
    namer : callable, optional
        Maps branch positions (int array) to readable names (str array), used in error messages
        and SPICE decks; names are made only when asked for.
    """

    kind: str
    a: np.ndarray
    b: np.ndarray
    value: np.ndarray
    model: Any = None
    namer: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def names(self) -> np.ndarray:
        """Readable names of all branches of the group, ``(E,)``."""
        k = np.arange(len(self.a))
        return self.namer(k) if self.namer is not None else np.char.add(self.kind, k.astype(str))

    def conducting(self) -> np.ndarray:
        """Mask ``(B, E)`` of branches that carry a DC path (nonzero conductance, or a transistor)."""
        if self.kind == "device":
            return self.value > 0
        return np.ones(self.value.shape, dtype=bool)


@dataclass(frozen=True)
class Circuit:
    """Nodes and branch groups of a batch of ``B`` tiles sharing one topology.

    Attributes
    ----------
    n_nodes : int
        Number of nodes, fixed ones included.
    n_fixed : int
        The last ``n_fixed`` node ids have known voltages.
    groups : tuple of BranchGroup
    namer : callable
        Maps node ids (int array) to readable names (str array); see :attr:`node_names`.
    coords : ndarray of int, shape (n_nodes, 2), or None
        Grid position (row, column) of every node, where the circuit has one and every branch
        joins nodes at most one step apart along one axis; solvers use it for a geometric
        fill-reducing ordering.
    """

    n_nodes: int
    n_fixed: int
    groups: tuple[BranchGroup, ...]
    namer: Callable[[np.ndarray], np.ndarray]
    coords: np.ndarray | None = None

    @property
    def node_names(self) -> np.ndarray:
        """Readable names of all nodes, ``(n_nodes,)``."""
        return self.namer(np.arange(self.n_nodes))

    def node_name(self, node: int) -> str:
        """Readable name of one node."""
        return str(self.namer(np.array([node]))[0])

    @property
    def batch(self) -> int:
        return self.groups[0].value.shape[0]

    def to_networkx(self, tile: int = 0) -> nx.MultiGraph:
        """The circuit of one tile as a ``networkx.MultiGraph`` (nodes named, edges keyed by branch)."""
        graph = nx.MultiGraph()
        graph.add_nodes_from(
            (k, {"name": str(name), "fixed": k >= self.n_nodes - self.n_fixed})
            for k, name in enumerate(self.node_names)
        )
        for group in self.groups:
            graph.add_edges_from(
                (int(a), int(b), str(name), {"kind": group.kind, "value": float(v)})
                for a, b, name, v in zip(group.a, group.b, group.names, group.value[tile])
            )
        return graph


def find_floating(circuit: Circuit) -> tuple[int, int] | None:
    """Find a node with no DC path to a fixed node, in any tile of the batch.

    Returns ``(tile, node)`` for the first such node, or ``None``. Branches count as a DC path where
    :meth:`BranchGroup.conducting` says so. Tiles whose conducting pattern is the same are checked
    once: connected components of the sparse graph (scipy.sparse.csgraph, linear time; the same
    components networkx finds, at a fraction of the cost on million-node tiles).
    """
    masks = np.concatenate([g.conducting() for g in circuit.groups], axis=1)
    a = np.concatenate([g.a for g in circuit.groups])
    b = np.concatenate([g.b for g in circuit.groups])
    first, _ = unique_rows(masks)
    fixed = np.arange(circuit.n_nodes - circuit.n_fixed, circuit.n_nodes)
    for tile in first:
        pattern = masks[tile]
        adj = sp.coo_matrix(
            (np.ones(int(pattern.sum())), (a[pattern], b[pattern])),
            shape=(circuit.n_nodes, circuit.n_nodes),
        )
        _, labels = csgraph.connected_components(adj, directed=False)
        grounded = np.zeros(labels.max() + 1, dtype=bool)
        grounded[labels[fixed]] = True
        floating = np.flatnonzero(~grounded[labels])
        if floating.size:
            return int(tile), int(floating[0])
    return None
