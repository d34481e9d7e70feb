"""circuitsim.heap: freed memory stays in the heap while a solve runs, and goes back after it."""

import os
import resource
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import circuitsim as cs
from circuitsim import heap

needs_glibc = pytest.mark.skipif(not heap.enabled(), reason="the heap tuning needs glibc's malloc")

BIG = 64 << 20  # bytes: above glibc's largest dynamic mmap threshold (32 MiB)


def _faults_of_allocations(times: int = 3) -> float:
    """Minor page faults per allocation of a fresh, fully written ``BIG``-byte array, after one
    allocation that may grow the heap."""
    a = np.ones(BIG // 8)
    del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        a = np.ones(BIG // 8)
        del a
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / times


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@needs_glibc
def test_freed_blocks_are_reused_inside_and_fault_again_outside():
    # a 64 MiB array is at least 32 pages even as transparent huge pages: outside a solve every
    # allocation of it maps fresh pages, inside it reuses the freed block
    inside = heap.retained(_faults_of_allocations)()
    outside = _faults_of_allocations()
    assert inside <= 4, inside
    assert outside >= 16, outside


@needs_glibc
def test_nested_and_concurrent_calls_keep_the_heap_until_the_outermost_returns():
    inner = heap.retained(lambda: None)

    @heap.retained
    def outer():
        inner()  # returning from an inner call must not restore the thresholds
        return _faults_of_allocations()

    assert outer() <= 4
    results, started, release = [], threading.Event(), threading.Event()

    @heap.retained
    def long_call():
        started.set()
        release.wait(30)

    t = threading.Thread(target=long_call)
    t.start()
    started.wait(30)
    try:
        results.append(heap.retained(_faults_of_allocations)())  # ends while the other runs
        results.append(_faults_of_allocations())  # not decorated, but the other call runs
    finally:
        release.set()
        t.join()
    assert results[0] <= 4 and results[1] <= 4, results
    assert _faults_of_allocations() >= 16  # both returned: back to fresh pages


@needs_glibc
def test_memory_goes_back_to_the_kernel_after_the_outermost_call():
    @heap.retained
    def peak():
        blocks = [np.ones(BIG // 8) for _ in range(4)]  # 256 MiB held at once, then freed
        del blocks
        return _rss_bytes()

    before = _rss_bytes()
    during = peak()
    after = _rss_bytes()
    assert during - before > 200 << 20  # the freed blocks stayed in the heap
    assert after - before < 64 << 20, (before, during, after)


def test_public_entry_points_keep_their_signatures_and_results():
    import inspect

    assert list(inspect.signature(cs.solve).parameters)[:2] == ["tile", "v_in"]
    assert cs.solve.__doc__ and "v_in" in cs.solve.__doc__
    tile = cs.crossbar([[1e-3, 2e-3]], r_wl=0.0, r_bl=0.0)
    np.testing.assert_allclose(cs.solve(tile, [1.0]).i_out, [1e-3, 2e-3], rtol=1e-14)
    with pytest.raises(TypeError, match="reltoll"):
        cs.solve(tile, [1.0], reltoll=1e-9)


def test_the_environment_variable_turns_it_off():
    code = textwrap.dedent("""
        from circuitsim import heap
        import circuitsim.engine
        print(heap.enabled(), hasattr(circuitsim.engine._solve_nonlinear, "__wrapped__"))
    """)
    env = dict(os.environ, CIRCUITSIM_HEAP="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
