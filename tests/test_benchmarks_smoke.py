"""Smoke test of benchmarks/: every benchmark's code path at tiny sizes, with its agreement checks.

No timing is asserted (ratios are measured by ``python benchmarks/run.py``, never in unit tests).
Tests that need badcrossbar, ngspice, the Newton solver or the SPICE writer skip with the reason
when those are missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import (
    bench_badcrossbar,
    bench_ideal,
    bench_large,
    bench_ngspice,
    bench_nonlinear,
    run,
)
from benchmarks.common import Row, first_touch, probe, problem, rel_diff
from benchmarks.spice import make_deck, ngspice_path, passive_deck, project_writer, run_ngspice

needs_badcrossbar = pytest.mark.skipif(bench_badcrossbar.available() is not None,
                                       reason=str(bench_badcrossbar.available()))
needs_ngspice = pytest.mark.skipif(ngspice_path() is None,
                                   reason="ngspice not installed (apt-get install ngspice)")


def _newton_reason():
    reason, _ = bench_nonlinear.newton_status()
    if reason is None and project_writer() is None:
        reason = "circuitsim.netlist.to_spice is not available"
    return reason


def test_row_status_logic():
    ok = Row("b", "c", baseline_s=2.0, circuitsim_s=1.0, target=3.0, max_rel_diff=1e-12,
             tolerance=1e-9).finish()
    assert ok.ratio == pytest.approx(2.0) and ok.status == "MISS"
    assert Row("b", "c", baseline_s=4.0, circuitsim_s=1.0, target=3.0).finish().status == "PASS"
    # disagreeing outputs fail whatever the speed
    assert Row("b", "c", baseline_s=9.0, circuitsim_s=1.0, target=3.0, max_rel_diff=1e-6,
               tolerance=1e-9).finish().status == "FAIL"
    assert Row("b", "c", baseline_s=1.0, circuitsim_s=1.0).finish().status == "INFO"
    text = run.summary([ok, Row("b", "d", status="NOT RUN", note="x", target_text=">=1x")])
    assert "MISS" in text and "NOT RUN" in text and "1 MISS" in text


def test_rel_diff():
    assert rel_diff([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_diff([1.0, 2.2], [1.0, 2.0]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shapes differ"):
        rel_diff([1.0], [1.0, 2.0])


def test_first_touch_line():
    ft = first_touch(8)
    # both rates are measured (positive, finite); which is larger depends on the machine
    assert 0 < ft["first_s_per_gib"] < 1e3 and 0 < ft["again_s_per_gib"] < 1e3
    slow = run._memory_line({"first_s_per_gib": 2.5, "again_s_per_gib": 0.01})
    fast = run._memory_line({"first_s_per_gib": 0.05, "again_s_per_gib": 0.01})
    assert "2.50 s/GiB" in slow and "both sides pay it" in slow
    assert "0.05 s/GiB" in fast and "both sides" not in fast


@needs_badcrossbar
def test_badcrossbar_same_circuit():
    for K in (1, 5):
        row = bench_badcrossbar.case(8, K, repeats=1, memory=False)
        assert row.status in ("INFO", "PASS", "MISS"), row
        assert row.max_rel_diff <= 1e-9
        assert row.ratio > 0 and row.extra["circuitsim_warm_s"] > 0


@needs_badcrossbar
def test_badcrossbar_memory_probe():
    mem = probe("benchmarks.bench_badcrossbar", "make_circuitsim", {"m": 8, "K": 2})
    assert "error" not in mem, mem
    assert mem["time_s"] > 0 and mem["tracemalloc_peak_mb"] > 0 and mem["rss_peak_delta_mb"] >= 0


def test_ideal_product_path():
    row = bench_ideal.case(8, 100, repeats=1)
    assert row.status == "INFO" and row.max_rel_diff <= 1e-9
    # the exact outputs differ from the ideal product by the IR drop, which is small but not zero
    assert 0 < row.extra["ir_drop_error_vs_ideal"] < 0.1


def test_large_tile_factory():
    i_out = bench_large.make_circuitsim(8)()
    assert i_out.shape == (8,) and np.all(i_out > 0)


@needs_ngspice
def test_ngspice_passive_case():
    row = bench_ngspice.case(8, repeats=1, spice_repeats=1, memory=False)
    assert row.status in ("INFO", "PASS", "MISS"), row
    assert row.max_rel_diff <= 1e-9


@needs_ngspice
def test_own_passive_deck_matches_circuitsim():
    """benchmarks.spice.passive_deck (the fallback writer) describes the same circuit, including
    driver and sense resistances and zero-resistance shorts."""
    import circuitsim as cs

    g, v = problem(6, 5, 1)
    g[2, 3] = 0.0  # open cell
    for r_source, r_sense in ((0.0, 0.0), (2.0, 1.0)):
        tile = cs.crossbar(g, r_wl=1.0, r_bl=2.5, r_source=r_source, r_sense=r_sense)
        ref = cs.solve(tile, v[0]).i_out
        got = run_ngspice(passive_deck(tile, v[0]), 5)["i_out"]
        assert rel_diff(got, ref) <= 1e-9
        deck, _ = make_deck(tile, v[0])
        assert rel_diff(run_ngspice(deck, 5)["i_out"], ref) <= 1e-9


def test_passive_deck_rejects_nonlinear():
    import circuitsim as cs

    g, _ = problem(2, 2, 1)
    with pytest.raises(NotImplementedError, match="passive linear"):
        passive_deck(cs.crossbar(g, 1.0, 1.0, device=cs.devices.Sinh(a=3.0)), [0.1, 0.2])


@needs_ngspice
@pytest.mark.skipif(_newton_reason() is not None, reason=str(_newton_reason()))
@pytest.mark.parametrize("kind", ["sinh", "1T1R"])
def test_nonlinear_ngspice_case(kind):
    rows = bench_nonlinear.spice_case(8, kind, repeats=1, spice_repeats=1, k=4)
    assert [r.case for r in rows] == [f"{kind} 8x8, K=1", f"{kind} 8x8, K=4 per vector"]
    for row in rows:
        assert row.status in ("INFO", "PASS", "MISS"), row
        assert row.max_rel_diff <= 1e-6


@pytest.mark.skipif(bench_nonlinear.newton_status()[0] is not None,
                    reason=str(bench_nonlinear.newton_status()[0]))
def test_newton_scaling_case():
    _, modes = bench_nonlinear.newton_status()
    row = bench_nonlinear.scale_case(6, modes[0] if modes else None, k=3, timeout=120)
    assert row.status == "INFO", row.note
    assert row.extra["converged"] is True and row.extra["iterations_max"] >= 1
    assert row.extra["mem"]["vmhwm_mb"] > 0


def test_nonlinear_reports_missing_newton(monkeypatch):
    """Without the Newton solver the issue-3 benchmarks report NOT RUN instead of crashing."""
    monkeypatch.setattr(bench_nonlinear, "newton_status", lambda: ("no newton here", ()))
    cfg = run.Config(quick=True, repeats=1, memory=False, verbose=False)
    rows = bench_nonlinear.run(cfg)
    assert rows and all(r.status == "NOT RUN" and "no newton" in r.note for r in rows)


def _fake_ngspice(tmp_path, monkeypatch, script: str):
    exe = tmp_path / "ngspice"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    monkeypatch.setattr("benchmarks.spice.ngspice_path", lambda: str(exe))


def test_run_ngspice_keeps_values_whole_when_notes_interleave(tmp_path, monkeypatch):
    """ngspice's stdout is block-buffered and its notes go to stderr: a note may arrive in the
    middle of a printed value (seen on a 128x128 deck). Both currents must still parse."""
    _fake_ngspice(tmp_path, monkeypatch,
                  "printf 'i(vsense_0) = 1.25e-04\\ni(vsense_1) = 5.8e'\n"
                  "printf 'Note: No \".plot\" lines; no simulations run\\n' >&2\n"
                  "printf -- '-04\\n'\nexit 1\n")
    deck = "t\nR1 a 0 1\n.op\n.end\n"
    assert run_ngspice(deck, 2)["i_out"].tolist() == [1.25e-4, 5.8e-4]


@pytest.mark.parametrize(("script", "why"), [
    ("printf 'i(vsense_0) = 1.0e-04\\n'\n", r"no value for i\(vsense_j\), j = \[1\]"),
    ("printf 'i(vsense_0) = 1e-4\\ni(vsense_1) = 2e-4\\n'\n"
     "printf 'Warning: singular matrix:  check node wl_0_1\\n' >&2\n",
     "ngspice printed 'Warning: singular matrix:  check node wl_0_1'"),
])
def test_run_ngspice_says_why_it_failed(tmp_path, monkeypatch, script, why):
    _fake_ngspice(tmp_path, monkeypatch, script)
    with pytest.raises(RuntimeError, match=why):
        run_ngspice("t\nR1 a 0 1\n.op\n.end\n", 2)
