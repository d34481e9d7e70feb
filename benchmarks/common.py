"""Shared benchmark machinery: problems, timing, memory probes, result rows.

Timing protocol: every comparison times the baseline and circuitsim in the same process, interleaved
(baseline, circuitsim, baseline, ...), and keeps the best of N runs of each, so that the noise of a
shared machine hits both sides alike; the ratio is ``best baseline time / best circuitsim time``.

Memory is measured in a fresh subprocess per case (:func:`probe`), so peaks never mix: the process
peak RSS is reset (``/proc/self/clear_refs``) after the inputs are built, then the work runs once and
the rise of ``VmHWM`` is its peak resident memory; then it runs once more under ``tracemalloc`` for the
peak of Python-visible allocations (numpy arrays included; C libraries such as CHOLMOD or SuperLU
allocate outside it, which the RSS figure covers).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

#: Realistic tile parameters (issue 2 / issue 3): 100 kOhm .. 1 MOhm devices, 1 Ohm wire segments.
G_LO, G_HI = 1e-6, 1e-4
R_WIRE = 1.0
V_HI = 0.3
SEED = 2024


def problem(m: int, n: int, K: int, seed: int = SEED):
    """Conductances ``(m, n)`` uniform in [1e-6, 1e-4] S and inputs ``(K, m)`` uniform in [0, 0.3] V."""
    rng = np.random.default_rng([seed, m, n, K])
    g = rng.uniform(G_LO, G_HI, (m, n))
    v = rng.uniform(0.0, V_HI, (K, m))
    return g, v


def rel_diff(a, b) -> float:
    """Largest elementwise relative difference ``|a - b| / |b|`` (``b`` is the reference)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    scale = np.maximum(np.abs(b), 1e-300)
    return float(np.max(np.abs(a - b) / scale))


# ----------------------------------------------------------------------------------------------
# timing


#: Average number of cores that *other* processes kept busy during each compare() since the last
#: call of :func:`take_other_cpu` (the machine is shared: this says how noisy a figure is).
_OTHER_CPU: list[float] = []


def _cpu_snapshot():
    """(wall, busy CPU seconds of the whole machine, CPU seconds of this process and its
    waited-for children)."""
    hz = os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(vals[:8]) - vals[3] - vals[4]) / hz  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def take_other_cpu() -> float | None:
    """Largest other-process CPU load (cores) over the compare() calls since the last call."""
    out = max(_OTHER_CPU) if _OTHER_CPU else None
    _OTHER_CPU.clear()
    return out


def _timed(fn: Callable[[], Any]):
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def clear_caches() -> None:
    """Forget circuitsim's analyses of earlier topologies, so that the next solve is cold.

    circuitsim keeps the analysis (ordering, symbolic factorisation) of recently seen tile
    topologies and reuses it for any tile of the same shape; a baseline such as badcrossbar has no
    such cache, so the headline figures time circuitsim cold (this is called, untimed, before
    each timed run) and report the warm time separately.
    """
    try:
        from circuitsim import mna
    except ImportError:
        return
    cache = getattr(mna, "_TOPOLOGIES", None)
    if cache is not None:
        cache.clear()
    gc.collect()


def compare(fns: dict[str, Callable[[], Any]], repeats: int, *, budget_s: float = 120.0,
            setup: dict[str, Callable[[], Any]] | None = None):
    """Time several callables interleaved; best of ``repeats`` each (fewer if over ``budget_s``).

    ``setup[name]``, if given, runs untimed before each timed call of ``fns[name]``.
    Returns ``{name: (best_time, [times], last_output)}``.
    """
    times = {k: [] for k in fns}
    outs: dict[str, Any] = {}
    setup = setup or {}
    start = time.perf_counter()
    snap0 = _cpu_snapshot()
    for r in range(repeats):
        for k, fn in fns.items():
            if k in setup:
                setup[k]()
            t, outs[k] = _timed(fn)
            times[k].append(t)
        if r + 1 < repeats and time.perf_counter() - start > budget_s:
            break
    snap1 = _cpu_snapshot()
    wall = snap1[0] - snap0[0]
    if wall > 0.05:
        _OTHER_CPU.append(max(0.0, ((snap1[1] - snap0[1]) - (snap1[2] - snap0[2])) / wall))
    return {k: (min(times[k]) if times[k] else None, times[k], outs.get(k)) for k in fns}


def best_of(fn: Callable[[], Any], repeats: int, *, budget_s: float = 120.0,
            setup: Callable[[], Any] | None = None):
    """``(best_time, [times], last_output)`` of one callable."""
    return compare({"x": fn}, repeats, budget_s=budget_s,
                   setup=None if setup is None else {"x": setup})["x"]


def warm_time(fn: Callable[[], Any], repeats: int) -> float | None:
    """Best time of ``fn`` with circuitsim's analysis of its topology cached (one untimed run first)."""
    fn()
    return best_of(fn, repeats)[0]


# ----------------------------------------------------------------------------------------------
# memory probes in fresh subprocesses


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def _probe_main(spec: dict) -> dict:
    """Runs inside the subprocess (see :func:`probe`)."""
    mod = importlib.import_module(spec["module"])
    work = getattr(mod, spec["factory"])(**spec["kwargs"])
    clear_caches()
    rss0 = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    hwm0 = _status_kb("VmHWM")
    t0 = time.perf_counter()
    res = work()
    wall = time.perf_counter() - t0
    hwm = _status_kb("VmHWM")
    out = {
        "result": res if isinstance(res, dict) else None,
        "time_s": wall,
        "rss_before_mb": rss0 / 1024,
        "vmhwm_mb": hwm / 1024,
        "rss_peak_delta_mb": (hwm - (rss0 if reset else hwm0)) / 1024,
        "hwm_reset": reset,
    }
    if spec.get("trace", True):
        clear_caches()
        tracemalloc.start()
        work()
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out


def probe_pair(row, module: str, baseline: tuple[str, str], factory_c: str, kwargs: dict) -> list:
    """Probe the baseline's and circuitsim's peak memory for one case, each in a fresh process.

    ``baseline`` is ``(label, factory)``. Stores both dicts in ``row.extra`` (``mem_<label>``,
    ``mem_circuitsim``) with the printed ``mem_line``; returns the probes' error messages.
    """
    label, factory_b = baseline
    mem_b = probe(module, factory_b, kwargs)
    mem_c = probe(module, factory_c, kwargs)
    row.extra.update({f"mem_{label}": mem_b, "mem_circuitsim": mem_c})
    row.extra["mem_line"] = (
        f"peak memory MB (RSS rise / tracemalloc): {label} "
        f"{fmt_mb(mem_b.get('rss_peak_delta_mb'))} / {fmt_mb(mem_b.get('tracemalloc_peak_mb'))}, "
        f"circuitsim {fmt_mb(mem_c.get('rss_peak_delta_mb'))} / "
        f"{fmt_mb(mem_c.get('tracemalloc_peak_mb'))}"
    )
    return [d["error"] for d in (mem_b, mem_c) if "error" in d]


def probe(module: str, factory: str, kwargs: dict, *, trace: bool = True,
          timeout: float = 900.0) -> dict:
    """Peak memory (and wall time of one run) of ``module.factory(**kwargs)()`` in a fresh process.

    ``factory`` builds the inputs (and warms up imports) and returns the zero-argument callable to
    measure. Returns a dict with ``time_s``, ``rss_peak_delta_mb``, ``vmhwm_mb`` and, when
    ``trace``, ``tracemalloc_peak_mb``; or ``{"error": ...}``.
    """
    spec = {"module": module, "factory": factory, "kwargs": kwargs, "trace": trace}
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.common", json.dumps(spec)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"memory probe timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"probe failed (rc={proc.returncode}): " + " | ".join(tail)}


def warmup():
    """Import and exercise the lazily loaded parts (scipy.sparse.linalg, CHOLMOD) on a tiny tile."""
    import circuitsim as cs

    g, v = problem(4, 4, 2)
    cs.solve(cs.crossbar(g, R_WIRE, R_WIRE), v)
    cs.transfer_matrix(cs.crossbar(g, R_WIRE, R_WIRE))


# ----------------------------------------------------------------------------------------------
# results


@dataclass
class Row:
    """One line of a benchmark table; ``ratio = baseline_s / circuitsim_s`` (None if not timed)."""

    bench: str
    case: str
    baseline: str = ""
    baseline_s: float | None = None
    circuitsim_s: float | None = None
    ratio: float | None = None
    target: float | None = None  # ratio must be >= target (None: reported only)
    target_text: str = ""
    max_rel_diff: float | None = None
    tolerance: float | None = None
    status: str = ""  # PASS / MISS / INFO / NOT RUN / FAIL
    extra: dict = field(default_factory=dict)
    note: str = ""

    def finish(self) -> Row:
        if self.baseline_s is not None and self.circuitsim_s:
            self.ratio = self.baseline_s / self.circuitsim_s
        if self.target is not None and not self.target_text:
            self.target_text = f">={self.target:g}x"
        if self.status:
            return self
        agree = self.max_rel_diff is None or self.tolerance is None or self.max_rel_diff <= self.tolerance
        if not agree:
            self.status = "FAIL"  # the circuits disagree: the timing means nothing
        elif self.target is None:
            self.status = "INFO"
        else:
            self.status = "PASS" if self.ratio is not None and self.ratio >= self.target else "MISS"
        return self


def not_run(bench: str, case: str, reason: str, **kw) -> Row:
    return Row(bench, case, status="NOT RUN", note=reason, **kw)


def fmt_s(t: float | None) -> str:
    if t is None:
        return "-"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.1f} ms"
    return f"{t * 1e6:.0f} us"


def fmt_mb(x) -> str:
    return "-" if x is None else f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def print_rows(title: str, rows: list[Row]) -> None:
    print(f"\n== {title}")
    head = f"{'case':<30} {'baseline':>10} {'circuitsim':>11} {'ratio':>8} {'target':>8} " \
           f"{'max rel diff':>12} {'status':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.1f}x" if r.ratio < 1000 else f"{r.ratio:.0f}x"
        diff = "-" if r.max_rel_diff is None else f"{r.max_rel_diff:.1e}"
        print(f"{r.case:<30} {fmt_s(r.baseline_s):>10} {fmt_s(r.circuitsim_s):>11} {ratio:>8} "
              f"{r.target_text or '-':>8} {diff:>12} {r.status:>7}")
        if r.extra.get("mem_line"):
            print(f"{'':<4}{r.extra['mem_line']}")
        if r.note:
            print(f"{'':<4}note: {r.note}")
    sys.stdout.flush()


def environment() -> dict:
    import scipy

    import circuitsim

    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "circuitsim": getattr(circuitsim, "__version__", "?"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        info["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                     capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        pass
    try:
        from importlib.metadata import version

        import badcrossbar  # noqa: F401

        info["badcrossbar"] = version("badcrossbar")
    except Exception:  # noqa: BLE001 - any failure means: not available
        info["badcrossbar"] = None
    from .spice import ngspice_version

    info["ngspice"] = ngspice_version()
    return info


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def first_touch(mib: int = 256) -> dict:
    """Seconds per GiB to write one byte into every page of ``mib`` MiB of fresh memory: the cost
    of first use, page faults included (``first_s_per_gib``), and of a second pass over the same
    pages (``again_s_per_gib``, no faults).

    On the virtual machines here the host takes back memory the guest has freed within a few
    seconds (free page reporting), and the next first write to such a page costs the host's
    fault, 2 to 3.5 s per GiB, against about 0.05 s per GiB for a page the guest still holds: a
    first-touch cost far above a physical machine's, which falls on both sides of a comparison
    and makes the figures of arrays of many MiB move from run to run.
    """
    a = np.empty(mib << 20, dtype=np.uint8)
    t0 = time.perf_counter()
    a[::PAGE] = 1
    t1 = time.perf_counter()
    a[::PAGE] = 2
    t2 = time.perf_counter()
    return {"first_s_per_gib": (t1 - t0) * 1024 / mib, "again_s_per_gib": (t2 - t1) * 1024 / mib}


def save(name: str, rows: list[Row], env: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"environment": env, "rows": [asdict(r) for r in rows]},
                              indent=2, default=float))
    tmp.replace(path)
    return path


if __name__ == "__main__":  # memory probe entry (see probe())
    result = _probe_main(json.loads(sys.argv[1]))
    print("PROBE " + json.dumps(result), flush=True)
