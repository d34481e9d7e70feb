"""Smoke test of benchmarks/bench_training.py: every code path on 16x16 tiles, 40 test images and
one fine-tuning step (the accuracies are measured by ``python benchmarks/run.py --only
training``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_training, run

pytest.importorskip("onnx")
pytest.importorskip("sklearn")


def test_registered():
    assert run.BENCHMARKS["training"][0] is bench_training


def test_sweep_case():
    row = bench_training.sweep_case(tile=16, limit=40)
    acc = row.extra["accuracy"]
    assert set(acc) == {str(r) for r in bench_training.SWEEP}
    assert all(0 <= a <= 1 for a in acc.values()) and row.status == "INFO"


def test_accuracy_cases():
    seen = []
    rows = bench_training.accuracy_cases(100.0, tile=16, limit=40, max_steps=1,
                                         progress=lambda row: seen.append(row) or row)
    assert seen == rows
    names = [row.case.split(",")[0] for row in rows]
    assert names == ["plain", "column gain", "compensated", "compensated + column gain",
                     "fine-tuned", "plain loses >= 10 points", "recovered within 1 point"]
    for row in rows[:5]:
        assert 0 <= row.extra["accuracy"] <= 1 and row.circuitsim_s > 0
    for row in rows[2:4]:
        assert row.extra["rms_after_mean"] < row.extra["rms_before_mean"]
        assert row.extra["extractions"] >= 1
    assert rows[4].extra["steps"] == 1
    assert all(row.status in ("PASS", "MISS") for row in rows[5:])
    assert rows[6].extra["best"] in ("compensated", "compensated + column gain", "fine-tuned")
