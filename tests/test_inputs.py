"""Bad input gets a clear error naming the argument, the index or both shapes."""

import numpy as np
import pytest
from circuitsim.netlist import BranchGroup, Circuit, find_floating

import circuitsim as cs
from circuitsim.mna import plans

G = np.full((3, 2), 1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"g": [[1e-4, -1e-4]]}, r"g\[0, 1\] is -0.0001: values must be >= 0"),
        ({"g": [[1e-4, np.nan]]}, r"g\[0, 1\] is nan: values must be finite"),
        ({"g": [[np.inf]]}, r"g\[0, 0\] is inf"),
        ({"g": G, "r_wl": -1.0}, r"r_wl is -1.0: values must be >= 0"),
        ({"g": G, "r_bl": np.array([[1, 1], [1, np.nan], [1, 1]])}, r"r_bl\[1, 1\] is nan"),
        ({"g": G, "r_source": [1, 2, -3]}, r"r_source\[2\] is -3.0"),
        ({"g": G, "r_sense": np.inf}, r"r_sense is inf"),
        ({"g": G, "r_wl": 1e-15}, r"r_wl is 1e-15: a resistance below 1e-12 ohm"),
        ({"g": G, "v_sense": np.nan}, r"v_sense is nan"),
        ({"g": np.zeros((0, 3))}, r"g has shape \(0, 3\): a tile needs at least one row"),
        ({"g": np.ones(3)}, r"g has shape \(3,\); expected \(m, n\) or \(B, m, n\)"),
        ({"g": G, "r_wl": np.ones((2, 2))}, (r"r_wl has shape \(2, 2\), which does not broadcast "
                                             r"to the tile shape \(3, 2\)")),
        ({"g": G, "r_source": np.ones(2)}, r"r_source has shape \(2,\).*\(3,\)"),
        ({"g": G, "drive": "right"}, r"drive must be one of"),
        ({"g": G, "v_gate": 1.0}, r"v_gate is given but access is None"),
    ],
)
def test_crossbar_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cs.crossbar(**kwargs)


@pytest.mark.parametrize(
    "g", [np.array([["a"]]), np.array([[1 + 1j]]), np.array([[True]]), np.array([[object()]])]
)
def test_crossbar_rejects_non_numeric_dtypes(g):
    with pytest.raises(TypeError, match="g must be a real numeric array"):
        cs.crossbar(g)


def test_numpy_scalars_and_float32_are_accepted():
    tile = cs.crossbar(np.full((2, 2), 1e-4, dtype=np.float32), r_wl=np.float32(1.0), r_bl=np.int64(2))
    assert tile.g.dtype == np.float64 and tile.r_wl.dtype == np.float64


def test_model_type_is_checked():
    with pytest.raises(TypeError, match="device must be a model"):
        cs.crossbar(G, device="sinh")


def test_access_needs_gate():
    with pytest.raises(ValueError, match="v_gate is None"):
        cs.crossbar(G, access=cs.devices.Level1())


@pytest.mark.parametrize(
    "v_in, match",
    [
        (np.ones(2), r"v_in has shape \(2,\); expected \(m,\), \(K, m\) with m = 3"),
        (np.ones((4, 2)), r"v_in has shape \(4, 2\)"),
        (np.ones((1, 4, 3)), r"v_in has shape \(1, 4, 3\)"),
        (np.ones((0, 3)), r"no input vectors"),
        ([1.0, np.nan, 0.0], r"v_in\[1\] is nan"),
    ],
)
def test_solve_rejects_bad_inputs(v_in, match):
    with pytest.raises(ValueError, match=match):
        cs.solve(cs.crossbar(G, 1.0, 1.0), v_in)


def test_batched_input_must_match_batch():
    tile = cs.crossbar(np.stack([G, G]), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"shape \(3, 1, 3\) but the tile batch has B = 2"):
        cs.solve(tile, np.ones((3, 1, 3)))


def test_solve_rejects_string_input():
    with pytest.raises(TypeError, match="v_in must be a real numeric array"):
        cs.solve(cs.crossbar(G), ["a", "b", "c"])


def test_unknown_solver_lists_valid_names():
    with pytest.raises(ValueError, match="unknown solver 'lu'; valid: direct, superlu"):
        cs.solve(cs.crossbar(G, 1.0), np.ones(3), solver="lu")


def test_unknown_on_fail():
    with pytest.raises(ValueError, match="on_fail must be"):
        cs.solve(cs.crossbar(G, 1.0), np.ones(3), on_fail="ignore")


def _circuit(n_nodes, n_fixed, a, b, r):
    group = BranchGroup("resistor", np.array(a), np.array(b), np.array([r], dtype=float))
    return Circuit(n_nodes, n_fixed, (group,), namer=lambda k: np.char.add("n", k.astype(str)))


def test_zero_resistance_between_sources_is_reported():
    # nodes 0, 1 free; 2, 3 fixed; a zero-resistance path 2 - 0 - 3
    circuit = _circuit(4, 2, [2, 0, 0], [0, 3, 1], [0.0, 0.0, 1.0])
    with pytest.raises(cs.ShortCircuitError, match="joins the fixed-voltage nodes n2 and n3"):
        plans(circuit)


def test_floating_node_is_found():
    # node 1 hangs on a zero-conductance device only
    res = BranchGroup("resistor", np.array([0]), np.array([2]), np.array([[1.0]]))
    dev = BranchGroup("device", np.array([0]), np.array([1]), np.array([[0.0]]))
    circuit = Circuit(3, 1, (res, dev), namer=lambda k: np.char.add("n", k.astype(str)))
    assert find_floating(circuit) == (0, 1)
    dev_on = BranchGroup("device", np.array([0]), np.array([1]), np.array([[1e-3]]))
    assert find_floating(Circuit(3, 1, (res, dev_on), namer=circuit.namer)) is None


def test_to_networkx_names_nodes_and_branches():
    graph = cs.crossbar(np.full((2, 2), 1e-4), 1.0, 1.0).circuit.to_networkx()
    assert graph.nodes[0]["name"] == "wl[0,0]"
    assert graph.number_of_edges() == 3 * 4  # wl, bl segment and device per cell
    kinds = {d["kind"] for _, _, d in graph.edges(data=True)}
    assert kinds == {"resistor", "device"}
