"""The Jacobian of a plan's systems at their solution, for tangent and adjoint solves.

At a solution of ``F(v) = 0`` (KCL at the unknown nodes), a change of the parameters or of the
fixed voltages moves the unknowns by the solution of ``J dx = -dF`` (a tangent), and the gradient
of a read-out of the currents needs one solve with ``J^T`` (an adjoint). :class:`Linearisation`
does both for all systems of a plan:

- linear tiles: ``J`` is the tile's conductance matrix, the same for every input; it is factored
  once per tile (chunks of tiles as one block-diagonal matrix, as the forward solve does) and the
  factorisation serves any number of right-hand sides; ``J`` is symmetric, so ``J^T = J``;
- nonlinear tiles: every (tile, input) system has its own ``J``. In ``"krylov"`` mode each solve
  is BiCGSTAB preconditioned by the factorisation of the tile's linearised matrix (the same
  preconditioner Newton-Krylov used to find the solution), with a direct factorisation as
  fallback for systems where it stalls; in ``"direct"`` mode every system's ``J`` is factored once
  (CHOLMOD where symmetric, SuperLU otherwise, which also solves with ``J^T``) and kept, for
  callers that solve many times at the same point.

Nodes whose Jacobian row is empty (behind an open cell and a transistor in cutoff) are held at 0
in both solves, as Newton holds them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from circuitsim import solvers

from ._internals import CHUNK_UNKNOWNS, Linearised, bicgstab_many, cholmod_mode
from .branches import branch_values, select_cells
from .mna import Plan
from .network import ResistorNetwork

__all__ = ["Linearisation"]

MODES = ("krylov", "direct")


class Linearisation:
    """Jacobians of the systems of ``plan`` at reduced voltages ``v_red`` ``(S, n_red)``.

    Systems are tile-major: ``S = len(plan.tiles) * K``. For a linear tile the voltages do not
    matter (pass None) and ``K`` is free in every solve.

    Parameters
    ----------
    plan : Plan
    v_red : ndarray, (S, n_red), or None
    K : int
        Input vectors per tile (nonlinear tiles).
    linear : bool
    solver : str
        ``"direct"``, ``"superlu"`` or ``"cholmod"`` for the factorisations.
    mode : {"krylov", "direct"}
        How nonlinear systems are solved (see the module docstring).
    rtol, maxiter : float, int
        Krylov tolerance (relative residual) and iteration cap.
    """

    def __init__(self, plan: Plan, v_red, K: int, *, linear: bool, solver: str = "direct",
                 mode: str = "krylov", rtol: float = 1e-13, maxiter: int = 60):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.plan, self.K, self.linear = plan, K, linear
        self.solver = solver if solver in ("superlu", "cholmod") else "direct"
        self.mode, self.rtol, self.maxiter = mode, rtol, maxiter
        tiles = plan.tiles
        nf, nk = plan.n_free, plan.n_fixed
        if linear:
            bv = branch_values(plan, np.zeros((len(tiles), nf + nk)), tiles)
            self.tile_idx = tiles
        else:
            self.tile_idx = np.repeat(tiles, K)
            models = [select_cells(g.model, self.tile_idx, cells)
                      for g, cells in zip(plan.circuit.groups, plan.kept)]
            bv = branch_values(plan, v_red, self.tile_idx, models=models)
        self.p, self.q = bv.p, bv.q  # (tiles or systems, E)
        inc = plan.incidence
        self._at_a = (inc > 0).astype(np.float64).tocsr()[:nf]
        self._at_b = (inc < 0).astype(np.float64).tocsr()[:nf]
        self._net = None
        if not linear:  # products: the resistors as one matrix per tile, the rest per branch
            nr = plan.n_res
            self._net = ResistorNetwork(plan, tiles)
            self._pn = np.ascontiguousarray(bv.p[:, nr:].T)  # (E - n_res, S): systems last
            self._qn = np.ascontiguousarray(bv.q[:, nr:].T)
            self._inc_n = plan.maps("nonlinear")[0]
            self._at_a_n = self._at_a[:, nr:].tocsr()
            self._at_b_n = self._at_b[:, nr:].tocsr()
        diag = np.asarray(self._at_a @ self.p.T - self._at_b @ self.q.T)  # (nf, rows)
        self.held = diag == 0
        self._linear = None  # [(tile slice, factor)]
        self._direct = {}  # systems (as bytes) -> solve(rhs, transpose)
        self._precond = None

    # -- products ------------------------------------------------------------------------------

    def _rows(self, rows):
        return self.p[rows].T, self.q[rows].T

    def apply(self, x: np.ndarray, rows, transpose: bool = False) -> np.ndarray:
        """``J x`` (or ``J^T x``) restricted to the unknowns, columns ``x`` ``(n_red, S')`` of the
        systems ``rows``; the fixed rows of ``x`` enter as given (the coupling to fixed nodes)."""
        plan = self.plan
        if self._net is not None:
            return self._apply_nonlinear(x, np.asarray(rows), transpose)
        p, q = self._rows(rows)
        if not transpose:
            branch = p * x[plan.a]
            branch += q * x[plan.b]
            return plan.incidence[: plan.n_free] @ branch
        delta = x[plan.a] - x[plan.b]
        return self._at_a @ (p * delta) + self._at_b @ (q * delta)

    def _apply_nonlinear(self, x, rows, transpose: bool):
        """:meth:`apply` for nonlinear systems: ``G_f x_f + G_k x_k`` of the resistors (the same
        for ``J^T``: a resistor's stamp is symmetric) plus the other branches' terms."""
        plan = self.plan
        nr = plan.n_res
        y = self._net.product(x, rows // self.K)
        every = len(rows) == self._pn.shape[1]
        p = self._pn if every else self._pn[:, rows]
        q = self._qn if every else self._qn[:, rows]
        a, b = plan.a[nr:], plan.b[nr:]
        if not transpose:
            branch = p * x[a]
            branch += q * x[b]
            y += self._inc_n @ branch
            return y
        delta = x[a] - x[b]
        y += self._at_a_n @ (p * delta)
        y += self._at_b_n @ (q * delta)
        return y

    # -- solves --------------------------------------------------------------------------------

    def solve_boundary(self, seeds: np.ndarray, transpose: bool = False,
                       extra: np.ndarray | None = None) -> np.ndarray:
        """Reduced voltages ``(Bp, K', n_red)`` of the linearised systems for fixed-node values
        ``seeds`` ``(Bp, K', n_fixed)``, plus an optional current ``extra`` ``(Bp, K', n_free)``
        injected at the unknowns (``J x_f = -(J_fk seeds + extra)``; ``J^T`` if ``transpose``).
        """
        plan = self.plan
        Bp, Kp, nk = seeds.shape
        nf = plan.n_free
        full = np.zeros((Bp, Kp, nf + nk))
        full[..., nf:] = seeds
        if nf:
            rhs = self._boundary_rhs(seeds, transpose)
            if extra is not None:
                rhs += extra
            full[..., :nf] = self.solve(-rhs, transpose)
        return full

    def boundary_columns(self, seeds: np.ndarray) -> np.ndarray:
        """Reduced voltages ``(n_red, k)`` of a plan with one linear tile for fixed-node values
        given as columns ``seeds`` ``(n_fixed, k)``: :meth:`solve_boundary` without the copies to
        and from the ``(Bp, K', .)`` layout, for many right-hand sides."""
        plan = self.plan
        if not self.linear or len(plan.tiles) != 1:
            raise ValueError("boundary_columns is for a plan of one linear tile")
        nf = plan.n_free
        out = np.empty((nf + plan.n_fixed, seeds.shape[1]))
        out[nf:] = seeds
        if nf:
            rhs = plan.coupling(self.p, self.q) @ seeds
            out[:nf] = self._linear_factors()[0][1].solve(-np.ascontiguousarray(rhs))
        return out

    def _boundary_rhs(self, seeds, transpose):
        plan = self.plan
        Bp, Kp, nk = seeds.shape
        nf = plan.n_free
        if self.linear:  # J_fk of each tile (block diagonal); symmetric: J^T's is the same
            C = plan.coupling(self.p, self.q)
            rhs = C @ seeds.transpose(0, 2, 1).reshape(Bp * nk, Kp)
            return rhs.reshape(Bp, nf, Kp).transpose(0, 2, 1)
        x = np.zeros((nf + nk, Bp * Kp))
        x[nf:] = seeds.reshape(Bp * Kp, nk).T
        rows = np.arange(Bp * Kp)
        out = np.empty((nf, Bp * Kp))
        step = max(1, CHUNK_UNKNOWNS // max(nf, 1))
        for c0 in range(0, Bp * Kp, step):
            sel = slice(c0, c0 + step)
            out[:, sel] = self.apply(x[:, sel], rows[sel], transpose)
        return out.T.reshape(Bp, Kp, nf)

    def solve(self, rhs: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Solve ``J x = rhs`` (``J^T x = rhs``) for ``rhs`` ``(Bp, K', n_free)``."""
        rhs = np.where(self._held_like(rhs.shape), 0.0, rhs)
        if self.linear:
            return self._solve_linear(rhs)
        Bp, Kp, nf = rhs.shape
        b = np.ascontiguousarray(rhs.reshape(Bp * Kp, nf).T)
        if self.mode == "direct":
            x = self._solve_direct(b, np.arange(Bp * Kp), transpose)
        else:
            x = self._solve_krylov(b, transpose)
        return x.T.reshape(Bp, Kp, nf)

    def _held_like(self, shape):
        Bp, Kp, nf = shape
        held = self.held.T  # (rows, nf)
        if self.linear:
            return np.broadcast_to(held[:, None, :], shape)
        return held.reshape(Bp, Kp, nf)

    def _solve_linear(self, rhs):
        Kp, nf = rhs.shape[1:]
        out = np.empty_like(rhs)
        for sel, factor in self._linear_factors():
            c = sel.stop - sel.start
            b = rhs[sel].transpose(0, 2, 1).reshape(c * nf, Kp)
            out[sel] = factor.solve(np.ascontiguousarray(b)).reshape(c, nf, Kp).transpose(0, 2, 1)
        return out

    def _linear_factors(self):
        if self._linear is None:
            plan = self.plan
            chunk = max(1, CHUNK_UNKNOWNS // max(plan.n_free, 1))
            factors = []
            for c0 in range(0, len(plan.tiles), chunk):
                sel = slice(c0, min(c0 + chunk, len(plan.tiles)))
                J = self._matrix(np.arange(sel.start, sel.stop))
                key = (self.solver, J.shape)
                if key not in plan.analyses:  # the key the forward solve uses: shared analysis
                    method = "auto" if self.solver == "direct" else self.solver
                    plan.analyses[key] = solvers.analyze(
                        J, method, symmetric=plan.symmetric, natural=plan.ordered,
                        mode=cholmod_mode(plan))
                factors.append((sel, plan.analyses[key].factorize(J)))
            self._linear = factors
        return self._linear

    def _matrix(self, rows) -> sp.csc_matrix:
        """Block-diagonal ``J`` of the systems (or tiles) ``rows``, held rows as identity."""
        plan = self.plan
        data = np.ascontiguousarray((plan.scatter_p @ self.p[rows].T
                                     + plan.scatter_q @ self.q[rows].T).T)
        diag = _diag_positions(plan)
        empty = data[:, diag] == 0
        if empty.any():
            r, c = np.nonzero(empty)
            data[r, diag[c]] = 1.0
        return plan.block_diagonal(data)

    def _solve_direct(self, b, rows, transpose):
        """Direct solves of the systems ``rows`` (columns of ``b`` ``(nf, S')``), factors kept."""
        plan = self.plan
        nf = plan.n_free
        out = np.empty_like(b)
        step = max(1, CHUNK_UNKNOWNS // max(nf, 1))
        for c0 in range(0, len(rows), step):
            part = rows[c0 : c0 + step]
            key = part.tobytes()
            factor = self._direct.get(key)
            if factor is None:
                factor = self._direct[key] = self._factor(self._matrix(part))
            rhs = b[:, c0 : c0 + step].T.reshape(-1)
            out[:, c0 : c0 + step] = factor(rhs, transpose).reshape(len(part), nf).T
        return out

    def _factor(self, J):
        plan = self.plan
        if plan.symmetric:
            f = solvers.factorize(J, "cholmod" if self.solver == "cholmod" else "auto",
                                  symmetric=True, natural=plan.ordered)
            return lambda rhs, transpose: f.solve(rhs)
        lu = spla.splu(sp.csc_matrix(J), permc_spec="NATURAL" if plan.ordered else "COLAMD")
        return lambda rhs, transpose: lu.solve(rhs, trans="T" if transpose else "N")

    def _solve_krylov(self, b, transpose):
        plan = self.plan
        nk = plan.n_fixed
        if self._precond is None:
            tiles = plan.tiles
            models = [select_cells(g.model, tiles, cells)
                      for g, cells in zip(plan.circuit.groups, plan.kept)]
            self._precond = Linearised(plan, tiles, models, self.solver)
        tile_pos = np.repeat(np.arange(len(plan.tiles)), self.K)
        held = self.held

        def matvec(x, mask):
            rows = np.flatnonzero(mask)
            full = np.concatenate([x, np.zeros((nk, x.shape[1]))], axis=0)
            y = self.apply(full, rows, transpose)
            h = held[:, rows]
            y[h] = x[h]
            return y

        def precond(r, mask):
            return self._precond.solve(r, tile_pos[mask])

        x, ok, _ = bicgstab_many(matvec, precond, b, rtol=self.rtol, maxiter=self.maxiter)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            x[:, bad] = self._solve_direct(b[:, bad], bad, transpose)
        return x


def _diag_positions(plan: Plan) -> np.ndarray:
    col = np.repeat(np.arange(plan.n_free), np.diff(plan.indptr))
    pos = np.flatnonzero(plan.indices == col)
    return pos[np.argsort(col[pos])]
