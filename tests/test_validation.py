"""Cross-validation against ngspice: goldens (no ngspice needed), live comparisons, the
``circuitsim validate`` command, and each kind of failure told apart."""

import dataclasses
import importlib.util
import json
import sys

import numpy as np
import pytest
from circuitsim.netlist.spice import spice_nodes
from circuitsim.validation import (
    DisagreementError,
    NgspiceConvergenceError,
    NgspiceError,
    NgspiceMissingError,
    NgspiceTimeoutError,
    compare,
    goldens,
    ngspice,
    run_deck,
    suite,
)
from circuitsim.validation.compare import errors

import circuitsim as cs
from circuitsim.cli import main

INSTALL = "apt-get install ngspice libngspice0 libngspice0-dev"
HAVE_CLI = ngspice.find_executable() is not None
HAVE_SHARED = importlib.util.find_spec("PySpice") is not None and ngspice.find_library() is not None
needs_ngspice = pytest.mark.skipif(
    not (HAVE_CLI or HAVE_SHARED), reason=f"ngspice is not installed ({INSTALL})"
)
needs_cli = pytest.mark.skipif(not HAVE_CLI, reason=f"ngspice executable missing ({INSTALL})")
needs_shared = pytest.mark.skipif(
    not HAVE_SHARED, reason=f"PySpice or libngspice missing ({INSTALL})"
)
BACKENDS = [pytest.param("shared", marks=needs_shared), pytest.param("cli", marks=needs_cli)]

NMOS = cs.devices.Level1(vto=0.5, kp=2e-4, lambda_=0.05)

# Agreement asked of linear and of nonlinear or 1T1R tiles (DESIGN.md section 7).
LINEAR_RTOL, NONLINEAR_RTOL = 1e-9, 1e-6


def tiles():
    """Small linear, sinh and 1T1R tiles with their inputs."""
    rng = np.random.default_rng(7)
    g = rng.uniform(1e-6, 1e-4, (5, 6))
    return {
        "linear": (cs.crossbar(g, 2.0, 1.0, 30.0, 10.0), rng.uniform(-0.5, 0.5, 5)),
        "sinh": (
            cs.crossbar(g, 1.0, 1.0, 0.0, 10.0, device=cs.devices.Sinh(a=3.0)),
            rng.uniform(-0.5, 0.5, 5),
        ),
        "1t1r": (
            cs.crossbar(
                g,
                1.0,
                0.0,
                10.0,
                0.0,
                device=cs.devices.Sinh(a=2.0),
                access=NMOS,
                v_gate=[[1.5], [0.0], [1.8], [1.2], [1.5]],
            ),
            rng.uniform(-0.3, 0.4, 5),
        ),
    }


@dataclasses.dataclass(frozen=True)
class ScaledSinh(cs.devices.Sinh):
    """Test double: circuitsim computes sinh, but the SPICE deck's current is 1 % larger."""

    def spice(self, names, a, b, g):
        return [ln.replace(" I=", " I=1.01*") for ln in super().spice(names, a, b, g)]


@dataclasses.dataclass(frozen=True)
class FlippedSinh(cs.devices.Sinh):
    """Test double: the SPICE deck's device current has the wrong sign."""

    def spice(self, names, a, b, g):
        return [ln.replace(" I=", " I=-1*") for ln in super().spice(names, a, b, g)]


# ---------------------------------------------------------------------------------------------
# Goldens: stored ngspice answers, checked with or without ngspice


GOLDENS = [c.name for c in goldens.golden_cases()]


def golden_case(name):
    return next(c for c in goldens.golden_cases() if c.name == name)


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_deck_is_what_to_spice_writes(name):
    deck, arrays = goldens.load(name)
    case = golden_case(name)
    assert deck == goldens.deck_of(case), "regenerate: python -m circuitsim.validation.goldens"
    np.testing.assert_array_equal(arrays["v_in"], case.v_in)


@pytest.mark.parametrize("name", GOLDENS)
def test_circuitsim_agrees_with_stored_ngspice(name):
    _, theirs = goldens.load(name)
    case = golden_case(name)
    sol = cs.solve(case.tile, case.v_in)
    keys = [k for k in ("v_wl", "v_bl", "v_int", "i_out", "i_source") if k in theirs]
    assert ("v_int" in keys) == (case.tile.access is not None)
    ours = {k: getattr(sol, k) for k in keys}
    _v_abs, v_rel, node, _i_abs, i_rel, current = errors(case.tile, case.v_in, ours, theirs)
    rtol = LINEAR_RTOL if case.tile.is_linear else NONLINEAR_RTOL
    assert v_rel <= rtol, f"worst node {node}"
    assert i_rel <= rtol, f"worst current {current}"
    # as measured: far inside the tolerance (ngspice's own convergence sets the floor)
    assert v_rel < 1e-12 and i_rel < 1e-8  # measured at most 2.4e-14 and 7.4e-10


@needs_ngspice
@pytest.mark.parametrize("name", GOLDENS)
def test_ngspice_reproduces_its_golden(name):
    """The stored answers are still ngspice's (so the goldens are not stale), and circuitsim
    agrees with ngspice run now on the stored deck."""
    deck, stored = goldens.load(name)
    run = run_deck(deck)
    case = golden_case(name)
    again = suite_arrays(case, run)
    for key, value in again.items():
        np.testing.assert_allclose(value, stored[key], rtol=1e-12, atol=1e-18)
    sol = cs.solve(case.tile, case.v_in)
    ours = {k: getattr(sol, k) for k in again}
    _, v_rel, node, _, i_rel, current = errors(case.tile, case.v_in, ours, again)
    rtol = LINEAR_RTOL if case.tile.is_linear else NONLINEAR_RTOL
    assert v_rel <= rtol, f"worst node {node}"
    assert i_rel <= rtol, f"worst current {current}"


def suite_arrays(case, run):
    from circuitsim.validation.compare import spice_arrays

    return spice_arrays(case.tile, run.vectors)


# ---------------------------------------------------------------------------------------------
# Live comparisons


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["linear", "sinh", "1t1r"])
def test_live_comparison_agrees(kind, backend):
    tile, v_in = tiles()[kind]
    report = compare(tile, v_in, backend=backend, name=kind)
    assert report.backend == backend
    assert report.rtol == (LINEAR_RTOL if kind == "linear" else NONLINEAR_RTOL)
    assert report.passed, report.summary()
    assert report.check() is report
    # Margins far inside the tolerance, as measured (about 1e-13 V relative).
    assert report.v_rel < 1e-11
    assert report.ngspice_s > 0 and report.circuitsim_s > 0
    assert not any("Unsupported Ngspice version" in n for n in report.notes)
    assert set(report.ngspice) == (
        {"v_wl", "v_bl", "i_out", "i_source"} | ({"v_int"} if kind == "1t1r" else set())
    )


@needs_shared
def test_shared_library_runs_in_a_worker_process():
    tile, v_in = tiles()["linear"]
    compare(tile, v_in, backend="shared")
    assert "PySpice.Spice.NgSpice.Shared" not in sys.modules


@pytest.mark.parametrize("backend", BACKENDS)
def test_ngspice_node_list_is_the_decks(backend):
    tile, v_in = tiles()["1t1r"]
    from circuitsim.netlist import to_spice

    run = run_deck(to_spice(tile, v_in), backend=backend)
    m, n = tile.m, tile.n
    gates = {f"gate_{k}" for k in range(4)}  # 0, 1.2, 1.5 and 1.8 V
    sources = (
        {f"i(vsrc_{i})" for i in range(m)}
        | {f"i(vsense_{j})" for j in range(n)}
        | {f"i(vgate_{k})" for k in range(4)}
    )
    assert set(run.vectors) == set(spice_nodes(tile)) | gates | sources
    # r_bl = 0 merged every bit line into its sense node: no bl_ node is left.
    assert not any(k.startswith("bl_") for k in run.vectors)


@needs_ngspice
def test_batched_tile_compares_the_chosen_tile():
    rng = np.random.default_rng(3)
    g = rng.uniform(1e-6, 1e-4, (3, 4, 4))
    a = rng.uniform(2.0, 4.0, (3, 4, 4))
    tile = cs.crossbar(g, 1.0, 1.0, 10.0, 10.0, device=cs.devices.Sinh(a=a))
    report = compare(tile, rng.uniform(-0.5, 0.5, 4), tile_index=2)
    assert report.passed, report.summary()


# ---------------------------------------------------------------------------------------------
# Each failure kind is distinct


def test_missing_ngspice_is_reported_with_the_install_command(monkeypatch):
    monkeypatch.setattr(ngspice, "find_library", lambda: None)
    monkeypatch.setattr(ngspice, "find_executable", lambda: None)
    tile, v_in = tiles()["linear"]
    with pytest.raises(NgspiceMissingError, match=INSTALL):
        compare(tile, v_in)
    with pytest.raises(NgspiceMissingError, match="libngspice"):
        compare(tile, v_in, backend="shared")


def test_wrong_binary_is_reported_as_missing(monkeypatch, tmp_path):
    fake = tmp_path / "ngspice"
    fake.write_text("#!/bin/sh\necho 'some other program'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(ngspice, "find_executable", lambda: str(fake))
    tile, v_in = tiles()["linear"]
    with pytest.raises(NgspiceMissingError, match="does not report an ngspice version"):
        compare(tile, v_in, backend="cli")


@needs_cli
def test_unusable_shared_library_falls_back_to_the_command_line(monkeypatch, tmp_path):
    bogus = tmp_path / "libngspice.so"
    bogus.write_text("not a library")
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", str(bogus))
    tile, v_in = tiles()["linear"]
    report = compare(tile, v_in)
    assert report.passed and report.backend == "cli"
    assert any("shared library unusable" in n for n in report.notes)
    with pytest.raises(NgspiceMissingError, match="unusable"):
        compare(tile, v_in, backend="shared")


BROKEN = "broken\nVsrc_0 src_0 0 DC 1\nR1 src_0 a\nQfoo a b\n.op\n.end\n"
FLOATING = (
    "floating\n.options gmin=1e-30\nVsrc_0 src_0 0 DC 1\nR1 src_0 a 1000\nR2 b c 1000\n.op\n.end\n"
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ngspice_error_quotes_ngspice(backend):
    with pytest.raises(NgspiceError, match="circuit not parsed") as info:
        run_deck(BROKEN, backend=backend)
    assert not isinstance(info.value, NgspiceConvergenceError)
    assert "qfoo" in info.value.output.lower()


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_operating_point_is_a_convergence_error(backend):
    with pytest.raises(NgspiceConvergenceError, match="singular matrix|stepping failed"):
        run_deck(FLOATING, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compare_reports_a_broken_deck(backend):
    tile, v_in = tiles()["linear"]
    with pytest.raises(NgspiceError):
        compare(tile, v_in, backend=backend, deck=BROKEN)


# A transient of 1e12 steps of 1 ps: ngspice never finishes it (a deck that finishes within the
# limit can win the race against a tiny timeout on a loaded machine).
ENDLESS = "endless\nV1 a 0 SIN(0 1 1e9)\nR1 a b 1k\nC1 b 0 1p\n.tran 1e-12 1 0 1e-12\n.end\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_kills_ngspice(backend):
    tile, v_in = tiles()["linear"]
    with pytest.raises(NgspiceTimeoutError, match="did not finish within 0.5 s"):
        compare(tile, v_in, backend=backend, timeout=0.5, deck=ENDLESS)


@needs_ngspice
@pytest.mark.parametrize("model", [ScaledSinh(a=3.0), FlippedSinh(a=3.0)])
def test_wrong_model_is_a_disagreement_naming_the_worst_node(model):
    _, v_in = tiles()["sinh"]
    g = np.random.default_rng(7).uniform(1e-6, 1e-4, (5, 6))
    tile = cs.crossbar(g, 1.0, 1.0, 0.0, 10.0, device=model)
    report = compare(tile, v_in)
    assert not report.passed
    assert report.worst_node in set(spice_nodes(tile))
    with pytest.raises(DisagreementError, match=report.worst_node):
        report.check()


# ---------------------------------------------------------------------------------------------
# The command line


@needs_ngspice
def test_validate_passes_on_the_builtin_suite(capsys, tmp_path):
    status = main(["validate", "--write-decks", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0, out
    names = [c.name for c in suite.builtin_cases()]
    for name in names:
        assert name in out
    assert out.count("PASS") == len(names)
    assert f"{len(names)} cases: {len(names)} passed, 0 failed" in out
    assert sorted(p.stem for p in tmp_path.glob("*.cir")) == sorted(names)


def test_builtin_suite_covers_the_promised_tiles():
    cases = suite.builtin_cases()
    shapes = {(c.tile.m, c.tile.n) for c in cases}
    assert (7, 13) in shapes and (32, 32) in shapes
    assert all(max(s) <= 16 for s in shapes - {(32, 32)})
    assert any(
        c.tile.access is not None and np.any(np.all(c.tile.v_gate[0] == 0, axis=1)) for c in cases
    )  # a whole row of gates off
    assert any(c.tile.drive == "both" for c in cases)
    assert any(np.all(c.tile.r_source == 0) for c in cases)
    assert any(np.all(c.tile.r_wl == 0) and np.all(c.tile.r_sense == 0) for c in cases)
    assert any(np.all(c.v_in < 0) for c in cases)
    assert {type(c.tile.device).__name__ for c in cases} >= {
        "NoneType",
        "Sinh",
        "AsymmetricSinh",
        "StanfordPKU",
    }


@needs_ngspice
def test_validate_user_tile_from_options(capsys, tmp_path):
    status = main(
        [
            "validate",
            "--no-builtin",
            "--rows",
            "3",
            "--cols",
            "5",
            "--device",
            "sinh",
            "--a",
            "2.5",
            "--access",
            "level1",
            "--v-gate",
            "1.6",
            "--r-source",
            "0",
            "--name",
            "mine",
            "--write-decks",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "mine" in out and "3x5" in out and "PASS" in out
    assert (tmp_path / "mine.cir").read_text().count("\nMacc_") == 15


@needs_ngspice
def test_validate_user_tiles_from_config(capsys, tmp_path):
    config = tmp_path / "tiles.json"
    config.write_text(
        json.dumps(
            {
                "cases": [
                    {
                        "name": "cfg-linear",
                        "g": [[1e-4, 2e-5], [3e-5, 4e-5]],
                        "v_in": [0.2, -0.1],
                        "r_wl": 1.0,
                        "r_bl": 0.0,
                        "r_sense": 0.0,
                    },
                    {
                        "rows": 4,
                        "cols": 3,
                        "device": "asym-sinh",
                        "a": 3.0,
                        "a_neg": 2.0,
                        "k_neg": 0.5,
                        "drive": "both",
                        "seed": 5,
                    },
                ]
            }
        )
    )
    status = main(["validate", "--no-builtin", "--config", str(config)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "cfg-linear" in out and "tiles-1" in out


@needs_ngspice
@pytest.mark.parametrize("model", [ScaledSinh(a=2.0), FlippedSinh(a=2.0)])
def test_validate_fails_on_a_wrong_model(monkeypatch, capsys, model):
    rng = np.random.default_rng(1)
    bad = suite.Case(
        "wrong-model",
        cs.crossbar(rng.uniform(1e-6, 1e-4, (4, 4)), 1.0, 1.0, 10.0, 10.0, device=model),
        rng.uniform(-0.5, 0.5, 4),
    )
    good = suite.builtin_cases()[0]
    monkeypatch.setattr(suite, "builtin_cases", lambda: [good, bad])
    status = main(["validate"])
    out = capsys.readouterr().out
    assert status == 1
    assert "2 cases: 1 passed, 1 failed" in out
    assert "wrong-model: FAIL: disagreement" in out


def test_validate_exits_2_without_ngspice(monkeypatch, capsys):
    monkeypatch.setattr(ngspice, "find_library", lambda: None)
    monkeypatch.setattr(ngspice, "find_executable", lambda: None)
    status = main(["validate", "--only", "passive-3x4"])
    out = capsys.readouterr().out
    assert status == 2
    assert "MISSING" in out and INSTALL in out


def test_validate_usage_errors(capsys):
    assert main(["validate", "--no-builtin"]) == 2
    assert (
        main(
            [
                "validate",
                "--no-builtin",
                "--rows",
                "2",
                "--device",
                "linear",
                "--access",
                "level1",
                "--v-gate",
                "nan",
            ]
        )
        == 2
    )
    with pytest.raises(SystemExit):
        main(["validate", "--device", "nonsense"])
