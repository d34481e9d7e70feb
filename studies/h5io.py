"""HDF5 files written atomically: built in memory, then written, synced and renamed into place.

Every file is first built by h5py in an in-memory image (``io.BytesIO``); the bytes are then
written to a temporary file in the target's directory with ordinary Python I/O, flushed to disk
(``fsync``), renamed over the target (``os.replace``, atomic on POSIX) and the directory entry is
synced. A reader therefore sees either the old file or the complete new one, never a partial
write, whatever happens to the writing process; and a full disk or a size limit surfaces as an
ordinary ``OSError`` from ``write`` (HDF5's own file driver crashed the process on such a write
failure in h5py 3.16 / HDF5 2.0), after which the temporary file is removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from contextlib import suppress
from pathlib import Path

import h5py
import numpy as np

__all__ = ["atomic_write", "checksum", "h5_image", "put_dataset", "read_json_attr"]


def h5_image(build, **kwargs) -> bytes:
    """Bytes of an HDF5 file that ``build(f)`` fills (``f`` an ``h5py.File`` open for writing)."""
    bio = io.BytesIO()
    with h5py.File(bio, "w", **kwargs) as f:
        build(f)
    return bio.getvalue()


def _fsync_dir(path: Path) -> None:
    with suppress(OSError):  # some filesystems refuse to open or sync directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename, fsync directory).

    Raises the ``OSError`` of the failing step (for example ``ENOSPC``); ``path`` is then as it
    was and no temporary file remains.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def checksum(array: np.ndarray) -> str:
    """SHA-256 of an array's values (C order, native bytes), stored beside each dataset."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def put_dataset(group, name: str, data: np.ndarray, unit: str, compression: str):
    """A chunked, compressed, checksummed dataset with its ``units`` and ``sha256`` attributes.

    Node-voltage maps ``(K, m, n)`` are chunked one input vector per chunk; other arrays form
    one chunk. ``fletcher32`` guards every chunk on disk; the SHA-256 of the values lets a
    reader check the whole dataset.
    """
    data = np.ascontiguousarray(data)
    chunks = (1, *data.shape[1:]) if data.ndim == 3 else data.shape
    opts = {} if compression == "none" else {"compression": compression, "shuffle": True}
    if compression == "gzip":
        opts["compression_opts"] = 4
    ds = group.create_dataset(name, data=data, chunks=chunks, fletcher32=True, **opts)
    ds.attrs["units"] = unit
    ds.attrs["sha256"] = checksum(data)
    return ds


def read_json_attr(obj, name: str, default=None):
    """A JSON-encoded attribute, decoded (``default`` when absent)."""
    if name not in obj.attrs:
        return default
    value = obj.attrs[name]
    if isinstance(value, bytes):
        value = value.decode()
    return json.loads(value)
