"""Issue 9: a study of 64 x 64 1T1R tiles in-process against a Dask LocalCluster of 2 workers,
and the HDF5 overhead per point.

One sweep (200 points; 40 with ``--quick``): 64 x 64 1T1R tiles (level-1 NMOS, linear
memristors, 1 Ohm wires swept from 0.1 to 10 Ohm, gate voltage swept), 4 input vectors each,
node voltages of the all-rows-on vector kept. It runs in-process and then on a LocalCluster of
two single-threaded workers (started beforehand, its start-up timed apart), both writing their
HDF5 file; ratio = in-process time / Dask time (the scaling; 2.0 would be perfect). Before
timing, this process and every worker solve one batch of the topology (imports and the engine's
analysis done: steady-state throughput). Both runs must store the same currents (1e-9
relative).

The HDF5 overhead: every point's results are computed once, then committed again to a fresh
file and timed (building the in-memory image, writing, fsync, rename, the results file
rewritten), with the bytes per point and the consolidation at the end.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Row, compare, fmt_s

BENCH = "studies"
TOL = 1e-9


def study_text(points: int, size: int = 64) -> str:
    """A sweep of ``points`` 1T1R tiles: wire resistance x gate voltage."""
    n_gate = 10 if points >= 100 else 5
    n_wire = points // n_gate
    wires = ", ".join(f"{x:.6g}" for x in np.geomspace(0.1, 10.0, n_wire))
    gates = ", ".join(f"{x:.6g}" for x in np.linspace(1.2, 2.4, n_gate))
    return f"""
[study]
name = "bench"
[tile]
rows = {size}
cols = {size}
r_source = 5.0
r_sense = 1.0
access = {{ model = "level1", vto = 0.5, kp = 2e-4, lambda_ = 0.01, w = 1e-6, l = 1e-7 }}
v_gate = 1.8
[inputs]
count = 3
[output]
node_voltages = 1
[sweep]
r_wire = [{wires}]
v_gate = [{gates}]
"""


def _currents(path):
    from circuitsim.studies import read_point, read_summary

    names = list(read_summary(path).column("name"))
    return np.stack([read_point(path, n).arrays["i_out"] for n in names])


class _warm_up:
    """Solves one batch of the study's topology (picklable, for ``Client.run``)."""

    def __init__(self, batch):
        self.batch = batch

    def __call__(self):
        from circuitsim.studies.compute import solve_batch

        solve_batch(self.batch)


def scaling_case(points: int, workers: int = 2, size: int = 64) -> tuple[Row, Row]:
    """In-process against Dask with ``workers`` workers; then the HDF5 overhead."""
    from circuitsim.studies import load_study, run_study
    from circuitsim.studies.compute import plan_batches, solve_batch
    from circuitsim.studies.runner import local_cluster
    from circuitsim.studies.store import StudyWriter

    study = load_study(text=study_text(points, size))
    tmp = Path(tempfile.mkdtemp(prefix="bench-studies-"))
    try:
        warm = _warm_up(plan_batches(study)[0])
        warm()  # imports and the engine's analysis of this topology, in this process
        # timed through compare() so that the load of other processes is recorded
        t_in = compare({"in": lambda: run_study(study, tmp / "in.h5", progress=False)}, 1)[
            "in"][0]
        t0 = time.perf_counter()
        cluster = local_cluster(workers)
        t_start = time.perf_counter() - t0
        try:
            from distributed import Client

            with Client(cluster) as client:  # the same warm-up on every worker
                client.run(warm)
            t0 = time.perf_counter()
            run_study(study, tmp / "dask.h5", scheduler=cluster.scheduler_address,
                      progress=False)
            t_dask = time.perf_counter() - t0
        finally:
            cluster.close()
        a, b = _currents(tmp / "in.h5"), _currents(tmp / "dask.h5")
        diff = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300)))
        n = len(study.points)
        scale = Row(BENCH, f"{n} pts {size}x{size} 1T1R: Dask {workers} w", baseline="in-process",
                    baseline_s=t_in, circuitsim_s=t_dask, max_rel_diff=diff, tolerance=TOL,
                    extra={"points": n, "points_per_s_in_process": n / t_in,
                           "points_per_s_dask": n / t_dask, "cluster_start_s": t_start,
                           "batches": len(plan_batches(study)), "workers": workers})
        scale.note = (f"{n / t_in:.1f} points/s in-process, {n / t_dask:.1f} points/s on Dask "
                      f"({workers} workers, started in {fmt_s(t_start)}, not counted); "
                      f"ratio = scaling")
        # HDF5 overhead: commit precomputed results again, timed
        t0 = time.perf_counter()
        results = [r for b in plan_batches(study) for r in solve_batch(b)]
        t_solve = time.perf_counter() - t0
        t0 = time.perf_counter()
        with StudyWriter(tmp / "h5.h5", study) as w:
            for r in results:
                w.commit(r)
            t_commit = time.perf_counter() - t0
            part_bytes = w.bytes_written
            t1 = time.perf_counter()
            w.finish()
            t_final = time.perf_counter() - t1
        size_final = (tmp / "h5.h5").stat().st_size
        h5 = Row(BENCH, f"HDF5 per point ({size}x{size}, K=4)", baseline="solve per point",
                 baseline_s=t_solve / n, circuitsim_s=t_commit / n,
                 extra={"commit_s_per_point": t_commit / n, "bytes_per_point": part_bytes / n,
                        "final_file_bytes": size_final, "final_bytes_per_point": size_final / n,
                        "consolidation_s": t_final, "solve_s_per_point": t_solve / n})
        h5.note = (f"commit {fmt_s(t_commit / n)} per point ({100 * t_commit / t_solve:.0f} % of "
                   f"the solve), {part_bytes / n / 1024:.0f} KiB per point file, "
                   f"{size_final / n / 1024:.0f} KiB per point in the final file, consolidation "
                   f"{fmt_s(t_final)}; ratio = solve time / commit time")
        return scale.finish(), h5.finish()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def available() -> str | None:
    """None when the studies extra is installed, else the reason."""
    try:
        import distributed  # noqa: F401
        import h5py  # noqa: F401
    except ImportError as exc:
        return f"the studies extra is not installed ({exc.name}): pip install -e '.[studies]'"
    return None


def run(cfg) -> list[Row]:
    reason = available()
    if reason is not None:
        return [Row(BENCH, "study scaling", status="NOT RUN", note=reason)]
    rows = scaling_case(40 if cfg.quick else 200)
    return [cfg.progress(r) for r in rows]
