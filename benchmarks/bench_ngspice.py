"""Issue 2: circuitsim against ngspice (``ngspice -b``, ``.op``) on passive linear tiles.

One input vector. ngspice's time is the wall time of the ``ngspice -b deck.cir`` subprocess (the
deck written beforehand, untimed); circuitsim's is ``cs.crossbar`` + ``cs.solve`` from a fresh tile.
Agreement of the output currents: 1e-9 relative. Target: >= 200x at 64x64.
"""

from __future__ import annotations

from .common import (
    R_WIRE,
    Row,
    best_of,
    clear_caches,
    compare,
    fmt_mb,
    fmt_s,
    not_run,
    probe,
    problem,
    rel_diff,
    warm_time,
    warmup,
)
from .spice import make_deck, ngspice_path, run_ngspice

BENCH = "ngspice passive"
TOL = 1e-9
TARGET = 200.0  # at 64x64


def tile_of(g):
    import circuitsim as cs

    return cs.crossbar(g, r_wl=R_WIRE, r_bl=R_WIRE, r_source=0.0, r_sense=0.0)


def run_circuitsim(g, v):
    import circuitsim as cs

    return cs.solve(tile_of(g), v).i_out


def make_circuitsim(m: int):
    warmup()
    g, v = problem(m, m, 1)
    return lambda: run_circuitsim(g, v[0])


def case(m: int, repeats: int, spice_repeats: int, *, memory: bool = True) -> Row:
    g, v = problem(m, m, 1)
    deck, writer = make_deck(tile_of(g), v[0])
    spice = {}

    def ngspice():
        out = run_ngspice(deck, m)
        spice.setdefault("maxrss", []).append(out["maxrss_mb"])
        return out["i_out"]

    cs_run = lambda: run_circuitsim(g, v[0])
    res = compare({"ngspice": ngspice, "circuitsim": cs_run}, spice_repeats,  # interleaved
                  setup={"circuitsim": clear_caches})
    t_s, times_s, i_s = res["ngspice"]
    _, times_c, i_c = res["circuitsim"]
    maxrss = max([x for x in spice["maxrss"] if x is not None], default=None)
    times_c = times_c + best_of(cs_run, max(0, repeats - len(times_c)), setup=clear_caches)[1]
    t_c = min(times_c)
    t_w = warm_time(cs_run, repeats)
    row = Row(BENCH, f"{m}x{m}, K=1", baseline="ngspice -b", baseline_s=t_s, circuitsim_s=t_c,
              max_rel_diff=rel_diff(i_c, i_s), tolerance=TOL,
              extra={"m": m, "deck_writer": writer, "times_ngspice": times_s,
                     "times_circuitsim": times_c, "ngspice_maxrss_mb": maxrss,
                     "circuitsim_warm_s": t_w})
    row.note = f"circuitsim warm (topology analysis cached): {fmt_s(t_w)}, ratio {t_s / t_w:.0f}x"
    if m == 64:
        row.target, row.target_text = TARGET, f">={TARGET:g}x"
    mem = f"peak memory MB: ngspice process max RSS {fmt_mb(maxrss)}"
    if memory:
        mem_c = probe(__name__, "make_circuitsim", {"m": m})
        row.extra["mem_circuitsim"] = mem_c
        mem += (f", circuitsim RSS rise {fmt_mb(mem_c.get('rss_peak_delta_mb'))} / tracemalloc "
                f"{fmt_mb(mem_c.get('tracemalloc_peak_mb'))}")
    row.extra["mem_line"] = mem + f"; deck: {writer}"
    return row.finish()


def run(cfg) -> list[Row]:
    sizes = (32, 64)
    if ngspice_path() is None:
        return [not_run(BENCH, f"{m}x{m}, K=1", "ngspice not installed") for m in sizes]
    rows = []
    for m in sizes:
        spice_repeats = 1 if cfg.quick and m >= 64 else min(cfg.repeats, 3)
        try:
            rows.append(cfg.progress(case(m, max(cfg.repeats, 5), spice_repeats,
                                          memory=cfg.memory)))
        except Exception as exc:  # noqa: BLE001 - must not stop the other benchmarks
            rows.append(cfg.progress(not_run(BENCH, f"{m}x{m}, K=1",
                                             f"{type(exc).__name__}: {exc}")))
    return rows
