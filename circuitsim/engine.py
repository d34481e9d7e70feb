"""``solve`` and ``transfer_matrix``: the public entry points of the engine."""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import scipy.sparse as sp

from circuitsim import solvers
from circuitsim.netlist import FloatingNodeError, Tile, find_floating

from .branches import branch_values
from .mna import Plan, plans
from .power import Power, read_power
from .result import ConvergenceError, Solution

__all__ = ["solve", "transfer_matrix"]

#: Unknowns per block-diagonal factorisation: tiles are solved in chunks of about this size.
CHUNK_UNKNOWNS = 1 << 20

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


#: Unknowns per tile from which CHOLMOD's supernodal factorisation is used (see cholmod_mode).
SUPERNODAL_FROM = 400_000


def cholmod_mode(plan: Plan) -> str:
    """CHOLMOD mode for this plan's matrices.

    With the unknowns in nested-dissection order, the simplicial factorisation beat the
    supernodal one on small and mid-sized tiles (256 x 256, 64 inputs: 0.24 s + 0.40 s against
    0.42 s + 0.57 s for factor + solve; equal at 512 x 512), the separators being small; the
    supernodal one, with dense BLAS on the large separators, won on 1024 x 1024 (factor 8.8 s
    against 21 s).
    """
    if not plan.ordered:
        return "auto"
    return "supernodal" if plan.n_free >= SUPERNODAL_FROM else "simplicial"


def _linear_solve(plan: Plan, J, rhs, solver: str, options: dict):
    if solver in ("direct", "superlu", "cholmod"):
        analyses = plan.analyses
        key = (solver, J.shape)
        if key not in analyses:
            method = "auto" if solver == "direct" else solver
            analyses[key] = solvers.analyze(
                J, method, symmetric=plan.symmetric, natural=plan.ordered, mode=cholmod_mode(plan)
            )
        factor = analyses[key].factorize(J)
        return factor.solve(rhs), factor.method
    result = solvers.get_solver(solver)(J, rhs, **options)
    return result.x, result.method


def audit(plan: Plan, v_red: np.ndarray, tile_idx: np.ndarray, reltol: float, abstol: float,
          models=None):
    """KCL audit at the solution of ``S`` systems.

    At every unknown node the net current ``f`` must satisfy ``|f| <= reltol * s + abstol``, where
    ``s`` sums, over the branches meeting there, ``|i| + |di/dv_a| |v_a| + |di/dv_b| |v_b|``: the
    size of the terms whose rounding ``f`` inherits (a 1e-8 ohm wire turns one rounding of its node
    voltages into nanoamperes; this is the componentwise backward error of the linear case).
    Returns the largest ``|f|`` per system ``(S,)``, whether the system passes, the reduced index
    of its worst node, and the currents leaving the fixed nodes ``(S, n_fixed)``.
    """
    bv = branch_values(plan, v_red, tile_idx, models=models)
    nf = plan.n_free
    i_t = np.ascontiguousarray(bv.i.T)  # (E, S): sparse products want the systems last
    f = plan.incidence[:nf] @ i_t
    excess = np.abs(f)
    residual = excess.max(axis=0) if nf else np.zeros(len(v_red))
    terms = np.abs(bv.i) + np.abs(bv.p * v_red[:, plan.a]) + np.abs(bv.q * v_red[:, plan.b])
    excess -= reltol * (abs(plan.incidence[:nf]) @ terms.T)
    excess -= abstol
    ok = excess.max(axis=0) <= 0 if nf else np.ones(len(v_red), dtype=bool)
    worst = np.zeros(len(v_red), dtype=np.int64)
    if not ok.all():
        worst[~ok] = np.argmax(excess[:, ~ok], axis=0)
    return residual, ok, worst, plan.fixed_currents(bv.i)


def node_name(plan: Plan, reduced: int) -> str:
    """Name of a node of the circuit in the reduced class ``reduced``."""
    return plan.circuit.node_name(int(np.flatnonzero(plan.node_map == reduced)[0]))


def _solve_linear_plan(plan: Plan, vk: np.ndarray, solver: str, options: dict, reltol: float,
                       abstol: float, voltages: bool = True):
    """Solve the linear tiles of ``plan`` for fixed voltages ``vk`` ``(Bp, K, n_fixed)``.

    Each chunk of tiles is one block-diagonal matrix, factored once for all ``K`` right-hand sides.
    The KCL audit uses the matrix itself: the residual ``r = J x - b`` is the current left over at
    each unknown node, and it must satisfy ``|r_u| <= 2 reltol sum_v |J_uv| max|v| + abstol``
    (``max|v|`` over the system's node and fixed voltages), a row-wise backward error: the terms
    ``J_uv x_v`` and ``b_u`` summed at node ``u`` are each at most ``sum_v |J_uv| max|v|``, so a
    correct solve leaves only their rounding. The currents at the
    fixed nodes come from :meth:`Plan.fixed_operator`, one sparse product.

    Returns node voltages ``(Bp, K, n_nodes)`` (None unless ``voltages``), fixed-node currents
    ``(Bp, K, n_fixed)``, residual, pass flags and worst nodes ``(Bp * K,)``, and the solver.
    """
    tiles = plan.tiles
    Bp, K, nk = vk.shape
    nf = plan.n_free
    bv = branch_values(plan, np.zeros((Bp, nf + nk)), tiles)  # partials do not depend on v
    v_nodes = np.empty((Bp, K, len(plan.node_map))) if voltages else None
    fixed = np.empty((Bp, K, nk))
    residual = np.zeros((Bp, K))
    ok = np.ones((Bp, K), dtype=bool)
    worst = np.zeros((Bp, K), dtype=np.int64)
    chunk = max(1, CHUNK_UNKNOWNS // max(nf, 1))
    method = "none (every node is fixed)" if not nf else ""
    for c0 in range(0, Bp, chunk):
        sel = slice(c0, min(c0 + chunk, Bp))
        c = sel.stop - sel.start
        vk_stack = vk[sel].transpose(0, 2, 1).reshape(c * nk, K)  # tile-major, systems last
        Q = plan.fixed_operator(bv.p[sel])  # (c nk, c n_red), columns per tile: free, fixed
        cols = np.arange(c * (nf + nk)).reshape(c, nf + nk)
        Q_f, Q_k = Q[:, cols[:, :nf].ravel()], Q[:, cols[:, nf:].ravel()]
        f_k = Q_k @ vk_stack
        x = np.zeros((c * nf, K))
        if nf:
            J = plan.jacobian(bv.p[sel], bv.q[sel])
            rhs = -(plan.coupling(bv.p[sel], bv.q[sel]) @ vk_stack)
            x, method = _linear_solve(plan, J, rhs, solver, options)
            # J is symmetric: its CSC arrays read as CSR are J itself; CSR products are faster.
            Jr = sp.csr_matrix((J.data, J.indices, J.indptr), shape=J.shape)
            r = Jr @ x
            r -= rhs
            np.abs(r, out=r)
            r3 = r.reshape(c, nf, K)
            residual[sel] = r3.max(axis=1)
            # |b_u| <= sum_v |J_uv| max|v_k| too, so both terms fit under 2 rowsum_u max|v|
            v_max = np.maximum(np.abs(x).reshape(c, nf, K).max(axis=1),
                               np.abs(vk[sel]).max(axis=2))  # (c, K)
            r3 -= abstol
            r3 /= np.asarray(abs(Jr).sum(axis=1)).reshape(c, nf, 1)
            ratio = r3.max(axis=1) / (2 * reltol * np.where(v_max > 0, v_max, 1.0))
            ok[sel] = ratio <= 1.0
            if not ok[sel].all():
                worst[sel] = r3.argmax(axis=1)
            f_k += Q_f @ x
        fixed[sel] = f_k.reshape(c, nk, K).transpose(0, 2, 1)
        if voltages:
            V = np.empty((c, K, nf + nk))
            V[..., :nf] = x.T.reshape(K, c, nf).transpose(1, 0, 2)
            V[..., nf:] = vk[sel]
            v_nodes[sel] = V[..., plan.node_map]
    return v_nodes, fixed, residual.ravel(), ok.ravel(), worst.ravel(), method


def _solve_all(tile: Tile, vk: np.ndarray, *, solver: str, reltol: float, abstol: float,
               on_fail: str, options: dict, newton_options: dict, voltages: bool = True):
    """Solve every tile and input; returns node voltages (None unless ``voltages``), fixed-node
    currents and diagnostics."""
    B, K, nk = vk.shape
    circuit = tile.circuit
    v_nodes = np.empty((B, K, circuit.n_nodes)) if voltages else None
    i_fixed = np.empty((B, K, nk))
    residual = np.empty((B, K))
    converged = np.empty((B, K), dtype=bool)
    iterations = np.ones((B, K), dtype=np.int64)
    methods = set()
    for plan in tile_plans(tile):
        tiles = plan.tiles
        tile_idx = np.repeat(tiles, K)
        v_red = None
        if tile.is_linear:
            v_plan, fixed, res, ok, worst, method = _solve_linear_plan(
                plan, vk[tiles], solver, options, reltol, abstol, voltages
            )
            its = np.ones(len(tile_idx), dtype=np.int64)
        else:
            from .newton import solve_newton

            v_red, its, method, models = solve_newton(
                plan, vk[tiles].reshape(len(tiles) * K, nk), tile_idx, solver=solver,
                reltol=reltol, abstol=abstol, options=options, **newton_options,
            )
            res, ok, worst, fixed = audit(plan, v_red, tile_idx, reltol, abstol, models=models)
            ok &= its >= 0  # Newton marks systems it gave up on with -1 iterations
        methods.add(method)
        if not ok.all() and on_fail == "raise":
            s = int(np.flatnonzero(~ok)[np.argmax(res[~ok])])
            node = node_name(plan, int(worst[s]))
            raise ConvergenceError(
                f"tile {tile_idx[s]}, input {s % K}: KCL residual {res[s]:.3e} A at node {node} "
                f"exceeds reltol={reltol:g} x (node current) + abstol={abstol:g} A"
                + (" (Newton did not converge)" if its[s] < 0 else ""),
                tile=int(tile_idx[s]), input=int(s % K), node=node, residual=float(res[s]),
            )
        if voltages:
            v_nodes[tiles] = (v_plan if v_red is None
                              else plan.expand_voltages(v_red).reshape(len(tiles), K, -1))
        i_fixed[tiles] = fixed.reshape(len(tiles), K, nk)
        residual[tiles] = res.reshape(len(tiles), K)
        converged[tiles] = ok.reshape(len(tiles), K)
        iterations[tiles] = np.abs(its).reshape(len(tiles), K)
    return v_nodes, i_fixed, residual, converged, iterations, ", ".join(sorted(methods))


def solve(tile: Tile, v_in, *, solver: str = "direct", reltol: float = 1e-9,
          abstol: float = 1e-15, on_fail: str = "raise", solver_options: dict | None = None,
          **newton_options) -> Solution:
    """Solve a tile (or batch of tiles) for input voltages ``v_in``.

    Parameters
    ----------
    tile : Tile
        From :func:`circuitsim.crossbar`.
    v_in : array_like, (m,), (K, m) or, for a batched tile, (B, K, m)
        Word-line driver voltages (V).
    solver : str
        Linear solver (see :mod:`circuitsim.solvers`): ``"direct"`` (CHOLMOD where installed for
        symmetric systems, else SuperLU), ``"superlu"``, ``"cholmod"``, ``"cg"`` or ``"dense"``.
    reltol, abstol : float
        KCL audit at the returned solution: at every unknown node the net current must be below
        ``reltol`` times the sum of the magnitudes of the currents meeting there, plus ``abstol``
        (A). Newton uses them for its convergence test too.
    on_fail : {"raise", "mask"}
        ``"raise"``: any failing system raises :class:`ConvergenceError` naming tile, input and
        node. ``"mask"``: return everything, with ``converged`` False for the failing systems.
    solver_options : dict, optional
        Passed to an iterative linear solver (``rtol``, ``maxiter``, ``M``).
    **newton_options
        For nonlinear tiles, see :func:`circuitsim.newton.solve_newton`.

    Returns
    -------
    Solution
    """
    if on_fail not in ("raise", "mask"):
        raise ValueError(f"on_fail must be 'raise' or 'mask', got {on_fail!r}")
    solvers.get_solver(solver)
    options = {"rtol": 1e-13} if solver == "cg" else {}
    options.update(solver_options or {})
    v = tile.check_inputs(v_in)
    vk = tile.fixed_voltages(v)
    v_nodes, i_fixed, residual, converged, iterations, method = _solve_all(
        tile, vk, solver=solver, reltol=reltol, abstol=abstol, on_fail=on_fail, options=options,
        newton_options=newton_options,
    )
    return _package(tile, np.asarray(v_in), v, v_nodes, i_fixed, residual, converged, iterations,
                    method)


def _package(tile, v_in, v_full, v_nodes, i_fixed, residual, converged, iterations,
             method) -> Solution:
    m, n = tile.m, tile.n
    B, K = v_nodes.shape[:2]
    mn = m * n

    def shape(x):
        if not tile.batched:
            x = x[0]
            if v_in.ndim == 1:
                x = x[0]
        elif v_in.ndim == 1:
            x = x[:, 0]
        return x

    grid = (B, K, m, n)
    v_wl, v_bl = v_nodes[..., :mn].reshape(grid), v_nodes[..., mn : 2 * mn].reshape(grid)
    v_int = v_nodes[..., 2 * mn : 3 * mn].reshape(grid) if tile.access is not None else None
    i_out, i_source = -i_fixed[..., m:], i_fixed[..., :m]

    def power():
        p = read_power(tile, v_full, v_wl, v_bl, v_int, i_source, i_out)
        return Power(*(shape(getattr(p, f.name)) for f in dataclasses.fields(p)))

    return Solution(
        i_out=shape(i_out),
        v_wl=shape(v_wl),
        v_bl=shape(v_bl),
        v_int=None if v_int is None else shape(v_int),
        i_source=shape(i_source),
        residual=shape(residual),
        converged=shape(converged),
        iterations=shape(iterations),
        method=method,
        _power=power,
    )


def transfer_matrix(tile: Tile, *, solver: str = "direct", reltol: float = 1e-9,
                    abstol: float = 1e-15) -> np.ndarray:
    """The exact linear map from inputs to outputs of a linear tile: ``i_out = T @ v_in``.

    Obtained from ``m`` solves per tile (one factorisation, ``m`` unit right-hand sides), so
    exact IR-drop-aware inference of any number of input vectors afterwards costs one matrix
    product, as an ideal crossbar does: ``i_out = v_in @ T.T`` for ``v_in`` of shape ``(K, m)``.

    With a sense voltage ``v_sense`` equal on all bit lines, ``i_out = T @ (v_in - v_sense)``.

    Returns
    -------
    ndarray, (n, m) or (B, n, m)

    Examples
    --------
    >>> import circuitsim as cs
    >>> T = cs.transfer_matrix(cs.crossbar([[1e-3]], r_source=1000.0))
    >>> float(T[0, 0])  # one cell: 1 / (1 kohm + 1 kohm)
    0.0005
    """
    if not tile.is_linear:
        raise ValueError("transfer_matrix needs a linear tile (no access transistor, linear device)")
    v_sense = tile.v_sense
    if not np.all(v_sense == v_sense[:, :1]):
        raise ValueError(
            "transfer_matrix: v_sense differs between bit lines, so i_out is affine, not linear, "
            "in v_in; use solve() instead"
        )
    T = None
    if solver == "direct" and solvers.cholmod_available():
        T = _schur_transfer_checked(tile)
    if T is None:  # m unit right-hand sides through the ordinary solve
        eye = np.broadcast_to(np.eye(tile.m), (tile.batch, tile.m, tile.m))
        vk = np.concatenate([eye, np.zeros((tile.batch, tile.m, tile.n))], axis=2)
        options = {"rtol": 1e-13} if solver == "cg" else {}
        _, i_fixed, *_ = _solve_all(
            tile, vk, solver=solver, reltol=reltol, abstol=abstol, on_fail="raise",
            options=options, newton_options={}, voltages=False,
        )
        T = np.ascontiguousarray(-i_fixed[..., tile.m:].transpose(0, 2, 1))
    return T if tile.batched else T[0]


def _schur_transfer_checked(tile: Tile) -> np.ndarray | None:
    """``T`` by :func:`circuitsim.transfer.schur_transfer`, each tile checked on a random input
    against the bit-line KCL currents of a full solve; None when any check fails."""
    from .transfer import schur_transfer

    m, n = tile.m, tile.n
    T = np.empty((tile.batch, n, m))
    check = np.random.default_rng(0).uniform(-1.0, 1.0, (tile.batch, m))
    for plan in tile_plans(tile):
        if plan.n_free == 0:
            return None
        try:
            T[plan.tiles], ok = schur_transfer(plan, m, n, check[plan.tiles])
        except np.linalg.LinAlgError:
            return None
        if not ok.all():
            return None
    return T
