"""An independent high-precision reference for passive linear tiles.

The nodal equations are written here from the tile's parameters alone (DESIGN.md section 3), not
from the engine's assembly, and solved by iterative refinement: a float64 sparse LU gives each
correction, while the residual is computed in extended precision (``np.longdouble``) in branch form
``sum_e G_e (v_a - v_b)``. Refinement with residuals more precise than the factorisation converges to
the solution of the exact equations, to about ``eps_longdouble * cond``, whatever the rounding
errors of the float64 factorisation (as long as ``cond * eps`` is below one).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

LD = np.longdouble


def _branches(g, r_wl, r_bl, r_source, r_sense):
    """Branches (a, b, conductance in long double) of one passive tile; nodes: WL (i, j) at
    ``i n + j``, BL at ``m n + i n + j``, drivers ``2 m n + i``, sense ``2 m n + m + j``."""
    m, n = g.shape
    i, j = np.divmod(np.arange(m * n), n)
    wl, bl = i * n + j, m * n + i * n + j
    drv, sen = 2 * m * n + np.arange(m), 2 * m * n + m + np.arange(n)
    a = np.concatenate([np.where(j == 0, drv[i], wl - 1), bl, wl])
    b = np.concatenate([wl, np.where(i == m - 1, sen[j], bl + n), bl])
    r_w = np.asarray(r_wl, LD).reshape(-1) + np.where(j == 0, np.asarray(r_source, LD)[i], 0)
    r_b = np.asarray(r_bl, LD).reshape(-1) + np.where(i == m - 1, np.asarray(r_sense, LD)[j], 0)
    if np.any(r_w <= 0) or np.any(r_b <= 0):
        raise ValueError("the reference needs every series resistance positive")
    cond = np.concatenate([1 / r_w, 1 / r_b, np.asarray(g, LD).reshape(-1)])
    keep = cond > 0
    return a[keep], b[keep], cond[keep], 2 * m * n, 2 * m * n + m + n


def reference_solve(g, v_in, *, r_wl, r_bl, r_source, r_sense, iterations=8):
    """Node voltages and output currents of a passive tile for inputs ``v_in`` ``(K, m)``.

    Parameters broadcast to the tile: ``r_wl``, ``r_bl`` ``(m, n)``, ``r_source`` ``(m,)``,
    ``r_sense`` ``(n,)``, all positive in series. Returns ``(v_free, i_out)`` in long double:
    ``v_free`` ``(K, 2 m n)`` (WL then BL nodes), ``i_out`` ``(K, n)``; sense nodes at 0 V.
    """
    g = np.asarray(g, float)
    m, n = g.shape
    v_in = np.atleast_2d(np.asarray(v_in, float))
    K = len(v_in)
    shape = (m, n)
    a, b, G, nf, nt = _branches(g, np.broadcast_to(r_wl, shape), np.broadcast_to(r_bl, shape),
                                np.broadcast_to(r_source, (m,)), np.broadcast_to(r_sense, (n,)))
    E = len(a)
    signs, e2 = np.r_[np.ones(E), -np.ones(E)], np.r_[np.arange(E), np.arange(E)]
    inc = sp.csr_matrix((signs, (np.r_[a, b], e2)), shape=(nt, E))  # +1 at a, -1 at b
    inc_ld = inc.astype(LD)
    d = inc.T.tocsr()  # branch voltages v_a - v_b
    J = (inc[:nf] @ sp.diags(G.astype(float)) @ d[:, :nf]).tocsc()
    lu = spla.splu(J)
    v = np.zeros((nt, K), dtype=LD)
    v[nf : nf + m] = v_in.T
    d_ld = d.astype(LD)
    for _ in range(iterations):
        i_branch = G[:, None] * (d_ld @ v)
        r = inc_ld[:nf] @ i_branch  # net current leaving each free node
        v[:nf] -= lu.solve(np.asarray(r, float)).astype(LD)
    i_branch = G[:, None] * (d_ld @ v)
    into_sense = -(inc_ld[nf + m :] @ i_branch)  # current arriving at each sense node
    return v[:nf].T, into_sense.T
