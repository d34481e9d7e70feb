"""Geometric nested dissection: a fill-reducing ordering for grid-like circuits.

A crossbar is a grid: word-line branches join horizontal neighbours, bit-line branches vertical
ones, cells join nodes at one grid point. Cutting the grid between columns ``c`` and ``c + 1``
only severs word-line branches, so the word-line nodes of column ``c`` that have a right neighbour
form a vertex separator of ``m`` nodes (half a grid line); likewise bit-line nodes for a cut
between rows. Ordering both halves first and the separator last, recursively, keeps the Cholesky
fill near ``O(N log N)`` and costs no graph partitioner (METIS took longer than the factorisation
itself on 256 x 256 tiles, and AMD leaves about 1.6 times as much fill).
"""

from __future__ import annotations

import numpy as np

__all__ = ["nested_dissection"]

LEAF = 64


def nested_dissection(coords: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Order nodes by recursive bisection of their grid.

    Parameters
    ----------
    coords : ndarray of int, (N, 2)
        Grid (row, column) of each node.
    a, b : ndarray of int
        Branch terminals among these nodes.

    Returns
    -------
    ndarray of int, (N,), or None
        ``perm`` such that node ``perm[k]`` comes ``k``-th; None when some branch joins nodes
        that are not grid neighbours (the ordering would be wrong, so the caller falls back to
        the solver's own).
    """
    n = len(coords)
    d = coords[b] - coords[a]
    if n == 0 or np.any(np.abs(d).sum(axis=1) > 1):
        return None
    # A node "has a right (down) neighbour" when a branch joins it to column (row) + 1.
    right = np.zeros(n, dtype=bool)
    down = np.zeros(n, dtype=bool)
    for axis, flag in ((1, right), (0, down)):
        step = d[:, axis]
        flag[a[step == 1]] = True
        flag[b[step == -1]] = True
    out: list[np.ndarray] = []
    _dissect(np.arange(n), coords[:, 0], coords[:, 1], right, down, out)
    return np.concatenate(out)


def _dissect(idx, row, col, right, down, out) -> None:
    stack = [(idx, False)]
    while stack:  # iterative post-order: halves first, then the separator
        idx, is_sep = stack.pop()
        if is_sep or len(idx) <= LEAF:
            out.append(idx)
            continue
        r, c = row[idx], col[idx]
        r0, r1, c0, c1 = r.min(), r.max(), c.min(), c.max()
        if c1 - c0 >= r1 - r0 and c1 > c0:
            cut = (c0 + c1) // 2
            sep = (c == cut) & right[idx]
            low = (c < cut) | ((c == cut) & ~right[idx])
        elif r1 > r0:
            cut = (r0 + r1) // 2
            sep = (r == cut) & down[idx]
            low = (r < cut) | ((r == cut) & ~down[idx])
        else:  # a single grid point: nothing to cut
            out.append(idx)
            continue
        high = ~(sep | low)
        # Pushed in reverse: low half, then high half, then the separator are emitted in order.
        stack.append((idx[sep], True))
        stack.append((idx[high], False))
        stack.append((idx[low], False))
