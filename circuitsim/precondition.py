"""Newton-Krylov's preconditioners: factorisations of each tile's linearised matrix.

Every (tile, input) system of a nonlinear plan shares its tile's wire network, so the tile's
matrix with each device replaced by a conductance (its 0 V conductance at first, later the mean
over the tile's systems, see ``refresh``) is a strong preconditioner for all its systems. Two
layouts, with one interface (``solve(r, tile_pos)``, ``initial(vk, tile_pos)``,
``refresh(bv, tile_pos)``; ``tile_pos`` on the host gives each system's position in ``tiles``):

- :class:`PerTile` (the CPU): one factorisation per tile, each system's column solved with its
  tile's factor.
- :class:`Batched` (a GPU): all tiles as one block-diagonal matrix, one factorisation; the
  columns of the systems are laid out so that column ``j`` of the right-hand side holds the
  ``j``-th system of every tile in that tile's block (zeros where a tile has fewer systems), so
  one solve serves all tiles.

Rows with an empty Jacobian row are held (:func:`hold_floating`).
"""

from __future__ import annotations

import numpy as np

from . import factor
from .branches import branch_values
from .mna import Plan

__all__ = ["Batched", "PerTile", "hold_floating", "linearised"]


def hold_floating(plan: Plan, data, f=None) -> None:
    """Rows with an empty Jacobian row (a node whose every branch carries no current and has no
    conductance, e.g. behind an open cell and a transistor in cutoff) keep their voltage: any
    value satisfies KCL there, so the Newton update is set to 0 instead of dividing by 0."""
    xp, _ = plan.modules()
    diag = plan.maps("diag")
    empty = data[:, diag] == 0
    if bool(empty.any()):
        rows, cols = xp.nonzero(empty)
        data[rows, diag[cols]] = 1.0
        if f is not None:
            f[rows, cols] = 0.0


def _method(solver: str) -> str:
    return "auto" if solver not in ("superlu", "cholmod") else solver


def _zero_partials(plan: Plan, tiles, models):
    xp, _ = plan.modules()
    zero = xp.zeros((len(tiles), plan.n_free + plan.n_fixed))
    return branch_values(plan, zero, tiles, models=models)


class PerTile:
    """Factorisations of each tile's linearised matrix (devices at their 0 V conductance)."""

    def __init__(self, plan: Plan, tiles: np.ndarray, models, solver: str):
        self.plan = plan
        self.tiles = tiles
        bv = _zero_partials(plan, tiles, models)
        self.coupling = [plan.coupling(bv.p[k : k + 1], bv.q[k : k + 1]) for k in range(len(tiles))]
        self.g = 0.5 * (bv.p - bv.q)  # (T, E): each tile's conductances, updated by refresh
        self.factors = []
        self.method = _method(solver)
        for k in range(len(tiles)):  # one factorisation per tile, not per input vector
            self.factors.append(self._factor(k, plan.data(bv.p[k : k + 1], bv.q[k : k + 1])))

    def _factor(self, k: int, data):
        hold_floating(self.plan, data)
        J = factor.block_matrix(self.plan, data)
        # on a device each tile keeps its own solver object, hence its own tag
        tag = "linearised" if self.plan.backend is None else f"linearised-{k}"
        return factor.factorize(self.plan, J, self.method, symmetric=True, tag=tag)

    def refresh(self, bv, tile_pos: np.ndarray, first: int = 0) -> None:
        """Refactor each tile's preconditioner at the mean branch conductances of its active
        systems (symmetrised: a transistor counts as the conductance ``(gd - gs) / 2``), so that
        it follows the devices as Newton moves away from 0 V. ``bv`` holds the branches from
        ``first`` on; the others (the resistors) keep their conductances."""
        xp, _ = self.plan.modules()
        for k in np.unique(tile_pos):
            rows = xp.asarray(tile_pos == k)
            g = self.g[k : k + 1].copy()
            g[:, first:] = (0.5 * (bv.p[rows] - bv.q[rows])).mean(axis=0, keepdims=True)
            self.factors[k] = self._factor(int(k), self.plan.data(g, -g))

    def solve(self, r, tile_pos: np.ndarray):
        """Apply each system's tile's inverse linearised matrix to its column of ``r`` (N, S)."""
        xp, _ = self.plan.modules()
        tiles = np.unique(tile_pos)
        if len(tiles) == 1:
            return self.factors[tiles[0]].solve(xp.ascontiguousarray(r))
        out = xp.empty_like(r)
        for k in tiles:
            cols = xp.asarray(np.flatnonzero(tile_pos == k))
            out[:, cols] = self.factors[k].solve(r[:, cols])
        return out

    def initial(self, vk, tile_pos: np.ndarray):
        """Free-node voltages of the linearised tiles for fixed voltages ``vk`` ``(S, n_fixed)``."""
        xp, _ = self.plan.modules()
        rhs = xp.empty((self.plan.n_free, len(vk)))
        for k in np.unique(tile_pos):
            cols = xp.asarray(np.flatnonzero(tile_pos == k))
            rhs[:, cols] = -(self.coupling[k] @ vk[cols].T)
        return self.solve(rhs, tile_pos).T


class Batched:
    """The linearised matrices of all tiles as one block-diagonal factorisation (see the module
    docstring); the same interface as :class:`PerTile`."""

    def __init__(self, plan: Plan, tiles: np.ndarray, models, solver: str):
        self.plan = plan
        self.tiles = tiles
        self.method = _method(solver)
        bv = _zero_partials(plan, tiles, models)
        self.C = plan.coupling(bv.p, bv.q)  # (T nf, T nk), block-diagonal
        self.g = 0.5 * (bv.p - bv.q)  # (T, E): each tile's conductances, updated by refresh
        self._factor(plan.data(bv.p, bv.q))

    def _factor(self, data) -> None:
        hold_floating(self.plan, data)
        J = factor.block_matrix(self.plan, data)
        self.factor = factor.factorize(self.plan, J, self.method, symmetric=True,
                                       tag="linearised-batched")

    def _layout(self, tile_pos: np.ndarray):
        """Device arrays of each system's tile and rank among its tile's systems, and the width
        (the most systems of one tile)."""
        xp, _ = self.plan.modules()
        tile_pos = np.asarray(tile_pos)
        counts = np.bincount(tile_pos, minlength=len(self.tiles))
        order = np.argsort(tile_pos, kind="stable")
        starts = np.cumsum(counts) - counts
        rank = np.empty(len(tile_pos), dtype=np.int64)
        rank[order] = np.arange(len(tile_pos)) - np.repeat(starts, counts)
        return xp.asarray(tile_pos), xp.asarray(rank), int(counts.max(initial=0))

    def _scatter(self, cols, layout, rows: int):
        """``cols`` ``(S, rows)`` laid out as the right-hand side ``(T rows, width)``."""
        xp, _ = self.plan.modules()
        k, j, width = layout
        big = xp.zeros((len(self.tiles), rows, width))
        big[k, :, j] = cols
        return big.reshape(len(self.tiles) * rows, width)

    def _gather(self, x, layout):
        """The columns ``(S, nf)`` of the systems from a solution laid out by :meth:`_scatter`."""
        k, j, width = layout
        return x.reshape(len(self.tiles), self.plan.n_free, width)[k, :, j]

    def solve(self, r, tile_pos: np.ndarray):
        """Apply each system's tile's inverse linearised matrix to its column of ``r`` (N, S)."""
        xp, _ = self.plan.modules()
        layout = self._layout(tile_pos)
        x = self.factor.solve(self._scatter(r.T, layout, self.plan.n_free))
        return xp.ascontiguousarray(self._gather(x, layout).T)

    def initial(self, vk, tile_pos: np.ndarray):
        """Free-node voltages of the linearised tiles for fixed voltages ``vk`` ``(S, n_fixed)``."""
        layout = self._layout(tile_pos)
        rhs = -(self.C @ self._scatter(vk, layout, self.plan.n_fixed))
        return self._gather(self.factor.solve(rhs), layout)

    def refresh(self, bv, tile_pos: np.ndarray, first: int = 0) -> None:
        """As :meth:`PerTile.refresh`, for all tiles with active systems in one factorisation
        (the others keep their last conductances)."""
        xp, sparse = self.plan.modules()
        tile_pos = np.asarray(tile_pos)
        T, S = len(self.tiles), len(tile_pos)
        counts = np.bincount(tile_pos, minlength=T)
        weights = 1.0 / counts[tile_pos]
        mean = sparse.coo_matrix(
            (xp.asarray(weights), (xp.asarray(tile_pos), xp.arange(S))), shape=(T, S)).tocsr()
        g_new = xp.asarray(mean @ (0.5 * (bv.p - bv.q)))  # (T, E)
        present = xp.asarray(counts > 0)
        self.g[:, first:][present] = g_new[present]  # a view: masked rows of its columns
        self._factor(self.plan.data(self.g, -self.g))


def linearised(plan: Plan, tiles: np.ndarray, models, solver: str):
    """The preconditioner layout of the plan's backend: :class:`Batched` where the backend asks
    for it (a GPU), else :class:`PerTile`."""
    batched = plan.backend is not None and plan.backend.batched_preconditioner
    return (Batched if batched else PerTile)(plan, tiles, models, solver)
