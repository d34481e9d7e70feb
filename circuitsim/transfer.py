"""The transfer matrix of a linear tile from the Schur complement onto its boundary.

Inputs enter a tile only through the unknowns coupled to the drivers, and outputs leave only
through those coupled to the sense nodes: the boundary ``b``. The output currents for unit inputs
therefore need only the block ``(J^-1)_bb``, which is the inverse of the Schur complement of the
interior onto the boundary. One Cholesky factorisation with the boundary ordered last yields that
Schur complement in its trailing block (``L_bb L_bb^T``), so ``T`` costs one factorisation and
a dense solve of size ``m + n``, instead of ``m`` pairs of triangular solves.

Each tile's result is checked on one random vector of fixed voltages against a full solve from
the same factorisation, iteratively refined (:mod:`circuitsim.linear`) until its last correction
is below ``reltol / 10``: the fixed-node currents ``F v`` must equal the refined solve's to
``reltol s + abstol`` at every fixed node, where ``s`` is the size of the terms summed in
``F v = C_b^T v_b + J_kk v`` (boundary voltages ``v_b``): the same measure as the KCL audit of
a solve (``reltol`` times the size of the terms summed, plus ``abstol``). The currents of ``F`` are those
of the branches into the fixed nodes; for very small sense-side resistances they are less
accurate than the KCL sums of the refined solve, and the check says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from circuitsim import solvers

from .branches import branch_values
from .factor import analysis
from .linear import branch_residual, forward_error
from .mna import Plan

__all__ = ["SchurResult", "schur_transfer"]


@dataclass(frozen=True)
class SchurResult:
    """Fixed-node maps of the plan's tiles and their checks.

    ``F`` ``(Bp, n_fixed, n_fixed)``: currents leaving the fixed nodes (drivers first, then sense
    nodes) per unit voltage at each fixed node, so ``i_source = F[:m] v``, ``i_out = -F[m:] v``.
    ``ok`` ``(Bp,)``: the check passed; ``check_error`` ``(Bp,)``: the largest difference on the
    check vector relative to its bound ``reltol s + abstol`` (passes at most 1);
    ``reference_error`` ``(Bp,)``: the forward-error estimate of the refined check solve.
    """

    F: np.ndarray
    ok: np.ndarray
    check_error: np.ndarray
    reference_error: np.ndarray


def _permutation(plan: Plan):
    """Boundary-last order of the unknowns and the map from ``J``'s stored values to it."""
    cached = plan.analyses.get("boundary_order")
    if cached is None:
        nf = plan.n_free
        boundary = np.unique(plan.fk_rows)
        interior = np.ones(nf, dtype=bool)
        interior[boundary] = False
        interior = np.flatnonzero(interior)  # keeps the nested-dissection order
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
    """Matrix block between fixed nodes ``J_kk`` of one tile: the stamp entries of every branch
    whose row and column are both fixed nodes (a branch to a fixed node adds to its diagonal)."""
    nf = plan.n_free
    a, b = plan.a - nf, plan.b - nf
    out = np.zeros((n_fixed, n_fixed))
    for rows, cols, vals in ((a, a, p), (a, b, q), (b, a, -p), (b, b, -q)):
        keep = (rows >= 0) & (cols >= 0)
        np.add.at(out, (rows[keep], cols[keep]), vals[keep])
    return out


def schur_transfer(plan: Plan, check: np.ndarray, *, reltol: float, abstol: float) -> SchurResult:
    """Fixed-node maps ``F`` of the plan's linear tiles, each checked on ``check``
    ``(Bp, n_fixed)`` (see the module docstring). Raises ``numpy.linalg.LinAlgError`` when a
    matrix is not positive definite."""
    tiles = plan.tiles
    nf, nk = plan.n_free, plan.n_fixed
    bv = branch_values(plan, np.zeros((len(tiles), nf + nk)), tiles)
    boundary, perm, values, indices, indptr = _permutation(plan)
    k = len(boundary)
    F = np.empty((len(tiles), nk, nk))
    ok = np.zeros(len(tiles), dtype=bool)
    check_error = np.zeros(len(tiles))
    reference_error = np.zeros(len(tiles))
    data = np.ascontiguousarray((plan.scatter_p @ bv.p.T + plan.scatter_q @ bv.q.T).T)
    inverse = np.empty(nf, dtype=np.int64)
    inverse[perm] = np.arange(nf)
    rng = np.random.default_rng(0)
    for t in range(len(tiles)):  # one factorisation per tile
        p, q = bv.p[t : t + 1], bv.q[t : t + 1]
        Jp = sp.csc_matrix((data[t, values], indices, indptr), shape=(nf, nf))
        symbolic = None
        if solvers.cholmod_available():  # one symbolic analysis per topology
            symbolic = analysis(plan, Jp, "cholmod", symmetric=True, tag="boundary-last",
                                natural=True)
        L_bb, factor = solvers.schur_complement(Jp, k, symmetric=True, with_solve=True,
                                                analysis=symbolic, lower=True)
        C = plan.coupling(p, q)
        C_b = C[boundary].toarray()  # (k, nk)
        # boundary voltages for unit fixed voltages: S v_b = -C_b with S = L_bb L_bb^T
        v_b = sla.cho_solve((L_bb, True), -C_b, check_finite=False)
        # currents leaving the fixed nodes: J_kf v_f + J_kk v_k, with J_kf = C^T (symmetric)
        J_kk = _fixed_block(plan, bv.p[t], bv.q[t], nk)
        F[t] = C_b.T @ v_b + J_kk
        if factor is None:  # pragma: no cover - only without CHOLMOD, which this path needs
            continue
        v_k = check[t][:, None]

        def solve(r, factor=factor):  # J^-1 r in the original order, through the permuted factor
            return factor(r[perm])[inverse]

        x = solve(-(C @ v_k))
        scale = np.abs(v_k).max(axis=0, keepdims=True)
        err, _ = forward_error(
            solve, lambda xs, cols, p=p, v_k=v_k: branch_residual(plan, p, xs, v_k[:, cols]),
            x, 1, nf, scale, reltol, rng, refine=True,
        )
        reference_error[t] = err[0, 0]
        v_red = np.concatenate([x[:, 0], check[t]])
        ref = plan.fixed_operator(p) @ v_red  # KCL sums of the refined solve
        # the size of the terms summed in F v, as in the KCL audit of a solve
        terms = np.abs(C_b).T @ np.abs(v_b @ check[t]) + np.abs(J_kk) @ np.abs(check[t])
        bound = reltol * terms + abstol
        check_error[t] = np.max(np.abs(F[t] @ check[t] - ref) / bound)
        ok[t] = check_error[t] <= 1.0 and err[0, 0] <= reltol
    return SchurResult(F, ok, check_error, reference_error)


#: Input vectors per tile from which ``solve(..., voltages=False)`` on a linear tile takes the
#: currents from the fixed-node map ``F`` (one boundary-last factorisation and products) instead
#: of one pair of triangular solves per input vector.
OUTPUTS_BY_TRANSFER_FROM = 16


def transfer_outputs(plan: Plan, vk: np.ndarray, *, reltol: float, abstol: float):
    """Fixed-node currents ``(Bp, K, n_fixed)`` of the plan's linear tiles for fixed voltages
    ``vk`` ``(Bp, K, n_fixed)`` through their checked maps ``F``, and each tile's error on its
    check vector relative to the terms summed ``(Bp,)``; None when a tile fails its check (the
    caller then solves every input)."""
    Bp = vk.shape[0]
    check = np.random.default_rng(0).uniform(-1.0, 1.0, (Bp, plan.n_fixed))
    try:
        sr = schur_transfer(plan, check, reltol=reltol, abstol=abstol)
    except np.linalg.LinAlgError:
        return None
    if not sr.ok.all():
        return None
    fixed = np.matmul(vk, sr.F.transpose(0, 2, 1))
    return fixed, sr.check_error * reltol
