"""Smoke test of benchmarks/bench_layers.py at tiny sizes, with its agreement check (no timing
is asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from circuitsim.layers import presets

from benchmarks import bench_badcrossbar, bench_layers, run

pytestmark = pytest.mark.skipif(bench_layers.available() is not None,
                                reason=str(bench_layers.available()))


def test_registered():
    assert run.BENCHMARKS["layers"][0] is bench_layers


def test_digits_case():
    row = bench_layers.digits_case("cnn", repeats=1, limit=4)
    assert row.status == "INFO" and row.extra["images"] == 4
    assert row.baseline_s > 0 and row.circuitsim_s > 0 and row.extra["circuit_warm_s"] > 0
    assert row.extra["tiles"] == [2, 4, 2]


@pytest.mark.skipif(bench_badcrossbar.available() is not None,
                    reason=str(bench_badcrossbar.available()))
def test_badcrossbar_agrees():
    row = bench_layers.badcrossbar_case(repeats=1, limit=3)
    assert row.max_rel_diff <= 1e-9 and row.status in ("PASS", "MISS")
    assert row.extra["tiles"] == 4


def test_nonlinear_case():
    row = bench_layers.nonlinear_case("survey", presets.SURVEY, 1, 2)
    assert row.extra["per_image_s"] > 0
    assert all(m >= 2 for m, _ in row.extra["newton_iterations"])
