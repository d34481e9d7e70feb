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
import scipy.sparse as sp

from circuitsim import devices
from circuitsim.netlist import Tile, as_float_array, broadcast_param, check_finite

from ._internals import solve_fixed, tile_plans
from .branches import select_cells
from .linearised import Linearisation
from .merged import zero_forest
from .mna import Plan
from .newton import solve_newton
from .result import ConvergenceError, Solution

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


@dataclass(frozen=True)
class Tangent:
    """A directional derivative of a tile's solve (:func:`jvp`).

    Attributes
    ----------
    i_out : ndarray
        Derivative of ``i_out`` along the direction, in the shape of ``solution.i_out`` (A per
        unit step).
    i_source : ndarray
        Derivative of ``i_source``, in the shape of ``solution.i_source``.
    solution : Solution
        The forward solve.
    """

    i_out: np.ndarray
    i_source: np.ndarray
    solution: Solution


# -- branch quantities at the original nodes ------------------------------------------------------

#: Memristor models of :mod:`circuitsim.devices` whose current is proportional to the state g
#: (``I = g h(V)``), so that ``dI/dg = I / g``; other models need a ``current_dg(v, g)`` method.
LINEAR_IN_G = (devices.Sinh, devices.AsymmetricSinh, devices.StanfordPKU, devices.IVTable)


def _current_dg(model, v, g):
    if hasattr(model, "current_dg"):
        return model.current_dg(v, g)
    if isinstance(model, LINEAR_IN_G):
        safe = np.where(g > 0, g, 1.0)
        return model.current(v, safe) / safe
    raise TypeError(
        f"device model {type(model).__name__}: gradients with respect to g need dI/dg; give the "
        "model a current_dg(v, g) method"
    )


@dataclass
class _Group:
    """One branch group evaluated at original node voltages ``V`` ``(S, n_nodes)``."""

    kind: str
    a: np.ndarray
    b: np.ndarray
    i: np.ndarray | None  # (S, E) current a -> b (0 on zero resistors)
    p: np.ndarray | None  # (S, E) di/dv_a
    q: np.ndarray | None  # (S, E) di/dv_b
    dtheta: np.ndarray  # (S, E) di/dtheta at fixed voltages (theta = R, g or v_gate)
    zero: np.ndarray | None = None  # (E,) zero resistors (resistor group only)


def _evaluate(plan: Plan, V: np.ndarray, tile_idx: np.ndarray, full: bool = True) -> list[_Group]:
    """Every branch group at ``V``; without ``full`` only ``dtheta`` (``i``, ``p``, ``q`` None)
    where that saves work (linear branches)."""
    out = []
    for group in plan.circuit.groups:
        a, b = group.a, group.b
        value = group.value[tile_idx]
        va, vb = V[:, a], V[:, b]
        if group.kind == "resistor":
            zero = group.value[plan.tiles[0]] == 0  # one zero pattern per plan
            g = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, value))
            i = g * (va - vb)
            out.append(_Group("resistor", a, b, i if full else None, g if full else None,
                              -g if full else None, -i * g, zero))
            continue
        model = select_cells(group.model, tile_idx, np.arange(len(a)))
        if group.kind == "device":
            dv = va - vb
            if model is None or getattr(model, "linear", False):
                if full:
                    out.append(_Group("device", a, b, value * dv, value, -value, dv))
                else:
                    out.append(_Group("device", a, b, None, None, None, dv))
            else:
                gp = model.conductance(dv, value)
                out.append(_Group("device", a, b, model.current(dv, value), gp, -gp,
                                  _current_dg(model, dv, value)))
        else:
            i, gd, gs = model.drain_current(va, vb, value)
            # i depends on vd - vs and vg - vs only (bulk at 0 V, GAMMA = 0): di/dvg = -(gd + gs)
            out.append(_Group("transistor", a, b, i, gd, gs, -(gd + gs)))
    return out


def _ends(a, b, n):
    """Sparse ``(n, E)`` maps from branches to their ``a`` and ``b`` ends."""
    e = np.arange(len(a))
    ones = np.ones(len(a))
    return (sp.csr_matrix((ones, (a, e)), shape=(n, len(a))),
            sp.csr_matrix((ones, (b, e)), shape=(n, len(a))))


def _fixed_sums(plan: Plan, dev: np.ndarray, res: np.ndarray) -> np.ndarray:
    """Currents leaving the fixed nodes ``(S, n_fixed)`` from node sums ``(n_nodes, S)`` of the
    non-resistor and resistor branches, summed over each fixed node's resistor net (as
    :meth:`Plan.fixed_currents` does, accurate when wire resistances are tiny)."""
    n_red = plan.n_free + plan.n_fixed
    nodes = len(plan.node_map)
    to_red = sp.csr_matrix((np.ones(nodes), (plan.node_map, np.arange(nodes))),
                           shape=(n_red, nodes))
    out = np.asarray(plan.fixed_nets @ (to_red @ dev))
    if plan.shared_fixed.any():
        at = plan.n_free + np.flatnonzero(plan.shared_fixed)
        out[plan.shared_fixed] += np.asarray(to_red @ res)[at]
    return out.T


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
    groups = _evaluate(plan, V, tile_idx, full=sums)
    if sums:
        h_dev = np.zeros((n, len(V)))  # forward current leaving each node (non-zero branches)
        h_res, y_dev, y_res = (np.zeros_like(h_dev) for _ in range(3))  # and the adjoint's
    out = {}
    for grp in groups:
        delta = Mu[:, grp.a] - Mu[:, grp.b]
        out[grp.kind] = delta * grp.dtheta  # -i j for a resistor: delta * (-i / R)
        if not sums:
            continue
        at_a, at_b = _ends(grp.a, grp.b, n)
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
        out["fixed"] = _fixed_sums(plan, y_dev, y_res)
        out["fixed_forward"] = _fixed_sums(plan, h_dev, h_res)
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
                loops: np.ndarray) -> None:
    """Add the per-system terms of one plan's ``tiles`` (``K`` systems each) to the per-tile
    sums ``acc`` ``(B, E)``; ``loops`` are the plan's rows of :func:`_source_loops`."""
    m = len(loops)
    if loops.any():
        if "source_loop" not in acc:
            acc["source_loop"] = np.zeros((B, m))
            acc["source_loop_rows"] = np.zeros((B, m), dtype=bool)
        pair = terms["fixed"][:, :m] * terms["fixed_forward"][:, :m]
        acc["source_loop"][tiles] += pair.reshape(len(tiles), K, m).sum(axis=1)
        acc["source_loop_rows"][tiles] = loops
    for key, val in terms.items():
        if key in ("fixed", "fixed_forward"):
            continue
        s = val.reshape(len(tiles), K, -1).sum(axis=1)
        if key not in acc:
            acc[key] = np.zeros((B, s.shape[1]))
        acc[key][tiles] += s


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
        terms = _gradient_terms(plan, V[tiles].reshape(S, nodes), Mu[tiles].reshape(S, nodes),
                                np.repeat(tiles, K), known)
        _accumulate(acc, terms, tiles, K, B, _source_loops(tile, plan))
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
            _check_solved(mu, plan.tiles, "adjoint")
            Mu[plan.tiles] = mu[..., plan.node_map]
        return _terms_all(self.tile, self.V, Mu)

    def tangent(self, direction: dict) -> np.ndarray:
        """Tangent currents leaving the fixed nodes ``(B, K, m + n)`` along ``direction`` (see
        :func:`_direction`)."""
        tile, K, V = self.tile, self.K, self.V
        out = np.zeros((tile.batch, K, tile.m + tile.n))
        nodes = V.shape[-1]
        for plan, lin in self.plans:
            tiles = plan.tiles
            S = len(tiles) * K
            out[tiles] = _tangent_plan(plan, lin, V[tiles].reshape(S, nodes),
                                       np.repeat(tiles, K), direction, tiles,
                                       K).reshape(len(tiles), K, -1)
        return out


def _check_solved(x: np.ndarray, tiles: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(x).all(axis=-1)
    if bad.any():
        t, k = (int(i) for i in np.argwhere(bad)[0])
        raise ConvergenceError(
            f"{what} solve of tile {tiles[t]}, input {k} failed: the Jacobian at the solution is "
            "singular", tile=int(tiles[t]), input=k, node="", residual=float("nan"))


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
    C = as_float_array(C, "C")
    want = ((B,) if tile.batched else ()) + (n, m)
    if C.shape != want:
        raise ValueError(f"C has shape {C.shape}; expected {want}, the shape of the transfer "
                         "matrix")
    check_finite(C, "C")
    C = C.reshape(B if tile.batched else 1, n, m)
    C = np.broadcast_to(C, (B, n, m))
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
    direction = _direction(tile, v_arr, v, {
        "g": dg, "v_in": dv_in, "r_wl": dr_wl, "r_bl": dr_bl, "r_source": dr_source,
        "r_sense": dr_sense, "v_sense": dv_sense, "v_gate": dv_gate})
    d_fixed = point.tangent(direction)
    i_out, i_source = -d_fixed[..., m:], d_fixed[..., :m]

    def shape(x):
        if not tile.batched:
            x = x[0]
            if v_arr.ndim == 1:
                x = x[0]
        elif v_arr.ndim == 1:
            x = x[:, 0]
        return x

    return Tangent(i_out=shape(i_out), i_source=shape(i_source), solution=point.solution)


def _direction(tile: Tile, v_arr, v, given: dict) -> dict:
    """The direction as per-branch changes ``(B, E)`` of each group and fixed-node changes."""
    m, n, B = tile.m, tile.n, tile.batch
    K = v.shape[1]
    shapes = {"g": (m, n), "r_wl": (m, n), "r_bl": (m, n), "v_gate": (m, n),
              "r_source": (m,), "r_sense": (n,), "v_sense": (n,)}
    arr = {}
    for name, val in given.items():
        if val is None or name == "v_in":
            continue
        if name == "v_gate" and tile.access is None:
            raise ValueError("dv_gate is given but the tile has no access transistors")
        arr[name] = broadcast_param(val, "d" + name, shapes[name], B)
        check_finite(arr[name], "d" + name)
    zeros2 = np.zeros((B, m, n))
    r_wl = arr.get("r_wl", zeros2).reshape(B, m * n).copy()
    r_bl = arr.get("r_bl", zeros2).reshape(B, m * n).copy()
    src = arr.get("r_source", np.zeros((B, m)))
    r_wl[:, ::n] += src  # the first segment of each word line (j = 0)
    r_bl[:, (m - 1) * n :] += arr.get("r_sense", np.zeros((B, n)))
    parts = [r_wl, r_bl] + ([src] if tile.drive == "both" else [])
    out = {"resistor": np.concatenate(parts, axis=1),
           "device": arr.get("g", zeros2).reshape(B, m * n),
           "transistor": arr.get("v_gate", zeros2).reshape(B, m * n)}
    fixed = np.zeros((B, K, m + n))
    if given.get("v_in") is not None:
        dv = as_float_array(given["v_in"], "dv_in")
        if dv.shape != v_arr.shape:
            raise ValueError(f"dv_in has shape {dv.shape}; expected {v_arr.shape}, the shape of "
                             "v_in")
        check_finite(dv, "dv_in")
        fixed[..., :m] = tile.check_inputs(dv)
    fixed[..., m:] = arr.get("v_sense", np.zeros((B, n)))[:, None, :]
    out["fixed"] = fixed
    return out


def _tangent_plan(plan, lin, V, tile_idx, direction, tiles, K) -> np.ndarray:
    """Tangent currents leaving the fixed nodes ``(S, n_fixed)`` of one plan's systems."""
    S, n = V.shape
    groups = _evaluate(plan, V, tile_idx)
    h = np.zeros((n, S))
    for grp in groups:
        at_a, at_b = _ends(grp.a, grp.b, n)
        h += at_a @ grp.i.T - at_b @ grp.i.T
    forest = zero_forest(plan)
    dtheta = {grp.kind: direction[grp.kind][tile_idx] for grp in groups}
    shift = np.zeros((S, n))
    if len(forest.branches):
        loop = forest.branches[~forest.bridge]
        touched = (dtheta["resistor"][:, loop] != 0).any(axis=0)
        if touched.any():
            name = plan.circuit.groups[0].names[loop[np.argmax(touched)]]
            raise ValueError(
                f"the direction changes the zero resistance of branch {name}, which lies on a "
                "loop of zero resistances (a drive='both' row whose r_source and r_wl are all 0; "
                "the first word-line branch includes r_source): the outputs are not "
                "differentiable along it (vjp gives each parameter's one-sided derivative)")
        drops = forest.flows(h.T) * dtheta["resistor"][:, forest.branches]
        shift = forest.shifts(drops, n)
    # current injected by the parameter change and by the shifts within merged nodes
    direct = {}
    inj = np.zeros((n, S))
    for grp in groups:
        di = grp.dtheta * dtheta[grp.kind]
        if grp.zero is not None:
            di[:, grp.zero] = 0.0  # their change enters through the shifts
        direct[grp.kind] = di
        at_a, at_b = _ends(grp.a, grp.b, n)
        di = di + grp.p * shift[:, grp.a] + grp.q * shift[:, grp.b]
        inj += at_a @ di.T - at_b @ di.T
    n_red = plan.n_free + plan.n_fixed
    to_red = sp.csr_matrix((np.ones(n), (plan.node_map, np.arange(n))), shape=(n_red, n))
    extra = np.asarray(to_red @ inj)[: plan.n_free].T.reshape(len(tiles), K, -1)
    x = lin.solve_boundary(direction["fixed"][tiles], extra=extra)
    _check_solved(x, tiles, "tangent")
    X = x.reshape(S, n_red)[:, plan.node_map] + shift  # tangent voltages of the original nodes
    dev, res = np.zeros((n, S)), np.zeros((n, S))
    for grp in groups:
        di = direct[grp.kind] + grp.p * X[:, grp.a] + grp.q * X[:, grp.b]
        at_a, at_b = _ends(grp.a, grp.b, n)
        node = at_a @ di.T - at_b @ di.T
        if grp.kind == "resistor":
            res += node
        else:
            dev += node
    return _fixed_sums(plan, dev, res)
