"""The command line refuses what makes no sense with a clear message and exit status 2."""

import json
import os

import numpy as np
import pytest

import circuitsim as cs
from circuitsim.cli import main
from circuitsim.study import irdrop_summary


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rows", "0"], "--rows must be at least 1, got 0"),
        (["--cols", "-3"], "--cols must be at least 1"),
        (["--r-wire", "-1"], "--r-wire must be a resistance >= 0 ohm, got -1"),
        (["--r-on", "0"], "--r-on must be a resistance > 0 ohm, got 0"),
        (["--r-on", "2e6", "--r-off", "1e6"], "--r-on (2e+06 ohm) must not exceed --r-off"),
        (["--inputs", "-1"], "--inputs must be >= 0, got -1"),
        (["--sinh", "-1"], "--sinh must be a coefficient > 0 (1/V), got -1"),
        (["--sinh", "0"], "--sinh must be a coefficient > 0 (1/V), got 0"),
        (["--v-read", "0"], "--v-read must be a nonzero voltage, got 0"),
    ],
)
def test_irdrop_refuses_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["irdrop", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_negative_read_voltage_reports_magnitudes(capsys):
    g = np.random.default_rng(0).uniform(1e-6, 1e-4, (8, 8))
    tile = cs.crossbar(g, 1.0, 1.0, 5.0, 2.0)
    pos = irdrop_summary(tile, np.full((1, 8), 0.2))
    neg = irdrop_summary(tile, np.full((1, 8), -0.2))
    # the circuit is linear: a negative read mirrors every voltage, so the magnitudes agree
    assert neg["worst_wl_drop"] == pytest.approx(pos["worst_wl_drop"], rel=1e-12)
    assert neg["worst_bl_rise"] == pytest.approx(pos["worst_bl_rise"], rel=1e-12)
    assert pos["worst_wl_drop"] > 0
    assert main(["irdrop", "--rows", "8", "--cols", "8", "--inputs", "0", "--v-read", "-0.2"]) == 0
    out = capsys.readouterr().out
    assert "worst word-line drop :" in out and " -" not in out.split("worst word-line drop :")[1][:12]


def _validate(argv, tmp_path, capsys):
    code = main(["validate", "--no-builtin", *argv])
    return code, capsys.readouterr()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rows", "4", "--a", "2"], "--a applies only with --device sinh or asym-sinh"),
        (["--rows", "4", "--device", "sinh", "--k-neg", "2"], "--k-neg applies only with --device "
                                                              "asym-sinh, not sinh"),
        (["--rows", "4", "--v-gate", "1.8"], "--v-gate applies only with --access level1"),
        (["--rows", "4", "--access", "none", "--kp", "1e-4"], "--kp applies only with --access"),
        (["--rows", "0"], "'rows' must be a positive integer, got 0"),
        (["--rows", "4", "--timeout", "0"], "--timeout must be > 0 seconds, got 0"),
    ],
)
def test_validate_refuses_options_that_do_not_apply(argv, message, tmp_path, capsys):
    code, out = _validate(argv, tmp_path, capsys)
    assert code == 2 and message in out.err and "Traceback" not in out.err


@pytest.mark.parametrize(
    "content, message",
    [
        ({"rows": 4, "colz": 3}, "unknown key 'colz'; valid: name, rows, cols"),
        ({"rows": 4, "a": 2.0}, "'a' applies only with device 'sinh' or 'asym-sinh'"),
        ({"rows": 4, "v_gate": 1.0}, "'v_gate' applies only with access 'level1'"),
        ([1, 2, 3], "case 0: a case must be an object of tile options, got int 1"),
        ("a string", "expected a case object, a list of them, or"),
        ({"cases": {"rows": 4}}, "'cases' must be a list of case objects, got dict"),
        ({"cases": [], "rows": 4}, "beside 'cases' no other key is allowed"),
    ],
)
def test_validate_refuses_bad_config_files(content, message, tmp_path, capsys):
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(content))
    code, out = _validate(["--config", str(path)], tmp_path, capsys)
    assert code == 2 and message in out.err and "Traceback" not in out.err


def test_validate_refuses_invalid_json(tmp_path, capsys):
    path = tmp_path / "cases.json"
    path.write_text("{rows: 4")
    code, out = _validate(["--config", str(path)], tmp_path, capsys)
    assert code == 2 and "not valid JSON" in out.err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_validate_refuses_an_unwritable_deck_directory(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, out = _validate(["--rows", "3", "--write-decks", str(locked / "decks")], tmp_path, capsys)
    assert code == 2 and "--write-decks" in out.err and "cannot write decks there" in out.err


def test_validate_refuses_a_deck_path_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "decks"
    path.write_text("not a directory")
    code, out = _validate(["--rows", "3", "--write-decks", str(path)], tmp_path, capsys)
    assert code == 2 and "cannot write decks there" in out.err and "Traceback" not in out.err
