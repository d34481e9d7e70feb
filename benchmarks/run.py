"""Run the circuitsim benchmarks and print same-run ratios against their baselines.

    python benchmarks/run.py              # everything (about 15-20 minutes on a 2-core machine)
    python benchmarks/run.py --quick      # smaller, fewer repeats (about 3 minutes)
    python benchmarks/run.py --only badcrossbar --only ideal

Benchmarks: badcrossbar, ideal, ngspice, large, nonlinear, layers, engine, studies,
gradients, training, gpu (benchmarks/README.md). Results go to benchmarks/results/<name>.json (and
latest.json, latest.txt).
Exit status 1 when a comparison's outputs disagree beyond its tolerance (FAIL) or a benchmark
crashed; a missed speed target (MISS) is reported, not an error.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _blas_threads(argv) -> str:
    """BLAS threads for this run (``--blas-threads N``, default 1), set before numpy loads.

    The machines here are shared: multithreaded BLAS spins against other processes and slows
    both sides erratically (badcrossbar's multi-RHS solves most). One thread on both sides makes
    the ratios measure the algorithms; memory probes inherit the setting.
    """
    n = "1"
    for k, arg in enumerate(argv):
        if arg == "--blas-threads" and k + 1 < len(argv):
            n = argv[k + 1]
        elif arg.startswith("--blas-threads="):
            n = arg.split("=", 1)[1]
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n
    return n


BLAS_THREADS = _blas_threads(sys.argv[1:])

from benchmarks import (  # noqa: E402 - after the BLAS thread setting
    bench_badcrossbar,
    bench_engine,
    bench_gpu,
    bench_gradients,
    bench_ideal,
    bench_large,
    bench_layers,
    bench_ngspice,
    bench_nonlinear,
    bench_studies,
    bench_training,
)
from benchmarks.common import (  # noqa: E402
    RESULTS,
    Row,
    environment,
    first_touch,
    fmt_s,
    print_rows,
    save,
    take_other_cpu,
)

BENCHMARKS = {
    "badcrossbar": (bench_badcrossbar, "circuitsim vs badcrossbar 1.1.0, passive tiles (issue 2)"),
    "ideal": (bench_ideal, "exact inference via transfer_matrix vs ideal v @ g, 128x128 (issue 2)"),
    "ngspice": (bench_ngspice, "circuitsim vs ngspice -b, passive tiles, one vector (issue 2)"),
    "large": (bench_large, "1024x1024 passive tile, one vector, time and memory (issue 2)"),
    "nonlinear": (bench_nonlinear, "sinh and 1T1R tiles: Newton vs ngspice .op (issue 3)"),
    "layers": (bench_layers, "digits MLP and CNN on solved tiles; vs badcrossbar (issue 8)"),
    "engine": (bench_engine, "transfer_matrix across wire resistance; K = 100,000 outputs only "
                             "in bounded memory (issue 7)"),
    "studies": (bench_studies, "study of 64x64 1T1R tiles: in-process vs Dask, HDF5 (issue 9)"),
    "gradients": (bench_gradients, "vjp vs the forward solve; exact IR-drop compensation (issue 11)"),
    "training": (bench_training, "digits MLP under IR drop: compensation, fine-tuning (issue 11)"),
    "gpu": (bench_gpu, "GPU backend (cupy, cuDSS) vs the CPU path on the same machine (issue 10)"),
}


#: Cores used by other processes (average over a comparison) above which a row is flagged.
BUSY = 0.5


class Config:
    def __init__(self, quick: bool, repeats: int, memory: bool, verbose: bool = True):
        self.quick = quick
        self.full = not quick
        self.repeats = repeats
        self.memory = memory
        self.verbose = verbose

    def progress(self, row: Row) -> Row:
        """Record how busy other processes kept the machine while the row was timed; log it."""
        other = take_other_cpu()
        row.extra.setdefault("other_cpu_cores", other)
        row.extra.setdefault("loadavg_1min", os.getloadavg()[0])
        if other is not None and other > BUSY and row.status != "NOT RUN":
            busy = (f"other processes used {other:.1f} of {os.cpu_count()} cores while this was "
                    "timed: figures are noisy")
            row.note = f"{row.note}; {busy}" if row.note else busy
        if self.verbose:
            ratio = "" if row.ratio is None else f" ratio {row.ratio:.1f}x"
            print(f"  [{time.strftime('%H:%M:%S')}] {row.bench}: {row.case}: baseline "
                  f"{fmt_s(row.baseline_s)}, circuitsim {fmt_s(row.circuitsim_s)}{ratio} "
                  f"{row.status}", flush=True)
        return row


def summary(rows: list[Row]) -> str:
    out = io.StringIO()
    head = (f"{'benchmark':<18} {'case':<34} {'baseline':>10} {'circuitsim':>11} {'ratio':>8} "
            f"{'target':>8} {'max rel diff':>12} {'status':>7}")
    print("\n== SUMMARY (ratio = baseline time / circuitsim time, same run)", file=out)
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x" if r.ratio < 10 else f"{r.ratio:.0f}x"
        diff = "-" if r.max_rel_diff is None else f"{r.max_rel_diff:.1e}"
        print(f"{r.bench:<18} {r.case:<34} {fmt_s(r.baseline_s):>10} {fmt_s(r.circuitsim_s):>11} "
              f"{ratio:>8} {r.target_text or '-':>8} {diff:>12} {r.status:>7}", file=out)
    targeted = [r for r in rows if r.target_text]
    passed = sum(r.status == "PASS" for r in targeted)
    print(f"\ntargets: {passed} PASS, {sum(r.status == 'MISS' for r in targeted)} MISS, "
          f"{sum(r.status not in ('PASS', 'MISS') for r in targeted)} other (NOT RUN / FAIL) "
          f"of {len(targeted)}; FAIL (outputs disagree, or an error): "
          f"{sum(r.status == 'FAIL' for r in rows)}",
          file=out)
    return out.getvalue()


#: First-touch cost (s per GiB) above which the header says that the figures include it.
SLOW_TOUCH = 0.5


def _memory_line(ft: dict) -> str:
    """The header's line on the cost of touching fresh memory (:func:`first_touch`)."""
    line = f"fresh memory: first touch {ft['first_s_per_gib']:.2f} s/GiB"
    if ft["first_s_per_gib"] > SLOW_TOUCH:
        line += ("; first use of memory is slow on this machine (its host backs the pages): "
                 "both sides pay it, and rows that allocate many MiB move between runs")
    return line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="skip 512x512, 1024x1024 and the Newton scaling cases; fewer repeats")
    ap.add_argument("--full", action="store_true", help="everything (the default)")
    ap.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                    help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    ap.add_argument("--repeats", type=int, default=None, help="best of N (default 3, quick 2)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--out", default=None, help="results name (default: timestamp)")
    ap.add_argument("--blas-threads", default="1", metavar="N",
                    help="BLAS threads on both sides (default 1; set before numpy loads)")
    args = ap.parse_args(argv)
    if args.quick and args.full:
        ap.error("--quick and --full exclude each other")
    cfg = Config(args.quick, args.repeats or (2 if args.quick else 3), not args.no_memory)
    names = args.only or list(BENCHMARKS)
    env = environment()
    env.update(mode="quick" if cfg.quick else "full", repeats=cfg.repeats, benchmarks=names,
               blas_threads=BLAS_THREADS,
               command=" ".join([Path(sys.executable).name, "benchmarks/run.py", *(argv or sys.argv[1:])]))
    print(f"circuitsim benchmarks ({env['mode']}, best of {cfg.repeats}); python {env['python']}, "
          f"numpy {env['numpy']}, scipy {env['scipy']}, badcrossbar {env['badcrossbar']}, "
          f"ngspice {env['ngspice']}, {env['cpus']} CPUs, {BLAS_THREADS} BLAS thread(s), "
          f"load average "
          f"{', '.join(f'{x:.2f}' for x in env['loadavg_start'])}", flush=True)
    env["first_touch"] = first_touch()
    print(_memory_line(env["first_touch"]), flush=True)
    t_start = time.perf_counter()
    rows: list[Row] = []
    crashed = False
    for name in names:
        module, title = BENCHMARKS[name]
        print(f"\n-- {name}: {title}", flush=True)
        t0 = time.perf_counter()
        try:
            got = module.run(cfg)
        except Exception as exc:  # noqa: BLE001 - one crash must not hide the others
            traceback.print_exc()
            got = [Row(name, "(crashed)", status="FAIL", note=f"{type(exc).__name__}: {exc}")]
            crashed = True
        rows += got
        print_rows(f"{name} ({time.perf_counter() - t0:.0f} s)", got)
    env["elapsed_s"] = time.perf_counter() - t_start
    env["loadavg_end"] = os.getloadavg()
    text = summary(rows)
    print(text)
    print(f"total {env['elapsed_s']:.0f} s; load average at the end "
          f"{', '.join(f'{x:.2f}' for x in env['loadavg_end'])}")
    stamp = args.out or time.strftime("%Y%m%d-%H%M%S")
    path = save(stamp, rows, env)
    save("latest", rows, env)
    with contextlib.suppress(OSError):
        (RESULTS / "latest.txt").write_text(text)
    print(f"results: {path}")
    return 1 if crashed or any(r.status == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
