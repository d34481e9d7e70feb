"""The transfer matrix of a linear tile from the Schur complement onto its boundary.

Inputs enter a tile only through the unknowns coupled to the drivers, and outputs leave only
through those coupled to the sense nodes: the boundary ``b``. The output currents for unit inputs
therefore need only the block ``(J^-1)_bb``, which is the inverse of the Schur complement of the
interior onto the boundary. One Cholesky factorisation with the boundary ordered last yields that
Schur complement in its trailing block (``L_bb L_bb^T``), so ``T`` costs one factorisation and
a dense inverse of size ``m + n``, instead of ``m`` pairs of triangular solves.

The currents here are those of the branches into the sense nodes. For very small sense-side
resistances they are less accurate than the bit-line KCL sums of :func:`circuitsim.solve`, so the
caller checks the result against one ordinary solve and falls back when they disagree.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from circuitsim import solvers

from .branches import branch_values
from .mna import Plan

__all__ = ["schur_transfer"]


def _permutation(plan: Plan):
    """Boundary-last order of the unknowns and the map from ``J``'s stored values to it."""
    cached = plan.analyses.get("boundary_order")
    if cached is None:
        nf = plan.n_free
        boundary = np.unique(plan.fk_rows)
        interior = np.setdiff1d(np.arange(nf), boundary)  # keeps the nested-dissection order
        perm = np.concatenate([interior, boundary])
        nnz = plan.nnz
        marker = sp.csc_matrix((np.arange(1, nnz + 1, dtype=float), plan.indices, plan.indptr),
                               shape=(nf, nf))
        permuted = marker[perm][:, perm].tocsc()
        permuted.sort_indices()
        values = permuted.data.astype(np.int64) - 1
        cached = (boundary, perm, values, permuted.indices, permuted.indptr)
        plan.analyses["boundary_order"] = cached
    return cached


def _fixed_block(plan: Plan, p, q, n_fixed):
    """Matrix block between fixed nodes ``J_kk`` of one tile (branches with both ends fixed)."""
    nf = plan.n_free
    both = (plan.a >= nf) & (plan.b >= nf)
    a, b = plan.a[both] - nf, plan.b[both] - nf
    out = np.zeros((n_fixed, n_fixed))
    for rows, cols, vals in ((a, a, p[both]), (a, b, q[both]), (b, a, -p[both]),
                             (b, b, -q[both])):
        np.add.at(out, (rows, cols), vals)
    return out


def schur_transfer(plan: Plan, m: int, n: int, check: np.ndarray):
    """``T`` ``(Bp, n, m)`` of the plan's linear tiles (sources first among the fixed nodes).

    Each tile's ``T`` is checked on the input ``check`` ``(Bp, m)``: the same factorisation solves
    for all node voltages, whose bit-line KCL currents (:meth:`Plan.fixed_operator`) must equal
    ``T @ check`` to ``1e3`` roundings of ``|T| |check|``. Returns ``T`` and the pass flags
    ``(Bp,)``. Raises ``numpy.linalg.LinAlgError`` when a matrix is not positive definite.
    """
    tiles = plan.tiles
    nf, nk = plan.n_free, plan.n_fixed
    bv = branch_values(plan, np.zeros((len(tiles), nf + nk)), tiles)
    boundary, perm, values, indices, indptr = _permutation(plan)
    k = len(boundary)
    T = np.empty((len(tiles), n, m))
    ok = np.zeros(len(tiles), dtype=bool)
    data = np.ascontiguousarray((plan.scatter_p @ bv.p.T + plan.scatter_q @ bv.q.T).T)
    for t in range(len(tiles)):  # one factorisation per tile
        p, q = bv.p[t : t + 1], bv.q[t : t + 1]
        Jp = sp.csc_matrix((data[t, values], indices, indptr), shape=(nf, nf))
        S, solve = solvers.schur_complement(Jp, k, symmetric=True, with_solve=True)
        C = plan.coupling(p, q)
        C_b = C[boundary].toarray()  # (k, nk)
        v_b = np.linalg.solve(S, -C_b[:, :m])  # boundary voltages for unit inputs
        # currents leaving the fixed nodes: J_kf v_f + J_kk v_k, with J_kf = C^T (symmetric)
        f_k = C_b.T @ v_b + _fixed_block(plan, bv.p[t], bv.q[t], nk)[:, :m]
        T[t] = -f_k[m:]
        if solve is not None:
            v_k = np.concatenate([check[t], np.zeros(n)])
            v_red = np.empty(nf + nk)
            v_red[perm] = solve(-(C @ v_k)[perm])
            v_red[nf:] = v_k
            ref = -(plan.fixed_operator(p[:, :]) @ v_red)[m:]
            scale = np.abs(T[t]) @ np.abs(check[t])
            ok[t] = np.all(np.abs(T[t] @ check[t] - ref) <= 1e3 * np.finfo(float).eps * scale)
    return T, ok
