"""The IR-drop study: its summary follows the physics of the tile."""

import numpy as np
import pytest

import circuitsim as cs
from circuitsim.study import irdrop_main, irdrop_summary


def test_no_wire_resistance_no_error():
    rng = np.random.default_rng(0)
    tile = cs.crossbar(rng.uniform(1e-6, 5e-5, (8, 6)))
    s = irdrop_summary(tile, rng.uniform(0, 0.2, (4, 8)))
    assert s["worst_wl_drop"] == 0 and s["worst_bl_rise"] == 0 and s["err_max"] < 1e-14


def test_error_grows_with_wire_resistance():
    rng = np.random.default_rng(1)
    g = rng.uniform(1e-6, 5e-5, (16, 16))
    v = np.full((1, 16), 0.2)
    errs = [irdrop_summary(cs.crossbar(g, r, r), v)["err_max"] for r in (0.5, 1.0, 2.0, 4.0)]
    assert np.all(np.diff(errs) > 0)


def test_worst_word_line_node_is_far_from_the_driver():
    g = np.full((8, 8), 5e-5)
    s = irdrop_summary(cs.crossbar(g, 1.0, 1.0), np.full((1, 8), 0.2))
    i, j, _ = s["worst_wl_node"]
    assert j == 7 and i == 7  # last column, and the row whose bit-line end sees the most rise


def test_main_prints_summary(capsys):
    assert irdrop_main(["--rows", "16", "--cols", "12", "--inputs", "3"]) == 0
    out = capsys.readouterr().out
    assert "16 x 12 tile" in out and "worst word-line drop" in out


def test_main_with_sinh_device(capsys):
    assert irdrop_main(["--rows", "8", "--cols", "8", "--inputs", "2", "--sinh", "3"]) == 0
    assert "sinh a = 3" in capsys.readouterr().out


def test_power_is_read_power_of_the_sources():
    g = np.full((2, 2), 1e-4)
    s = irdrop_summary(cs.crossbar(g), np.full((1, 2), 0.2))
    assert s["read_power"] == pytest.approx(4 * 1e-4 * 0.2**2, rel=1e-12, abs=0)
