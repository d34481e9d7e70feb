"""The one writer of a study's results: checks, lock, atomic commits, resume, finalisation.

Guarantees (each tested):

- a point is either complete in the results or absent: each point is its own file, written
  atomically (:func:`~circuitsim.studies.h5io.atomic_write`), and the results file
  (summary and links) is rewritten atomically after commits; killing the process at any moment
  leaves a valid results file with the points finished so far;
- a point committed twice is stored once;
- a second writer on the same output fails at once (an exclusive ``flock`` on
  ``.<name>.lock`` beside the output, released by the kernel if the writer dies);
- an unwritable directory, or an existing file that is not this study's, is reported before
  anything is computed; nothing is overwritten without ``overwrite=True``;
- a failed write (a full disk) raises :class:`WriteError` saying which points remain readable.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from contextlib import ExitStack, suppress
from pathlib import Path

import h5py

import circuitsim

from . import layout
from .config import Study
from .h5io import atomic_write

__all__ = ["OutputError", "StudyWriter", "WriteError"]

#: Largest total size of the point files that is copied into one results file at the end.
CONSOLIDATE_MAX_BYTES = 1 << 30


class OutputError(RuntimeError):
    """The output cannot be used as asked (exists, another study, locked, not writable).

    Raised before anything is computed.
    """


class WriteError(OSError):
    """Writing results failed during a study (for example a full disk).

    The points committed before remain readable; the message says where and how to go on.
    """


class _Lock:
    """An exclusive, non-blocking ``flock`` on a lock file, which records the holder's pid."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = None

    def acquire(self, target: Path) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot write results in {str(self.path.parent)!r}: "
                                  f"{exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputError(f"{str(target)!r} is being written by another process "
                                  f"(pid {holder}); wait for it to finish or write elsewhere") \
                    from None
            # the file may have been removed by a writer that finished meanwhile: retry
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self.fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            with suppress(OSError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = None


def _describe_existing(path: Path) -> dict:
    """What an existing output file is: ``{"kind": ..., attrs}``; never modifies it."""
    if not h5py.is_hdf5(path):
        return {"kind": "not hdf5"}
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as exc:
        return {"kind": "unreadable", "error": str(exc)}
    if attrs.get("format") != layout.FORMAT:
        return {"kind": "other"}
    return {"kind": "study", **attrs}


class StudyWriter:
    """Writes the results of ``study`` to ``path``; the only process that touches them.

    Parameters
    ----------
    path : str or Path
        The results file (HDF5). Its directory must exist.
    study : Study
    resume : bool
        Continue a study that stopped: the points already in ``path`` are kept.
    overwrite : bool
        Replace an existing ``path`` (and its parts folder) whatever it holds.

    Raises
    ------
    OutputError
        Before anything is computed, when the output cannot be used as asked.
    """

    def __init__(self, path, study: Study, *, resume: bool = False, overwrite: bool = False):
        if resume and overwrite:
            raise OutputError("resume and overwrite exclude each other")
        self.path = Path(path).absolute()
        self.study = study
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.columns = layout.summary_columns(study)
        self.rows: dict[str, tuple] = {}
        self.duplicates = 0
        self.bytes_written = 0
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._names = {p.name: p for p in study.points}
        self._last_index = 0.0
        self._index_cost = 0.0
        self._listed = 0
        parent = self.path.parent
        if not parent.is_dir():
            raise OutputError(f"cannot write {str(self.path)!r}: the directory "
                              f"{str(parent)!r} does not exist")
        if self.path.is_dir():
            raise OutputError(f"cannot write {str(self.path)!r}: it is a directory")
        self._lock = _Lock(parent / f".{self.path.name}.lock")
        self._lock.acquire(self.path)
        try:
            self._prepare(resume, overwrite)
        except BaseException:
            self._lock.release()
            raise

    # -- opening --------------------------------------------------------------------------------

    def _prepare(self, resume: bool, overwrite: bool) -> None:
        exists = self.path.exists()
        if overwrite:
            if exists:
                self.path.unlink()
            shutil.rmtree(self.parts, ignore_errors=True)
        elif exists:
            self._check_existing(resume)
        elif any(self.parts.glob("*.h5")) and not resume:
            raise OutputError(f"{str(self.parts)!r} holds points of an earlier run; "
                              "resume to finish it, or overwrite to start again")
        if self.path.exists():  # resuming
            info = _describe_existing(self.path)
            self.created = str(info.get("created", self.created))
            if info.get("layout") == "single":
                self._load_single()
                return
        try:
            self.parts.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {str(self.parts)!r}: {exc.strerror}") from None
        self._load_parts()

    def _check_existing(self, resume: bool) -> None:
        info = _describe_existing(self.path)
        where = repr(str(self.path))
        if info["kind"] == "not hdf5":
            raise OutputError(f"{where} exists and is not an HDF5 file; overwrite to replace it")
        if info["kind"] == "unreadable":
            raise OutputError(f"{where} exists but cannot be read ({info['error']}); "
                              "overwrite to replace it")
        if info["kind"] == "other":
            raise OutputError(f"{where} exists and is not a circuitsim study file; "
                              "overwrite to replace it")
        done, total = info.get("points_done"), info.get("points_total")
        if info.get("fingerprint") != self.study.fingerprint:
            raise OutputError(
                f"{where} holds another study ({info.get('study_name')!r}, {done} of {total} "
                "points); overwrite to replace it, or write elsewhere")
        if not resume:
            state = "complete" if info.get("complete") else "incomplete"
            raise OutputError(f"{where} already holds this study ({done} of {total} points, "
                              f"{state}); resume to finish it, or overwrite to recompute it")
        if info.get("circuitsim_version") != circuitsim.__version__:
            raise OutputError(
                f"{where} was started with circuitsim {info.get('circuitsim_version')}, this is "
                f"{circuitsim.__version__}: resuming would mix results of two versions; "
                "overwrite to recompute it")

    def _row_from(self, g) -> tuple:
        point = self._names[g.attrs["name"]]
        metrics = {c[0]: g.attrs[c[0]] for c in self.columns if c[0] in g.attrs}
        return layout.summary_row(point, str(g.attrs["status"]), str(g.attrs["reason"]),
                                  metrics, self.study, self.columns)

    def _load_single(self) -> None:
        with h5py.File(self.path, "r") as f:
            for name, g in f["points"].items():
                self.rows[name] = self._row_from(g)
        missing = len(self.study.points) - len(self.rows)
        if missing:
            raise OutputError(f"{str(self.path)!r} was finalised without {missing} points; "
                              "overwrite to recompute it")
        self.single = True

    def _load_parts(self) -> None:
        """Points committed by an earlier run; leftovers of interrupted writes are removed."""
        self.single = False
        for tmp in self.parts.glob(".*.tmp-*"):
            tmp.unlink()
        for part in sorted(self.parts.glob("*.h5")):
            try:
                with h5py.File(part, "r") as f:
                    ok = (f.attrs.get("fingerprint") == self.study.fingerprint
                          and part.stem in self._names and "point" in f)
                    if not ok:
                        raise OutputError(f"{str(part)!r} is not a point of this study; "
                                          "overwrite to start again")
                    self.rows[part.stem] = self._row_from(f["point"])
            except OSError:  # damaged after its atomic commit: compute it again
                part.unlink()

    # -- writing --------------------------------------------------------------------------------

    @property
    def done(self) -> set[str]:
        """Names of the points committed so far."""
        return set(self.rows)

    @property
    def complete(self) -> bool:
        return len(self.rows) == len(self.study.points)

    def _fail(self, exc: OSError, what: str):
        if what.startswith("point") and self._listed != len(self.rows):
            with suppress(OSError):  # list every committed point, if there is room for that
                self._write_results(self._index_image())
                self._listed = len(self.rows)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            hint = "free some space"
        else:
            hint = "fix the cause"
        where = f"in {str(self.path)!r}"
        if self._listed != len(self.rows):
            where = (f"in {str(self.parts)!r} ({self._listed} of them listed in "
                     f"{str(self.path)!r} so far)")
        raise WriteError(
            exc.errno, f"writing {what} failed: {exc.strerror or exc}. The {len(self.rows)} "
            f"points committed before remain readable {where}; {hint} and run again with "
            "--resume to compute the rest") from exc

    def commit(self, result) -> bool:
        """Store one point's result atomically; returns False if it was already stored."""
        name = result.point.name
        if name in self.rows:
            self.duplicates += 1
            return False
        data = layout.point_image(result, self.study, self.study.output["compression"])
        try:
            atomic_write(self.parts / f"{name}.h5", data)
        except OSError as exc:
            self._fail(exc, f"point {name}")
        self.bytes_written += len(data)
        self.rows[name] = layout.summary_row(result.point, result.status, result.reason,
                                             result.metrics, self.study, self.columns)
        if self._index_due():
            self._write_index()
        return True

    def _index_due(self) -> bool:
        """Rewrite the results file after a commit unless the last rewrite was recent compared
        with its cost (at most a fifth of the time goes to it)."""
        return time.perf_counter() - self._last_index >= 4 * self._index_cost

    def _index_image(self, sources=None) -> bytes:
        return layout.index_image(self.study, self.rows, self.columns, complete=self.complete,
                                  created=self.created, parts=self.parts.name, sources=sources)

    def _write_results(self, data: bytes) -> None:
        atomic_write(self.path, data)

    def _write_index(self, sources=None) -> None:
        t0 = time.perf_counter()
        data = self._index_image(sources)
        try:
            self._write_results(data)
        except OSError as exc:
            self._fail(exc, f"the results file {str(self.path)!r}")
        self._listed = len(self.rows)
        self._last_index = time.perf_counter()
        self._index_cost = self._last_index - t0

    def flush(self) -> None:
        """Rewrite the results file if points were committed since it was last written."""
        if self._listed != len(self.rows):
            self._write_index()

    def finish(self) -> str:
        """Bring the results file up to date; when the study is complete, copy every point into
        it and remove the parts folder. Returns the layout: ``"single"`` or ``"index"``."""
        if getattr(self, "single", False):
            return "single"
        size = sum(p.stat().st_size for p in self.parts.glob("*.h5"))
        if not self.complete or size > CONSOLIDATE_MAX_BYTES:
            self._write_index()
            return "index"
        with ExitStack() as stack:
            sources = {name: stack.enter_context(h5py.File(self.parts / f"{name}.h5", "r"))
                       for name in self.rows}
            self._write_index(sources)
        shutil.rmtree(self.parts, ignore_errors=True)
        self.single = True
        return "single"

    def close(self) -> None:
        """Release the lock (the results stay as last written). A run that committed nothing
        leaves nothing behind."""
        if not self.rows and not self.path.exists():
            with suppress(OSError):
                self.parts.rmdir()  # only if empty
        self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

