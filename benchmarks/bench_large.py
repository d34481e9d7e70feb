"""Issue 2: a 1024x1024 passive tile (2M unknowns), one input vector, in a fresh subprocess.

Reports the wall time of ``cs.crossbar`` + ``cs.solve`` and the process's peak resident memory
(``VmHWM``, which must stay below 24 GB) and its rise during the solve. The solve audits its own KCL
residual and raises if it exceeds tolerance, so a returned solution is exact.
"""

from __future__ import annotations

from .common import R_WIRE, Row, not_run, probe, problem, warmup

BENCH = "large tile"
LIMIT_MB = 24 * 1024


def make_circuitsim(m: int):
    import circuitsim as cs

    warmup()
    g, v = problem(m, m, 1)

    def work():
        sol = cs.solve(cs.crossbar(g, r_wl=R_WIRE, r_bl=R_WIRE, r_source=0.0, r_sense=0.0), v[0])
        return sol.i_out

    return work


def case(m: int) -> Row:
    mem = probe(__name__, "make_circuitsim", {"m": m}, trace=False, timeout=900)
    name = f"{m}x{m}, K=1 ({2 * m * m / 1e6:.1f}M unknowns)"
    if "error" in mem:
        return Row(BENCH, name, status="FAIL", note=mem["error"])
    peak = mem["vmhwm_mb"]
    row = Row(BENCH, name, circuitsim_s=mem["time_s"], target_text="<24 GB",
              status="PASS" if peak < LIMIT_MB else "MISS", extra={"m": m, "mem": mem})
    row.extra["mem_line"] = (f"process peak RSS {peak / 1024:.2f} GB (rise during the solve "
                             f"{mem['rss_peak_delta_mb'] / 1024:.2f} GB); limit 24 GB")
    return row.finish()


def run(cfg) -> list[Row]:
    if not cfg.full:
        return [not_run(BENCH, "1024x1024, K=1", "full mode only (--full)")]
    return [cfg.progress(case(1024))]
