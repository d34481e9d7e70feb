"""Weights to conductances, and conductances to tiles.

A layer's weight matrix ``W`` ``(out, in)`` is computed by a crossbar whose word lines carry the
inputs and whose bit lines collect the outputs, so the devices hold ``W.T`` ``(in, out)``.

Conductances (``w_max = max |W|`` unless given):

- differential (``"separate"``, ``"interleaved"``): ``G+ = g_min + (g_max - g_min) max(w, 0) / w_max``,
  ``G- = g_min + (g_max - g_min) max(-w, 0) / w_max``, so ``G+ - G- = (g_max - g_min) w / w_max``;
- ``"offset"``: ``G = g_min + (g_max - g_min) (w - w_lo) / (w_hi - w_lo)`` with
  ``(w_lo, w_hi) = (min W, max W)``, or ``(-w_max, w_max)`` when ``w_max`` is given.

The devices of a layer are first held as a *logical* array ``(S, in, out)`` (``S = 2``: G+ then
G-; ``S = 1`` for the offset mapping), on which programming non-idealities are drawn, so that the
programmed devices do not depend on the tile size. :func:`place` then cuts them into tiles of
``rows x cols`` devices: row block ``r`` holds inputs ``r rows .. (r + 1) rows``, column block
``c`` outputs ``c q .. (c + 1) q`` with ``q`` outputs per tile. Unused cells of edge tiles are at
``g_min``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import TileConfig

__all__ = ["Layout", "Scaling", "conductances", "layout", "place", "place_index", "scaling"]


@dataclass(frozen=True)
class Scaling:
    """Weight-to-conductance scaling of one layer.

    Attributes
    ----------
    w_max : float
        Weight mapped to ``g_max - g_min`` of conductance difference (differential mappings).
    w_lo, w_hi : float
        Weights mapped to ``g_min`` and ``g_max`` (offset mapping).
    """

    w_max: float
    w_lo: float
    w_hi: float

    def weight_per_siemens(self, config: TileConfig) -> float:
        """Weight represented by one siemens of (differential) conductance."""
        span = self.w_max if config.differential else self.w_hi - self.w_lo
        return span / (config.g_max - config.g_min)


def scaling(W: np.ndarray, config: TileConfig, w_max: float | None = None) -> Scaling:
    """The scaling of ``W`` for ``config``; a zero span (all-zero or constant ``W``) maps to 1."""
    if w_max is None:
        top = float(np.abs(W).max()) if W.size else 0.0
        w_lo, w_hi = (float(W.min()), float(W.max())) if W.size else (0.0, 0.0)
    else:
        if not np.isfinite(w_max) or w_max <= 0:
            raise ValueError(f"w_max must be a positive number, got {w_max}")
        top, w_lo, w_hi = float(w_max), -float(w_max), float(w_max)
        if np.abs(W).max(initial=0.0) > w_max:
            raise ValueError(f"w_max = {w_max:g} is below max |W| = {np.abs(W).max():g}: "
                             "weights beyond it cannot be programmed")
    if top == 0.0:
        top = 1.0
    if w_hi == w_lo:
        w_hi = w_lo + 1.0
    return Scaling(top, w_lo, w_hi)


def conductances(W: np.ndarray, config: TileConfig, s: Scaling) -> np.ndarray:
    """Target conductances, logical layout ``(S, in, out)`` (S = 2 differential, 1 offset)."""
    Wt = W.T
    span = config.g_max - config.g_min
    if config.differential:
        return config.g_min + span * np.stack([np.maximum(Wt, 0.0), np.maximum(-Wt, 0.0)]) / s.w_max
    return (config.g_min + span * (Wt - s.w_lo) / (s.w_hi - s.w_lo))[None]


@dataclass(frozen=True)
class Layout:
    """How a layer of ``n_in`` inputs and ``n_out`` outputs is cut into tiles.

    Tiles are numbered ``b = (r * n_col_blocks + c) * S_t + s``: row block ``r``, column block
    ``c``, and, for the ``"separate"`` mapping, ``s = 0`` for the G+ tile and 1 for the G- tile
    (``S_t = 2``; else ``S_t = 1``).
    """

    n_in: int
    n_out: int
    rows: int
    cols: int
    mapping: str
    per_tile: int
    n_row_blocks: int
    n_col_blocks: int
    sides: int

    @property
    def n_tiles(self) -> int:
        return self.n_row_blocks * self.n_col_blocks * self.sides

    def row_block(self) -> np.ndarray:
        """Row block of every tile ``(B,)``."""
        return np.repeat(np.arange(self.n_row_blocks), self.n_col_blocks * self.sides)


def layout(n_in: int, n_out: int, config: TileConfig) -> Layout:
    """The tiling of an ``(n_out, n_in)`` weight matrix under ``config``."""
    q = config.outputs_per_tile
    return Layout(
        n_in=n_in,
        n_out=n_out,
        rows=config.rows,
        cols=config.cols,
        mapping=config.mapping,
        per_tile=q,
        n_row_blocks=math.ceil(n_in / config.rows),
        n_col_blocks=math.ceil(n_out / q),
        sides=2 if config.mapping == "separate" else 1,
    )


def _blocks(g: np.ndarray, lay: Layout, fill: float) -> np.ndarray:
    """Pad the logical ``(S, in, out)`` array with ``fill`` and cut it into
    ``(S, R, rows, C, q)`` blocks."""
    S = g.shape[0]
    R, C, rows, q = lay.n_row_blocks, lay.n_col_blocks, lay.rows, lay.per_tile
    padded = np.full((S, R * rows, C * q), fill)
    padded[:, : lay.n_in, : lay.n_out] = g
    return padded.reshape(S, R, rows, C, q)


def place(g: np.ndarray, lay: Layout, fill: float) -> np.ndarray:
    """Tiles ``(B, rows, cols)`` holding the logical devices ``g`` ``(S, in, out)``.

    Examples
    --------
    >>> from circuitsim.layers import TileConfig
    >>> cfg = TileConfig(rows=2, cols=4, mapping="interleaved", g_min=0.0, g_max=1.0)
    >>> g = np.array([[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]])   # G+ and G- of 1 input x 3 outputs
    >>> place(g, layout(1, 3, cfg), fill=-1.0)
    array([[[ 1.,  4.,  2.,  5.],
            [-1., -1., -1., -1.]],
    <BLANKLINE>
           [[ 3.,  6., -1., -1.],
            [-1., -1., -1., -1.]]])
    """
    R, C, rows, q = lay.n_row_blocks, lay.n_col_blocks, lay.rows, lay.per_tile
    blocks = _blocks(g, lay, fill)
    if lay.mapping == "interleaved":
        # (2, R, rows, C, q) -> (R, C, rows, q, 2): G+ on column 2j, G- on 2j + 1
        t = blocks.transpose(1, 3, 2, 4, 0).reshape(R * C, rows, 2 * q)
        if lay.cols > 2 * q:  # odd column count: the last column is unused
            t = np.concatenate([t, np.full((R * C, rows, lay.cols - 2 * q), fill)], axis=2)
        return np.ascontiguousarray(t)
    # (S, R, rows, C, q) -> (R, C, S, rows, q)
    return np.ascontiguousarray(blocks.transpose(1, 3, 0, 2, 4).reshape(-1, rows, lay.cols))


def place_index(lay: Layout, sides: int) -> np.ndarray:
    """Where each tile cell's device sits in the flattened logical array ``(sides, in, out)``:
    an int array ``(B, rows, cols)``, -1 on unused cells (every logical device appears once).

    Examples
    --------
    >>> from circuitsim.layers import TileConfig
    >>> place_index(layout(1, 3, TileConfig(rows=2, cols=2, mapping="offset")), 1)
    array([[[ 0,  1],
            [-1, -1]],
    <BLANKLINE>
           [[ 2, -1],
            [-1, -1]]])
    """
    logical = np.arange(sides * lay.n_in * lay.n_out, dtype=np.float64)
    return place(logical.reshape(sides, lay.n_in, lay.n_out), lay, -1.0).astype(np.int64)


def unplace(currents: np.ndarray, lay: Layout) -> np.ndarray:
    """Per-tile column currents ``(B, K, cols)`` to per-block output currents ``(S, R, C, K, q)``
    (``S = 2`` for G+ and G- of the differential mappings)."""
    R, C, q = lay.n_row_blocks, lay.n_col_blocks, lay.per_tile
    K = currents.shape[1]
    if lay.mapping == "interleaved":
        i = currents[..., : 2 * q].reshape(R, C, K, q, 2)
        return i.transpose(4, 0, 1, 2, 3)
    i = currents.reshape(R, C, lay.sides, K, q)
    return i.transpose(2, 0, 1, 3, 4)


def block_inputs(x: np.ndarray, lay: Layout) -> np.ndarray:
    """Inputs ``(K, in)`` padded with zeros and cut into row blocks ``(R, K, rows)``."""
    K = x.shape[0]
    padded = np.zeros((K, lay.n_row_blocks * lay.rows))
    padded[:, : lay.n_in] = x
    return padded.reshape(K, lay.n_row_blocks, lay.rows).transpose(1, 0, 2)
