"""The results store: HDF5 layout, atomic commits, SIGKILL and resume, idempotent points, one
writer, unusable outputs refused before any compute, a full disk mid-study, damage found."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from circuitsim.studies import (
    OutputError,
    WriteError,
    load_study,
    read_point,
    read_summary,
    run_study,
    verify,
)
from circuitsim.studies import store as store_module
from circuitsim.studies.compute import plan_batches, solve_batch
from circuitsim.studies.store import StudyWriter

import circuitsim

SMALL = """
[study]
name = "small"
[tile]
rows = 6
cols = 5
r_source = 2.0
[inputs]
count = 3
[sweep]
r_wire = [0.5, 1.0, 2.0]
size = [4, 6]
"""

#: 30 points of 20 x 20 1T1R sinh tiles, one per batch, so that commits are spread in time.
SLOW = """
[study]
name = "slow"
[tile]
rows = 20
cols = 20
r_source = 5.0
device = { model = "sinh", a = 3.0 }
access = { model = "level1", vto = 0.5, kp = 2e-4, lambda_ = 0.01, w = 1e-6, l = 1e-7 }
v_gate = 1.8
[inputs]
count = 3
[solve]
batch = 1
[sweep]
r_wire = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
v_gate = [1.2, 1.5, 1.8, 2.1, 2.4]
"""


class Counting:
    """A task that counts its calls (to prove nothing was computed)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        return solve_batch(batch)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "circuitsim", "study", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False, **kw)


def assert_same_results(a, b):
    """Every point of ``a`` equals that of ``b``: datasets bit for bit, attributes and
    summary rows except the solve time."""
    sa, sb = read_summary(a), read_summary(b)
    assert list(sa.column("name")) == list(sb.column("name"))
    for col in sa.table.dtype.names:
        if col != "solve_time":
            np.testing.assert_array_equal(sa.column(col), sb.column(col), err_msg=col)
    for name in sa.column("name"):
        pa, pb = read_point(a, name), read_point(b, name)
        assert set(pa.arrays) == set(pb.arrays)
        for k in pa.arrays:
            np.testing.assert_array_equal(pa.arrays[k], pb.arrays[k], err_msg=f"{name}/{k}")
        skip = {"solve_time"}
        assert {k: v for k, v in pa.attrs.items() if k not in skip} == \
            {k: v for k, v in pb.attrs.items() if k not in skip}


def test_layout_while_running_and_when_complete(tmp_path):
    study = load_study(text=SMALL)
    out = tmp_path / "r.h5"
    with StudyWriter(out, study) as w:
        for r in solve_batch(plan_batches(study)[0]):
            w.commit(r)
        with h5py.File(out, "r") as f:  # index layout: links into the parts folder
            assert f.attrs["layout"] == "index" and not f.attrs["complete"]
            link = f["points"].get("p0", getlink=True)
            assert isinstance(link, h5py.ExternalLink)
            assert link.filename == "r.h5.parts/p0.h5"
            assert f["points/p0"].attrs["status"] == "ok"
        for b in plan_batches(study)[1:]:
            for r in solve_batch(b):
                w.commit(r)
        assert w.finish() == "single"
    assert not (tmp_path / "r.h5.parts").exists()
    assert not (tmp_path / ".r.h5.lock").exists()
    with h5py.File(out, "r") as f:
        a = f.attrs
        assert a["format"] == "circuitsim-study" and a["layout"] == "single" and a["complete"]
        assert a["circuitsim_version"] == circuitsim.__version__
        assert a["points_done"] == a["points_total"] == 6
        assert f["study/toml"][()].decode() == SMALL
        g = f["points/p4"]
        assert not isinstance(f["points"].get("p4", getlink=True), h5py.ExternalLink)
        assert g.attrs["tile.r_wl"] == 2.0 and g.attrs["tile.rows"] == 4
        assert g.attrs["circuitsim_version"] == circuitsim.__version__
        for name in ("g", "v_in", "i_out", "i_source", "v_wl", "v_bl"):
            ds = g[name]
            assert ds.chunks is not None and ds.compression == "gzip" and ds.fletcher32, name
            assert ds.attrs["units"] in ("S", "V", "A")
        assert g["v_wl"].shape == (4, 4, 4) and g["v_wl"].chunks == (1, 4, 4)
        summary = f["summary"][()]
        assert list(summary["index"]) == list(range(6))
        assert summary["r_wire"][4] == 2.0 and summary["size"][4] == 4
    assert verify(out) == []


def test_commit_is_idempotent(tmp_path):
    study = load_study(text=SMALL)
    results = solve_batch(plan_batches(study)[0])
    with StudyWriter(tmp_path / "r.h5", study) as w:
        assert w.commit(results[0]) is True
        assert w.commit(results[0]) is False
        assert w.commit(solve_batch(plan_batches(study)[0])[0]) is False  # recomputed
        assert w.duplicates == 2 and w.done == {results[0].point.name}
        w.finish()
    summary = read_summary(tmp_path / "r.h5")
    assert list(summary.column("name")) == [results[0].point.name]


def test_task_rerun_is_stored_once(tmp_path):
    """A batch whose results come back twice (as a rerun task's would) is stored once."""
    def twice(batch):
        return solve_batch(batch) + solve_batch(batch)

    report = run_study(load_study(text=SMALL), tmp_path / "r.h5", progress=False, task=twice)
    assert report.computed == 6 and report.duplicates == 6
    assert read_summary(tmp_path / "r.h5").points_done == 6
    run_study(load_study(text=SMALL), tmp_path / "ref.h5", progress=False)
    assert_same_results(tmp_path / "r.h5", tmp_path / "ref.h5")


def test_second_writer_fails_fast(tmp_path):
    study = load_study(text=SMALL)
    out = tmp_path / "r.h5"
    with StudyWriter(out, study) as w:
        t0 = time.perf_counter()
        with pytest.raises(OutputError, match=rf"being written by another process \(pid "
                                              rf"{os.getpid()}\)"):
            StudyWriter(out, study, resume=True)
        assert time.perf_counter() - t0 < 1.0
        (tmp_path / "s.toml").write_text(SMALL)
        proc = _cli("run", tmp_path / "s.toml", "-o", out, "--resume", "--quiet")
        assert proc.returncode == 2
        assert "being written by another process" in proc.stderr
        for b in plan_batches(study):  # the first writer carries on unharmed
            for r in solve_batch(b):
                w.commit(r)
        w.finish()
    assert read_summary(out).complete and verify(out) == []


def _unwritable(tmp_path, kind):
    if kind == "missing directory":
        return tmp_path / "nope" / "r.h5", "does not exist"
    if kind == "parent is a file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "r.h5", "does not exist"
    if kind == "output is a directory":
        (tmp_path / "d.h5").mkdir()
        return tmp_path / "d.h5", "it is a directory"
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "r.h5", "Permission denied"


@pytest.mark.parametrize("kind", ["missing directory", "parent is a file",
                                  "output is a directory", "read-only directory"])
def test_unusable_output_directory_fails_before_compute(tmp_path, kind):
    out, why = _unwritable(tmp_path, kind)
    task = Counting()
    with pytest.raises(OutputError, match=why):
        run_study(load_study(text=SMALL), out, progress=False, task=task)
    assert task.calls == 0


def test_existing_files_are_never_overwritten(tmp_path):
    study = load_study(text=SMALL)
    task = Counting()
    text = tmp_path / "notes.h5"
    text.write_text("my notes")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    other = tmp_path / "other.h5"
    run_study(load_study(text=SMALL.replace("count = 3", "count = 2")), other, progress=False)
    cases = [(text, "is not an HDF5 file"), (plain, "is not a circuitsim study file"),
             (other, "holds another study")]
    for path, why in cases:
        before = _sha(path)
        for resume in (False, True):
            with pytest.raises(OutputError, match=why):
                run_study(study, path, progress=False, resume=resume, task=task)
        assert _sha(path) == before
        assert not path.with_name(path.name + ".parts").exists()
    assert task.calls == 0
    # the same study, complete: refused without --resume, nothing to do with it
    same = tmp_path / "same.h5"
    run_study(study, same, progress=False)
    before = _sha(same)
    with pytest.raises(OutputError, match=r"already holds this study \(6 of 6 points, "
                                          r"complete\); resume"):
        run_study(study, same, progress=False, task=task)
    report = run_study(study, same, progress=False, resume=True, task=task)
    assert report.computed == 0 and report.skipped == 6 and task.calls == 0
    assert _sha(same) == before
    # --overwrite replaces any of them
    for path, _ in cases:
        run_study(study, path, progress=False, overwrite=True)
        assert read_summary(path).complete
    with pytest.raises(OutputError, match="exclude each other"):
        run_study(study, same, progress=False, resume=True, overwrite=True)


def test_sigkill_leaves_valid_file_and_resume_is_identical(tmp_path):
    (tmp_path / "s.toml").write_text(SLOW)
    study = load_study(tmp_path / "s.toml")
    out, parts = tmp_path / "r.h5", tmp_path / "r.h5.parts"
    proc = subprocess.Popen([sys.executable, "-m", "circuitsim", "study", "run",
                             str(tmp_path / "s.toml"), "-o", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("p*.h5"))) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    # a valid file holding only finished points
    summary = read_summary(out)
    assert not summary.complete and 1 <= summary.points_done < len(study.points)
    assert set(summary.column("status")) == {"ok"}
    assert verify(out) == []
    for name in summary.column("name"):
        assert np.isfinite(read_point(out, name).arrays["i_out"]).all()
    committed = len(list(parts.glob("p*.h5")))
    assert committed >= 3
    task = Counting()
    report = run_study(study, out, resume=True, progress=False, task=task)
    assert report.skipped == committed and report.computed == len(study.points) - committed
    assert task.calls == len(study.points) - committed  # one point per batch here
    run_study(study, tmp_path / "ref.h5", progress=False)
    assert_same_results(out, tmp_path / "ref.h5")
    assert read_summary(out).complete and not parts.exists()


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from circuitsim.studies.cli import main
sys.exit(main(["run", {study!r}, "-o", {out!r}, "--quiet"]))
"""


def test_full_disk_mid_study_is_reported_and_earlier_points_stay(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes the third point's write fail as a full disk
    would: the error says so, the two points before stay readable, resume completes."""
    (tmp_path / "s.toml").write_text("""
[tile]
rows = 4
cols = 4
r_wire = 1.0
[inputs]
count = 7
[sweep]
size = [4, 8, 96]
""")
    out = tmp_path / "r.h5"
    script = FULL_DISK.format(limit=400_000, study=str(tmp_path / "s.toml"), out=str(out))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "writing point p2 failed: File too large" in proc.stderr
    assert "The 2 points committed before remain readable" in proc.stderr
    assert "--resume" in proc.stderr
    summary = read_summary(out)
    assert list(summary.column("name")) == ["p0", "p1"] and verify(out) == []
    assert not list((tmp_path / "r.h5.parts").glob(".*tmp*"))
    report = run_study(load_study(tmp_path / "s.toml"), out, resume=True, progress=False)
    assert report.computed == 1 and read_summary(out).complete


def test_failed_results_file_write_keeps_the_last_good_one(tmp_path, monkeypatch):
    study = load_study(text=SMALL.replace("[study]", "[solve]\nbatch = 1\n[study]"))
    out = tmp_path / "r.h5"
    real = store_module.atomic_write
    writes = []

    def no_space(path, data):
        if path == out:
            writes.append(path)
            if len(writes) > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(store_module, "atomic_write", no_space)
    monkeypatch.setattr(store_module.StudyWriter, "_index_due", lambda self: True)
    with pytest.raises(WriteError, match=r"No space left on device\. The 4 points committed "
                                         r"before remain readable in .*r\.h5\.parts' \(3 of "
                                         r"them listed in .*; free some space"):
        run_study(study, out, progress=False)
    monkeypatch.setattr(store_module, "atomic_write", real)
    done = read_summary(out).points_done
    assert done == 3 and verify(out) == []
    report = run_study(study, out, resume=True, progress=False)
    assert read_summary(out).complete and report.skipped >= done


def test_damaged_part_is_recomputed_and_verify_finds_damage(tmp_path):
    study = load_study(text=SMALL)
    out = tmp_path / "r.h5"
    with StudyWriter(out, study) as w:
        for r in solve_batch(plan_batches(study)[0]):
            w.commit(r)
    part = tmp_path / "r.h5.parts" / "p0.h5"
    part.write_bytes(part.read_bytes()[:300])  # damaged after its commit
    report = run_study(study, out, resume=True, progress=False)
    assert report.computed == 6 - (len(plan_batches(study)[0].points) - 1)
    run_study(study, tmp_path / "ref.h5", progress=False)
    assert_same_results(out, tmp_path / "ref.h5")
    # flip one byte of a stored dataset: verify names it
    with h5py.File(out, "r") as f:
        offset = f["points/p1/i_out"].id.get_chunk_info(0).byte_offset
    data = bytearray(out.read_bytes())
    data[offset + 5] ^= 0xFF
    out.write_bytes(bytes(data))
    problems = verify(out)
    assert problems and all(p.startswith("p1/i_out") for p in problems), problems


def test_a_run_that_commits_nothing_leaves_nothing(tmp_path):
    study = load_study(text=SMALL)
    with StudyWriter(tmp_path / "r.h5", study):
        pass
    assert list(tmp_path.iterdir()) == []

    def boom(batch):
        raise MemoryError("no memory for this batch")

    with pytest.raises(MemoryError):
        run_study(study, tmp_path / "r.h5", progress=False, task=boom)
    assert list(tmp_path.iterdir()) == []
