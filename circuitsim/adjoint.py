"""Exact gradients through the circuit: vector-Jacobian and Jacobian-vector products.

A solved tile satisfies KCL at its unknown nodes, ``F_f(v, theta) = 0``, and its outputs are the
currents the sense nodes draw, ``i_out = -F_s(v, theta)`` (``F`` is the current leaving each node
into the circuit, ``theta`` the conductances, resistances and gate voltages, ``v`` the node
voltages with the drivers and sense nodes fixed). For a read-out ``L = sum(d_i_out * i_out)``
the adjoint method gives every derivative from one more linear solve per input vector:

- the adjoint potentials ``mu`` are fixed at the drivers (0) and at the sense nodes
  (``-d_i_out``), and at the unknown nodes satisfy ``(J^T mu)_f = 0``, ``J = dF/dv`` at the
  solution: the transposed Jacobian, equal to ``J`` for passive tiles. For a linear tile this is
  the tile itself driven by ``-d_i_out`` at its sense nodes with the drivers grounded
  (reciprocity), so the adjoint and the forward solve share one factorisation;
- a branch ``e`` from ``a`` to ``b`` with current ``i_e`` contributes
  ``dL/dtheta_e = (mu_a - mu_b) di_e/dtheta_e``: ``dL/dg = (mu_a - mu_b) dI/dg`` for a cell,
  ``dL/dR = -i_e j_e`` for a resistor (``j_e = (mu_a - mu_b) / R`` is its adjoint current), and
  ``dL/dv_gate = (mu_a - mu_b) g_m`` for an access transistor;
- a fixed node ``k`` gets ``dL/dv_k = (J^T mu)_k``, the current the adjoint circuit draws
  from it (``dL/dv_in``, ``dL/dv_sense``).

Zero resistances merge their nodes; ``dL/dR = -i_e j_e`` stays finite there and is the exact
partial derivative at ``R = 0``: the currents of merged branches come from KCL at the original
nodes (:mod:`circuitsim.merged`). A zero branch on a loop of zero branches (only a
``drive="both"`` row whose driver and wire resistances are all 0 has one) is shorted by the rest of
the loop, so its derivative is 0. A driver resistance is in series with the first word-line
segment (one branch of resistance ``r_source + r_wl[:, 0]``, and likewise ``r_bl[-1] + r_sense``):
the gradients with respect to both are that branch's.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from circuitsim.netlist import Tile, as_float_array, check_finite

from . import heap
from ._internals import solve_fixed, tile_plans
from .linearised import Linearisation
from .merged import zero_forest
from .mna import Plan
from .newton import solve_newton
from .result import ConvergenceError, Solution, drop_axes
from .sensitivity import ends, evaluate, fixed_sums
from .tangent import Tangent, check_solved, direction, tangent_plan

__all__ = ["Gradients", "Tangent", "jvp", "transfer_matrix_vjp", "vjp"]


@dataclass(frozen=True)
class Gradients:
    """Gradients of a scalar read-out ``L`` of a tile's output currents.

    Per-cell and per-line fields have the shapes of the tile's parameters: a leading ``B`` only
    when the tile is batched. A parameter given to :func:`circuitsim.crossbar` as a scalar is
    stored per segment, so its gradient is per segment too: sum it for the scalar's.

    Attributes
    ----------
    g : ndarray, (B, m, n)
        ``dL/dg`` for the cell conductances (for a nonlinear device, its state ``g``).
    v_in : ndarray or None
        ``dL/dv_in``, in the shape of the ``v_in`` given (summed over the tiles where one input
        fed a batch of tiles). None from :func:`transfer_matrix_vjp`.
    r_wl, r_bl : ndarray, (B, m, n)
        ``dL/dr_wl`` and ``dL/dr_bl`` per segment (ohm^-1 times the units of ``L / A``).
    r_source : ndarray, (B, m)
    r_sense : ndarray, (B, n)
    v_sense : ndarray, (B, n), or None
        ``dL/dv_sense``. None from :func:`transfer_matrix_vjp`.
    v_gate : ndarray, (B, m, n), or None
        ``dL/dv_gate`` of 1T1R tiles (None for passive ones).
    solution : Solution or None
        The forward solve the gradients were taken at (None from :func:`transfer_matrix_vjp`).
    """

    g: np.ndarray
    v_in: np.ndarray | None
    r_wl: np.ndarray
    r_bl: np.ndarray
    r_source: np.ndarray
    r_sense: np.ndarray
    v_sense: np.ndarray | None
    v_gate: np.ndarray | None
    solution: Solution | None


def _gradient_terms(plan: Plan, V: np.ndarray, Mu: np.ndarray, tile_idx: np.ndarray,
                    fixed: tuple | None = None) -> dict:
    """Per-system gradients from forward voltages ``V`` and adjoint potentials ``Mu``, both at
    the original nodes ``(S, n_nodes)``: ``{"device", "resistor", "transistor"}`` ``(S, E)``,
    ``"fixed"`` (the adjoint currents leaving the fixed nodes, ``dL/dv_k``) and
    ``"fixed_forward"`` (the forward ones), ``(S, n_fixed)``.

    ``fixed``, where the solves gave them already (linear tiles), is that pair; the node sums
    are then formed only for zero resistances.
    """
    n = V.shape[1]
    forest = zero_forest(plan)
    sums = fixed is None or len(forest.branches) > 0
    groups = evaluate(plan, V, tile_idx, full=sums)
    if sums:
        h_dev = np.zeros((n, len(V)))  # forward current leaving each node (non-zero branches)
        h_res, y_dev, y_res = (np.zeros_like(h_dev) for _ in range(3))  # and the adjoint's
    out = {}
    for grp in groups:
        delta = Mu[:, grp.a] - Mu[:, grp.b]
        out[grp.kind] = delta * grp.dtheta  # -i j for a resistor: delta * (-i / R)
        if not sums:
            continue
        at_a, at_b = ends(grp.a, grp.b, n)
        h = at_a @ grp.i.T - at_b @ grp.i.T
        y = at_a @ (grp.p * delta).T + at_b @ (grp.q * delta).T
        if grp.kind == "resistor":
            h_res += h
            y_res += y
        else:
            h_dev += h
            y_dev += y
    if len(forest.branches):
        # dL/dR = -i j with both currents from KCL around the merged nodes
        f = forest.flows((h_dev + h_res).T)
        out["resistor"][:, forest.branches] = -(f * forest.flows((y_dev + y_res).T))
    if fixed is None:
        out["fixed"] = fixed_sums(plan, y_dev, y_res)
        out["fixed_forward"] = fixed_sums(plan, h_dev, h_res)
    else:
        out["fixed"], out["fixed_forward"] = fixed
    return out


def _source_loops(tile: Tile, plan: Plan) -> np.ndarray:
    """Rows ``(m,)`` of a ``drive="both"`` tile whose driver and word-line resistances are all 0.

    Both driver branches of such a row lie on a loop of zero resistances, so each branch alone
    has derivative 0, but ``r_source`` raises both at once: the two then share the row's current
    equally, and ``dL/dr_source = -i_source j_source / 2`` (the driver's forward and adjoint
    currents).
    """
    m, n = tile.m, tile.n
    if tile.drive != "both":
        return np.zeros(m, dtype=bool)
    forest = zero_forest(plan)
    loop = np.zeros(len(plan.circuit.groups[0].a), dtype=bool)
    loop[forest.branches[~forest.bridge]] = True
    return loop[np.arange(m) * n] & loop[2 * m * n + np.arange(m)]


# -- argument handling ------------------------------------------------------------------------

_NEWTON = frozenset(inspect.signature(solve_newton).parameters) - {
    "plan", "vk", "tile_idx", "solver", "reltol", "abstol", "options"}


def _check_newton(newton_options: dict) -> None:
    unknown = sorted(set(newton_options) - _NEWTON)
    if unknown:
        raise TypeError(f"unknown keyword argument(s) {', '.join(unknown)}; Newton options are "
                        f"{', '.join(sorted(_NEWTON))}")


def _check_seed(tile: Tile, v_in: np.ndarray, v: np.ndarray, d_i_out) -> np.ndarray:
    """``d_i_out`` as ``(B, K, n)``; its shape must be that of ``i_out``."""
    d = as_float_array(d_i_out, "d_i_out")
    B, K = v.shape[:2]
    want = ((B,) if tile.batched else ()) + ((K,) if v_in.ndim >= 2 else ()) + (tile.n,)
    if d.shape != want:
        raise ValueError(f"d_i_out has shape {d.shape}; expected {want}, the shape of i_out")
    check_finite(d, "d_i_out")
    return np.broadcast_to(d.reshape((B if tile.batched else 1, K, tile.n)), (B, K, tile.n))


def _shape_like_v(x: np.ndarray, tile: Tile, v_in: np.ndarray) -> np.ndarray:
    """Gradient ``(B, K, m)`` with respect to the inputs, in the shape the inputs were given."""
    if v_in.ndim == 3:
        return x
    x = x.sum(axis=0)
    return x[0] if v_in.ndim == 1 else x


def _per_tile(tile: Tile, x: np.ndarray) -> np.ndarray:
    return x if tile.batched else x[0]


def _gradients(tile: Tile, acc: dict, v_in, fixed, solution) -> Gradients:
    """Package per-tile sums ``acc`` (device/resistor/transistor ``(B, E)``) as Gradients."""
    m, n, B = tile.m, tile.n, tile.batch
    mn = m * n
    r = acc["resistor"]
    r_wl = r[:, :mn].reshape(B, m, n)
    r_bl = r[:, mn : 2 * mn].reshape(B, m, n)
    r_source = r_wl[:, :, 0].copy()
    if tile.drive == "both":
        r_source += r[:, 2 * mn : 2 * mn + m]
        loop = acc.get("source_loop")
        if loop is not None:
            rows = acc["source_loop_rows"]
            r_source[rows] = -0.5 * loop[rows]
    r_sense = r_bl[:, m - 1, :].copy()
    v_gate = acc.get("transistor")
    return Gradients(
        g=_per_tile(tile, acc["device"].reshape(B, m, n)),
        v_in=None if fixed is None else _shape_like_v(fixed[..., :m], tile, v_in),
        r_wl=_per_tile(tile, r_wl),
        r_bl=_per_tile(tile, r_bl),
        r_source=_per_tile(tile, r_source),
        r_sense=_per_tile(tile, r_sense),
        v_sense=None if fixed is None else _per_tile(tile, fixed[..., m:].sum(axis=1)),
        v_gate=None if v_gate is None else _per_tile(tile, v_gate.reshape(B, m, n)),
        solution=solution,
    )


def _accumulate(acc: dict, terms: dict, tiles: np.ndarray, K: int, B: int,
                loops: np.ndarray, sums: dict | None = None) -> None:
    """Add the per-system terms of one plan's ``tiles`` (``K`` systems each) to the per-tile
    sums ``acc`` ``(B, E)``; ``loops`` are the plan's rows of :func:`_source_loops`; ``sums``,
    terms already summed over each tile's systems ``(len(tiles), E)``."""
    m = len(loops)
    if loops.any():
        if "source_loop" not in acc:
            acc["source_loop"] = np.zeros((B, m))
            acc["source_loop_rows"] = np.zeros((B, m), dtype=bool)
        pair = terms["fixed"][:, :m] * terms["fixed_forward"][:, :m]
        acc["source_loop"][tiles] += pair.reshape(len(tiles), K, m).sum(axis=1)
        acc["source_loop_rows"][tiles] = loops
    summed = {key: val.reshape(len(tiles), K, -1).sum(axis=1) for key, val in terms.items()
              if key not in ("fixed", "fixed_forward")}
    summed.update(sums or {})
    for key, s in summed.items():
        if key not in acc:
            acc[key] = np.zeros((B, s.shape[1]))
        acc[key][tiles] += s


def _all_linear(plan: Plan) -> bool:
    """Whether every branch of the plan is a resistor or a linear device and none is a zero
    resistance (whose terms come from the node sums)."""
    for group in plan.circuit.groups:
        if group.kind == "transistor":
            return False
        if group.kind == "device" and not (group.model is None
                                           or getattr(group.model, "linear", False)):
            return False
    return not len(zero_forest(plan).branches)


def _linear_sums(plan: Plan, V: np.ndarray, Mu: np.ndarray, tiles: np.ndarray) -> dict:
    """The gradient terms of a plan of linear branches summed over each tile's systems, from
    forward and adjoint node voltages ``(T, K, n_nodes)``: ``{kind: (T, E)}``.

    A branch's term is ``(mu_a - mu_b) di/dtheta``: ``(mu_a - mu_b)(v_a - v_b)`` for a linear
    device (``theta = g``) and ``-(mu_a - mu_b)(v_a - v_b) / R**2`` for a resistor, so each
    tile needs only ``sum_k (mu_a - mu_b)(v_a - v_b)`` per branch: one product summed over the
    systems, without the per-system terms."""
    T, K, n = V.shape
    # blocks of branches whose (T, K, block) temporaries stay in cache (about 256 KiB each)
    step = max(256, (1 << 15) // max(T * K, 1))
    bufs = [np.empty(T * K * step) for _ in range(3)]
    out = {}
    for group in plan.circuit.groups:
        E = len(group.a)
        pair = np.empty((T, E))
        for e0 in range(0, E, step):  # blocks of branches, not single branches
            a, b = group.a[e0 : e0 + step], group.b[e0 : e0 + step]
            dv, dmu, other = (buf[: T * K * len(a)].reshape(T, K, len(a)) for buf in bufs)
            # mode="clip" (the indices are valid): take writes into ``out`` without a buffer
            np.take(V, a, axis=2, out=dv, mode="clip")
            dv -= np.take(V, b, axis=2, out=other, mode="clip")
            np.take(Mu, a, axis=2, out=dmu, mode="clip")
            dmu -= np.take(Mu, b, axis=2, out=other, mode="clip")
            np.einsum("tke,tke->te", dv, dmu, out=pair[:, e0 : e0 + step])
        if group.kind == "resistor":
            value = group.value[tiles]
            zero = value == 0
            g = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, value))
            pair *= -(g * g)
        out[group.kind] = pair
    return out


def _representatives(plan: Plan) -> np.ndarray:
    rep = np.empty(plan.n_free + plan.n_fixed, dtype=np.int64)
    rep[plan.node_map] = np.arange(len(plan.node_map))
    return rep


# -- public functions ---------------------------------------------------------------------------

def _forward(tile, v_in, *, solver, reltol, abstol, newton_options, extra_seeds=None):
    """Forward solve (and, for linear tiles, the adjoint boundary problems ``extra_seeds``
    ``(B, K, n_fixed)`` in the same factorisation); returns node voltages ``(B, K', n_nodes)``,
    the currents leaving the fixed nodes ``(B, K', n_fixed)``, the Solution of the forward part
    and the checked inputs ``(B, K, m)``."""
    v = tile.check_inputs(v_in)
    K = v.shape[1]
    vk = tile.fixed_voltages(v)
    if extra_seeds is not None:
        vk = np.concatenate([vk, extra_seeds], axis=1)
    try:
        v_nodes, i_fixed, solution = solve_fixed(tile, vk, K, v_in, solver=solver,
                                                 reltol=reltol, abstol=abstol,
                                                 newton_options=newton_options)
    except ConvergenceError as exc:
        if exc.input < K:
            raise
        raise ConvergenceError(
            f"adjoint solve of tile {exc.tile}, input {exc.input - K}: KCL residual "
            f"{exc.residual:.3e} A at node {exc.node} exceeds the tolerance (reltol={reltol:g}, "
            f"abstol={abstol:g} A)", tile=exc.tile, input=exc.input - K, node=exc.node,
            residual=exc.residual) from exc
    return v_nodes, i_fixed, solution, v


@heap.retained
def vjp(tile: Tile, v_in, d_i_out, *, solver: str = "direct", reltol: float = 1e-9,
        abstol: float = 1e-15, **newton_options) -> Gradients:
    """Gradients of ``L = sum(d_i_out * i_out)`` by the adjoint method.

    One forward solve and one adjoint solve per input vector: for linear tiles both in one
    factorisation per tile (the adjoint is the tile driven at its sense nodes); for nonlinear and
    1T1R tiles the adjoint uses the transposed Jacobian at the converged Newton point, solved by
    BiCGSTAB preconditioned with the tile's linearised factorisation (as Newton-Krylov is), with
    a direct factorisation where that stalls.

    Parameters
    ----------
    tile : Tile
    v_in : array_like, (m,), (K, m) or, for a batched tile, (B, K, m)
        Word-line driver voltages (V), as for :func:`circuitsim.solve`.
    d_i_out : array_like
        Weights of the output currents, in the shape of ``solve(tile, v_in).i_out``.
    solver, reltol, abstol, **newton_options
        As for :func:`circuitsim.solve`.

    Returns
    -------
    Gradients

    Examples
    --------
    One cell behind a 1 kohm driver: ``i = v / (1/g + R)``, so ``di/dg = v / (1 + g R)**2``.

    >>> import circuitsim as cs
    >>> tile = cs.crossbar([[1e-3]], r_source=1000.0)
    >>> grads = cs.vjp(tile, [1.0], [1.0])
    >>> print(f"{grads.g[0, 0]:.6f} {grads.r_source[0]:.6e}")  # 1 / (1 + 1)**2, -(i)**2
    0.250000 -2.500000e-07
    """
    _check_newton(newton_options)
    v_arr = np.asarray(v_in)
    v = tile.check_inputs(v_in)
    d = _check_seed(tile, v_arr, v, d_i_out)
    K = v.shape[1]
    if tile.is_linear:
        v_nodes, i_fixed, solution, v = _forward(tile, v_in, solver=solver, reltol=reltol,
                                                 abstol=abstol, newton_options={},
                                                 extra_seeds=_seeds(tile, d))
        acc, fixed = _terms_all(tile, v_nodes[:, :K], v_nodes[:, K:],
                                (i_fixed[:, K:], i_fixed[:, :K]))
    else:
        point = OperatingPoint(tile, v_in, solver=solver, reltol=reltol, abstol=abstol,
                               newton_options=newton_options)
        solution = point.solution
        acc, fixed = point.adjoint(d)
    return _gradients(tile, acc, v_arr, fixed, solution)


def _seeds(tile: Tile, d: np.ndarray) -> np.ndarray:
    """Fixed-node values ``(B, K, m + n)`` of the adjoint for weights ``d`` ``(B, K, n)``."""
    seeds = np.zeros(d.shape[:2] + (tile.m + tile.n,))
    seeds[..., tile.m :] = -d
    return seeds


def _terms_all(tile: Tile, V: np.ndarray, Mu: np.ndarray, currents=None):
    """Per-tile gradient sums and per-system fixed-node terms from node voltages ``(B, K, N)``;
    ``currents``, if known, the adjoint and forward currents leaving the fixed nodes
    ``(B, K, n_fixed)`` each."""
    B, K, nodes = V.shape
    acc, fixed = {}, np.zeros((B, K, tile.m + tile.n))
    for plan in tile_plans(tile):
        tiles = plan.tiles
        S = len(tiles) * K
        known = None if currents is None else tuple(c[tiles].reshape(S, -1) for c in currents)
        if known is not None and _all_linear(plan):
            terms = {"fixed": known[0], "fixed_forward": known[1]}
            every = len(tiles) == B and bool(np.all(tiles == np.arange(B)))
            sums = _linear_sums(plan, V if every else V[tiles], Mu if every else Mu[tiles],
                                tiles)
        else:
            terms = _gradient_terms(plan, V[tiles].reshape(S, nodes),
                                    Mu[tiles].reshape(S, nodes), np.repeat(tiles, K), known)
            sums = None
        _accumulate(acc, terms, tiles, K, B, _source_loops(tile, plan), sums)
        fixed[tiles] = terms["fixed"].reshape(len(tiles), K, -1)
    return acc, fixed


class OperatingPoint:
    """A tile solved at inputs ``v_in``, linearised there for repeated tangent and adjoint solves.

    The Jacobians of every plan are kept (and, in ``mode="direct"``, their factorisations), so
    many products at one point cost one solve each: what an optimiser (:mod:`compensate`) or a
    training step that back-propagates several read-outs needs.

    Parameters
    ----------
    tile : Tile
    v_in : array_like
    solver, reltol, abstol, newton_options
        As for :func:`circuitsim.solve`.
    mode : {"krylov", "direct"}
        How the nonlinear systems are solved (see :class:`circuitsim.linearised.Linearisation`).
    """

    def __init__(self, tile: Tile, v_in, *, solver: str = "direct", reltol: float = 1e-9,
                 abstol: float = 1e-15, newton_options: dict | None = None,
                 mode: str = "krylov"):
        newton_options = dict(newton_options or {})
        _check_newton(newton_options)
        self.tile = tile
        self.v_arr = np.asarray(v_in)
        V, _, self.solution, self.v = _forward(tile, v_in, solver=solver, reltol=reltol,
                                               abstol=abstol, newton_options=newton_options)
        self.V = V
        self.K = V.shape[1]
        self.plans = []
        for plan in tile_plans(tile):
            tiles = plan.tiles
            v_red = None
            if not tile.is_linear:
                v_red = V[tiles][..., _representatives(plan)].reshape(len(tiles) * self.K, -1)
            lin = Linearisation(plan, v_red, self.K, linear=tile.is_linear, solver=solver,
                                mode=mode)
            self.plans.append((plan, lin))

    def adjoint(self, d: np.ndarray):
        """Per-tile gradient sums and fixed-node terms of ``L = sum(d * i_out)``, ``d`` as
        ``(B, K, n)``."""
        seeds = _seeds(self.tile, d)
        Mu = np.zeros_like(self.V)
        for plan, lin in self.plans:
            mu = lin.solve_boundary(seeds[plan.tiles], transpose=True)
            check_solved(mu, plan.tiles, "adjoint")
            Mu[plan.tiles] = mu[..., plan.node_map]
        return _terms_all(self.tile, self.V, Mu)

    def tangent(self, direction: dict) -> np.ndarray:
        """Tangent currents leaving the fixed nodes ``(B, K, m + n)`` along ``direction`` (see
        :func:`circuitsim.tangent.direction`)."""
        tile, K, V = self.tile, self.K, self.V
        out = np.zeros((tile.batch, K, tile.m + tile.n))
        nodes = V.shape[-1]
        for plan, lin in self.plans:
            tiles = plan.tiles
            S = len(tiles) * K
            out[tiles] = tangent_plan(plan, lin, V[tiles].reshape(S, nodes),
                                       np.repeat(tiles, K), direction, tiles,
                                       K).reshape(len(tiles), K, -1)
        return out


def transfer_shaped(tile, x, name: str) -> np.ndarray:
    """``x`` checked to have the shape of the tile's transfer matrix (``(n, m)``, or
    ``(B, n, m)`` for a batched tile) and finite; returned as ``(B or 1, n, m)``."""
    m, n = tile.m, tile.n
    x = as_float_array(x, name)
    want = ((tile.batch,) if tile.batched else ()) + (n, m)
    if x.shape != want:
        raise ValueError(f"{name} has shape {x.shape}; expected {want}, the shape of the "
                         "transfer matrix")
    check_finite(x, name)
    return x.reshape((-1, n, m))


def transfer_matrix_vjp(tile: Tile, C, *, solver: str = "direct") -> Gradients:
    """Gradients of ``sum(C * T)`` for the transfer matrix ``T`` of a linear tile.

    ``T[:, i]`` is the output for the unit input on word line ``i``, so ``sum(C * T)`` is the
    read-out ``sum_i C[:, i] . i_out(e_i)``: ``m`` forward and ``m`` adjoint solves, all with one
    factorisation per tile (solved in chunks of inputs to bound memory).

    Parameters
    ----------
    tile : Tile
        A linear tile.
    C : array_like, (n, m), or (B, n, m) for a batched tile
        Weights, the shape of :func:`circuitsim.transfer_matrix`'s result.
    solver : str
        ``"direct"``, ``"superlu"`` or ``"cholmod"``.

    Returns
    -------
    Gradients
        With ``g``, ``r_wl``, ``r_bl``, ``r_source`` and ``r_sense``; ``v_in``, ``v_sense``,
        ``v_gate`` and ``solution`` are None.

    Examples
    --------
    >>> import circuitsim as cs
    >>> tile = cs.crossbar([[1e-3]], r_source=1000.0)
    >>> print(f"{cs.transfer_matrix_vjp(tile, [[1.0]]).g[0, 0]:.6f}")  # dT/dg = 1 / (1 + g R)**2
    0.250000
    """
    if not tile.is_linear:
        raise ValueError("transfer_matrix_vjp needs a linear tile (no access transistor, linear "
                         "device)")
    if solver not in ("direct", "superlu", "cholmod"):
        raise ValueError(f"solver must be 'direct', 'superlu' or 'cholmod', got {solver!r}")
    m, n, B = tile.m, tile.n, tile.batch
    C = np.broadcast_to(transfer_shaped(tile, C, "C"), (B, n, m))
    acc = {}
    nk = m + n
    for plan in tile_plans(tile):
        tiles = plan.tiles
        lin = Linearisation(plan, None, 0, linear=True, solver=solver)
        nodes = len(plan.node_map)
        step = max(1, min(m, 2_000_000 // max(len(tiles) * nodes, 1)))
        for i0 in range(0, m, step):
            rows = np.arange(i0, min(i0 + step, m))
            k = len(rows)
            seeds = np.zeros((len(tiles), 2 * k, nk))
            seeds[:, np.arange(k), rows] = 1.0  # unit inputs
            seeds[:, k:, m:] = -C[tiles][:, :, rows].transpose(0, 2, 1)  # adjoint seeds
            x = lin.solve_boundary(seeds)[..., plan.node_map]
            S = len(tiles) * k
            terms = _gradient_terms(plan, x[:, :k].reshape(S, nodes),
                                    x[:, k:].reshape(S, nodes), np.repeat(tiles, k))
            _accumulate(acc, terms, tiles, k, B, _source_loops(tile, plan))
    return _gradients(tile, acc, None, None, None)


@heap.retained
def jvp(tile: Tile, v_in, *, dg=None, dv_in=None, dr_wl=None, dr_bl=None, dr_source=None,
        dr_sense=None, dv_sense=None, dv_gate=None, solver: str = "direct",
        reltol: float = 1e-9, abstol: float = 1e-15, **newton_options) -> Tangent:
    """Directional derivative of the outputs along a change of parameters and inputs.

    One forward solve, then one tangent solve per input vector with the Jacobian at the
    solution (``J dx = -dF``). Directions not given are 0; each has the shape of its parameter
    (as accepted by :func:`circuitsim.crossbar`; ``dv_in`` that of ``v_in``).

    Parameters
    ----------
    tile : Tile
    v_in : array_like
        The operating point's inputs, as for :func:`circuitsim.solve`.
    dg, dv_in, dr_wl, dr_bl, dr_source, dr_sense, dv_sense, dv_gate : array_like, optional
        The direction.
    solver, reltol, abstol, **newton_options
        As for :func:`circuitsim.solve`.

    Returns
    -------
    Tangent

    Examples
    --------
    >>> import circuitsim as cs
    >>> tile = cs.crossbar([[1e-3]], r_source=1000.0)
    >>> print(f"{cs.jvp(tile, [1.0], dg=[[1.0]]).i_out[0]:.6f}")  # di/dg = 1 / (1 + g R)**2
    0.250000
    """
    point = OperatingPoint(tile, v_in, solver=solver, reltol=reltol, abstol=abstol,
                           newton_options=newton_options)
    v_arr, v = point.v_arr, point.v
    m = tile.m
    along = direction(tile, v_arr, v, {
        "g": dg, "v_in": dv_in, "r_wl": dr_wl, "r_bl": dr_bl, "r_source": dr_source,
        "r_sense": dr_sense, "v_sense": dv_sense, "v_gate": dv_gate})
    d_fixed = point.tangent(along)
    i_out, i_source = -d_fixed[..., m:], d_fixed[..., :m]

    def shape(x):
        return drop_axes(x, tile.batched, v_arr.ndim == 1)

    return Tangent(i_out=shape(i_out), i_source=shape(i_source), solution=point.solution)
