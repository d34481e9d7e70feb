"""The GPU backend's check on a GPU machine (issue 10): one run of at most 8 minutes.

It prints ``nvidia-smi``, copies circuitsim from this checkout and installs any wheels it is given
(no network, no dependencies: the machine's numpy, scipy, cupy and pytest serve), runs the GPU tests
(``tests/test_gpu_backend.py`` with its ``cupy`` case, the detection tests with the real cupy,
the benchmark's smoke test), then times the issue's cases on the GPU against the CPU path of the
same machine (``benchmarks/bench_gpu.py``): 256 passive 128 x 128 tiles x 128 inputs (node
voltages, and outputs only) and 64 1T1R sinh 64 x 64 tiles x 64 inputs, printing each ratio and
the largest difference from the CPU path. The CPU path is timed on a quarter of the tiles and
scaled (``--cpu-fraction``; the CPU time is linear in the number of tiles). Everything printed is
also written to ``$OUT/gpu_device.txt`` and the rows to ``$OUT/gpu_device.json``. Phases that
would overrun ``--budget`` seconds are skipped, saying so.

How to run it on the device machine (the ``nvidia-h200`` kind; its image has cupy-cuda13x,
numpy, scipy and pytest, no nvmath-python, no cuDSS, no scikit-sparse):

1. Here, once, from the repository root: fetch nvmath-python and cuDSS as wheels, the cuDSS one
   (81 MB) split in two halves since one call carries at most 64 MiB::

       echo /.whl/ >> .git/info/exclude
       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
           --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \\
           -d .whl nvmath-python==1.0.0 nvidia-cudss-cu13==0.8.0.10
       mkdir -p .whl/a .whl/b && mv .whl/nvmath_python-*.whl .whl/a/
       split -n 2 -d .whl/nvidia_cudss_cu13-*.whl .whl/cudss- && rm .whl/nvidia_cudss_cu13-*.whl
       mv .whl/cudss-00 .whl/a/nvidia_cudss_cu13-0.8.0.10-py3-none-manylinux_2_17_x86_64.whl.part00
       mv .whl/cudss-01 .whl/b/nvidia_cudss_cu13-0.8.0.10-py3-none-manylinux_2_17_x86_64.whl.part01

2. Two calls of the device tool, the second within the 30 s the machine stays warm after the
   first (both halves must be on the same machine):

       run(carry=[".whl/a"], timeout_s=60,
           command="mkdir -p /tmp/wheels && cp .whl/a/* /tmp/wheels/ && ls -la /tmp/wheels")
       run(carry=[".whl/b"], timeout_s=500,
           command="cp .whl/b/* /tmp/wheels/ && PYTHONUNBUFFERED=1 python3 "
                   "benchmarks/gpu_device.py --wheels /tmp/wheels --out $OUT")

   Without the wheels (one call: ``PYTHONUNBUFFERED=1 python3 benchmarks/gpu_device.py --out
   $OUT``) the GPU factorises with SuperLU on the host (cupyx's ``splu``), and the run says so.

The CPU path there has no CHOLMOD (scikit-sparse has no wheels), so it factors with SuperLU,
slower than a full install's CHOLMOD: the run prints which factorisation each side used. Where
nvmath-python does not import or cuDSS does not run (its requirements cuda-core and
cuda-pathfinder come from the image), the environment section says why and the GPU factorises
with SuperLU on the host.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SITE = Path("/tmp/circuitsim-site")


class Tee(io.TextIOBase):
    """Write to the terminal and keep a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text):
        self.stream.write(text)
        self.stream.flush()
        self.copy.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()


def shell(cmd: list[str], timeout: float, **kw) -> int:
    """Run ``cmd`` with its output printed; the exit status (124 when it timed out)."""
    print(f"$ {' '.join(cmd)}", flush=True)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                             **kw)
    except subprocess.TimeoutExpired as exc:
        print((exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or "")
        print(f"(stopped after {timeout:.0f} s)")
        return 124
    except OSError as exc:
        print(f"(could not run: {exc})")
        return 127
    print(out.stdout + out.stderr, end="", flush=True)
    return out.returncode


def join_parts(folder: Path) -> None:
    """Reassemble ``NAME.part00``, ``NAME.part01``, ... into ``NAME``."""
    for first in sorted(folder.glob("*.part00")):
        name = first.name[: -len(".part00")]
        parts = sorted(folder.glob(name + ".part*"))
        with open(folder / name, "wb") as out:
            out.writelines(part.read_bytes() for part in parts)
        print(f"joined {len(parts)} parts into {name} ({(folder / name).stat().st_size:,} bytes)")


def copy_package() -> None:
    """circuitsim from this checkout into :data:`SITE`, laid out as ``pyproject.toml``'s
    ``package-dir`` says (no build step, so nothing but the standard library is needed)."""
    import shutil

    import tomllib

    dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    target = SITE / "circuitsim"
    shutil.rmtree(target, ignore_errors=True)
    for name, folder in sorted(dirs.items()):  # "circuitsim" first, then its subpackages
        dest = SITE.joinpath(*name.split("."))
        shutil.copytree(REPO / folder, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    print(f"circuitsim copied to {target}")


def install(wheels: Path | None) -> None:
    """The wheels given, and circuitsim from this checkout, into :data:`SITE` (first on the
    path)."""
    SITE.mkdir(parents=True, exist_ok=True)
    if wheels is not None and wheels.is_dir():
        join_parts(wheels)
        found = sorted(str(w) for w in wheels.glob("*.whl"))
        if found:
            shell([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                   "--no-compile", "--target", str(SITE), "--upgrade", *found], 180)
    copy_package()
    sys.path.insert(0, str(SITE))
    # the installed circuitsim first, then this checkout (for benchmarks/ and tests/)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SITE), str(REPO),
                                                os.environ.get("PYTHONPATH", "")])
    libs = sorted(SITE.glob("nvidia/cu*/lib"))
    if libs:  # for the test subprocesses (this process finds them through cuda-pathfinder)
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            [str(p) for p in libs] + [os.environ.get("LD_LIBRARY_PATH", "")])
    threads = sorted(SITE.glob("nvidia/cu*/lib/libcudss_mtlayer_gomp.so*"))
    if threads:  # cuDSS's host-side reordering on all cores (nvmath reads this variable)
        os.environ.setdefault("CUDSS_THREADING_LIB", str(threads[0]))
        print(f"CUDSS_THREADING_LIB={os.environ['CUDSS_THREADING_LIB']}")


def report_environment() -> dict:
    import numpy as np
    import scipy

    import circuitsim
    from circuitsim import solvers
    from circuitsim.backend import probe

    info = {"python": sys.version.split()[0], "numpy": np.__version__, "scipy": scipy.__version__,
            "circuitsim": circuitsim.__file__, "cholmod": solvers.cholmod_available(),
            "cpus": os.cpu_count()}
    for name in ("cupy", "nvmath"):
        try:
            info[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 - reported
            info[name] = f"unavailable ({type(exc).__name__}: {exc})"
    found, why = probe()
    info["gpu"] = why if found is None else found.device
    if found is not None:
        info["direct"] = found.direct.name + (f" ({found.direct.why})"
                                              if getattr(found.direct, "why", "") else "")
        info["free_gb"] = found.free_bytes() / 1e9
    for key, value in info.items():
        print(f"  {key}: {value}")
    return info


def run_tests(timeout: float) -> int:
    files = ["tests/test_gpu_backend.py", "tests/test_gpu_detection.py",
             "tests/test_bench_gpu_smoke.py"]
    # -P: no checkout directory first on the path, so the installed circuitsim is imported
    return shell([sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                  "-o", "addopts=", *files], timeout, cwd=REPO)


def run_benchmarks(deadline: float, cpu_fraction: float, repeats: int) -> list[dict]:
    from benchmarks import bench_gpu
    from benchmarks.common import fmt_s

    # rough cost of each case on one H200 with the CPU side at a quarter of the tiles (s):
    # measured cases replace these guesses in the next run's output
    guesses = {"linear": 120.0, "linear-outputs": 60.0, "nonlinear": 120.0}
    rows = []
    for kind, (B, m, K) in bench_gpu.FULL.items():
        left = deadline - time.perf_counter()
        if left < guesses[kind]:
            print(f"\n-- {kind}: skipped, {left:.0f} s left of the budget (needs about "
                  f"{guesses[kind]:.0f} s)")
            rows.append({"case": kind, "status": "SKIPPED (time budget)"})
            continue
        print(f"\n-- {kind}: {B} tiles of {m}x{m}, {K} inputs each", flush=True)
        t0 = time.perf_counter()
        try:
            row = bench_gpu.case(kind, B, m, K, repeats=repeats,
                                 cpu_tiles=max(1, round(B * cpu_fraction)))
        except Exception as exc:  # noqa: BLE001 - one crash must not hide the other cases
            traceback.print_exc()
            rows.append({"case": kind, "status": f"CRASHED: {type(exc).__name__}: {exc}"})
            continue
        if row.status == "NOT RUN":
            print(f"   NOT RUN: {row.note}")
            rows.append({"case": kind, "status": "NOT RUN", "note": row.note})
            continue
        ratio = "-" if row.ratio is None else f"{row.ratio:.1f}x"
        diff = "-" if row.max_rel_diff is None else f"{row.max_rel_diff:.2e}"
        print(f"   GPU {fmt_s(row.circuitsim_s)} (cold {fmt_s(row.extra.get('cold_s'))}), "
              f"CPU {fmt_s(row.baseline_s)}: ratio {ratio} (target {row.target_text or '-'}), "
              f"largest difference from the CPU path {diff} relative (tolerance "
              f"{row.tolerance:g}): {row.status}")
        print(f"   {row.note}; case took {time.perf_counter() - t0:.0f} s", flush=True)
        rows.append({k: getattr(row, k) for k in ("case", "baseline_s", "circuitsim_s", "ratio",
                                                   "target_text", "max_rel_diff", "tolerance",
                                                   "status", "note", "extra")})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheels", type=Path, default=None,
                    help="folder of wheels to install first (parts NAME.partNN are joined)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-device-out")))
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run")
    ap.add_argument("--cpu-fraction", type=float, default=0.25,
                    help="fraction of the tiles the CPU path is timed on (then scaled)")
    ap.add_argument("--repeats", type=int, default=2, help="warm GPU runs, best of")
    ap.add_argument("--no-tests", action="store_true")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    deadline = start + args.budget
    tee = Tee(sys.stdout)
    status = 0
    results: dict = {}
    with contextlib.redirect_stdout(tee):
        print("== nvidia-smi")
        shell(["nvidia-smi"], 30)
        print("\n== install")
        install(args.wheels)
        print("\n== environment")
        results["environment"] = report_environment()
        if not args.no_tests:
            print("\n== GPU tests")
            left = deadline - time.perf_counter()
            results["tests_exit_status"] = status = run_tests(max(30.0, min(180.0, left - 330)))
        print("\n== benchmarks (GPU vs the CPU path on this machine)")
        results["rows"] = run_benchmarks(deadline, args.cpu_fraction, args.repeats)
        print(f"\ntotal {time.perf_counter() - start:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_device.txt").write_text(tee.copy.getvalue())
    (args.out / "gpu_device.json").write_text(json.dumps(results, indent=2, default=str))
    crashed = any(str(r.get("status", "")).startswith(("CRASHED", "FAIL"))
                  for r in results["rows"])
    return 1 if status or crashed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
