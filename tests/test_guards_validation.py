"""The ngspice comparison fails when it should: near-miss and voltage-shifted decks are caught,
its tolerances are the documented 1e-9 and 1e-6, both voltages and currents decide, and the
stored golden decks are the tiles' circuits (checked against a writer written here)."""

import dataclasses
import importlib
import importlib.util
import re

import numpy as np
import pytest
from circuitsim.netlist.spice import spice_nodes, to_spice
from circuitsim.validation import DisagreementError, NgspiceRun, Report, goldens, ngspice, suite
from circuitsim.validation.compare import errors

import circuitsim as cs

compare_module = importlib.import_module("circuitsim.validation.compare")
compare = compare_module.compare

HAVE_NGSPICE = ngspice.find_executable() is not None or (
    importlib.util.find_spec("PySpice") is not None and ngspice.find_library() is not None)
needs_ngspice = pytest.mark.skipif(not HAVE_NGSPICE, reason="ngspice is not installed")

LINEAR_RTOL, NONLINEAR_RTOL = 1e-9, 1e-6  # DESIGN.md section 7


def report(**kw):
    base = {"name": "t", "shape": (2, 2), "rtol": 1e-9, "v_abs": 0.0, "v_rel": 0.0,
            "i_abs": 0.0, "i_rel": 0.0, "worst_node": "bl_1_0", "worst_current": "i_out[1]",
            "ngspice_s": 0.1, "circuitsim_s": 0.01, "backend": "cli", "version": 39}
    return Report(**{**base, **kw})


# ---------------------------------------------------------------------------------------------
# Report: pass/fail on voltages and currents


@pytest.mark.parametrize(
    "v_rel, i_rel, passed",
    [(0.0, 0.0, True), (1e-9, 1e-9, True), (2e-9, 0.0, False), (0.0, 2e-9, False),
     (0.5, 1e-13, False), (1e-13, 1e-3, False)],
)
def test_report_passes_only_when_voltages_and_currents_agree(v_rel, i_rel, passed):
    r = report(v_rel=v_rel, i_rel=i_rel)
    assert r.passed is passed
    if passed:
        assert r.check() is r
    else:
        with pytest.raises(DisagreementError, match="bl_1_0"):
            r.check()


# ---------------------------------------------------------------------------------------------
# errors(): relative errors with the documented floors


def _arrays(tile, v_in):
    sol = cs.solve(tile, v_in)
    keys = ["v_wl", "v_bl"] + (["v_int"] if tile.access is not None else []) + [
        "i_out", "i_source"]
    return {k: np.array(getattr(sol, k), dtype=float) for k in keys}


def test_errors_measure_voltages_against_the_floor():
    tile = cs.crossbar(np.full((2, 2), 1e-4), 1.0, 1.0, 10.0, 10.0)
    v_in = np.array([0.5, -0.2])
    theirs = _arrays(tile, v_in)
    ours = {k: x.copy() for k, x in theirs.items()}
    ours["v_bl"][1, 0] += 1e-9  # a bit-line node near the virtual ground
    v_abs, v_rel, node, i_abs, i_rel, _ = errors(tile, v_in, ours, theirs)
    # floor: 1e-3 of the largest fixed voltage, 0.5 V; the node itself sits below it
    assert abs(theirs["v_bl"][1, 0]) < 5e-4
    assert v_abs == pytest.approx(1e-9, rel=1e-6, abs=0)
    assert v_rel == pytest.approx(1e-9 / 5e-4, rel=1e-6, abs=0)
    assert node == "bl_1_0"
    assert i_abs == 0.0 and i_rel == 0.0


def test_errors_measure_large_voltages_relative_to_themselves():
    tile = cs.crossbar(np.full((2, 2), 1e-4), 1.0, 1.0, 10.0, 10.0)
    v_in = np.array([0.5, -0.2])
    theirs = _arrays(tile, v_in)
    ours = {k: x.copy() for k, x in theirs.items()}
    ours["v_wl"][1, 1] *= 1 + 1e-7
    _, v_rel, node, *_ = errors(tile, v_in, ours, theirs)
    assert v_rel == pytest.approx(1e-7, rel=1e-6, abs=0)
    assert node == "wl_1_1"


def test_errors_include_internal_nodes_and_source_currents():
    tile = cs.crossbar(np.full((2, 3), 1e-4), 1.0, 1.0, 10.0, 10.0,
                       access=cs.devices.Level1(vto=0.5, kp=2e-4), v_gate=1.5)
    v_in = np.array([0.4, 0.3])
    theirs = _arrays(tile, v_in)
    ours = {k: x.copy() for k, x in theirs.items()}
    ours["v_int"][0, 2] *= 1 + 1e-6
    _, v_rel, node, _, i_rel, _ = errors(tile, v_in, ours, theirs)
    assert v_rel == pytest.approx(1e-6, rel=1e-6, abs=0) and node == "int_0_2" and i_rel == 0.0
    ours = {k: x.copy() for k, x in theirs.items()}
    ours["i_source"][1] *= 1 + 1e-6
    _, v_rel, _, _, i_rel, current = errors(tile, v_in, ours, theirs)
    assert v_rel == 0.0
    assert i_rel == pytest.approx(1e-6, rel=1e-6, abs=0) and current == "i_source[1]"


def test_errors_floor_currents_at_a_thousandth_of_the_largest():
    tile = cs.crossbar(np.array([[1e-4, 1e-9]]), 0.0, 0.0)
    v_in = np.array([0.5])
    theirs = _arrays(tile, v_in)  # i_out = 5e-5 and 5e-10 A
    ours = {k: x.copy() for k, x in theirs.items()}
    ours["i_out"][1] += 1e-12
    *_, i_abs, i_rel, current = errors(tile, v_in, ours, theirs)
    assert i_abs == pytest.approx(1e-12, rel=1e-3, abs=0)
    assert i_rel == pytest.approx(1e-12 / 5e-8, rel=1e-3, abs=0)
    assert current == "i_out[1]"


# ---------------------------------------------------------------------------------------------
# compare() against ngspice's stored answers (no ngspice needed)


def golden_case(name):
    return next(c for c in goldens.golden_cases() if c.name == name)


def stored_run(case, shift=0.0):
    """ngspice's stored operating point of a golden case, as the vectors ngspice returns.

    ``shift`` raises every node voltage: ngspice's answer to the deck with every source
    (inputs, sense and gates) shifted by as much, since only voltage differences reach the
    devices.
    """
    _, arrays = goldens.load(case.name)
    tile = case.tile
    names = spice_nodes(tile)
    mn = tile.m * tile.n
    values = np.concatenate([arrays["v_wl"].ravel(), arrays["v_bl"].ravel()]
                            + ([arrays["v_int"].ravel()] if "v_int" in arrays else [])
                            + [case.v_in, tile.v_sense[0]])
    assert len(values) == len(names) and len(names) == (3 if "v_int" in arrays else 2) * mn + (
        tile.m + tile.n)
    vectors = {s: float(x) + shift for s, x in zip(names, values)}
    vectors.update({f"i(vsense_{j})": float(x) for j, x in enumerate(arrays["i_out"])})
    vectors.update({f"i(vsrc_{i})": -float(x) for i, x in enumerate(arrays["i_source"])})
    return NgspiceRun(vectors=vectors, time_s=0.001, backend="stored", version=None)


def with_stored_ngspice(monkeypatch, case, shift=0.0):
    monkeypatch.setattr(compare_module, "run_deck",
                        lambda deck, backend="auto", timeout=120.0: stored_run(case, shift))


def nudged(tile, i, j, rel):
    """The tile with cell (i, j)'s conductance off by ``rel``."""
    g = tile.g.copy()
    g[0, i, j] *= 1 + rel
    return dataclasses.replace(tile, g=g)


@pytest.mark.parametrize("name, rtol", [("linear_3x4", LINEAR_RTOL), ("sinh_3x3", NONLINEAR_RTOL),
                                        ("1t1r_3x3", NONLINEAR_RTOL)])
def test_stored_golden_passes_at_the_documented_tolerance(monkeypatch, name, rtol):
    case = golden_case(name)
    with_stored_ngspice(monkeypatch, case)
    r = compare(case.tile, case.v_in, name=name)
    assert r.rtol == rtol
    assert r.passed, r.summary()
    assert r.v_rel < 1e-11 and r.i_rel < 1e-9


@pytest.mark.parametrize("name, rel, window", [
    ("linear_3x4", 1e-7, (1e-9, 1e-6)),  # one cell 1e-7 off: a linear near miss
    ("sinh_3x3", 1e-5, (1e-6, 1e-3)),  # one cell 1e-5 off: a nonlinear near miss
])
def test_near_miss_fails_against_stored_golden(monkeypatch, name, rel, window):
    case = golden_case(name)
    with_stored_ngspice(monkeypatch, case)
    r = compare(nudged(case.tile, 1, 2, rel), case.v_in)
    assert window[0] < max(r.v_rel, r.i_rel) < window[1]
    assert r.rtol == window[0]
    assert not r.passed
    assert r.worst_current in ("i_out[2]", "i_source[1]")
    with pytest.raises(DisagreementError):
        r.check()


@pytest.mark.parametrize("name", ["linear_3x4", "sinh_3x3"])
def test_voltage_shifted_answer_fails_against_stored_golden(monkeypatch, name):
    case = golden_case(name)
    with_stored_ngspice(monkeypatch, case, shift=0.1)
    r = compare(case.tile, case.v_in)
    assert r.i_rel < 1e-9  # the currents agree
    assert r.v_rel > 0.1
    assert not r.passed


def test_validate_case_with_a_near_miss_is_a_fail(monkeypatch):
    case = golden_case("linear_3x4")
    with_stored_ngspice(monkeypatch, case)
    outcome = suite.run_case(suite.Case("near", nudged(case.tile, 1, 2, 1e-7), case.v_in))
    assert outcome.status == "FAIL" and not outcome.passed
    assert outcome.message.startswith("disagreement: near")
    good = suite.run_case(suite.Case("good", case.tile, case.v_in))
    assert good.status == "PASS"


# ---------------------------------------------------------------------------------------------
# compare() with live ngspice on altered decks


def edit_deck(deck: str, edit) -> str:
    """Apply ``edit(words) -> words or None`` to every element line."""
    out = []
    for line in deck.splitlines():
        words = line.split()
        new = edit(words) if words and not line.startswith((".", "*")) else None
        out.append(line if new is None else " ".join(new))
    return "\n".join(out) + "\n"


def scale_cell(name, factor):
    def edit(words):
        if words[0] != name:
            return None
        if name.startswith("R"):
            return words[:3] + [repr(float(words[3]) / factor)]  # g x factor
        return words[:3] + [words[3].replace("I=", f"I={factor!r}*")]
    return edit


def shift_sources(dv):
    def edit(words):
        if not words[0].startswith(("Vsrc_", "Vsense_", "Vgate_")):
            return None
        return words[:4] + [repr(float(words[4]) + dv)]
    return edit


def live_tile(kind):
    rng = np.random.default_rng(11)
    g = rng.uniform(1e-6, 1e-4, (4, 5))
    g[1, 2] = 1e-4  # the cell to nudge carries a good share of its column
    v = rng.uniform(0.1, 0.5, 4)
    if kind == "linear":
        return cs.crossbar(g, 2.0, 1.0, 30.0, 10.0), v, "Rcell_1_2"
    return cs.crossbar(g, 1.0, 1.0, 10.0, 10.0, device=cs.devices.Sinh(a=3.0)), v, "Bcell_1_2"


@needs_ngspice
@pytest.mark.parametrize("kind, rel, window", [("linear", 1e-7, (1e-9, 1e-6)),
                                               ("sinh", 1e-5, (1e-6, 1e-3))])
def test_near_miss_deck_fails_compare(kind, rel, window):
    tile, v, cell = live_tile(kind)
    plain = compare(tile, v)
    assert plain.passed, plain.summary()
    near = compare(tile, v, deck=edit_deck(to_spice(tile, v), scale_cell(cell, 1 + rel)))
    assert near.rtol == window[0]
    assert window[0] < max(near.v_rel, near.i_rel) < window[1]
    assert not near.passed
    assert near.worst_node == "bl_1_2"


@needs_ngspice
@pytest.mark.parametrize("kind", ["linear", "sinh"])
def test_voltage_shifted_deck_fails_compare(kind):
    tile, v, _ = live_tile(kind)
    r = compare(tile, v, deck=edit_deck(to_spice(tile, v), shift_sources(0.1)))
    assert r.i_rel < 1e-9  # same currents
    assert r.v_rel > 0.1
    assert not r.passed


# ---------------------------------------------------------------------------------------------
# The stored golden decks are the tiles' circuits: an independent writer


def _number(text):
    """A deck number: ``x`` or the ``(hi+lo)`` pair of B-source expressions."""
    pair = re.fullmatch(r"\(([-+]?[0-9.]+e[-+]\d+)([-+][0-9.]+e[-+]\d+)\)", text)
    return float(pair[1]) + float(pair[2]) if pair else float(text)


def parse_deck(deck):
    elements, models, dots = {}, [], []
    for line in deck.splitlines()[1:]:
        if not line or line.startswith("*"):
            continue
        if line.startswith(".model"):
            models.append(line)
        elif line.startswith("."):
            dots.append(line.split()[0])
        else:
            words = line.split()
            assert words[0] not in elements
            nodes = {"R": 2, "V": 2, "B": 2, "M": 4}[words[0][0]]
            elements[words[0]] = (words[1:1 + nodes], words[1 + nodes:])
    return elements, models, dots


def expected_deck(case):
    """``{element: (nodes, value)}`` written from the tile's parameters (DESIGN.md section 3).

    Golden tiles have every wire, driver and sense resistance nonzero, or every one zero (then
    each word line is its driver's node and each bit line its sense node).
    """
    t, v = case.tile, case.v_in
    m, n = t.m, t.n
    params = [t.r_wl, t.r_bl, t.r_source, t.r_sense]
    zero = all(np.all(p == 0) for p in params)
    assert zero or all(np.all(p > 0) for p in params)
    wl = (lambda i, j: f"src_{i}") if zero else (lambda i, j: f"wl_{i}_{j}")
    bl = (lambda i, j: f"sense_{j}") if zero else (lambda i, j: f"bl_{i}_{j}")
    out = {f"Vsrc_{i}": ([f"src_{i}", "0"], v[i]) for i in range(m)}
    out.update({f"Vsense_{j}": ([f"sense_{j}", "0"], t.v_sense[0, j]) for j in range(n)})
    for i in range(m):
        for j in range(n):
            if not zero:
                left = f"src_{i}" if j == 0 else wl(i, j - 1)
                r = t.r_wl[0, i, j] + (t.r_source[0, i] if j == 0 else 0.0)
                out[f"Rwl_{i}_{j}"] = ([left, wl(i, j)], r)
                below = f"sense_{j}" if i == m - 1 else bl(i + 1, j)
                r = t.r_bl[0, i, j] + (t.r_sense[0, j] if i == m - 1 else 0.0)
                out[f"Rbl_{i}_{j}"] = ([bl(i, j), below], r)
            low = bl(i, j) if t.access is None else f"int_{i}_{j}"
            g = t.g[0, i, j]
            if t.device is None:
                out[f"Rcell_{i}_{j}"] = ([wl(i, j), low], 1.0 / g)
            else:
                a = float(np.broadcast_to(t.device.a, (1, m * n))[0, i * n + j])
                out[f"Bcell_{i}_{j}"] = ([wl(i, j), low], (g / a, a))
            if t.access is not None:
                out[f"Macc_{i}_{j}"] = ([f"int_{i}_{j}", t.v_gate[0, i, j], bl(i, j), "0"],
                                        (1e-6, 1e-6))
    return out


@pytest.mark.parametrize("name", [c.name for c in goldens.golden_cases()])
def test_golden_deck_is_the_tiles_circuit(name):
    case = golden_case(name)
    deck, _ = goldens.load(name)
    elements, models, dots = parse_deck(deck)
    assert dots == [".options", ".op", ".end"]
    gates = {k: float(rest[1]) for k, (_, rest) in elements.items() if k.startswith("Vgate_")}
    expected = expected_deck(case)
    assert set(elements) - {f"V{k[1:]}" for k in gates} == set(expected)
    for key, (nodes, value) in expected.items():
        got_nodes, rest = elements[key]
        kind = key[0]
        if kind == "M":
            assert got_nodes[0] == nodes[0] and got_nodes[2:] == nodes[2:]
            assert gates["V" + got_nodes[1]] == nodes[1]  # the gate node holds v_gate[i, j]
            w, length = (float(x.split("=")[1]) for x in rest[1:])
            assert (w, length) == value
            continue
        assert got_nodes == nodes, key
        if kind == "V":
            assert rest[0] == "DC" and float(rest[1]) == value
        elif kind == "R":
            assert float(rest[0]) == pytest.approx(value, rel=1e-15, abs=0)
        else:
            c, a = map(_number, re.fullmatch(
                rf"I=(\S+)\*sinh\((\S+)\*V\({nodes[0]},{nodes[1]}\)\)", rest[0]).groups())
            assert c == pytest.approx(value[0], rel=1e-15, abs=0)
            assert a == pytest.approx(value[1], rel=1e-15, abs=0)
    if case.tile.access is not None:
        (card,) = models
        pattern = r"\.model nmos0 nmos \(level=1 vto=(\S+) kp=(\S+) lambda=(\S+) is=0\)"
        found = re.fullmatch(pattern, card).groups()
        assert tuple(map(float, found)) == (0.5, 2e-4, 0.05)  # golden_cases' Level1
    else:
        assert models == []
