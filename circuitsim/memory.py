"""Memory estimates: a tile too large for the machine is refused before anything large is made.

The estimates count the arrays the engine makes, per unknown node and per branch, plus the
Cholesky factor. With the unknowns in nested-dissection order the factor of a crossbar's grid
holds about ``N (1.9 log2 N - 9)`` entries for ``N`` unknowns (fitted on passive tiles from
128 x 128 to 512 x 512, where it is 19 to 26 entries per unknown; the separators of a planar
grid give the ``N log N`` growth). The constants are rounded up from peaks measured with
``/proc/self/status`` (VmHWM): passive tiles from 256 x 256 to 1024 x 1024 with one input and 128 x 128 to
256 x 256 with 64 inputs came out at 0.5 to 0.67 of the estimate, sinh and 1T1R sinh tiles of
64 x 64 and 128 x 128 with 64 inputs at about 0.8, so the estimates err on the large side.

On a GPU the same counts size each batch of tiles and input vectors to the device's free memory
(:func:`device_batch`); the per-system constants of Newton's arrays there are counted from the
arrays :mod:`circuitsim.newton` and :mod:`circuitsim.krylov` hold at once, not yet measured on a
GPU.
"""

from __future__ import annotations

import math

from . import factor

__all__ = ["available_bytes", "check_result_memory", "check_solve_memory", "device_batch",
           "solve_bytes"]

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


#: Fraction of the free device memory a batch is sized to fill (the rest: cuDSS workspace,
#: cuSPARSE buffers, fragmentation of the memory pool).
DEVICE_MEMORY_FRACTION = 0.6
#: Bytes per system and branch of Newton's arrays at once: branch currents and partials, their
#: transposes and products, the step limiting and the predicted currents (about 16 arrays).
NEWTON_BYTES_PER_BRANCH = 8 * 16
#: Bytes per system and node of Newton's and BiCGSTAB's node arrays (voltages, residuals, the
#: eight BiCGSTAB vectors, the preconditioner's laid-out right-hand sides: about 24 arrays).
NEWTON_BYTES_PER_NODE = 8 * 24
#: Bytes per entry (input x node) of the linear path's right-hand-side arrays at once (right-hand
#: side, solution, residuals, refinement).
LINEAR_BYTES_PER_ENTRY = 8 * 10


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


def result_bytes(tile, K: int, voltages: bool) -> int:
    """Bytes of the arrays ``cs.solve`` returns for ``K`` input vectors."""
    out = 8 * tile.batch * K * (tile.m + tile.n + 4)
    if voltages:
        out += 8 * tile.batch * K * (tile.n_cell_nodes + tile.m + tile.n)
    return int(out)


def check_result_memory(tile, K: int, voltages: bool) -> None:
    """Refuse a GPU solve whose results do not fit in the host's memory (the device's part is
    sized per batch by :func:`device_batch`)."""
    avail = available_bytes()
    need = result_bytes(tile, K, voltages)
    if avail is not None and need > avail:
        _refuse(f"the results of this {tile.batch} x {tile.m} x {tile.n} tile for {K} input "
                "vectors", need, avail, "use fewer input vectors" + (" or voltages=False"
                                                                       if voltages else ""))


def device_batch(*, n_free: int, n_fixed: int, n_branches: int, n_nodes: int, tiles: int, K: int,
                 nonlinear: bool, direct: bool, voltages: bool, free_bytes: int,
                 device: str = "the GPU") -> tuple[int, int]:
    """Tiles and input vectors per batch on a device with ``free_bytes`` free: every input of as
    many tiles as fit in :data:`DEVICE_MEMORY_FRACTION` of it, or, when one tile's inputs do not,
    one tile and as many inputs as fit. Raises ``MemoryError`` when not even one system fits.

    Per tile: the factor of its matrix (twice for a nonlinear tile: the preconditioner and the
    fallback direct steps) and the matrices and maps. Per system: Newton's branch and node arrays
    (plus a factor per system for ``direct`` Newton, ``mode="newton"``), and the voltages and
    currents kept for the results. The linear path takes its inputs in blocks of at most
    :data:`circuitsim.factor.DEVICE_CHUNK_ENTRIES` entries, whose arrays are set aside first.

    >>> sizes = dict(n_free=1000, n_fixed=40, n_branches=3000, n_nodes=1040, tiles=64, K=100,
    ...              nonlinear=True, direct=False, voltages=True)
    >>> [device_batch(**sizes, free_bytes=f) for f in (10**10, 10**9, 3 * 10**7)]
    [(64, 100), (9, 100), (1, 28)]
    """
    budget = DEVICE_MEMORY_FRACTION * free_bytes
    if not nonlinear:
        budget -= LINEAR_BYTES_PER_ENTRY * min(factor.DEVICE_CHUNK_ENTRIES,
                                               tiles * K * (n_free + n_fixed))
    factor_bytes = FACTOR_BYTES_PER_ENTRY * factor_entries(n_free)
    per_tile = factor_bytes * (2 if nonlinear else 1) + SOLVE_BYTES_PER_UNKNOWN * n_free
    if nonlinear:
        per_system = (NEWTON_BYTES_PER_BRANCH * n_branches
                      + NEWTON_BYTES_PER_NODE * (n_free + n_fixed)
                      + (factor_bytes if direct else 0))
    else:
        per_system = 0
    per_system += 8 * (n_fixed + 8) + (8 * n_nodes if voltages else 0)
    whole = per_tile + K * per_system
    if whole <= budget:
        return max(1, min(tiles, int(budget // whole))), K
    k = int((budget - per_tile) // per_system) if budget > per_tile else 0
    if k < 1:
        raise MemoryError(
            f"one system of a tile of {n_free} unknowns needs about {_gb(per_tile + per_system)}"
            f" of GPU memory but {device} has {_gb(free_bytes)} free; use smaller tiles or the "
            "CPU (backend='numpy')")
    return 1, min(k, K)
