"""Memory estimates: a tile too large for the machine is refused before anything large is made.

The estimates count the arrays the engine makes, per unknown node and per branch, plus the
Cholesky factor. With the unknowns in nested-dissection order the factor of a crossbar's grid
holds about ``N (1.9 log2 N - 9)`` entries for ``N`` unknowns (fitted on passive tiles from
128 x 128 to 512 x 512, where it is 19 to 26 entries per unknown; the separators of a planar
grid give the ``N log N`` growth). The constants are rounded up from peaks measured with ``/proc/self/status``
(VmHWM): passive tiles from 256 x 256 to 1024 x 1024 with one input and 128 x 128 to
256 x 256 with 64 inputs came out at 0.5 to 0.67 of the estimate, sinh and 1T1R sinh tiles of
64 x 64 and 128 x 128 with 64 inputs at about 0.8, so the estimates err on the large side.
"""

from __future__ import annotations

import math

from . import factor

__all__ = ["available_bytes", "check_solve_memory", "solve_bytes"]
#: Bytes per unknown of the circuit, analysis and solve arrays other than the factor
#: (branch index arrays, stamping maps, right-hand sides, branch values).
SOLVE_BYTES_PER_UNKNOWN = 800
#: Bytes per stored entry of the factor (value, row index, CHOLMOD's copies while factoring).
FACTOR_BYTES_PER_ENTRY = 24
#: Bytes per float; Newton keeps about 12 arrays per branch (currents, partials, their
#: transposes, predictions) and 16 per node (voltages, residuals, the Krylov vectors) per system.
NEWTON_BYTES = 8


def available_bytes() -> int | None:
    """Memory this process may still use: ``MemAvailable`` and any cgroup limit, or None."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                limit = f.read().strip()
            used_path = path.replace("memory.max", "memory.current").replace(
                "limit_in_bytes", "usage_in_bytes")
            with open(used_path) as f:
                used = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            room = int(limit) - used
            avail = room if avail is None else min(avail, room)
    return avail


def _gb(x: float) -> str:
    return f"{x / 1e9:.3g} GB"


def factor_entries(unknowns: int) -> float:
    """Entries of the nested-dissection Cholesky factor of a tile of ``unknowns`` unknowns."""
    if unknowns < 2:
        return float(unknowns)
    return unknowns * max(4.0, 1.9 * math.log2(unknowns) - 9.0)


def solve_bytes(tile, K: int, voltages: bool) -> int:
    """Estimated peak bytes of ``cs.solve`` on ``tile`` with ``K`` input vectors."""
    per_tile = tile.n_cell_nodes  # unknowns per tile, before zero resistances merge nodes
    tiles_at_once = max(1, min(tile.batch, factor.CHUNK_UNKNOWNS // max(per_tile, 1)))
    entries = FACTOR_BYTES_PER_ENTRY * factor_entries(per_tile) * tiles_at_once
    analysis = SOLVE_BYTES_PER_UNKNOWN * per_tile * max(tiles_at_once, 1)
    circuit = 100 * per_tile * tile.batch  # branch index and value arrays of every tile
    block = 8 * 8 * min(factor.CHUNK_ENTRIES, per_tile * tiles_at_once * K)  # right-hand side arrays
    results = 8 * tile.batch * K * (tile.m + tile.n + 4)
    if voltages:
        results += 8 * tile.batch * K * (per_tile + tile.m + tile.n)
    newton = 0
    if not tile.is_linear:  # Newton's per-system arrays, for one chunk of systems
        branches = (3 if tile.access is None else 4) * tile.m * tile.n
        systems = min(tile.batch * K,
                      max(1, factor.NEWTON_ENTRIES // (branches + per_tile + tile.m + tile.n)))
        newton = NEWTON_BYTES * (12 * branches + 16 * per_tile) * systems
    return int(entries + analysis + circuit + block + results + newton)


def _refuse(what: str, need: float, avail: int, hint: str):
    raise MemoryError(
        f"{what} needs about {_gb(need)} but only {_gb(avail)} of memory is available; {hint}"
    )


def check_solve_memory(tile, K: int, voltages: bool) -> None:
    """Refuse a solve whose estimated peak (:func:`solve_bytes`) exceeds the available memory."""
    avail = available_bytes()
    if avail is None:
        return
    need = solve_bytes(tile, K, voltages)
    if need > avail:
        _refuse(f"solving this {tile.batch} x {tile.m} x {tile.n} tile for {K} input vectors"
                + ("" if voltages else " (outputs only)"), need, avail,
                "use smaller tiles" + (" or voltages=False" if voltages else ""))
