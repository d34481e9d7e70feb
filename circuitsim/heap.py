"""Freed memory kept in the process's heap while Newton and the gradients run (glibc's malloc only).

Newton, BiCGSTAB and the audit make and free arrays of the same few large sizes many times per
solve: branch currents and partials ``(S, E)``, Krylov vectors ``(N, S)``, the results of sparse
products. glibc's malloc serves an array above its mmap threshold from fresh pages of the kernel
and trims freed memory at the top of the heap back to the kernel, so each such array costs a
page fault per page, which here costs as much as the arithmetic on it. While the nonlinear path
of :func:`circuitsim.solve`, :func:`circuitsim.vjp` or :func:`circuitsim.jvp` runs,
:func:`retained` raises the mmap and trim thresholds
(``mallopt``) so that freed blocks are reused; when the outermost decorated call returns it sets
them to the limits glibc's own dynamic thresholds grow to (32 MiB and 64 MiB) and hands the free
memory back to the kernel (``malloc_trim``), so the process does not keep its peak.

Measured (2-core machine, one cold solve in a fresh process, K = 64, time per vector; peak RSS
rise): 1T1R sinh 128 x 128 85 -> 67 ms (673 -> 649 MB), sinh 128 x 128 41 -> 33 ms (426 ->
425 MB), 1T1R sinh 256 x 256 323 -> 266 ms (963 -> 957 MB). The linear path is not decorated:
its chunked many-input solve reuses few arrays, and there the retained heap cost time and
memory (128 x 128, K = 100,000, outputs only: 22 -> 26 us per vector, 650 -> 846 MB).

Elsewhere (another C library) it does nothing, and ``CIRCUITSIM_HEAP=0`` in the environment
turns it off (read once, at import).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import threading

__all__ = ["enabled", "retained"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: While a solve runs: arrays up to 1 GiB come from the heap, which is not trimmed.
_SOLVE = (1 << 30, (1 << 31) - 1)
#: After it: the largest thresholds glibc's dynamic rule reaches on a 64-bit machine.
_AFTER = (32 << 20, 64 << 20)

_lock = threading.Lock()
_depth = 0


def _libc():
    if os.environ.get("CIRCUITSIM_HEAP", "1").strip() == "0":
        return None
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def enabled() -> bool:
    """Whether :func:`retained` tunes the allocator in this process."""
    return _LIBC is not None


def _set(mmap: int, trim: int) -> None:
    _LIBC.mallopt(_M_MMAP_THRESHOLD, mmap)
    _LIBC.mallopt(_M_TRIM_THRESHOLD, trim)


def retained(function):
    """Decorator: freed memory stays in the heap while ``function`` (and every decorated call
    it makes, in any thread) runs; see the module docstring."""
    if _LIBC is None:
        return function

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        global _depth
        with _lock:
            _depth += 1
            if _depth == 1:
                _set(*_SOLVE)
        try:
            return function(*args, **kwargs)
        finally:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    _set(*_AFTER)
                    _LIBC.malloc_trim(0)

    return wrapper
