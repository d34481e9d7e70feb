"""Modified nodal analysis: analyse a circuit's topology once, evaluate branch values per system.

Unknowns are node voltages. Ideal sources fix their nodes' voltages; zero resistances merge their
two nodes into one (connected components of the zero-resistance graph). Neither is ever replaced by
a huge conductance. A node class that holds a fixed node is known; the rest are unknown.

Every branch is two-terminal: its current ``I(v_a, v_b)`` flows from ``a`` to ``b`` with partials
``p = dI/dv_a`` and ``q = dI/dv_b``. Its stamp in the Jacobian of the node currents
``F(v) = sum of branch currents leaving each node`` has four entries::

    row a: (a, +p), (b, +q)        row b: (a, -p), (b, -q)

(a resistor or memristor has ``q = -p``, so the matrix is symmetric). Stamping loops over these
four entries, never over branches. The unknown block ``J_ff`` is kept in CSC form with a fixed
pattern; ``jacobian`` fills its values for a whole batch of systems with one sparse product and
returns them as one block-diagonal matrix.

The analysis runs on the CPU. :func:`on_backend` gives the same plan with its index arrays and
sparse maps on a GPU (copied once per topology and backend, then cached); the plan's array methods
compute with the array module of its own arrays, so one implementation serves both.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from circuitsim.netlist import Circuit, FloatingNodeError, Tile, find_floating
from circuitsim.netlist.circuit import unique_rows

from .ordering import nested_dissection

__all__ = ["Plan", "ShortCircuitError", "analyze", "on_backend", "plans", "tile_plans"]


class ShortCircuitError(ValueError):
    """A zero-resistance path joins two fixed-voltage nodes (a loop of ideal sources)."""


@dataclass(frozen=True)
class Plan:
    """Index arrays shared by every tile of one zero-resistance pattern.

    Attributes
    ----------
    circuit : Circuit
    tiles : ndarray of int
        The tiles of ``circuit`` that this plan serves.
    node_map : ndarray of int, shape (n_nodes,)
        Reduced index of every node: unknowns ``0 .. n_free-1``, then the fixed nodes in order.
    n_free : int
    kept : tuple of ndarray of int
        For each branch group, the branches that take part (resistors of zero value are merged).
    a, b : ndarray of int, shape (E,)
        Reduced terminals of the kept branches, groups concatenated.
    ordered : bool
        Whether the unknowns are numbered in a fill-reducing (nested dissection) order already,
        so a factorisation should keep that order.
    indptr, indices : ndarray of int
        CSC pattern of ``J_ff`` (``n_free x n_free``).
    scatter_p, scatter_q : csr_matrix, shape (nnz, E)
        ``data = scatter_p @ p + scatter_q @ q`` for branch partials ``p``, ``q`` of shape (E, S).
    fk_rows, fk_cols, fk_scatter_p, fk_scatter_q :
        The same for the block ``J_fk`` coupling unknowns to fixed nodes (COO, ``fk_cols`` counted
        from the first fixed node); it turns fixed voltages into right-hand sides.
    incidence : csr_matrix, shape (n_free + n_fixed, E)
        +1 at (a, e), -1 at (b, e): node currents ``F = incidence @ I``.
    fixed_nets : csr_matrix, shape (n_fixed, n_free + n_fixed)
        Row k sums the nodes joined to fixed node k through resistors; the current leaving fixed
        node k equals the current of the non-resistor branches leaving those nodes (KCL on the
        net), which stays accurate when wire resistances are tiny.
    shared_fixed : ndarray of bool, shape (n_fixed,)
        Fixed nodes whose resistor net reaches another fixed node: their currents are summed from
        all branches at the node itself instead.
    symmetric : bool
        Whether every Jacobian of this plan is symmetric (no transistors).
    analyses : dict
        Symbolic factorisations of this pattern (by solver and matrix size), shared by every plan
        of the same topology, and the sparse maps derived from the pattern (:meth:`maps`).
    host : Plan or None
        For a plan on a GPU (:func:`on_backend`): the CPU plan it was copied from.
    backend : Backend or None
        For a plan on a GPU: its backend.
    values : tuple or None
        For a plan on a GPU: per branch group, ``(value, model)`` of the kept branches on the
        device (``value`` ``(B, E_k)``; the model's per-cell parameters likewise).
    """

    circuit: Circuit
    tiles: np.ndarray
    node_map: np.ndarray
    n_free: int
    kept: tuple[np.ndarray, ...]
    a: np.ndarray
    b: np.ndarray
    ordered: bool
    indptr: np.ndarray
    indices: np.ndarray
    scatter_p: sp.csr_matrix
    scatter_q: sp.csr_matrix
    fk_rows: np.ndarray
    fk_cols: np.ndarray
    fk_scatter_p: sp.csr_matrix
    fk_scatter_q: sp.csr_matrix
    incidence: sp.csr_matrix
    fixed_nets: sp.csr_matrix
    shared_fixed: np.ndarray
    symmetric: bool
    analyses: dict = field(default_factory=dict, compare=False, repr=False)
    host: Any = field(default=None, compare=False, repr=False)
    backend: Any = field(default=None, compare=False, repr=False)
    values: Any = field(default=None, compare=False, repr=False)

    def modules(self):
        """``(xp, sparse)``: the array and sparse modules of this plan's arrays."""
        if self.backend is None:
            return np, sp
        return self.backend.xp, self.backend.sparse

    def maps(self, name: str):
        """A sparse map derived from the pattern (see ``_MAPS``), built once on the CPU and, for a
        plan on a GPU, copied there once."""
        key = ("map", name)
        cached = self.analyses.get(key)
        if cached is None:
            if self.host is None:
                cached = _MAPS[name](self)
            else:
                cached = self.backend.convert(self.host.maps(name))
            self.analyses[key] = cached
        return cached

    @property
    def n_fixed(self) -> int:
        return self.circuit.n_fixed

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def block_diagonal(self, data: np.ndarray) -> sp.csc_matrix:
        """One CSC matrix holding ``S`` Jacobians of this pattern on its diagonal.

        ``data`` has shape ``(S, nnz)``, one row of stored values per system.
        """
        return self._block_diagonal(data, self.indptr, self.indices, "csc")

    def block_diagonal_csr(self, data: np.ndarray):
        """The block-diagonal matrix of :meth:`block_diagonal` in CSR form (as cuDSS takes it),
        from ``data`` in the CSC order of :meth:`block_diagonal` (reordered by one gather, so
        that nonsymmetric Jacobians come out right too)."""
        perm, indptr, indices = self.maps("csr")
        return self._block_diagonal(data[:, perm], indptr, indices, "csr")

    def _block_diagonal(self, data, indptr_1, indices_1, fmt: str):
        xp, sparse = self.modules()
        S = data.shape[0]
        nf, nnz = self.n_free, self.nnz
        offsets = xp.arange(S)[:, None]
        indices = (indices_1[None, :] + nf * offsets).ravel()
        indptr = xp.concatenate(
            [(indptr_1[:-1][None, :] + nnz * offsets).ravel(), xp.asarray([S * nnz])]
        )
        cls = sparse.csc_matrix if fmt == "csc" else sparse.csr_matrix
        return cls((xp.ascontiguousarray(data).ravel(), self._index(indices),
                    self._index(indptr)), shape=(S * nf, S * nf))

    def _index(self, arr):
        """Index arrays of a GPU plan's matrices as int32, as cuSPARSE and cuDSS take them (the
        chunks keep them below 2**31); the CPU's as they are."""
        return arr if self.backend is None else arr.astype(np.int32)

    def data(self, p, q):
        """Stored values of ``J_ff`` ``(S, nnz)`` from branch partials ``p``, ``q`` ``(S, E)``."""
        xp, _ = self.modules()
        return xp.ascontiguousarray((self.scatter_p @ p.T + self.scatter_q @ q.T).T)

    def jacobian(self, p: np.ndarray, q: np.ndarray) -> sp.csc_matrix:
        """Block-diagonal ``J_ff`` of ``S`` systems from branch partials ``p``, ``q`` ``(S, E)``."""
        return self.block_diagonal(self.data(p, q))

    def coupling(self, p: np.ndarray, q: np.ndarray) -> sp.csr_matrix:
        """Block-diagonal ``J_fk`` of ``S`` systems, shape ``(S n_free, S n_fixed)``."""
        xp, sparse = self.modules()
        S = p.shape[0]
        data = (self.fk_scatter_p @ p.T + self.fk_scatter_q @ q.T).T
        off = xp.arange(S)[:, None]
        rows = (self.fk_rows[None, :] + self.n_free * off).ravel()
        cols = (self.fk_cols[None, :] + self.n_fixed * off).ravel()
        shape = (S * self.n_free, S * self.n_fixed)
        coo = sparse.coo_matrix((xp.ascontiguousarray(data).ravel(),
                                 (self._index(rows), self._index(cols))), shape=shape)
        return coo.tocsr()

    @property
    def n_res(self) -> int:
        """Number of kept resistor branches (they come first among the branches)."""
        return len(self.kept[0])

    def fixed_currents(self, i_branch: np.ndarray) -> np.ndarray:
        """Current leaving each fixed node into the circuit, ``(S, n_fixed)``.

        Summed over the non-resistor branches of the node's resistor net (see ``fixed_nets``), from
        all branch currents ``i_branch`` ``(S, E)``.
        """
        nr = self.n_res
        xp, _ = self.modules()
        inc_dev, shared_res, shared_idx = self.maps("fixed_currents")
        out = (self.fixed_nets @ (inc_dev @ i_branch[:, nr:].T)).T
        if shared_res is not None:
            out[:, shared_idx] += (shared_res @ i_branch[:, :nr].T).T
        return xp.asarray(out)

    def fixed_operator(self, p: np.ndarray) -> sp.csr_matrix:
        """For linear branches of conductances ``p`` ``(S, E)``: the currents leaving the fixed
        nodes as a matrix of the reduced voltages, block-diagonal over the ``S`` systems,
        ``(S n_fixed, S n_red)``; the same sums as :meth:`fixed_currents`."""
        gather, diff, _, _ = self.maps("fixed_operator")
        _, sparse = self.modules()
        blocks = _block_diagonal_of(sparse, len(p))
        return blocks(gather) @ sparse.diags(p.ravel()) @ blocks(diff)

    def fixed_operators(self, p):
        """:meth:`fixed_operator` split by columns into the unknowns' part ``(S n_fixed, S
        n_free)`` and the fixed nodes' part ``(S n_fixed, S n_fixed)``, each block-diagonal."""
        gather, _, diff_f, diff_k = self.maps("fixed_operator")
        _, sparse = self.modules()
        blocks = _block_diagonal_of(sparse, len(p))
        left = blocks(gather) @ sparse.diags(p.ravel(), format="csr")
        return left @ blocks(diff_f), left @ blocks(diff_k)

    def expand_voltages(self, v_red: np.ndarray) -> np.ndarray:
        """Voltages of all circuit nodes ``(S, n_nodes)`` from reduced ones ``(S, n_red)``."""
        return v_red[:, self.node_map]


def _block_diagonal_of(sparse, S: int):
    """``M -> diag(M, ..., M)`` (``S`` copies, CSR); the matrix itself for one system."""
    if S == 1:
        return lambda M: M.tocsr()
    eye = sparse.identity(S, format="csr")
    return lambda M: sparse.kron(eye, M, format="csr")


def _map_fixed_currents(plan: Plan):
    """The unknown rows' incidence of the non-resistor branches, and the resistor incidence at
    fixed nodes whose net is shared (with their positions), for :meth:`Plan.fixed_currents`."""
    nr = plan.n_res
    shared_idx = np.flatnonzero(plan.shared_fixed)
    shared_res = (plan.incidence[plan.n_free:][shared_idx][:, :nr].tocsr()
                  if len(shared_idx) else None)
    return plan.incidence[:, nr:].tocsr(), shared_res, shared_idx


def _map_fixed_operator(plan: Plan):
    """``gather`` (fixed node x branch) and the branch voltage differences ``diff`` (branch x
    reduced node), with ``diff`` split into its unknown and fixed columns."""
    nr, E, n_red = plan.n_res, len(plan.a), plan.n_free + plan.n_fixed
    e = np.arange(E)
    diff = sp.csr_matrix(
        (np.concatenate([np.ones(E), -np.ones(E)]),
         (np.concatenate([e, e]), np.concatenate([plan.a, plan.b]))), shape=(E, n_red))
    shared = sp.diags(plan.shared_fixed.astype(float))
    at_fixed = plan.incidence[plan.n_free:]
    gather = sp.hstack([shared @ at_fixed[:, :nr],
                        plan.fixed_nets @ plan.incidence[:, nr:]]).tocsr()
    nf = plan.n_free
    return gather, diff, diff[:, :nf].tocsr(), diff[:, nf:].tocsr()


def _map_incidence(plan: Plan):
    """The unknown rows of the incidence, and their absolute values (audit sums)."""
    inc = plan.incidence[: plan.n_free].tocsr()
    return inc, abs(inc).tocsr()


def _map_csr(plan: Plan):
    """The CSR form of the ``J_ff`` pattern: the order of the stored values and its arrays."""
    nf = plan.n_free
    marker = sp.csc_matrix((np.arange(1, plan.nnz + 1, dtype=float), plan.indices, plan.indptr),
                           shape=(nf, nf)).tocsr()
    marker.sort_indices()
    return marker.data.astype(np.int64) - 1, marker.indptr, marker.indices


def _map_diag(plan: Plan):
    """Positions of the diagonal entries of ``J_ff`` among its stored values, by row."""
    col = np.repeat(np.arange(plan.n_free), np.diff(plan.indptr))
    pos = np.flatnonzero(plan.indices == col)
    return pos[np.argsort(col[pos])]


def _map_jacobian(plan: Plan):
    """For Jacobian products from branch partials: the unknown rows of the incidence split by
    sign, which branch ends are unknowns (as 0/1 columns ``(E, 1)``), and the branch ends with
    fixed ones replaced by 0 (their partials are zeroed)."""
    nf = plan.n_free
    inc = plan.incidence[:nf].tocsr()
    a_free, b_free = plan.a < nf, plan.b < nf
    return ((inc > 0).astype(float).tocsr(), (inc < 0).astype(float).tocsr(),
            a_free.astype(float)[:, None], b_free.astype(float)[:, None],
            np.where(a_free, plan.a, 0), np.where(b_free, plan.b, 0))


def _map_nonlinear(plan: Plan):
    """:func:`_map_jacobian` and the incidence for the branches after the resistors only (Newton
    evaluates those; the resistors are one fixed matrix per tile, see ``resistor_network``)."""
    nr, nf = plan.n_res, plan.n_free
    pos, neg, a_free, b_free, a, b = _map_jacobian(plan)
    inc = plan.incidence[:nf].tocsr()
    return (inc[:, nr:].tocsr(), pos[:, nr:].tocsr(), neg[:, nr:].tocsr(), a_free[nr:],
            b_free[nr:], a[nr:], b[nr:])


def _map_resistor_network(plan: Plan):
    """The resistors' incidence at the unknowns ``(n_free, n_res)``, its absolute values, and
    their voltage differences over the unknowns ``(n_res, n_free)`` and the fixed nodes
    ``(n_res, n_fixed)``: with conductances ``g``, ``inc diag(g) diff`` is the network's matrix
    and ``|inc| g`` its diagonal."""
    nr, nf = plan.n_res, plan.n_free
    e = np.arange(nr)
    diff = sp.csr_matrix(
        (np.concatenate([np.ones(nr), -np.ones(nr)]),
         (np.concatenate([e, e]), np.concatenate([plan.a[:nr], plan.b[:nr]]))),
        shape=(nr, nf + plan.n_fixed))
    inc = plan.incidence[:nf][:, :nr].tocsr()
    return inc, abs(inc).tocsr(), diff[:, :nf].tocsr(), diff[:, nf:].tocsr()


#: Maps derived from a plan's pattern on first use (:meth:`Plan.maps`).
_MAPS = {
    "nonlinear": _map_nonlinear,
    "resistor_network": _map_resistor_network,
    "fixed_currents": _map_fixed_currents,
    "fixed_operator": _map_fixed_operator,
    "incidence": _map_incidence,
    "csr": _map_csr,
    "diag": _map_diag,
    "jacobian": _map_jacobian,
}


def register_map(name: str, builder) -> None:
    """Add a derived map (built on the CPU from a host plan) for :meth:`Plan.maps`."""
    _MAPS[name] = builder


#: Plan fields holding arrays or sparse matrices that a GPU plan keeps on the device.
_DEVICE_FIELDS = ("node_map", "a", "b", "indptr", "indices", "scatter_p", "scatter_q",
                  "fk_rows", "fk_cols", "fk_scatter_p", "fk_scatter_q", "incidence",
                  "fixed_nets")


def on_backend(plan: Plan, backend) -> Plan:
    """``plan`` with its arrays on ``backend`` (the plan itself on the CPU).

    The copy of a topology is made once per backend and cached with the topology's analyses;
    its own ``analyses`` hold what is derived from it on the device (maps, factorisations).
    """
    if backend is None or not backend.device_path:
        return plan
    key = ("on", backend)  # by identity: backends are frozen values compared by identity
    template = plan.analyses.get(key)
    if template is None:
        moved = {name: backend.convert(getattr(plan, name)) for name in _DEVICE_FIELDS}
        template = plan.analyses[key] = replace(plan, **moved, analyses={}, host=None,
                                                backend=backend)
    values = tuple((backend.convert(np.ascontiguousarray(g.value[:, cells])),
                    _model_on(g.model, cells, backend))
                   for g, cells in zip(plan.circuit.groups, plan.kept))
    return replace(template, circuit=plan.circuit, tiles=plan.tiles, kept=plan.kept,
                   host=plan, values=values)


def _model_on(model, cells, backend):
    """``model`` with its per-cell parameters ``(B, E_all)`` reduced to ``cells`` on the device."""
    if model is None:
        return None
    moved = {name: backend.convert(np.ascontiguousarray(getattr(model, name)[:, cells]))
             for name in getattr(model, "_cell_params", ())
             if np.ndim(getattr(model, name)) == 2}
    return model.with_params(**moved) if moved else model


def _merge_zero_resistors(circuit: Circuit, zero: np.ndarray):
    """Node classes joined by zero resistances; returns (node_map, n_free)."""
    res = circuit.groups[0]
    n, n_fixed = circuit.n_nodes, circuit.n_fixed
    adj = sp.coo_matrix((np.ones(int(zero.sum())), (res.a[zero], res.b[zero])), shape=(n, n))
    _, labels = csgraph.connected_components(adj, directed=False)
    fixed = np.arange(n - n_fixed, n)
    fixed_labels = labels[fixed]
    uniq, counts = np.unique(fixed_labels, return_counts=True)
    if np.any(counts > 1):
        label = uniq[counts > 1][0]
        both = fixed[fixed_labels == label][:2]
        raise ShortCircuitError(
            f"a zero-resistance path joins the fixed-voltage nodes {circuit.node_name(both[0])} "
            f"and {circuit.node_name(both[1])}: give a nonzero driver, wire or sense resistance"
        )
    # Reduced index of each class: fixed classes take n_free + (fixed position); the others are
    # numbered in order of their smallest node id, which keeps the tile's natural locality.
    is_fixed_class = np.zeros(labels.max() + 1, dtype=bool)
    is_fixed_class[fixed_labels] = True
    class_first = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(class_first, labels, np.arange(n))
    free_classes = np.flatnonzero(~is_fixed_class)
    free_classes = free_classes[np.argsort(class_first[free_classes], kind="stable")]
    class_index = np.empty(labels.max() + 1, dtype=np.int64)
    class_index[free_classes] = np.arange(len(free_classes))
    class_index[fixed_labels] = len(free_classes) + np.arange(n_fixed)
    return class_index[labels], len(free_classes)


def _reorder(circuit, node_map, n_free, a_parts, b_parts):
    """Renumber the unknowns in nested-dissection order where the circuit has grid coordinates.

    Updates ``a_parts``/``b_parts`` in place; returns the new node map and whether it is ordered.
    """
    if circuit.coords is None or n_free == 0:
        return node_map, False
    rep = np.full(n_free, -1)
    free = node_map < n_free
    rep[node_map[free][::-1]] = np.flatnonzero(free)[::-1]  # first node of each class
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    inner = (a < n_free) & (b < n_free)
    perm = nested_dissection(circuit.coords[rep], a[inner], b[inner])
    if perm is None:
        return node_map, False
    new = np.arange(n_free + circuit.n_fixed)
    new[perm] = np.arange(n_free)
    for parts in (a_parts, b_parts):
        parts[:] = [new[x] for x in parts]
    return new[node_map], True


def _csc_pattern(rows, cols, n_free):
    """CSC pattern of the entries (rows, cols) (duplicates summed) and each entry's position."""
    key = cols.astype(np.int64) * n_free + rows
    uniq, pos = np.unique(key, return_inverse=True)
    indices = uniq % n_free
    indptr = np.searchsorted(uniq // n_free, np.arange(n_free + 1), side="left")
    return indptr, indices, pos


def analyze(circuit: Circuit, tiles: np.ndarray, zero: np.ndarray) -> Plan:
    """Build the plan for the ``tiles`` of ``circuit`` whose zero-resistance mask is ``zero``."""
    node_map, n_free = _merge_zero_resistors(circuit, zero)
    kept, a_parts, b_parts = [], [], []
    for k, group in enumerate(circuit.groups):
        ra, rb = node_map[group.a], node_map[group.b]
        keep = ra != rb  # both ends in one class: no voltage across, no current
        if k == 0:
            keep &= ~zero
        idx = np.flatnonzero(keep)
        kept.append(idx)
        a_parts.append(ra[idx])
        b_parts.append(rb[idx])
    node_map, ordered = _reorder(circuit, node_map, n_free, a_parts, b_parts)
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    E = len(a)
    n_red = n_free + circuit.n_fixed
    e = np.arange(E)

    # The four stamp entries of every branch; keep those in the unknown block.
    rows = np.concatenate([a, a, b, b])
    cols = np.concatenate([a, b, a, b])
    branch = np.concatenate([e, e, e, e])
    sign = np.concatenate([np.ones(E), np.ones(E), -np.ones(E), -np.ones(E)])
    is_p = np.concatenate([np.ones(E, bool), np.zeros(E, bool), np.ones(E, bool), np.zeros(E, bool)])
    inside = (rows < n_free) & (cols < n_free)
    indptr, indices, pos = _csc_pattern(rows[inside], cols[inside], n_free)
    scatter_p, scatter_q = _scatter(pos, branch[inside], sign[inside], is_p[inside], len(indices), E)
    coupled = (rows < n_free) & (cols >= n_free)
    fk_key = rows[coupled] * circuit.n_fixed + (cols[coupled] - n_free)
    fk_uniq, fk_pos = np.unique(fk_key, return_inverse=True)
    fk_scatter = _scatter(fk_pos, branch[coupled], sign[coupled], is_p[coupled], len(fk_uniq), E)
    incidence = sp.csr_matrix(
        (np.concatenate([np.ones(E), -np.ones(E)]), (np.concatenate([a, b]), np.concatenate([e, e]))),
        shape=(n_red, E),
    )
    fixed_nets, shared = _fixed_nets(circuit, a_parts[0], b_parts[0], n_free, n_red)
    symmetric = not any(g.kind == "transistor" and len(kp) for g, kp in zip(circuit.groups, kept))
    return Plan(
        circuit=circuit, tiles=tiles, node_map=node_map, n_free=n_free, kept=tuple(kept),
        a=a, b=b, ordered=ordered, indptr=indptr, indices=indices,
        scatter_p=scatter_p, scatter_q=scatter_q,
        fk_rows=fk_uniq // circuit.n_fixed, fk_cols=fk_uniq % circuit.n_fixed,
        fk_scatter_p=fk_scatter[0], fk_scatter_q=fk_scatter[1],
        incidence=incidence, fixed_nets=fixed_nets, shared_fixed=shared, symmetric=symmetric,
    )


def _scatter(pos, branch, sign, is_p, nnz, E):
    """Sparse maps from branch partials p and q to stored entries (duplicates summed)."""
    return tuple(
        sp.csr_matrix((sign[sel], (pos[sel], branch[sel])), shape=(nnz, E)) for sel in (is_p, ~is_p)
    )


def _fixed_nets(circuit, ra, rb, n_free, n_red):
    """Rows: for each fixed node, indicator of the nodes joined to it by resistors (its net).

    A net that reaches two fixed nodes has no such KCL shortcut; its fixed nodes get their own
    node only, and their currents come from the branch currents directly.
    """
    n_fixed = circuit.n_fixed
    adj = sp.coo_matrix((np.ones(len(ra)), (ra, rb)), shape=(n_red, n_red))
    _, labels = csgraph.connected_components(adj, directed=False)
    fixed = np.arange(n_free, n_red)
    counts = np.bincount(labels[fixed], minlength=labels.max() + 1)
    shared = counts[labels[fixed]] > 1
    rows = np.arange(n_fixed)[~shared]
    owner = np.full(labels.max() + 1, -1)
    owner[labels[fixed[~shared]]] = rows
    node_owner = owner[labels]
    members = np.flatnonzero(node_owner >= 0)
    r = np.concatenate([node_owner[members], np.arange(n_fixed)[shared]])
    c = np.concatenate([members, fixed[shared]])
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n_fixed, n_red)), shared


#: Plans by topology, most recent last: tiles of one shape and zero pattern share their analysis
#: (index arrays, ordering, symbolic factorisations). Bounded, since a plan of a 1024 x 1024 tile
#: holds some hundred megabytes.
_TOPOLOGIES: OrderedDict = OrderedDict()
TOPOLOGY_CACHE_SIZE = 4


def _topology_key(circuit: Circuit, zero: np.ndarray) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.array([circuit.n_nodes, circuit.n_fixed]).tobytes())
    for group in circuit.groups:
        digest.update(group.kind.encode())
        digest.update(np.ascontiguousarray(group.a).tobytes())
        digest.update(np.ascontiguousarray(group.b).tobytes())
    if circuit.coords is not None:
        digest.update(np.ascontiguousarray(circuit.coords).tobytes())
    digest.update(np.packbits(zero).tobytes())
    return digest.digest()


def plans(circuit: Circuit) -> list[Plan]:
    """One plan per distinct zero-resistance pattern among the tiles of the batch.

    A plan of the same topology analysed before is reused, bound to this circuit and its tiles.
    """
    zero = circuit.groups[0].value == 0
    first, inverse = unique_rows(zero)
    out = []
    for k, t in enumerate(first):
        tiles = np.flatnonzero(inverse == k)
        key = _topology_key(circuit, zero[t])
        template = _TOPOLOGIES.get(key)
        if template is None:
            template = analyze(circuit, tiles, zero[t])
            _TOPOLOGIES[key] = template
            while len(_TOPOLOGIES) > TOPOLOGY_CACHE_SIZE:
                _TOPOLOGIES.popitem(last=False)
        else:
            _TOPOLOGIES.move_to_end(key)
        out.append(replace(template, circuit=circuit, tiles=tiles))
    return out


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tile_plans(tile: Tile) -> list[Plan]:
    """The analysed plans of a tile, computed once per tile object (checks floating nodes too)."""
    cached = _PLANS.get(tile)
    if cached is None:
        floating = find_floating(tile.circuit)
        if floating is not None:
            t, node = floating
            raise FloatingNodeError(
                f"node {tile.circuit.node_name(node)} of tile {t} has no DC path to a source or "
                "the sense nodes; its voltage is undetermined (open cells with g = 0 on both "
                "sides, or transistors that cannot conduct)"
            )
        cached = _PLANS[tile] = plans(tile.circuit)
    return cached
