"""Smoke test of benchmarks/bench_studies.py at a tiny size (no timing asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("h5py")
pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_studies, run


def test_study_text_has_the_asked_points():
    from circuitsim.studies import load_study

    assert len(load_study(text=bench_studies.study_text(200)).points) == 200
    assert len(load_study(text=bench_studies.study_text(40)).points) == 40


def test_scaling_case_tiny():
    scale, h5 = bench_studies.scaling_case(10, workers=1, size=8)
    assert scale.status == "INFO" and scale.max_rel_diff <= 1e-9
    assert scale.extra["points"] == 10 and scale.ratio > 0
    assert scale.extra["points_per_s_dask"] > 0 and scale.extra["cluster_start_s"] > 0
    assert h5.extra["bytes_per_point"] > 1000 and h5.extra["commit_s_per_point"] > 0
    assert h5.extra["final_file_bytes"] > 10 * 1000


def test_registered():
    assert run.BENCHMARKS["studies"][0] is bench_studies
