"""The resistors of a plan's tiles as fixed sparse matrices.

Wires, driver and sense resistances are linear and the same for every input vector of a tile, so
the nonlinear paths (Newton, and the tangent and adjoint solves at a Newton point) do not evaluate
them branch by branch: their currents at the unknowns are ``G_f x + G_k v_k`` and their part of
every Jacobian is ``G_f``, one pair of matrices per tile. On a 1T1R or sinh tile the resistors are
half or two thirds of the branches.
"""

from __future__ import annotations

import numpy as np

from .branches import groups, per_system
from .mna import Plan

__all__ = ["ResistorNetwork"]


class ResistorNetwork:
    """The resistors (wires, source and sense resistances) of the tiles ``tiles`` (batch
    indices, as the preconditioner holds them): ``G_f`` ``(n_free, n_free)`` and ``G_k``
    ``(n_free, n_fixed)`` per tile; ``tile_pos`` gives each system's position in ``tiles``."""

    def __init__(self, plan: Plan, tiles: np.ndarray):
        xp, sparse = plan.modules()
        self.plan = plan
        nr, nf = plan.n_res, plan.n_free
        self.g = xp.zeros((len(tiles), nr))
        self.free, self.fixed, self.diag = [], [], []
        if not nr:
            return
        inc, abs_inc, diff_f, diff_k = plan.maps("resistor_network")
        self.inc = inc
        _, values, cells, _ = groups(plan)[0]
        for k, t in enumerate(tiles):
            self.g[k] = 1.0 / per_system(values, np.array([t]), cells)[0]
            left = inc @ sparse.diags(self.g[k], format="csr")
            G_f = (left @ diff_f).tocsr()
            self.free.append(G_f)
            self.fixed.append((left @ diff_k).tocsr())
            self.diag.append(xp.asarray(abs_inc @ self.g[k]).reshape(nf, 1))

    def _by_tile(self, tile_pos: np.ndarray):
        tiles = np.unique(tile_pos)
        if len(tiles) == 1:
            return [(int(tiles[0]), None)]
        xp, _ = self.plan.modules()
        return [(int(k), xp.asarray(np.flatnonzero(tile_pos == k))) for k in tiles]

    def current(self, v, tile_pos: np.ndarray):
        """Current leaving each unknown node through the resistors, ``(n_free, S)``, for reduced
        voltages ``v`` ``(S, n_red)``: in branch form, ``sum_e g_e (v_a - v_b)``, whose voltage
        differences across short wires are exact, where ``G_f v_f + G_k v_k`` would sum terms
        of 1e12 S wires times volts and lose the device currents' digits (Newton's residual)."""
        xp, _ = self.plan.modules()
        nf, nr = self.plan.n_free, self.plan.n_res
        if not nr:
            return xp.zeros((nf, len(v)))
        a, b = self.plan.a[:nr], self.plan.b[:nr]
        i = v[:, a]
        i -= v[:, b]
        tiles = np.unique(tile_pos)
        i *= self.g[int(tiles[0])] if len(tiles) == 1 else self.g[xp.asarray(tile_pos)]
        return xp.asarray(self.inc @ xp.ascontiguousarray(i.T))

    def _per_tile(self, apply, x, tile_pos: np.ndarray, rows: int):
        """``apply(k, columns)`` ``(rows, S')`` for the columns of ``x`` of each tile ``k``."""
        xp, _ = self.plan.modules()
        out = None
        for k, cols in self._by_tile(tile_pos):
            if cols is None:
                return xp.asarray(apply(k, x))
            if out is None:
                out = xp.empty((rows, x.shape[1]))
            out[:, cols] = apply(k, x[:, cols])
        return out

    def product(self, x, tile_pos: np.ndarray):
        """``G_f x_f + G_k x_k`` ``(n_free, S)`` for columns ``x`` ``(n_red, S)`` of reduced
        voltages (unknowns first, then the fixed nodes) of the systems at ``tile_pos``."""
        xp, _ = self.plan.modules()
        nf = self.plan.n_free
        if not self.free:
            return xp.zeros((nf, x.shape[1]))

        def apply(k, xs):
            part = self.free[k] @ xp.ascontiguousarray(xs[:nf])
            part += self.fixed[k] @ xp.ascontiguousarray(xs[nf:])
            return part

        return self._per_tile(apply, x, tile_pos, nf)

    def matvec(self, x, tile_pos: np.ndarray):
        """``G_f x`` for the columns ``x`` ``(n_free, S')`` of systems at ``tile_pos`` ``(S',)``."""
        xp, _ = self.plan.modules()
        if not self.free:
            return xp.zeros_like(x)
        return self._per_tile(lambda k, xs: self.free[k] @ xs, x, tile_pos, len(x))

    def diagonal(self, tile_pos: np.ndarray):
        """The diagonal of ``G_f`` for each system, ``(n_free, S)``."""
        xp, _ = self.plan.modules()
        nf = self.plan.n_free
        if not self.diag:
            return xp.zeros((nf, len(tile_pos)))
        return xp.concatenate(self.diag, axis=1)[:, xp.asarray(tile_pos)]

    def partials(self, tile_pos: np.ndarray):
        """The resistors' conductances per system ``(S, n_res)`` (their partials ``p = g``,
        ``q = -g``)."""
        xp, _ = self.plan.modules()
        return self.g[xp.asarray(tile_pos)]
