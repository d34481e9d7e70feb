"""Issue 10: the GPU backend against the CPU path on the same machine.

- ``linear``: ``B`` passive tiles of ``m x m`` (g uniform in [1e-6, 1e-4] S, 1 ohm wires,
  ``r_source`` 2 ohm, ``r_sense`` 1 ohm), ``K`` input vectors per tile, every node voltage
  solved. Full: 256 tiles of 128 x 128, 128 inputs (target: the GPU at least 20x faster, equal
  to 1e-9 relative).
- ``linear-outputs``: the same with outputs only (``voltages=False``), reported without a
  target: there the CPU path takes each tile's currents from its transfer matrix (one
  Schur-complement factorisation with CHOLMOD and a product), which the GPU path does not have.
- ``nonlinear``: ``B`` 1T1R tiles of ``m x m`` with sinh memristors (``Sinh(a=3)``, level-1
  access transistors, gate 1.8 V), ``K`` inputs per tile. Full: 64 tiles of 64 x 64, 64 inputs
  (target: at least 10x, equal to 1e-6 relative).

The GPU time is the best of the warm runs (the cuDSS analysis of the topology cached), with the
first, cold run reported beside it. The CPU path is timed on ``cpu_tiles`` of the ``B`` tiles
(all by default) and scaled by ``B / cpu_tiles``: tiles are independent and the CPU path solves
them in chunks, so its time is linear in their number; the differences are taken on those
tiles. Without a usable GPU the rows are NOT RUN with the detection's reason.
"""

from __future__ import annotations

import time

import numpy as np

from .common import G_HI, G_LO, V_HI, Row, fmt_s, not_run, rel_diff

BENCH = "gpu"
ACCESS = {"vto": 0.5, "kp": 2e-4, "lambda_": 0.01, "w": 1e-6, "l": 1e-7}
FULL = {"linear": (256, 128, 128), "linear-outputs": (256, 128, 128), "nonlinear": (64, 64, 64)}
QUICK = {"linear": (16, 64, 32), "linear-outputs": (16, 64, 32), "nonlinear": (8, 32, 16)}
TARGETS = {"linear": (20.0, 1e-9), "linear-outputs": (None, 1e-9), "nonlinear": (10.0, 1e-6)}


def make_problem(kind: str, B: int, m: int, K: int, seed: int = 2024):
    """The tile and inputs ``(B, K, m)`` of one case."""
    import circuitsim as cs

    rng = np.random.default_rng([seed, B, m, K])
    g = rng.uniform(G_LO, G_HI, (B, m, m))
    v = rng.uniform(0.0, V_HI, (B, K, m))
    kw = {}
    if kind == "nonlinear":
        kw = {"device": cs.devices.Sinh(a=3.0), "access": cs.devices.Level1(**ACCESS),
              "v_gate": 1.8}
    return cs.crossbar(g, 1.0, 1.0, 2.0, 1.0, **kw), v


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def case(kind: str, B: int, m: int, K: int, *, repeats: int = 2, backend=None,
         cpu_tiles: int | None = None) -> Row:
    """Time one case on ``backend`` (default: the GPU, ``"cupy"``) against the CPU path."""
    import circuitsim as cs
    from circuitsim.backend import probe

    label = f"{kind} {B} x {m}x{m}, K={K}"
    if backend is None:
        found, why = probe()
        if found is None:
            return not_run(BENCH, label, f"no usable GPU: {why}")
        backend = found
    target, tol = TARGETS[kind]
    tile, v = make_problem(kind, B, m, K)
    voltages = kind != "linear-outputs"
    run = {"voltages": voltages, "backend": backend}
    t_cold, sol = _timed(lambda: cs.solve(tile, v, **run))
    t_gpu = min(_timed(lambda: cs.solve(tile, v, **run))[0] for _ in range(repeats))
    n_cpu = B if cpu_tiles is None else max(1, min(cpu_tiles, B))
    sub = tile.select(np.arange(n_cpu)) if n_cpu < B else tile
    cs.solve(sub.select(np.arange(1)) if n_cpu > 1 else sub, v[:1], voltages=voltages)  # warm
    t_cpu_sub, ref = _timed(lambda: cs.solve(sub, v[:n_cpu], voltages=voltages,
                                             backend="numpy"))
    t_cpu = t_cpu_sub * B / n_cpu
    diff = rel_diff(sol.i_out[:n_cpu], ref.i_out)
    row = Row(BENCH, label, baseline="CPU path", baseline_s=t_cpu, circuitsim_s=t_gpu,
              target=target, max_rel_diff=diff, tolerance=tol,
              extra={"cold_s": t_cold, "cpu_tiles": n_cpu, "cpu_measured_s": t_cpu_sub,
                     "gpu_method": sol.method, "cpu_method": ref.method,
                     "converged": bool(np.all(sol.converged)), "device": backend.device})
    row.note = (f"GPU {sol.method}; cold (first) run {fmt_s(t_cold)}; CPU {ref.method}"
                + (f", timed on {n_cpu} of {B} tiles and scaled by {B / n_cpu:g}"
                   if n_cpu < B else ""))
    if not row.extra["converged"]:
        row.status = "FAIL"
    return row.finish()


def run(cfg) -> list[Row]:
    try:
        import circuitsim  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        return [not_run(BENCH, "all", str(exc))]
    sizes = QUICK if cfg.quick else FULL
    return [cfg.progress(case(kind, *sizes[kind], repeats=cfg.repeats)) for kind in sizes]
