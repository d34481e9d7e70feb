"""Issue 3: nonlinear (sinh) and 1T1R tiles, circuitsim's batched Newton against ngspice ``.op``.

Tiles (issue 3's example parameters): g uniform in [1e-6, 1e-4] S, ``r_wl = r_bl = 1`` Ohm,
``r_source = 2`` Ohm, ``r_sense = 1`` Ohm, ``Sinh(a=3)`` memristors, inputs uniform in [0, 0.3] V;
the 1T1R tile adds ``Level1(vto=0.5, kp=2e-4, lambda_=0.01, w=1 um, l=0.1 um)`` access transistors
with ``v_gate = 1.8`` V.

- 64x64 sinh tile and 64x64 1T1R (sinh) tile: ngspice ``.op`` on input vector 0 (deck from
  ``circuitsim.netlist.to_spice``, wall time of ``ngspice -b``) against circuitsim on the same tile
  with 1 and with 64 input vectors (per-vector time = time / 64); agreement of vector 0's output
  currents to 1e-6 relative. Target: >= 100x per input vector with 64 vectors.
- 128x128 sinh and 1T1R sinh tiles, 64 inputs, against ngspice ``.op`` on vector 0 (full runs
  only: ngspice takes minutes there; it runs once). Target (issue 7): 3x less time per vector than
  the engine took before its hardening on this 2-core machine (32 ms sinh, 179 ms 1T1R sinh per
  vector, K = 64), expressed as the same-run ratio against ngspice's time: the row passes when
  ``ngspice / circuitsim >= ngspice / (t_before / 3)``. (The engine at 67322ed, timed again on
  this machine on these tiles with one BLAS thread, took 84.5 ms sinh and 173.5 ms 1T1R per
  vector: the sinh figure of the issue did not reproduce; the targets keep the issue's.)
- 128x128 and 256x256 1T1R sinh tiles, 64 inputs: Newton iterations, time per input vector and
  peak memory, per Newton mode (``"newton-krylov"``, ``"newton"``), each in a fresh subprocess.
"""

from __future__ import annotations

import inspect

import numpy as np

from .common import (
    R_WIRE,
    Row,
    clear_caches,
    compare,
    fmt_mb,
    fmt_s,
    not_run,
    probe,
    problem,
    rel_diff,
    warmup,
)
from .spice import ngspice_path, project_writer, run_ngspice

BENCH = "ngspice nonlinear"
BENCH_SCALE = "Newton scaling"
TOL = 1e-6
TARGET = 100.0  # ngspice time / circuitsim time per vector, K = 64
K = 64
R_SOURCE, R_SENSE = 2.0, 1.0


def newton_status() -> tuple[str | None, tuple]:
    """``(reason it cannot run or None, supported modes)``."""
    try:
        from circuitsim import newton
    except ImportError as exc:
        return f"circuitsim.newton is not available yet ({exc})", ()
    modes = tuple(getattr(newton, "MODES", ()))
    if not modes:
        try:
            sig = inspect.signature(newton.solve_newton)
            if "mode" in sig.parameters:
                modes = ("newton-krylov", "newton")
        except (AttributeError, ValueError):
            pass
    return None, modes


def tile_of(g, kind: str):
    import circuitsim as cs

    kw = {"r_wl": R_WIRE, "r_bl": R_WIRE, "r_source": R_SOURCE, "r_sense": R_SENSE,
          "device": cs.devices.Sinh(a=3.0)}
    if kind == "1T1R":
        kw.update(access=cs.devices.Level1(vto=0.5, kp=2e-4, lambda_=0.01, w=1e-6, l=0.1e-6),
                  v_gate=1.8)
    return cs.crossbar(g, **kw)


def run_circuitsim(g, v, kind: str, mode: str | None = None):
    import circuitsim as cs

    opts = {} if mode is None else {"mode": mode}
    return cs.solve(tile_of(g, kind), v, **opts)


def make_circuitsim(m: int, kind: str, k: int, mode: str | None = None):
    """Memory/time probe: returns a callable whose dict result the probe records."""
    warmup()
    g, v = problem(m, m, k)
    run_circuitsim(*problem(4, 4, 2), kind, mode)  # warm the Newton path

    def work():
        sol = run_circuitsim(g, v, kind, mode)
        return {"iterations_mean": float(np.mean(sol.iterations)),
                "iterations_max": int(np.max(sol.iterations)),
                "converged": bool(np.all(sol.converged)), "method": sol.method}

    return work


def spice_case(m: int, kind: str, repeats: int, spice_repeats: int, k: int = K) -> list[Row]:
    """ngspice on vector 0 against circuitsim with 1 and with ``k`` vectors: two rows."""
    to_spice = project_writer()
    g, v = problem(m, m, k)
    deck = to_spice(tile_of(g, kind), v[0])
    spice = {}

    def ngspice():
        out = run_ngspice(deck, m)
        spice.setdefault("maxrss", []).append(out["maxrss_mb"])
        return out["i_out"]

    res = compare({"ngspice": ngspice,
                   "cs1": lambda: run_circuitsim(g, v[0], kind),
                   "csK": lambda: run_circuitsim(g, v, kind)}, max(spice_repeats, 1),
                  setup={"cs1": clear_caches, "csK": clear_caches})
    more = compare({"cs1": lambda: run_circuitsim(g, v[0], kind),
                    "csK": lambda: run_circuitsim(g, v, kind)}, max(0, repeats - spice_repeats),
                   setup={"cs1": clear_caches, "csK": clear_caches})
    t_s, times_s, i_s = res["ngspice"]
    times1 = res["cs1"][1] + more["cs1"][1]
    timesK = res["csK"][1] + more["csK"][1]
    sol1, solK = res["cs1"][2], res["csK"][2]
    diff1 = rel_diff(sol1.i_out, i_s)
    diffK = rel_diff(solK.i_out[0], i_s)
    maxrss = max([x for x in spice["maxrss"] if x is not None], default=None)
    base = {"m": m, "kind": kind, "times_ngspice": times_s, "ngspice_maxrss_mb": maxrss,
            "method": solK.method}
    r1 = Row(BENCH, f"{kind} {m}x{m}, K=1", baseline="ngspice .op", baseline_s=t_s,
             circuitsim_s=min(times1), max_rel_diff=diff1, tolerance=TOL,
             extra=dict(base, times_circuitsim=times1,
                        iterations=int(np.max(sol1.iterations))))
    r1.note = f"Newton iterations {int(np.max(sol1.iterations))}; {sol1.method}"
    tK = min(timesK)
    rK = Row(BENCH, f"{kind} {m}x{m}, K={k} per vector", baseline="ngspice .op", baseline_s=t_s,
             circuitsim_s=tK / k, max_rel_diff=max(diffK, diff1), tolerance=TOL,
             target=TARGET, target_text=f">={TARGET:g}x",
             extra=dict(base, times_circuitsim_K=timesK, K=k,
                        iterations_mean=float(np.mean(solK.iterations)),
                        iterations_max=int(np.max(solK.iterations))))
    rK.note = (f"K={k} batch {fmt_s(tK)}; Newton iterations mean "
               f"{np.mean(solK.iterations):.1f} max {int(np.max(solK.iterations))}; "
               f"ngspice max RSS {fmt_mb(maxrss)} MB; agreement of vector 0 vs ngspice: "
               f"K=1 {diff1:.1e}, K={k} {diffK:.1e}")
    return [r1.finish(), rK.finish()]


#: Time per vector (s) of the engine before the hardening issue, 128x128, K = 64 (issue 7).
BEFORE_128 = {"sinh": 0.032, "1T1R": 0.179}


def before_case(kind: str, repeats: int) -> Row:
    """128x128, K = 64 against ngspice once, with issue 7's 3x target as a same-run ratio."""
    _, row = spice_case(128, kind, repeats, 1)
    row.bench = "ngspice 128x128"
    if row.baseline_s:
        row.target = row.baseline_s / (BEFORE_128[kind] / 3)
        row.target_text = f">={row.target:.0f}x"
        row.status = ""
        row.note += (f"; target: {fmt_s(BEFORE_128[kind] / 3)} per vector (a third of "
                     f"{fmt_s(BEFORE_128[kind])} before)")
    return row.finish()


def scale_case(m: int, mode: str | None, *, k: int = K, timeout: float = 600.0) -> Row:
    """One 1T1R sinh tile, ``k`` inputs, in a fresh subprocess: time, iterations, peak RSS."""
    name = f"1T1R {m}x{m}, K={k}, {mode or 'default'}"
    mem = probe(__name__, "make_circuitsim", {"m": m, "kind": "1T1R", "k": k, "mode": mode},
                trace=False, timeout=timeout)
    if "error" in mem:
        return Row(BENCH_SCALE, name, status="FAIL", note=mem["error"][-400:])
    res = mem.get("result") or {}
    row = Row(BENCH_SCALE, name, circuitsim_s=mem["time_s"] / k, status="INFO",
              extra={"m": m, "K": k, "mode": mode, "mem": mem, **res})
    row.note = (f"per vector {fmt_s(mem['time_s'] / k)} (batch of {k}: {fmt_s(mem['time_s'])}); "
                f"Newton iterations mean {res.get('iterations_mean', float('nan')):.1f} max "
                f"{res.get('iterations_max', '?')}; converged {res.get('converged')}; peak RSS "
                f"rise {fmt_mb(mem['rss_peak_delta_mb'])} MB (process {fmt_mb(mem['vmhwm_mb'])} MB)")
    return row


def run(cfg) -> list[Row]:
    rows: list[Row] = []
    reason, modes = newton_status()
    spice_reason = reason
    if spice_reason is None and project_writer() is None:
        spice_reason = "circuitsim.netlist.to_spice is not available yet (nonlinear decks need it)"
    if spice_reason is None and ngspice_path() is None:
        spice_reason = "ngspice not installed"
    for kind in ("sinh", "1T1R"):
        if spice_reason:
            rows += [not_run(BENCH, f"{kind} 64x64, K=1", spice_reason),
                     not_run(BENCH, f"{kind} 64x64, K={K} per vector", spice_reason,
                             target=TARGET, target_text=f">={TARGET:g}x")]
            continue
        try:
            rows += [cfg.progress(r) for r in spice_case(64, kind, cfg.repeats,
                                                         1 if cfg.quick else 2)]
        except Exception as exc:  # noqa: BLE001 - report, do not stop the others
            rows.append(cfg.progress(not_run(BENCH, f"{kind} 64x64", f"{type(exc).__name__}: {exc}",
                                             target=TARGET, target_text=f">={TARGET:g}x")))
    if not spice_reason and cfg.full:
        for kind in ("sinh", "1T1R"):
            rows.append(cfg.progress(before_case(kind, cfg.repeats)))
    sizes = (128, 256)
    if reason:
        return rows + [not_run(BENCH_SCALE, f"1T1R {m}x{m}, K={K}", reason) for m in sizes]
    if cfg.quick:
        return rows + [not_run(BENCH_SCALE, f"1T1R {m}x{m}, K={K}", "full mode only")
                       for m in sizes]
    for m in sizes:
        for mode in (modes or (None,)):
            rows.append(cfg.progress(scale_case(m, mode)))
    rows += mode_agreement(cfg)
    return rows


def mode_agreement(cfg, m: int = 32, k: int = 8) -> list[Row]:
    """Newton-Krylov and full Newton agree (1e-9) on a small 1T1R tile (a cheap sanity check)."""
    reason, modes = newton_status()
    if reason or len(modes) < 2:
        return []
    g, v = problem(m, m, k)
    outs = {mode: run_circuitsim(g, v, "1T1R", mode).i_out for mode in modes}
    ref = outs[modes[-1]]
    diff = max(rel_diff(o, ref) for o in outs.values())
    return [cfg.progress(Row(BENCH_SCALE, f"modes agree, 1T1R {m}x{m}, K={k}", max_rel_diff=diff,
                             tolerance=1e-9, note=" vs ".join(modes)).finish())]
