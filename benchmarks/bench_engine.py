"""Issue 7: the transfer matrix across wire resistance, and many input vectors in bounded memory.

- ``transfer``: ``cs.transfer_matrix`` on passive 256 x 256 (and, full runs, 512 x 512) tiles,
  g uniform in [1e-6, 1e-4] S, ``r_source = r_sense = 0``, wire resistance 0.01 to 10 ohm; next
  to it, one numeric Cholesky factorisation of the same tile's matrix in its nested-dissection
  order (the cheapest thing any exact solve must do), timed warm (analysis cached) on both
  sides. The ratio is ``factorisation / transfer_matrix``: 1 would mean the transfer matrix costs
  one factorisation. The row passes when every tile took the Schur path (no fallback).
- ``many``: a 128 x 128 tile, K = 100,000 input vectors, outputs only (``voltages=False``), in a
  fresh process: time per vector and the peak RSS rise (target under 1 GB).
"""

from __future__ import annotations

import warnings

import numpy as np

from .common import Row, best_of, fmt_s, not_run, probe, problem

BENCH = "engine"
WIRES = (0.01, 0.1, 1.0, 2.0, 10.0)
MANY_K = 100_000
MANY_TARGET_MB = 1000.0


def _factor_time(tile, repeats: int) -> float:
    """Best time of one numeric factorisation of the tile's matrix (analysis cached)."""
    from circuitsim import solvers
    from circuitsim.branches import branch_values
    from circuitsim.factor import analysis
    from circuitsim.mna import tile_plans

    plan = tile_plans(tile)[0]
    zero = np.zeros((1, plan.n_free + plan.n_fixed))
    bv = branch_values(plan, zero, plan.tiles)
    J = plan.jacobian(bv.p, bv.q)
    symbolic = analysis(plan, J, "cholmod" if solvers.cholmod_available() else "superlu",
                        symmetric=True)
    return best_of(lambda: symbolic.factorize(J), repeats)[0]


def transfer_case(m: int, r_wire: float, repeats: int) -> Row:
    import circuitsim as cs

    g, v = problem(m, m, 4)
    tile = cs.crossbar(g, r_wire, r_wire, 0.0, 0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cs.transfer_matrix(tile)  # warm: the analyses of this topology are cached
        t_T, _, (T, info) = best_of(lambda: cs.transfer_matrix(tile, full_output=True), repeats)
    t_f = _factor_time(tile, repeats)
    ref = cs.solve(tile, v).i_out
    diff = float(np.max(np.abs(v @ T.T - ref) / np.abs(ref)))
    row = Row(BENCH, f"transfer {m}x{m}, r={r_wire:g} ohm", baseline="one factorisation",
              baseline_s=t_f, circuitsim_s=t_T, max_rel_diff=diff, tolerance=1e-9,
              extra={"m": m, "r_wire": r_wire, "method": list(info.method),
                     "check_error": info.check_error.tolist(), "warnings": len(caught)})
    schur = all(mth == "schur" for mth in info.method) and not caught
    row.status = ("FAIL" if diff > 1e-9 else "PASS" if schur else "MISS")
    row.target_text = "schur path"
    row.note = (f"path {info.method[0]}, check error {info.check_error[0]:.2g} of its bound; "
                f"transfer_matrix = {t_T / t_f:.1f} factorisations")
    return row.finish()


def make_many(K: int):
    """Probe factory: a 128 x 128 tile and ``K`` inputs; the work solves for outputs only."""
    import circuitsim as cs

    g, v = problem(128, 128, K)
    g0, v0 = problem(8, 8, 20)
    cs.solve(cs.crossbar(g0, 1.0, 1.0), v0, voltages=False)  # warm imports and the route

    def work():
        sol = cs.solve(cs.crossbar(g, 1.0, 1.0), v, voltages=False)
        return {"converged": bool(sol.converged.all()), "method": sol.method}

    return work


def many_case(K: int) -> Row:
    mem = probe(__name__, "make_many", {"K": K}, trace=False)
    row = Row(BENCH, f"128x128, K={K:,}, outputs only", extra={"probe": mem})
    if "error" in mem:
        return not_run(BENCH, row.case, mem["error"])
    rise = mem["rss_peak_delta_mb"]
    row.circuitsim_s = mem["time_s"]
    row.target_text = f"<{MANY_TARGET_MB:g} MB"
    ok = mem["result"]["converged"]
    row.status = "FAIL" if not ok else "PASS" if rise < MANY_TARGET_MB else "MISS"
    row.note = (f"peak RSS rise {rise:.0f} MB; {fmt_s(mem['time_s'] / K)} per vector "
                f"({mem['result']['method']})")
    return row


def run(cfg) -> list[Row]:
    try:
        import circuitsim  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        return [not_run(BENCH, "all", str(exc))]
    rows = []
    for m in (256,) + ((512,) if cfg.full else ()):
        for r in WIRES:
            rows.append(cfg.progress(transfer_case(m, r, cfg.repeats if m <= 256 else 1)))
    if cfg.memory:
        rows.append(cfg.progress(many_case(MANY_K)))
    return rows
