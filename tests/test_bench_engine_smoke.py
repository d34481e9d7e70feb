"""The engine benchmark's code paths at tiny size (the figures themselves live in benchmarks/)."""

import pytest

pytest.importorskip("sksparse")
from benchmarks import bench_engine  # noqa: E402


def test_transfer_case_takes_the_schur_path_and_agrees():
    row = bench_engine.transfer_case(8, 1.0, 1)
    assert row.status == "PASS" and row.max_rel_diff < 1e-12
    assert row.extra["method"] == ["schur"] and row.circuitsim_s > 0 and row.baseline_s > 0


def test_many_inputs_case_runs_in_a_fresh_process():
    row = bench_engine.many_case(2_000)
    assert row.status == "PASS", row.note
    assert "per vector" in row.note and row.extra["probe"]["rss_peak_delta_mb"] < 1000
