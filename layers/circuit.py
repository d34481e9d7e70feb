"""The engine calls of the layer adapter, in one place: build a layer's tiles, solve them.

All tiles of a layer are one batched tile ``(B, rows, cols)``. Linear tiles go through
:func:`circuitsim.transfer_matrix` (one extraction per tile, then matrix products for any number
of inputs); nonlinear and 1T1R tiles through one batched :func:`circuitsim.solve` of every
(tile, input) pair, in chunks of about :data:`CHUNK_UNKNOWNS` unknowns. Gradients (fine-tuning,
:mod:`~.training`): :func:`circuitsim.transfer_matrix_vjp` for linear tiles, :func:`circuitsim.vjp`
for the others.
"""

from __future__ import annotations

import numpy as np

import circuitsim as cs

from .config import TileConfig

__all__ = ["CHUNK_UNKNOWNS", "build", "linear_currents", "solve_currents", "solve_vjp",
           "transfer_vjp"]

#: Unknowns per batched Newton solve (tiles x inputs x unknowns per tile).
CHUNK_UNKNOWNS = 1 << 21

#: Keyword arguments of every batched solve: only output currents are needed, so node voltages
#: are not assembled.
SOLVE_OPTIONS = {"voltages": False}


def build(g: np.ndarray, config: TileConfig) -> cs.Tile:
    """The batched tile of conductances ``g`` ``(B, rows, cols)`` with ``config``'s circuit."""
    return cs.crossbar(
        g,
        r_wl=config.r_wl,
        r_bl=config.r_bl,
        r_source=config.r_source,
        r_sense=config.r_sense,
        device=config.device,
        access=config.access,
        v_gate=config.v_gate,
    )


def transfer(tile: cs.Tile) -> np.ndarray:
    """Transfer matrices ``(B, cols, rows)`` of a linear batched tile."""
    return cs.transfer_matrix(tile)


def linear_currents(T: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Output currents ``(B, K, cols)`` of inputs ``v`` ``(B, K, rows)``: ``v @ T.T`` per tile."""
    return np.matmul(v, T.transpose(0, 2, 1))


def solve_currents(tile: cs.Tile, v: np.ndarray):
    """Output currents ``(B, K, cols)`` and Newton iterations ``(B, K)`` of a nonlinear tile.

    Inputs ``v`` ``(B, K, rows)``; the ``K`` axis is cut into chunks so that one solve holds about
    :data:`CHUNK_UNKNOWNS` unknowns. Raises :class:`circuitsim.ConvergenceError` naming the tile,
    input and node of a system that fails.
    """
    B, K, _ = v.shape
    per_system = tile.n_cell_nodes
    chunk = max(1, CHUNK_UNKNOWNS // max(1, B * per_system))
    i_out = np.empty((B, K, tile.n))
    iterations = np.empty((B, K), dtype=np.int64)
    for k0 in range(0, K, chunk):
        sl = slice(k0, min(K, k0 + chunk))
        try:
            sol = cs.solve(tile, v[:, sl], **SOLVE_OPTIONS)
        except cs.ConvergenceError as exc:
            raise cs.ConvergenceError(
                f"{exc} (input {exc.input + k0} of the layer's {K} input vectors)",
                tile=exc.tile, input=exc.input + k0, node=exc.node, residual=exc.residual,
            ) from exc
        i_out[:, sl] = sol.i_out
        iterations[:, sl] = sol.iterations
    return i_out, iterations


def _chunk(tile: cs.Tile, B: int) -> int:
    return max(1, CHUNK_UNKNOWNS // max(1, B * tile.n_cell_nodes))


def transfer_vjp(tile: cs.Tile, C: np.ndarray) -> np.ndarray:
    """``d sum(C * T) / d g`` ``(B, rows, cols)`` for the transfer matrices ``T`` of a linear
    batched tile and weights ``C`` ``(B, cols, rows)``."""
    return cs.transfer_matrix_vjp(tile, C).g


def solve_vjp(tile: cs.Tile, v: np.ndarray, d: np.ndarray):
    """Gradients of ``sum(d * i_out)`` for a nonlinear batched tile at inputs ``v``
    ``(B, K, rows)``, weights ``d`` ``(B, K, cols)``: with respect to the conductances
    ``(B, rows, cols)`` and to the inputs ``(B, K, rows)``; ``K`` in chunks as
    :func:`solve_currents`."""
    B, K, _ = v.shape
    chunk = _chunk(tile, B)
    g = np.zeros(tile.g.shape)
    v_in = np.empty(v.shape)
    for k0 in range(0, K, chunk):
        sl = slice(k0, min(K, k0 + chunk))
        grads = cs.vjp(tile, v[:, sl], d[:, sl])
        g += grads.g
        v_in[:, sl] = grads.v_in
    return g, v_in
