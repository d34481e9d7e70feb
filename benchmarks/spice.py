"""ngspice baselines: SPICE decks of a tile and timed ``ngspice -b`` runs.

Decks come from :func:`circuitsim.netlist.to_spice` (the project's SPICE writer) when it can be
imported; otherwise from :func:`passive_deck`, a minimal writer for passive linear tiles kept here
(resistors and ideal sources only, the same element and node names as ``to_spice``). Either way the
benchmark replaces the deck's ``.op`` with a ``.control`` block that runs ``op`` once and prints ``i(Vsense_j)`` with 16 digits,
and times the whole ``ngspice -b deck.cir`` subprocess (start-up, parsing, the operating point and
the printout: the wall time a user waits).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

#: ngspice options for the operating point (the same as circuitsim.netlist.spice.OPTIONS).
OPTIONS = "reltol=1e-9 abstol=1e-15 vntol=1e-12 gmin=1e-30 itl1=500"

_VALUE = re.compile(r"^\s*(\S+)\s+=\s+(\S+)\s*$")


def ngspice_path() -> str | None:
    return shutil.which("ngspice")


def ngspice_version() -> str | None:
    exe = ngspice_path()
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"ngspice-(\S+)", out)
    return m.group(1) if m else out.strip().splitlines()[0] if out.strip() else "?"


def project_writer():
    """``circuitsim.netlist.to_spice`` or None when it does not exist (yet)."""
    try:
        from circuitsim.netlist import to_spice
    except ImportError:
        return None
    return to_spice


def _fmt(x: float) -> str:
    return repr(float(x))


def passive_deck(tile, v_in, options: str = OPTIONS) -> str:
    """A SPICE deck of one passive linear tile (``tile.batch == 1``) and one input vector.

    Written from the tile's parameters (DESIGN.md section 3), independently of the engine's
    circuit: ``Vsrc_i`` drives ``src_i``; ``r_source + r_wl[i, 0]`` joins it to ``wl_i_0``; WL
    segments ``wl_i_{j-1} -> wl_i_j``; cells ``wl_i_j -> bl_i_j`` of ``1/g``; BL segments
    ``bl_i_j -> bl_{i+1}_j`` and ``r_bl[m-1, j] + r_sense[j]`` into ``sense_j``, held by
    ``Vsense_j`` (so ``I(Vsense_j)`` is ``i_out[j]``). A zero resistance is written as a 0 V source
    (an exact short, no unknown lost); a zero conductance writes no cell.
    """
    if tile.access is not None or not tile.is_linear or tile.device is not None:
        raise NotImplementedError("benchmarks.spice.passive_deck writes passive linear tiles only; "
                                  "nonlinear/1T1R decks need circuitsim.netlist.to_spice")
    if tile.drive != "left":
        raise NotImplementedError("passive_deck: drive='left' only")
    m, n = tile.m, tile.n
    v = np.asarray(v_in, dtype=float).reshape(m)
    g = tile.g[0]
    r_wl = tile.r_wl[0].copy()
    r_bl = tile.r_bl[0].copy()
    r_wl[:, 0] += tile.r_source[0]
    r_bl[-1, :] += tile.r_sense[0]
    lines = [f"circuitsim benchmark {m}x{n} passive tile", f".options {options}"]
    lines += [f"Vsrc_{i} src_{i} 0 DC {_fmt(v[i])}" for i in range(m)]
    lines += [f"Vsense_{j} sense_{j} 0 DC {_fmt(tile.v_sense[0, j])}" for j in range(n)]

    def branch(name, a, b, r):
        return f"V{name} {a} {b} DC 0" if r == 0 else f"R{name} {a} {b} {_fmt(r)}"

    for i in range(m):
        for j in range(n):
            left = f"src_{i}" if j == 0 else f"wl_{i}_{j - 1}"
            below = f"sense_{j}" if i == m - 1 else f"bl_{i + 1}_{j}"
            lines.append(branch(f"wl_{i}_{j}", left, f"wl_{i}_{j}", r_wl[i, j]))
            lines.append(branch(f"bl_{i}_{j}", f"bl_{i}_{j}", below, r_bl[i, j]))
            if g[i, j] > 0:
                lines.append(f"Rcell_{i}_{j} wl_{i}_{j} bl_{i}_{j} {_fmt(1.0 / g[i, j])}")
    lines += [".op", ".end", ""]
    return "\n".join(lines)


def make_deck(tile, v_in) -> tuple[str, str]:
    """``(deck, writer)``: the project's ``to_spice`` where it exists, else :func:`passive_deck`."""
    to_spice = project_writer()
    if to_spice is not None:
        return to_spice(tile, np.asarray(v_in, dtype=float)), "circuitsim.netlist.to_spice"
    return passive_deck(tile, v_in), "benchmarks.spice.passive_deck"


def with_control(deck: str, n: int) -> str:
    """Replace the deck's ``.op`` by a ``.control`` block: ``op`` once, then ``print i(Vsense_j)``.

    (With both, ``ngspice -b`` would solve the operating point twice.)
    """
    body = deck.rstrip()
    if not body.lower().endswith(".end"):
        raise ValueError("deck does not end with .end")
    # ngspice -b runs the deck's .op on its own and again on "run": keep one operating point.
    lines = [ln for ln in body[: -len(".end")].rstrip().splitlines()
             if ln.strip().lower() != ".op"]
    control = [".control", "set numdgt=16", "op"] + [f"print i(vsense_{j})" for j in range(n)]
    return "\n".join([*lines, *control, ".endc", ".end", ""])


def run_ngspice(deck: str, n: int, *, timeout: float = 600.0, workdir: str | None = None) -> dict:
    """Run ``ngspice -b`` on ``deck`` (with :func:`with_control` added); time it; parse ``i_out``.

    Returns ``{"time_s", "i_out" (n,), "maxrss_mb" (peak RSS of the ngspice process, None if it
    exited before it could be read), "stdout_tail"}``. Raises
    RuntimeError when ngspice reports an error or a current is missing (ngspice -b exits 1 even on
    success when the deck has a .control block, so the exit code is not used).
    """
    exe = ngspice_path()
    if exe is None:
        raise RuntimeError("ngspice is not installed (apt-get install ngspice)")
    text = with_control(deck, n)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "deck.cir"
        path.write_text(text)
        out_path, err_path = Path(tmp) / "out.txt", Path(tmp) / "err.txt"
        # stderr apart: ngspice's notes on stderr would otherwise land inside a printed value
        # (its stdout is block-buffered), which then fails to parse
        with open(out_path, "w") as out, open(err_path, "w") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen([exe, "-b", str(path)], stdout=out, stderr=err, cwd=tmp)
            try:
                _, status, hwm_kb = _wait(proc, timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"ngspice timed out after {timeout:.0f} s") from None
            wall = time.perf_counter() - t0
        printed = out_path.read_text(errors="replace")
        log = printed + err_path.read_text(errors="replace")
    values = {}
    for line in printed.splitlines():
        mt = _VALUE.match(line)
        if mt:
            try:
                values[mt.group(1).lower()] = float(mt.group(2))
            except ValueError:
                pass
    i_out = np.array([values.get(f"i(vsense_{j})", np.nan) for j in range(n)])
    errors = [ln for ln in log.splitlines() if re.search(r"\berror\b", ln, re.IGNORECASE)
              and "error =" not in ln.lower()]
    missing = np.flatnonzero(np.isnan(i_out))
    trouble = re.search(r"^.*(timestep too small|no convergence|singular).*$", log,
                        re.IGNORECASE | re.MULTILINE)
    if len(missing) or trouble:
        why = (f"no value for i(vsense_j), j = {missing[:8].tolist()}" if len(missing)
               else f"ngspice printed {trouble.group(0).strip()!r}")
        tail = "\n".join((errors or log.splitlines())[-8:])
        raise RuntimeError(f"ngspice failed (exit status {status}): {why}\n{tail}")
    return {"time_s": wall, "i_out": i_out, "maxrss_mb": None if hwm_kb is None else hwm_kb / 1024,
            "stdout_tail": "\n".join(printed.splitlines()[-5:])}


def _hwm_kb(pid: int) -> int | None:
    """``VmHWM`` of ``pid`` once it runs ngspice (not the forked Python before ``exec``)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "ngspice" not in fields.get("Name", "") or "VmHWM" not in fields:
        return None
    return int(fields["VmHWM"].split()[0])


def _wait(proc: subprocess.Popen, timeout: float):
    """Wait for ``proc`` with a timeout; returns ``(pid, exit status, peak RSS in kB)``.

    The peak is the child's own ``VmHWM``, read from ``/proc`` while it runs (monotone, so the last
    reading before it exits is its peak up to then). ``ru_maxrss`` from ``wait4`` is not used: on
    Linux it keeps the high-water mark of the forking parent from before ``exec``, so it reports
    the benchmark process's own size whenever that is the larger.
    """
    deadline = time.monotonic() + timeout
    hwm = 0
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return pid, proc.returncode, hwm or None
        now = _hwm_kb(proc.pid)
        if now:
            hwm = max(hwm, now)
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.005)
