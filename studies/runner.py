"""Run a study: in-process, on local worker processes, or on a Dask distributed cluster.

Workers only compute (:func:`~circuitsim.studies.compute.solve_batch`: plain data in, plain
data out); this process is the single writer, committing each point as its batch comes back.
Whatever runs the batches, the same points are solved as the same batched tiles, so results do
not depend on how a study was run, stopped or resumed.
"""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import as_completed as futures_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .compute import plan_batches, solve_batch
from .config import Study
from .store import StudyWriter, WriteError

__all__ = ["RunReport", "local_cluster", "run_study"]

#: Tries of a batch on Dask when the task itself raises (lost workers are retried anyway).
DASK_RETRIES = 2
#: Restarts of the local process pool after a worker process died.
POOL_RESTARTS = 2


@dataclass
class RunReport:
    """What :func:`run_study` did.

    Attributes
    ----------
    path : Path
    computed : int
        Points solved and committed by this run.
    skipped : int
        Points already in the results (``resume``).
    duplicates : int
        Results that came back for points already committed (stored once).
    unconverged : list of str
        Points stored as ``"not converged"`` or ``"failed"`` (with their reason).
    lost : dict of str to str
        Points that could not be computed (their workers kept dying), with the reason; not
        stored, so ``resume`` computes them.
    layout : str
        ``"single"`` (complete, one file) or ``"index"`` (results file plus parts folder).
    seconds : float
    """

    path: Path
    computed: int = 0
    skipped: int = 0
    duplicates: int = 0
    unconverged: list = field(default_factory=list)
    lost: dict = field(default_factory=dict)
    layout: str = "index"
    seconds: float = 0.0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def local_cluster(n_workers: int):
    """A Dask ``LocalCluster`` of ``n_workers`` single-threaded processes that listens on
    127.0.0.1 only: scheduler, workers, nannies and the scheduler's HTTP endpoint (on a free
    port; the dashboard, which has no authentication, is off)."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           scheduler_kwargs={"dashboard": False}, silence_logs=logging.ERROR)
    if urlsplit(cluster.scheduler_address).hostname != "127.0.0.1":  # pragma: no cover
        cluster.close()
        raise RuntimeError(f"the local cluster listens on {cluster.scheduler_address}, "
                           "not on 127.0.0.1 only")
    return cluster


def _is_loopback(address: str) -> bool:
    host = urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _in_process(batches, task):
    for b in batches:
        yield b, task(b)


def _processes(batches, task, n: int, log):
    pending = {b.index: b for b in batches}
    for attempt in range(POOL_RESTARTS + 1):
        pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
        try:
            futs = {pool.submit(task, b): b for b in pending.values()}
            try:
                for fut in futures_completed(futs):
                    b = futs[fut]
                    out = fut.result()
                    del pending[b.index]
                    yield b, out
                return
            except BrokenProcessPool:
                log(f"a worker process died; restarting the pool for the {len(pending)} "
                    f"unfinished batches (restart {attempt + 1} of {POOL_RESTARTS})")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    for b in pending.values():
        yield b, RuntimeError(f"worker processes died {POOL_RESTARTS + 1} times")


def _dask(batches, task, client, tag: str):
    from distributed import as_completed

    futs = {}
    for b in batches:
        fut = client.submit(task, b, key=f"circuitsim-study-{tag}-batch-{b.key}",
                            retries=DASK_RETRIES, pure=False)
        futs[fut] = b
    try:
        for fut in as_completed(list(futs)):
            b = futs.pop(fut)
            try:
                out = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker and the task's own errors
                out = exc
            fut.release()  # the workers may forget it now
            yield b, out
    finally:
        for fut in futs:
            fut.cancel()


def run_study(study: Study, path, *, workers: int | None = None, dask_local: int | None = None,
              scheduler: str | None = None, security=None, resume: bool = False,
              overwrite: bool = False, progress: bool = True, task=solve_batch,
              log=_stderr) -> RunReport:
    """Solve every point of ``study`` not yet in ``path`` and store the results.

    Parameters
    ----------
    study : Study
        From :func:`~circuitsim.studies.load_study`.
    path : str or Path
        The HDF5 results file.
    workers : int, optional
        Solve on this many local worker processes.
    dask_local : int, optional
        Solve on a Dask ``LocalCluster`` of this many workers (127.0.0.1 only).
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:port`` or ``tls://host:port``); ``security``
        is a ``distributed.Security`` for TLS.
    resume, overwrite : bool
        See :class:`~circuitsim.studies.store.StudyWriter`.
    progress : bool
        Show a progress bar (tqdm) on standard error.
    task : callable
        The function applied to each batch (default
        :func:`~circuitsim.studies.compute.solve_batch`), for instrumentation; must be
        picklable for workers.
    log : callable
        Receives notes (one line each).

    Raises
    ------
    OutputError
        Before any compute, when the output cannot be used.
    WriteError
        When writing fails (disk full); the points committed stay readable.
    """
    if sum(x is not None for x in (workers, dask_local, scheduler)) > 1:
        raise ValueError("choose one of workers, dask_local and scheduler")
    for name, n in (("workers", workers), ("dask_local", dask_local)):
        if n is not None and (not isinstance(n, int) or n < 1):
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    start = time.perf_counter()
    writer = StudyWriter(path, study, resume=resume, overwrite=overwrite)
    report = RunReport(Path(path))
    with writer:
        report.skipped = len(writer.done)
        todo = [b for b in plan_batches(study) if any(p.name not in writer.done for p in b.points)]
        if resume and report.skipped:
            log(f"{report.skipped} of {len(study.points)} points already in {path}; "
                f"computing {len(study.points) - report.skipped}")
        with _executor(todo, task, workers, dask_local, scheduler, security, study, log) as runs:
            _consume(runs, writer, report, study, progress)
        report.layout = writer.finish()
    report.duplicates = writer.duplicates
    report.seconds = time.perf_counter() - start
    return report


class _executor:
    """Context manager yielding ``(batch, results or exception)`` pairs; owns any cluster."""

    def __init__(self, todo, task, workers, dask_local, scheduler, security, study, log):
        self.args = todo, task, workers, dask_local, scheduler, security, study, log
        self.closers = []

    def __enter__(self):
        todo, task, workers, dask_local, scheduler, security, study, log = self.args
        if not todo:
            return iter(())
        if workers is not None:
            return _processes(todo, task, workers, log)
        if dask_local is None and scheduler is None:
            return _in_process(todo, task)
        from distributed import Client

        if dask_local is not None:
            cluster = local_cluster(dask_local)
            self.closers.append(cluster.close)
            client = Client(cluster)
        else:
            if scheduler.startswith("tcp://") and not _is_loopback(scheduler):
                log(f"warning: {scheduler} is unauthenticated and unencrypted: anyone who can "
                    "reach it can run code on the cluster; use tls:// with certificates")
            client = Client(scheduler, security=security, timeout="30s")
        self.closers.insert(0, client.close)
        return _dask(todo, task, client, study.fingerprint[:12])

    def __exit__(self, *exc):
        for close in self.closers:
            with suppress(Exception):
                close()


def _consume(runs, writer, report, study, progress):
    from tqdm import tqdm

    bar = tqdm(total=len(study.points), initial=report.skipped, unit="point", desc=study.name,
               disable=not progress, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    try:
        for batch, out in runs:
            if isinstance(out, BaseException):
                reason = f"{type(out).__name__}: {out}"
                report.lost.update({p.name: reason for p in batch.points
                                    if p.name not in writer.done})
                continue
            for result in out:
                if writer.commit(result):
                    report.computed += 1
                    bar.update(1)
                    if result.status != "ok":
                        report.unconverged.append(result.point.name)
    except WriteError:
        raise
    except BaseException:
        with suppress(WriteError):
            writer.flush()  # the results file lists every point committed
        raise
    finally:
        bar.close()
        close = getattr(runs, "close", None)
        if close is not None:
            close()
