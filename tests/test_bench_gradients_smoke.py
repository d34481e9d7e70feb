"""Smoke test of benchmarks/bench_gradients.py: every code path at 8x8 with its agreement checks
(no timing is asserted; ratios are measured by ``python benchmarks/run.py --only gradients``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_gradients, run


def test_registered():
    assert run.BENCHMARKS["gradients"][0] is bench_gradients


@pytest.mark.parametrize("kind", ["linear", "sinh", "1T1R"])
def test_vjp_case(kind):
    row = bench_gradients.case_vjp(kind, 8, 2, 1)
    assert row.status in ("PASS", "MISS") and row.max_rel_diff <= bench_gradients.TOL_DUAL
    assert row.extra["vjp_over_forward"] > 0


def test_compensation_cases():
    head = bench_gradients.case_compensate(8, 5e-6, 5e-5, "headroom", 1, K=8)
    assert head.status == "PASS", head.note
    assert head.extra["compensated_worst"] < 1e-11 < head.extra["uncompensated_worst"]
    full = bench_gradients.case_compensate(8, 1e-6, 1e-4, "full range", 1, K=8)
    assert full.status == "INFO" and full.max_rel_diff <= full.tolerance
    joint = bench_gradients.case_compensate(8, 1e-6, 1e-4, "full range", 1, K=8, gain="column")
    assert joint.case.endswith("+ column gain") and joint.max_rel_diff <= joint.tolerance
    for row in (head, full, joint):
        e = row.extra
        assert e["column gain_rms"] <= e["uncompensated_rms"]
        assert e["extractions"] >= 1 and e["time_in_extractions"] > 0


def test_column_calibration_is_the_least_squares_gain():
    rng = np.random.default_rng(0)
    T = rng.uniform(0.5, 1.0, (3, 4))
    g = rng.uniform(0.5, 1.0, (4, 3))
    cal = bench_gradients.column_calibrated(T, g)
    for j in range(3):
        c = cal[j, 0] / T[j, 0]
        for dc in (1e-4, -1e-4):  # the fitted gain is a minimum of the line's squared error
            assert np.sum((c * T[j] - g[:, j]) ** 2) < np.sum(((c + dc) * T[j] - g[:, j]) ** 2)


@pytest.mark.parametrize("kind", ["sinh", "1T1R"])
def test_inputs_case(kind):
    row = bench_gradients.case_inputs(kind, 8, 8)
    assert row.status == "INFO" and row.max_rel_diff <= row.tolerance
    assert row.extra["error_fit_after"] < row.extra["error_fit_before"]
