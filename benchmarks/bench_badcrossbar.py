"""Issue 2: circuitsim against badcrossbar 1.1.0 on passive tiles.

The same circuit on both sides: badcrossbar's crossbar has every word line driven at its left end
through one interconnect segment ``r_i`` before column 0, one segment ``r_i`` between neighbouring
cells, and every bit line grounded at its bottom through one segment ``r_i`` after row m-1; its
``resistances`` are device resistances ``1/g``, ``applied_voltages`` has shape ``(m, K)`` and
``currents.output`` ``(K, n)`` is the current out of the bottom of each bit line. That is
circuitsim's tile (DESIGN.md section 3) with ``r_wl = r_bl = r_i`` and ``r_source = r_sense = 0``,
which the output-current agreement (1e-9 relative) confirms.

Two comparisons: both sides producing the node voltages and the output currents (badcrossbar with
``node_voltages=True, all_currents=False``, circuitsim's ``solve`` with its default
``voltages=True``), and both producing the output currents only (badcrossbar with
``node_voltages=False, all_currents=False``, circuitsim with ``voltages=False``). circuitsim's time
includes building the tile (``cs.crossbar``) and its analysis, from a fresh tile every run.
"""

from __future__ import annotations

import logging

import numpy as np

from .common import (
    R_WIRE,
    Row,
    clear_caches,
    compare,
    fmt_s,
    not_run,
    probe_pair,
    problem,
    rel_diff,
    warm_time,
    warmup,
)

BENCH = "badcrossbar"
TOL = 1e-9
TARGET = 3.0  # at 256x256, K = 64
#: badcrossbar runs longer than this (s, K = 1) skip its K = 64 case.
SLOW_S = 60.0


def available() -> str | None:
    """None if badcrossbar imports, else the reason."""
    try:
        import badcrossbar  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or pycairo failing to load
        return f"badcrossbar not importable ({type(exc).__name__}: {exc}); pip install 'circuitsim[bench]'"
    return None


def _quiet():
    logging.getLogger("badcrossbar").setLevel(logging.WARNING)


def run_badcrossbar(g, v, voltages: bool = True):
    import badcrossbar

    sol = badcrossbar.compute(v.T, 1.0 / g, r_i=R_WIRE, node_voltages=voltages,
                              all_currents=False)
    return np.atleast_2d(sol.currents.output)


def run_circuitsim(g, v, voltages: bool = True):
    import circuitsim as cs

    sol = cs.solve(cs.crossbar(g, r_wl=R_WIRE, r_bl=R_WIRE, r_source=0.0, r_sense=0.0), v,
                   voltages=voltages)
    return sol.i_out


# factories for the memory probes (benchmarks.common.probe)

def make_badcrossbar(m: int, K: int, voltages: bool = True):
    _quiet()
    g, v = problem(m, m, K)
    run_badcrossbar(*problem(4, 4, 2))
    return lambda: run_badcrossbar(g, v, voltages)


def make_circuitsim(m: int, K: int, voltages: bool = True):
    warmup()
    g, v = problem(m, m, K)
    return lambda: run_circuitsim(g, v, voltages)


def case(m: int, K: int, repeats: int, *, memory: bool = True, voltages: bool = True) -> Row:
    """Time both on one ``m x m`` tile with ``K`` inputs; agreement and (optionally) memory."""
    _quiet()
    g, v = problem(m, m, K)
    cs_run = lambda: run_circuitsim(g, v, voltages)
    res = compare({"badcrossbar": lambda: run_badcrossbar(g, v, voltages), "circuitsim": cs_run},
                  repeats, setup={"circuitsim": clear_caches})
    t_w = warm_time(cs_run, repeats)
    t_b, times_b, i_b = res["badcrossbar"]
    t_c, times_c, i_c = res["circuitsim"]
    label = f"{m}x{m}, K={K}" + ("" if voltages else ", outputs only")
    row = Row(BENCH, label, baseline="badcrossbar", baseline_s=t_b, circuitsim_s=t_c,
              max_rel_diff=rel_diff(i_c, i_b), tolerance=TOL,
              extra={"m": m, "n": m, "K": K, "voltages": voltages, "times_badcrossbar": times_b,
                     "times_circuitsim": times_c, "circuitsim_warm_s": t_w})
    row.note = (f"circuitsim warm (topology analysis cached): {fmt_s(t_w)}, ratio "
                f"{t_b / t_w:.1f}x")
    if (m, K) == (256, 64):
        row.target, row.target_text = TARGET, f">={TARGET:g}x"
    if memory:
        errs = probe_pair(row, __name__, ("badcrossbar", "make_badcrossbar"), "make_circuitsim",
                          {"m": m, "K": K, "voltages": voltages})
        if errs:
            row.note += "; " + "; ".join(errs)
    return row.finish()


def run(cfg) -> list[Row]:
    reason = available()
    sizes = [64, 128, 256] + ([512] if cfg.full else [])
    if reason:
        return [not_run(BENCH, f"{m}x{m}, K={K}", reason) for m in sizes for K in (1, 64)]
    rows = []
    for m in sizes:
        repeats = cfg.repeats if m <= 256 else 1
        first = case(m, 1, repeats, memory=cfg.memory)
        rows.append(cfg.progress(first))
        if first.baseline_s is not None and first.baseline_s > SLOW_S:
            rows.append(not_run(BENCH, f"{m}x{m}, K=64",
                                f"badcrossbar took {first.baseline_s:.0f} s at K=1 (> {SLOW_S:g} s)"))
            continue
        # the target case gets more repeats: badcrossbar's multi-RHS SuperLU solve calls
        # multithreaded BLAS, which slows down erratically when other processes share the cores
        reps = max(repeats, 5) if m == 256 else repeats
        rows.append(cfg.progress(case(m, 64, reps, memory=cfg.memory)))
        if m in (128, 256):
            rows.append(cfg.progress(case(m, 64, reps, memory=cfg.memory, voltages=False)))
    return rows
