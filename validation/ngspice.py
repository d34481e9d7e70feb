"""Find ngspice and run a deck in it, isolated in a child process.

Two backends, both in a child process so that a crash, a hang (killed at the timeout) or PySpice's
per-analysis memory leak never reaches the caller:

- ``"shared"``: ngspice's shared library (``libngspice.so``) through PySpice's ``NgSpiceShared``,
  in a worker (:mod:`circuitsim.validation._worker`); the library is the one named by
  ``NGSPICE_LIBRARY_PATH`` or found in the usual system folders (Debian's ``libngspice0``);
- ``"cli"``: the ``ngspice -b -r out.raw deck.cir`` command line, whose binary raw file holds every
  node voltage and source current as exact float64.

``"auto"`` takes the shared library where PySpice and the library are installed and falls back to
the command line where they are not, or where PySpice cannot drive the library (ngspice >= 42).
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import (
    INSTALL,
    NgspiceConvergenceError,
    NgspiceError,
    NgspiceMissingError,
    NgspiceTimeoutError,
)

__all__ = ["BACKENDS", "NgspiceRun", "find_executable", "find_library", "run_deck"]

BACKENDS = ("auto", "shared", "cli")

_LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/opt/homebrew/lib",
    os.path.join(sys.prefix, "lib"),
)
_LIBRARY_NAMES = ("libngspice.so", "libngspice.so.0", "libngspice.dylib")

#: Phrases of ngspice's output that mean it found no operating point (``cktop.c``, ``niiter.c``).
_NO_CONVERGENCE = (
    "singular matrix",
    "gmin stepping failed",
    "source stepping failed",
    "timestep too small",
    "dc solution failed",
    "iteration limit",
    "no convergence",
    "transient op failed",
)
_BENIGN = ("No compatibility mode selected",)


@dataclass(frozen=True)
class NgspiceRun:
    """ngspice's operating point of one deck.

    Attributes
    ----------
    vectors : dict of str to float
        Node voltages by (lower-case) node name, and voltage-source currents as ``i(vname)``
        (SPICE's sign: current into the source's ``+`` node).
    time_s : float
        Seconds ngspice took: loading and running the circuit (shared library), or the whole
        ``ngspice -b`` process (command line).
    backend : str
        ``"shared"`` or ``"cli"``.
    version : int or None
        ngspice's major version where known.
    notes : tuple of str
        ngspice's warnings and notes (for example gmin stepping), and any fallback taken.
    """

    vectors: dict
    time_s: float
    backend: str
    version: int | None
    notes: tuple[str, ...] = ()


def find_library() -> str | None:
    """Path (or soname) of ngspice's shared library, or None.

    ``NGSPICE_LIBRARY_PATH`` wins when set (None if that file does not exist); then the usual
    library folders; then the dynamic loader's search (``ctypes.util.find_library``).
    """
    env = os.environ.get("NGSPICE_LIBRARY_PATH")
    if env:
        return env if os.path.exists(env) else None
    for folder in _LIBRARY_DIRS:
        for name in _LIBRARY_NAMES:
            path = os.path.join(folder, name)
            if os.path.exists(path):
                return path
    return ctypes.util.find_library("ngspice")


def find_executable() -> str | None:
    """Path of the ``ngspice`` executable, or None."""
    return shutil.which("ngspice")


@lru_cache(maxsize=8)
def executable_version(executable: str) -> int:
    """Major version of an ``ngspice`` executable; NgspiceMissingError if it is not ngspice."""
    try:
        out = subprocess.run(
            [executable, "-v"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NgspiceMissingError(
            f"cannot run {executable} -v ({exc}); install: {INSTALL}"
        ) from None
    found = re.search(r"ngspice-(\d+)", out.stdout + out.stderr)
    if found is None:
        raise NgspiceMissingError(
            f"{executable} -v does not report an ngspice version (is it ngspice?); "
            f"install: {INSTALL}"
        )
    return int(found.group(1))


def _split(lines: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """ngspice's output lines: (error lines, notes)."""
    lines = [ln.strip() for ln in lines if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "aborted" in ln.lower()]
    notes = tuple(
        ln
        for ln in lines
        if ln.startswith(("Warning", "Note")) and not any(b in ln for b in _BENIGN)
    )
    return errors, notes


def _fail(lines: list[str], what: str):
    """Raise NgspiceConvergenceError or NgspiceError quoting ngspice's error lines."""
    errors, notes = _split(lines)
    text = "\n".join(lines)
    quoted = "; ".join(dict.fromkeys(errors + [n for n in notes if n.startswith("Warning")]))
    message = f"ngspice {what}: {quoted or 'no error message (see .output)'}"
    if any(p in text.lower() for p in _NO_CONVERGENCE):
        raise NgspiceConvergenceError(message, text)
    raise NgspiceError(message, text)


def _run_shared(deck: str, library: str, timeout: float, tmp: Path) -> NgspiceRun | str:
    """Run in the worker; return the run, or the reason PySpice cannot drive this library."""
    request, result = tmp / "request.json", tmp / "result.json"
    request.write_text(json.dumps({"deck": deck}))
    env = {**os.environ, "NGSPICE_LIBRARY_PATH": library}
    worker = Path(__file__).with_name("_worker.py")
    try:
        proc = subprocess.run(
            [sys.executable, str(worker), str(request), str(result)],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise NgspiceTimeoutError(
            f"ngspice (shared library, worker process) did not finish within {timeout:g} s; "
            "the worker was killed"
        ) from None
    if not result.exists():
        return (
            f"the worker process exited with code {proc.returncode}: {proc.stderr.strip()[-500:]}"
        )
    out = json.loads(result.read_text())
    if out["status"] == "unsupported":
        return out["error"]
    if out["status"] == "ngspice":
        _fail(out["output"], "failed")
    _, notes = _split(out["output"])
    stray = tuple(f"worker stderr: {ln}" for ln in proc.stderr.splitlines() if ln.strip())
    return NgspiceRun(out["vectors"], out["time_s"], "shared", out["version"], notes + stray)


def read_raw(path: Path) -> dict[str, float]:
    """Vectors of the first point of an ngspice binary raw file: ``{name: value}``.

    Node voltages ``v(x)`` are keyed ``x``; source currents keep their name ``i(vname)``.
    """
    data = path.read_bytes()
    head, sep, body = data.partition(b"Binary:\n")
    if not sep:
        raise ValueError(f"{path} is not a binary raw file")
    header = head.decode("ascii", "replace")
    n_vars = int(re.search(r"No\. Variables:\s*(\d+)", header).group(1))
    n_points = int(re.search(r"No\. Points:\s*(\d+)", header).group(1))
    if n_points < 1 or len(body) < 8 * n_vars:
        raise ValueError(f"{path} holds no data point")
    names = re.findall(r"^\s*\d+\s+(\S+)\s+\S+\s*$", header.split("Variables:", 1)[1], re.MULTILINE)
    values = np.frombuffer(body, dtype="<f8", count=n_vars)
    out = {}
    for name, value in zip(names[:n_vars], values):
        name = name.lower()
        out[name[2:-1] if name.startswith("v(") else name] = float(value)
    return out


def _run_cli(deck: str, executable: str, timeout: float, tmp: Path) -> NgspiceRun:
    version = executable_version(executable)
    cir, raw = tmp / "deck.cir", tmp / "out.raw"
    cir.write_text(deck)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [executable, "-b", "-r", str(raw), str(cir)],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise NgspiceTimeoutError(
            f"ngspice -b did not finish within {timeout:g} s; the process was killed"
        ) from None
    elapsed = time.perf_counter() - start
    lines = (proc.stdout + "\n" + proc.stderr).splitlines()
    try:
        vectors = read_raw(raw) if proc.returncode == 0 else None
    except (OSError, ValueError, AttributeError):
        vectors = None
    if vectors is None:
        _fail(lines, f"-b exited with code {proc.returncode}")
    _, notes = _split(proc.stderr.splitlines())
    return NgspiceRun(vectors, elapsed, "cli", version, notes)


def run_deck(deck: str, *, backend: str = "auto", timeout: float = 120.0) -> NgspiceRun:
    """Run a deck's operating point in ngspice, in a child process.

    Parameters
    ----------
    deck : str
        A SPICE deck with one ``.op`` analysis (see :func:`circuitsim.netlist.to_spice`).
    backend : {"auto", "shared", "cli"}
        See the module docstring.
    timeout : float
        Seconds before the child process is killed.

    Returns
    -------
    NgspiceRun

    Raises
    ------
    NgspiceMissingError
        No usable ngspice (the message gives the install command).
    NgspiceConvergenceError, NgspiceError
        ngspice found no operating point, or rejected the deck (its messages quoted).
    NgspiceTimeoutError
        The child process ran past ``timeout``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    library = find_library() if importlib.util.find_spec("PySpice") is not None else None
    executable = find_executable()
    fallback = ()
    with tempfile.TemporaryDirectory(prefix="circuitsim-ngspice-") as tmp:
        if backend in ("auto", "shared") and library is not None:
            run = _run_shared(deck, library, timeout, Path(tmp))
            if isinstance(run, NgspiceRun):
                return run
            if backend == "shared":
                raise NgspiceMissingError(f"ngspice's shared library {library} is unusable: {run}")
            fallback = (f"Note: shared library unusable ({run}); used ngspice -b",)
        elif backend == "shared":
            raise NgspiceMissingError(
                "ngspice's shared library (libngspice.so) or PySpice is not installed; install: "
                f"{INSTALL} and pip install PySpice, or set NGSPICE_LIBRARY_PATH"
            )
        if executable is None:
            raise NgspiceMissingError(f"ngspice is not installed; install: {INSTALL}")
        run = _run_cli(deck, executable, timeout, Path(tmp))
    return NgspiceRun(run.vectors, run.time_s, run.backend, run.version, fallback + run.notes)
