"""The GPU benchmark's code paths at tiny size on the device path emulated on the CPU
(``tests/gpu_support.py``); the figures themselves come from ``benchmarks/gpu_device.py`` on a
GPU machine."""

import numpy as np
import pytest
from gpu_support import device_backend

from benchmarks import bench_gpu
from circuitsim.backend import probe


@pytest.mark.parametrize("kind", ["linear", "linear-outputs", "nonlinear"])
def test_case_agrees_with_the_cpu_path(kind):
    row = bench_gpu.case(kind, 3, 5, 4, repeats=1, backend=device_backend(), cpu_tiles=2)
    _, tol = bench_gpu.TARGETS[kind]
    assert row.max_rel_diff is not None and row.max_rel_diff <= tol
    assert row.status in ("PASS", "MISS", "INFO") and row.extra["converged"]
    assert row.extra["cpu_tiles"] == 2 and "scaled by 1.5" in row.note
    assert row.baseline_s == pytest.approx(row.extra["cpu_measured_s"] * 1.5)
    assert row.circuitsim_s > 0 and row.extra["cold_s"] > 0
    assert "numpy-device" in row.extra["gpu_method"]


def test_problem_is_what_the_docstring_says():
    tile, v = bench_gpu.make_problem("nonlinear", 2, 4, 3)
    assert tile.batch == 2 and tile.access is not None and v.shape == (2, 3, 4)
    assert np.all((tile.g >= 1e-6) & (tile.g <= 1e-4)) and np.all((v >= 0) & (v <= 0.3))


def test_without_a_gpu_the_rows_are_not_run():
    found, why = probe()
    if found is not None:
        pytest.skip("a GPU is usable here")
    row = bench_gpu.case("linear", 2, 4, 2)
    assert row.status == "NOT RUN" and why in row.note
