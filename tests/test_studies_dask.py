"""Scale-out: local worker processes and Dask distributed give the in-process results; a worker
killed mid-task is replaced and its batch retried; the local cluster listens on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("h5py")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from circuitsim.studies import load_study, read_point, read_summary, run_study
from circuitsim.studies.compute import solve_batch
from circuitsim.studies.runner import local_cluster

# Tasks defined here travel to Dask workers by value (they cannot import this test module).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

STUDY = """
[study]
name = "scale"
[tile]
rows = 10
cols = 8
r_source = 3.0
device = { model = "sinh", a = 3.0 }
v_gate = 1.8
[inputs]
count = 3
[solve]
batch = 2
[sweep]
r_wire = [0.5, 1.0, 2.0, 4.0]
access = ["none", { model = "level1", vto = 0.5, kp = 2e-4, lambda_ = 0.01, w = 1e-6, l = 1e-7 }]
"""


class KillOnce:
    """Solves a batch, except that the first attempt at batch ``index`` kills its own worker
    process (SIGKILL, mid-task); a marker file remembers that it happened."""

    def __init__(self, marker: str, index: int = 1):
        self.marker, self.index = marker, index

    def __call__(self, batch):
        if batch.index == self.index:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return solve_batch(batch)


@pytest.fixture(scope="module")
def study():
    return load_study(text=STUDY)


@pytest.fixture(scope="module")
def reference(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    run_study(study, out, progress=False)
    return out


@pytest.fixture(scope="module")
def cluster():
    c = local_cluster(2)
    yield c
    c.close()


def assert_close_results(a, b):
    """Same points, statuses and data (to rounding: worker processes may use other BLAS
    threading)."""
    sa, sb = read_summary(a), read_summary(b)
    assert sa.complete and sb.complete
    assert list(sa.column("name")) == list(sb.column("name"))
    assert list(sa.column("status")) == list(sb.column("status"))
    for name in sa.column("name"):
        pa, pb = read_point(a, name), read_point(b, name)
        assert set(pa.arrays) == set(pb.arrays)
        for k in pa.arrays:
            np.testing.assert_allclose(pa.arrays[k], pb.arrays[k], rtol=1e-12, atol=1e-18,
                                       err_msg=f"{name}/{k}")


def test_local_cluster_listens_on_loopback_only(cluster):
    """Every listening socket of this process and its children (scheduler, nannies, workers,
    HTTP endpoint) is bound to 127.0.0.1."""
    psutil = pytest.importorskip("psutil")
    assert urlsplit(cluster.scheduler_address).hostname == "127.0.0.1"
    workers = cluster.scheduler_info["workers"]
    assert len(workers) == 2
    assert all(urlsplit(a).hostname == "127.0.0.1" for a in workers)
    me = psutil.Process()
    listening = []
    for proc in [me, *me.children(recursive=True)]:
        conns = getattr(proc, "net_connections", None) or proc.connections
        listening += [c.laddr for c in conns(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 5  # scheduler, HTTP endpoint, 2 nannies, 2 workers
    assert {addr.ip for addr in listening} == {"127.0.0.1"}, listening


def test_dask_worker_killed_mid_task_is_retried(study, reference, cluster, tmp_path):
    marker = tmp_path / "killed"
    out = tmp_path / "r.h5"
    report = run_study(study, out, scheduler=cluster.scheduler_address, progress=False,
                       task=KillOnce(str(marker)))
    assert marker.exists(), "the task did not kill its worker"
    assert report.lost == {} and report.computed == len(study.points)
    assert read_summary(out).points_done == len(study.points)
    assert_close_results(out, reference)


def test_dask_local_cluster_run(study, reference, tmp_path):
    out = tmp_path / "r.h5"
    report = run_study(study, out, dask_local=2, progress=False)
    assert report.computed == len(study.points) and report.layout == "single"
    assert_close_results(out, reference)


def test_worker_processes_survive_a_killed_worker(study, reference, tmp_path):
    marker = tmp_path / "killed"
    out = tmp_path / "r.h5"
    notes = []
    report = run_study(study, out, workers=2, progress=False, task=KillOnce(str(marker)),
                       log=notes.append)
    assert marker.exists() and any("worker process died" in n for n in notes)
    assert report.lost == {} and report.computed == len(study.points)
    assert_close_results(out, reference)


def test_exclusive_modes(study, tmp_path):
    with pytest.raises(ValueError, match="choose one of"):
        run_study(study, tmp_path / "r.h5", workers=2, dask_local=2)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        run_study(study, tmp_path / "r.h5", workers=0)
    assert not Path(tmp_path / "r.h5").exists()


def test_remote_tcp_scheduler_is_warned_about(study, tmp_path, monkeypatch):
    from circuitsim.studies.runner import _is_loopback

    assert _is_loopback("tcp://127.0.0.1:8786") and _is_loopback("tcp://localhost:1")
    assert _is_loopback("tls://[::1]:8786") and not _is_loopback("tcp://192.0.2.7:8786")

    def no_cluster(address, **kw):
        raise OSError(f"no scheduler at {address}")

    monkeypatch.setattr(distributed, "Client", no_cluster)
    notes = []
    with pytest.raises(OSError, match="no scheduler at tcp://192.0.2.7:8786"):
        run_study(study, tmp_path / "r.h5", scheduler="tcp://192.0.2.7:8786", progress=False,
                  log=notes.append)
    assert any("unauthenticated and unencrypted" in n and "tls://" in n for n in notes)
    assert list(tmp_path.iterdir()) == []  # nothing written
