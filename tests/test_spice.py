"""SPICE export: the deck parsed back has exactly the expected nodes and elements, and its
linear circuit, solved by an independent dense nodal analysis, gives circuitsim's solution."""

from collections import Counter

import numpy as np
import pytest
from circuitsim.netlist import to_spice
from circuitsim.netlist.spice import spice_nodes, to_spice_decks

import circuitsim as cs

# ---------------------------------------------------------------------------------------------
# A tiny deck parser


def parse(deck: str) -> dict:
    """Elements ``{name: (kind, nodes, rest)}``, models, options and analyses of a deck."""
    lines = deck.splitlines()
    out = {"title": lines[0], "elements": {}, "models": [], "options": [], "dot": []}
    for line in lines[1:]:
        if not line.strip() or line.startswith("*"):
            continue
        if line.startswith(".model"):
            out["models"].append(line)
        elif line.startswith(".options"):
            out["options"].append(line)
        elif line.startswith("."):
            out["dot"].append(line.split()[0])
        else:
            words = line.split()
            kind = words[0][0].upper()
            n_nodes = {"R": 2, "V": 2, "B": 2, "M": 4}[kind]
            assert words[0] not in out["elements"], f"duplicate element {words[0]}"
            out["elements"][words[0]] = (kind, words[1 : 1 + n_nodes], words[1 + n_nodes :])
    return out


def nodes_of(parsed: dict) -> set:
    """Circuit nodes of the deck (ground and gate nodes excluded)."""
    found = {n for kind, nodes, _ in parsed["elements"].values() for n in nodes}
    return {n for n in found if n != "0" and not n.startswith("gate_")}


def kinds(parsed: dict) -> Counter:
    return Counter(kind for kind, _, _ in parsed["elements"].values())


def dense_solve(parsed: dict) -> dict:
    """Node voltages of a deck of resistors and grounded voltage sources, by dense nodal analysis
    written from the deck alone, and each source's current into its + node."""
    fixed = {
        nodes[0]: float(rest[1]) for kind, nodes, rest in parsed["elements"].values() if kind == "V"
    }
    free = sorted(nodes_of(parsed) - set(fixed))
    index = {n: k for k, n in enumerate(free)}
    G = np.zeros((len(free), len(free)))
    rhs = np.zeros(len(free))
    resistors = [
        (nodes, 1.0 / float(rest[0]))
        for kind, nodes, rest in parsed["elements"].values()
        if kind == "R"
    ]
    for (a, b), g in resistors:
        for p, q in ((a, b), (b, a)):
            if p in index:
                G[index[p], index[p]] += g
                if q in index:
                    G[index[p], index[q]] -= g
                else:
                    rhs[index[p]] += g * fixed[q]
    v = dict(fixed)
    v.update(zip(free, np.linalg.solve(G, rhs)))
    current = {name: 0.0 for name, (kind, _, _) in parsed["elements"].items() if kind == "V"}
    src_of = {
        nodes[0]: name for name, (kind, nodes, _) in parsed["elements"].items() if kind == "V"
    }
    for (a, b), g in resistors:
        i = g * (v[a] - v[b])  # from a to b
        if b in src_of:
            current[src_of[b]] += i
        if a in src_of:
            current[src_of[a]] -= i
    return {"v": v, "i": current}


# ---------------------------------------------------------------------------------------------
# Nodes and elements


def test_all_resistances_nonzero_keeps_every_node():
    m, n = 3, 4
    tile = cs.crossbar(np.full((m, n), 1e-4), 2.0, 3.0, 50.0, 20.0)
    parsed = parse(to_spice(tile, [0.1, 0.2, 0.3]))
    expected = (
        {f"wl_{i}_{j}" for i in range(m) for j in range(n)}
        | {f"bl_{i}_{j}" for i in range(m) for j in range(n)}
        | {f"src_{i}" for i in range(m)}
        | {f"sense_{j}" for j in range(n)}
    )
    assert nodes_of(parsed) == expected
    assert kinds(parsed) == Counter({"R": 3 * m * n, "V": m + n})
    assert parsed["dot"] == [".op", ".end"]
    assert parsed["options"] == [
        ".options reltol=1e-9 abstol=1e-15 vntol=1e-12 gmin=1e-30 itl1=500"
    ]
    el = parsed["elements"]
    assert el["Rwl_1_0"] == ("R", ["src_1", "wl_1_0"], ["52"])  # driver + first segment
    assert el["Rwl_1_1"] == ("R", ["wl_1_0", "wl_1_1"], ["2"])
    assert el["Rbl_2_3"] == ("R", ["bl_2_3", "sense_3"], ["23"])  # last segment + sense
    assert el["Rcell_0_2"] == ("R", ["wl_0_2", "bl_0_2"], ["10000"])
    assert el["Vsrc_2"] == ("V", ["src_2", "0"], ["DC", "0.3"])
    assert el["Vsense_0"] == ("V", ["sense_0", "0"], ["DC", "0"])


def test_zero_resistances_merge_nodes_and_write_no_zero_ohm_resistor():
    tile = cs.crossbar(np.full((4, 4), 1e-4))
    parsed = parse(to_spice(tile, np.ones(4)))
    assert nodes_of(parsed) == {f"src_{i}" for i in range(4)} | {f"sense_{j}" for j in range(4)}
    assert kinds(parsed) == Counter({"R": 16, "V": 8})
    assert parsed["elements"]["Rcell_2_3"][1] == ["src_2", "sense_3"]
    assert all(float(rest[0]) > 0 for kind, _, rest in parsed["elements"].values() if kind == "R")


def test_partly_zero_wires_merge_into_the_right_names():
    # WL segments zero but a driver resistance: each row is one node, named after its first node.
    # BL segments zero with a sense resistance: each column is one node bl_0_j.
    tile = cs.crossbar(np.full((3, 2), 1e-4), r_wl=0.0, r_bl=0.0, r_source=5.0, r_sense=7.0)
    parsed = parse(to_spice(tile, np.ones(3)))
    assert nodes_of(parsed) == (
        {"wl_0_0", "wl_1_0", "wl_2_0", "bl_0_0", "bl_0_1"}
        | {f"src_{i}" for i in range(3)}
        | {"sense_0", "sense_1"}
    )
    assert kinds(parsed) == Counter({"R": 3 + 2 + 6, "V": 5})
    names = spice_nodes(tile)
    assert names[tile.wl_node(1, 1)] == "wl_1_0"
    assert names[tile.bl_node(2, 1)] == "bl_0_1"


def test_one_zero_segment_merges_only_its_two_nodes():
    r_wl = np.ones((2, 3))
    r_wl[0, 2] = 0.0
    tile = cs.crossbar(np.full((2, 3), 1e-4), r_wl=r_wl, r_bl=1.0, r_sense=1.0)
    parsed = parse(to_spice(tile, [1.0, 1.0]))
    assert "wl_0_2" not in nodes_of(parsed)
    assert "Rwl_0_2" not in parsed["elements"]
    assert parsed["elements"]["Rcell_0_2"][1] == ["wl_0_1", "bl_0_2"]


def test_drive_both_adds_the_right_driver():
    tile = cs.crossbar(np.full((2, 3), 1e-4), 1.0, 1.0, 10.0, 0.0, drive="both")
    parsed = parse(to_spice(tile, [1.0, 0.5]))
    assert parsed["elements"]["Rsource_right_1"] == ("R", ["wl_1_2", "src_1"], ["10"])
    assert kinds(parsed)["R"] == 6 + 6 + 2 + 6  # WL, BL segments, right drivers, cells


def test_open_cells_have_no_element():
    g = np.full((3, 3), 1e-4)
    g[1, 2] = 0.0
    tile = cs.crossbar(g, 1.0, 1.0, 1.0, 1.0, device=cs.devices.Sinh(a=2.0))
    parsed = parse(to_spice(tile, np.ones(3)))
    assert kinds(parsed) == Counter({"R": 18, "V": 6, "B": 8})
    assert "Bcell_1_2" not in parsed["elements"]


def test_1t1r_deck_has_transistors_gate_sources_and_models():
    nmos = cs.devices.Level1(vto=0.5, kp=2e-4, lambda_=0.05)
    tile = cs.crossbar(
        np.full((3, 2), 1e-4), 1.0, 1.0, 10.0, 10.0, access=nmos, v_gate=[[1.5], [0.0], [1.5]]
    )
    parsed = parse(to_spice(tile, [0.2, 0.3, 0.4]))
    assert kinds(parsed) == Counter({"R": 18, "V": 3 + 2 + 2, "M": 6})
    assert {f"int_{i}_{j}" for i in range(3) for j in range(2)} <= nodes_of(parsed)
    assert len(parsed["models"]) == 1 and "level=1" in parsed["models"][0]
    assert "is=0" in parsed["models"][0]
    el = parsed["elements"]
    assert el["Vgate_0"][2] == ["DC", "0"] and el["Vgate_1"][2] == ["DC", "1.5"]
    assert el["Macc_1_0"][1] == ["int_1_0", "gate_0", "bl_1_0", "0"]  # drain, gate, source, bulk
    assert el["Macc_2_1"][1] == ["int_2_1", "gate_1", "bl_2_1", "0"]
    assert el["Rcell_0_1"][1] == ["wl_0_1", "int_0_1"]


def test_batched_tile_writes_the_chosen_tile():
    g = np.stack([np.full((2, 2), 1e-4), np.full((2, 2), 2e-4)])
    a = np.stack([np.full((2, 2), 2.0), np.full((2, 2), 3.0)])
    batch = cs.crossbar(g, 1.0, 1.0, device=cs.devices.Sinh(a=a))
    alone = cs.crossbar(g[1], 1.0, 1.0, device=cs.devices.Sinh(a=a[1]))
    deck = to_spice(batch, [0.1, 0.2], tile_index=1).splitlines()
    ref = to_spice(alone, [0.1, 0.2]).splitlines()
    assert deck[1] != ref[1]  # the comment names the tile of the batch
    assert deck[:1] + deck[2:] == ref[:1] + ref[2:]
    assert "sinh(3.000000000e+00*" in ref[-3]


def test_decks_one_per_vector():
    tile = cs.crossbar(np.full((2, 2), 1e-4), 1.0, 1.0)
    decks = to_spice_decks(tile, [[0.1, 0.2], [0.3, 0.4]])
    assert len(decks) == 2
    assert parse(decks[1])["elements"]["Vsrc_1"][2] == ["DC", "0.4"]


@pytest.mark.parametrize(
    "v_in, kwargs, match",
    [
        ([1.0], {}, "shape"),
        ([[1.0, 1.0]], {}, "shape"),
        ([1.0, np.nan], {}, "finite"),
        ([1.0, 1.0], {"tile_index": 1}, "out of range"),
    ],
)
def test_bad_arguments_are_refused(v_in, kwargs, match):
    tile = cs.crossbar(np.full((2, 2), 1e-4), 1.0, 1.0)
    with pytest.raises(ValueError, match=match):
        to_spice(tile, v_in, **kwargs)


def test_title_and_options_can_be_changed():
    tile = cs.crossbar([[1e-4]], 1.0, 1.0)
    parsed = parse(to_spice(tile, [1.0], title="my tile", options="reltol=1e-6"))
    assert parsed["title"] == "my tile"
    assert parsed["options"] == [".options reltol=1e-6"]
    assert ".options" not in to_spice(tile, [1.0], options=None)


# ---------------------------------------------------------------------------------------------
# The deck is the engine's circuit: an independent dense solve of the parsed deck agrees


@pytest.mark.parametrize(
    "kwargs",
    [
        {"r_wl": 2.0, "r_bl": 3.0, "r_source": 50.0, "r_sense": 20.0},
        {"r_wl": 0.0, "r_bl": 0.0, "r_source": 0.0, "r_sense": 0.0},
        {"r_wl": 1.0, "r_bl": 0.0, "r_source": 0.0, "r_sense": 5.0, "v_sense": 0.05},
        {"r_wl": 1.5, "r_bl": 0.5, "r_source": 30.0, "r_sense": 0.0, "drive": "both"},
    ],
)
def test_parsed_linear_deck_solves_to_circuitsims_answer(kwargs, rng):
    m, n = 5, 7
    g = rng.uniform(1e-6, 1e-4, (m, n))
    g[2, 3] = 0.0
    tile = cs.crossbar(g, **kwargs)
    v_in = rng.uniform(-0.5, 0.5, m)
    ref = dense_solve(parse(to_spice(tile, v_in)))
    sol = cs.solve(tile, v_in)
    names = spice_nodes(tile)
    mn = m * n
    v = np.array([ref["v"][s] for s in names])
    np.testing.assert_allclose(sol.v_wl, v[:mn].reshape(m, n), rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(sol.v_bl, v[mn : 2 * mn].reshape(m, n), rtol=1e-11, atol=1e-14)
    i_out = np.array([ref["i"][f"Vsense_{j}"] for j in range(n)])
    i_source = -np.array([ref["i"][f"Vsrc_{i}"] for i in range(m)])
    scale = np.abs(i_out).max()
    np.testing.assert_allclose(sol.i_out, i_out, rtol=1e-10, atol=1e-12 * scale)
    np.testing.assert_allclose(sol.i_source, i_source, rtol=1e-10, atol=1e-12 * scale)
