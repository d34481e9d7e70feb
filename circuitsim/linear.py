"""The linear path: tiles whose branches are all linear (wires, linear memristors), ``J x = b``.

Each chunk of tiles is one block-diagonal matrix, factored once for all its input vectors; the
input vectors are taken in blocks so that memory stays bounded whatever their number. Every
solution is then checked twice:

- **Backward error (KCL audit).** The residual ``r = J x - b`` is the current left over at each
  unknown node; it must satisfy ``|r_u| <= 2 reltol sum_v |J_uv| max|v| + abstol`` (``max|v|``
  over the system's node and fixed voltages): the terms ``J_uv x_v`` and ``b_u`` summed at node
  ``u`` are each at most ``sum_v |J_uv| max|v|``, so a correct solve leaves only their rounding.
- **Forward error.** A small backward error allows a large forward error when the matrix is
  ill-conditioned (wire conductances many decades above the devices'). The forward error of
  ``x`` is estimated by one step of iterative refinement, ``dx = J^-1 r``, with ``r`` evaluated
  in *branch form*, ``sum_e G_e (v_a - v_b)``: the differences of nearby node voltages are exact
  in floating point, so this residual keeps the digits that the assembled matrix ``J`` (whose
  diagonal adds 1e12 S wires to 1e-3 S devices) loses. For many input vectors the step is
  sketched: the residuals of a block, each scaled by its system's largest fixed voltage, are
  combined with random Gaussian weights into a few right-hand sides, whose corrections estimate
  the largest relative correction of the block (the sketch takes the audit's residual
  ``J x - b``, which costs no extra pass and errs on the safe side). Where the estimate exceeds ``reltol / 10``, the
  block is refined (``x -= J^-1 r``, repeated while the corrections shrink) until every system's
  last correction is below ``reltol / 10`` of its largest fixed voltage; a system that does not
  get there fails with its estimate.

The currents at the fixed nodes come from :meth:`Plan.fixed_operators`, one sparse product.

Everything here runs on the plan's backend (numpy, or cupy for a GPU plan): the arrays are made
with the plan's array module and the random sketch weights are drawn on the host (the same numbers
on either backend).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import factor
from .backend import array_module
from .branches import branch_values
from .factor import linear_solver
from .mna import Plan

__all__ = ["LinearResult", "branch_residual", "forward_error", "solve_linear_plan"]

#: Gaussian sketch vectors per block of right-hand sides for the forward-error estimate.
PROBES = 2
#: Refinement steps at most.
MAX_REFINE = 12
#: A block is refined until every relative correction is below this fraction of ``reltol``.
REFINE_TARGET = 0.1


@dataclass
class LinearResult:
    """Per-system results of :func:`solve_linear_plan`, systems ordered ``(Bp, K)``.

    ``v_nodes`` ``(Bp, K, n_nodes)`` (None unless asked for), ``fixed`` ``(Bp, K, n_fixed)``
    currents leaving the fixed nodes, ``residual`` (A), ``ok``, ``worst`` (reduced index of the
    worst node), ``error`` (forward error estimate, relative to the largest fixed voltage),
    ``refined`` (refinement steps taken), all ``(Bp, K)``, and the linear ``method``.
    """

    v_nodes: np.ndarray | None
    fixed: np.ndarray
    residual: np.ndarray
    ok: np.ndarray
    worst: np.ndarray
    error: np.ndarray
    refined: np.ndarray
    method: str


class _Chunk:
    """The matrices of one chunk of ``c`` tiles, with branch conductances ``p`` ``(c, E)``."""

    def __init__(self, plan: Plan, p, q, solver: str, options: dict):
        self.plan, self.p, self.c = plan, p, len(p)
        xp, _ = plan.modules()
        nf = plan.n_free
        # (c nk, c nf) and (c nk, c nk): the currents at the fixed nodes from the unknowns and
        # from the fixed voltages, block-diagonal over the chunk's tiles
        self.Q_f, self.Q_k = plan.fixed_operators(p)
        if nf:
            J = factor.block_matrix(plan, plan.data(p, q))
            self.C = plan.coupling(p, q)
            self.lin = linear_solver(plan, J, solver, options)
            self.direct = solver in ("direct", "superlu", "cholmod", "dense")
            # J is symmetric: its CSC arrays read as CSR are J itself; CSR products are faster.
            self.Jr = (J if J.format == "csr"
                       else sp.csr_matrix((J.data, J.indices, J.indptr), shape=J.shape))
            Jr = self.Jr
            rowsum = type(Jr)((xp.abs(Jr.data), Jr.indices, Jr.indptr), shape=Jr.shape).sum(axis=1)
            self.inv_rowsum = 1.0 / xp.asarray(rowsum).reshape(self.c, nf, 1)
        # where each circuit node's voltage comes from: an unknown, or a fixed voltage
        node_map = plan.node_map if plan.host is None else plan.host.node_map
        free = node_map < nf
        to = plan.backend.to_device if plan.backend is not None else np.asarray
        self.free_nodes, self.fixed_nodes = to(np.flatnonzero(free)), to(np.flatnonzero(~free))
        self.free_from = to(node_map[free])
        self.fixed_from = to(node_map[~free] - nf)



def put_free(out, xv, nodes, rows) -> None:
    """``out[..., nodes] = xv[:, rows].transpose(0, 2, 1)``: the unknowns ``xv`` ``(c, nf, kk)``
    (systems last) into the node voltages ``out`` ``(c, kk, n_nodes)`` (systems first).

    On the CPU the copy goes in blocks of about 32 KiB of ``xv``: gathering whole rows of
    ``xv`` and writing them transposed, block by block, stays in cache, where one gather of
    every row followed by one transposed write walks ``out`` with a stride (256 x 256 tile,
    64 inputs: 35 against 53 ms). Elsewhere (a GPU) the one-pass form.
    """
    xp = array_module(xv)
    if xp is not np:
        out[..., nodes] = xp.take(xv, rows, axis=1).transpose(0, 2, 1)
        return
    c, _, kk = xv.shape
    n = len(nodes)
    if n and nodes[-1] - nodes[0] == n - 1 and np.all(np.diff(nodes) == 1):
        nodes = slice(int(nodes[0]), int(nodes[0]) + n)  # a contiguous run: slices, no index
    step = max(8, 4096 // max(c * kk, 1))  # nodes per block
    for r0 in range(0, n, step):  # blocks of nodes, not single nodes
        dst = slice(nodes.start + r0, nodes.start + min(r0 + step, n)) if isinstance(
            nodes, slice) else nodes[r0 : r0 + step]
        out[..., dst] = xv[:, rows[r0 : r0 + step]].transpose(0, 2, 1)


def branch_residual(plan: Plan, p: np.ndarray, x: np.ndarray, vk_stack: np.ndarray):
    """Net current leaving each unknown node, ``sum_e G_e (v_a - v_b)``, ``(c nf, kk)``.

    ``p`` ``(c, E)`` branch conductances of ``c`` tiles, ``x`` ``(c nf, kk)`` their unknown and
    ``vk_stack`` ``(c nk, kk)`` their fixed voltages (tile-major, systems last).
    """
    xp, _ = plan.modules()
    c = len(p)
    nf, nk = plan.n_free, plan.n_fixed
    kk = x.shape[1]
    full = xp.empty((c, nf + nk, kk))
    full[:, :nf] = x.reshape(c, nf, kk)
    full[:, nf:] = vk_stack.reshape(c, nk, kk)
    i = full[:, plan.a]
    i -= full[:, plan.b]
    i *= p[:, :, None]
    inc = plan.maps("incidence")[0]
    r = inc @ xp.ascontiguousarray(i.transpose(1, 0, 2)).reshape(len(plan.a), c * kk)
    return xp.ascontiguousarray(r.reshape(nf, c, kk).transpose(1, 0, 2)).reshape(c * nf, kk)


def _audit(ch: _Chunk, x, rhs, v_max, reltol, abstol, weights=None):
    """Backward-error audit of the block; returns residual, pass flags, worst node ``(c, kk)``
    and, given the forward-error sketch's ``weights`` ``(c, kk, P)`` (:func:`sketch_weights`),
    the sketch of the signed residual ``J x - b``: ``(c, nf, P)``, else None. (The signed
    residual itself is not kept: its array becomes ``|J x - b|``, one array of the block's size
    fewer.)

    ``v_max`` ``(c, kk)``: the largest fixed voltage of each system, which bounds every node
    voltage of a passive linear network (no node lies outside the range of the sources).
    """
    xp = array_module(x)
    c, nf, kk = ch.c, ch.plan.n_free, x.shape[1]
    signed = xp.asarray(ch.Jr @ x)
    signed -= rhs
    r3 = signed.reshape(c, nf, kk)
    sketch = None if weights is None else xp.matmul(r3, weights)
    xp.abs(r3, out=r3)
    residual = r3.max(axis=1)
    # |J_uv x_v| and |b_u| are at most sum_v |J_uv| max|v|: both fit under 2 rowsum_u max|v|
    allowed = 2 * reltol * xp.where(v_max > 0, v_max, 1.0)
    r3 *= ch.inv_rowsum
    ok = r3.max(axis=1) <= allowed  # without abstol first: one pass less when all pass
    worst = xp.zeros((c, kk), dtype=np.int64)
    if not bool(ok.all()):
        r3 -= abstol * ch.inv_rowsum
        ok = r3.max(axis=1) <= allowed
        worst = r3.argmax(axis=1)
    return residual, ok, worst, sketch


def sketch_weights(scale, rng):
    """Random weights ``(c, kk, PROBES)`` of :func:`forward_error`'s sketch for systems whose
    largest fixed voltages are ``scale`` ``(c, kk)``; None when ``kk <= PROBES`` (every column
    is then solved instead)."""
    xp = array_module(scale)
    kk = scale.shape[1]
    if kk <= PROBES:
        return None
    inv = 1.0 / xp.where(scale > 0, scale, 1.0)
    return inv[:, :, None] * xp.asarray(rng.standard_normal((kk, PROBES)))


def forward_error(solve, residual, x, c: int, nf: int, scale, reltol: float, rng, *,
                  refine: bool, sketch=None):
    """Forward-error estimate of a block of ``c`` tiles' solutions ``x`` ``(c nf, kk)`` and, with
    ``refine``, iterative refinement of ``x`` in place.

    ``solve(r)`` applies ``J^-1`` (block-diagonal); ``residual(x_cols, cols)`` gives the
    branch-form residual of the columns ``cols``; ``scale`` ``(c, kk)`` is each system's largest
    fixed voltage. Returns the estimate ``(c, kk)``, relative to ``scale``, and the refinement
    steps taken ``(c, kk)`` (see the module docstring). ``sketch``, if given, is the weighted
    residual ``(c, nf, PROBES)`` the audit made with :func:`sketch_weights` (drawn from ``rng``)
    from its ``J x - b``, whose rounding (about ``eps |J| |x|``) is at most that of the branch
    form, so the sketch errs on the safe side and costs no extra pass over the block; otherwise
    the sketch is made here from the branch-form residual.
    """
    xp = array_module(x)
    kk = x.shape[1]
    target = REFINE_TARGET * reltol
    inv = 1.0 / xp.where(scale > 0, scale, 1.0)  # (c, kk)
    steps = xp.zeros((c, kk), dtype=np.int64)
    if kk > PROBES:
        # sketch: per tile, random combinations of its scaled residuals
        if sketch is None:
            r = residual(x, slice(None))
            sketch = xp.matmul(r.reshape(c, nf, kk), sketch_weights(scale, rng))
        z = solve(sketch.reshape(c * nf, PROBES))
        est = xp.abs(z).reshape(c, nf, PROBES).max(axis=(1, 2))  # (c,)
        if bool(xp.all(est <= target)) or not refine:
            return xp.repeat(est[:, None], kk, axis=1), steps
    error = xp.zeros((c, kk))
    active = xp.ones((c, kk), dtype=bool)
    previous = xp.full((c, kk), np.inf)
    while True:
        cols = xp.flatnonzero(active.any(axis=0))
        dx = solve(residual(x[:, cols], cols))
        size = xp.abs(dx).reshape(c, nf, -1).max(axis=1) * inv[:, cols]
        act = active[:, cols]
        error[:, cols] = xp.where(act, size, error[:, cols])
        if not refine:
            break
        x[:, cols] -= xp.where(xp.repeat(act, nf, axis=0), dx, 0.0)
        # a first correction within target is the estimate itself, not a needed refinement
        steps[:, cols] += act & ((size > target) | (previous[:, cols] < np.inf))
        # go on with the systems whose corrections are above target and still clearly shrink
        act &= (size > target) & (size <= 0.5 * previous[:, cols])
        previous[:, cols] = size
        active[:, cols] = act
        if not bool(active.any()) or int(steps.max()) >= MAX_REFINE:
            break
    return error, steps


def solve_linear_plan(plan: Plan, vk: np.ndarray, *, solver: str, options: dict, reltol: float,
                      abstol: float, voltages: bool = True, seed: int = 0) -> LinearResult:
    """Solve the linear tiles of ``plan`` for fixed voltages ``vk`` ``(Bp, K, n_fixed)``."""
    xp, _ = plan.modules()
    tiles = plan.tiles
    Bp, K, nk = vk.shape
    nf = plan.n_free
    bv = branch_values(plan, xp.zeros((Bp, nf + nk)), tiles)  # partials do not depend on v
    res = LinearResult(
        v_nodes=xp.empty((Bp, K, len(plan.node_map))) if voltages else None,
        fixed=xp.empty((Bp, K, nk)), residual=xp.zeros((Bp, K)), ok=xp.ones((Bp, K), dtype=bool),
        worst=xp.zeros((Bp, K), dtype=np.int64), error=xp.zeros((Bp, K)),
        refined=xp.zeros((Bp, K), dtype=np.int64),
        method="none (every node is fixed)" if not nf else "",
    )
    rng = np.random.default_rng(seed)
    per_tile = max(1, factor.chunk_unknowns(plan) // max(nf, 1))
    for c0 in range(0, Bp, per_tile):
        sel = slice(c0, min(c0 + per_tile, Bp))
        ch = _Chunk(plan, bv.p[sel], bv.q[sel], solver, options)
        c = ch.c
        per_block = max(1, factor.chunk_entries(plan) // (c * max(nf + nk, 1)))
        for k0 in range(0, K, per_block):
            ks = slice(k0, min(k0 + per_block, K))
            vk_blk = vk[sel, ks]
            kk = vk_blk.shape[1]
            # tile-major, systems last
            vk_stack = xp.ascontiguousarray(vk_blk.transpose(0, 2, 1)).reshape(c * nk, kk)
            f_k = xp.asarray(ch.Q_k @ vk_stack)
            x = xp.zeros((c * nf, kk))
            if nf:
                rhs = xp.asarray(ch.C @ vk_stack)
                xp.negative(rhs, out=rhs)
                x = xp.ascontiguousarray(ch.lin.solve(rhs))  # sparse products want C order
                res.method = ch.lin.method
                scale = xp.abs(vk_blk).max(axis=2)
                residual, ok, worst, sketch = _audit(ch, x, rhs, scale, reltol, abstol,
                                                     weights=sketch_weights(scale, rng))
                error, steps = forward_error(
                    ch.lin.solve,
                    lambda xs, cols, vs=vk_stack, p=ch.p: branch_residual(plan, p, xs, vs[:, cols]),
                    x, c, nf, scale, reltol, rng, refine=ch.direct, sketch=sketch,
                )
                del sketch
                if bool(steps.any()):  # the audit judges the refined solution
                    residual, ok, worst, _ = _audit(ch, x, rhs, scale, reltol, abstol)
                res.residual[sel, ks], res.worst[sel, ks] = residual, worst
                res.ok[sel, ks] = ok & (error <= reltol)
                res.error[sel, ks], res.refined[sel, ks] = error, steps
                f_k += ch.Q_f @ x
            res.fixed[sel, ks] = f_k.reshape(c, nk, kk).transpose(0, 2, 1)
            if voltages:
                out = res.v_nodes[sel, ks]  # a view: (c, kk, n_nodes)
                if nf:
                    put_free(out, x.reshape(c, nf, kk), ch.free_nodes, ch.free_from)
                out[..., ch.fixed_nodes] = vk_blk[..., ch.fixed_from]
    return res
