"""Solving study points: metrics against closed forms and independent recomputation, power
balance, batching, and points that do not converge or fail (recorded, never dropped)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("h5py")

from circuitsim.studies import load_study, read_point, read_summary, run_study
from circuitsim.studies.compute import conductance_map, input_vectors, plan_batches, solve_batch

import circuitsim as cs

LEVEL1 = '{ model = "level1", vto = 0.5, kp = 2e-4, lambda_ = 0.01, w = 1e-6, l = 1e-7 }'


def _run(tmp_path, text, name="r.h5", **kw):
    study = load_study(text=text)
    report = run_study(study, tmp_path / name, progress=False, **kw)
    return study, report, tmp_path / name


def test_one_cell_closed_form(tmp_path):
    """A 1 x 1 tile is a series circuit: i = v / (r_source + r_wl + 1/g + r_bl + r_sense)."""
    g, v = 1e-4, 0.3
    np.save(tmp_path / "g.npy", np.array([[g]]))
    (tmp_path / "s.toml").write_text(f"""
[tile]
r_source = 10.0
r_wl = 2.0
r_bl = 3.0
r_sense = 5.0
[conductance]
file = "g.npy"
[inputs]
count = 0
v_max = {v}
""")
    run_study(load_study(tmp_path / "s.toml"), tmp_path / "r.h5", progress=False)
    p = read_point(tmp_path / "r.h5", "p0")
    i = v / (10.0 + 2.0 + 1 / g + 3.0 + 5.0)
    assert p.status == "ok"
    np.testing.assert_allclose(p.arrays["i_out"], [[i]], rtol=1e-12)
    np.testing.assert_allclose(p.arrays["i_source"], [[i]], rtol=1e-12)
    np.testing.assert_allclose(p.arrays["i_ideal"], [[v * g]], rtol=1e-15)
    a = p.attrs
    assert a["err_rms"] == pytest.approx(abs(i - v * g) / (v * g), rel=1e-10)
    assert a["err_max"] == pytest.approx(abs(i - v * g) / (v * g), rel=1e-10)
    assert a["wl_drop"] == pytest.approx(i * 12.0, rel=1e-10)
    assert a["bl_rise"] == pytest.approx(i * 8.0, rel=1e-10)
    assert (a["wl_drop_row"], a["wl_drop_col"], a["wl_drop_input"]) == (0, 0, 0)
    expected = {"delivered": v * i, "drivers": i * i * 10.0, "wires": i * i * 5.0,
                "sense": i * i * 5.0, "devices": i * i / g, "transistors": 0.0}
    for part, value in expected.items():
        assert a[f"power_{part}"] == pytest.approx(value, rel=1e-10, abs=1e-30), part
        np.testing.assert_allclose(p.arrays[f"power/{part}"], [value], rtol=1e-10, atol=1e-30)
    assert p.units["power_wires"] == "W" and p.units["wl_drop"] == "V"
    assert p.units["tile.r_wl"] == "ohm" and p.units["g"] == "S"


def test_zero_resistance_tile_is_ideal(tmp_path):
    _, _, out = _run(tmp_path, """
[tile]
rows = 6
cols = 5
[inputs]
count = 4
""")
    p = read_point(out, "p0")
    ideal = p.arrays["v_in"] @ p.arrays["g"]
    np.testing.assert_allclose(p.arrays["i_out"], ideal, rtol=1e-12)
    assert p.attrs["err_rms"] < 1e-12 and p.attrs["wl_drop"] < 1e-15
    assert p.attrs["bl_rise"] < 1e-15


@pytest.mark.parametrize("kind", ["linear", "sinh", "1T1R"])
def test_power_parts_add_up_and_metrics_recomputed(tmp_path, kind):
    device = {"linear": "", "sinh": 'device = { model = "sinh", a = 3.0 }',
              "1T1R": f"access = {LEVEL1}\nv_gate = 1.8"}[kind]
    _, _, out = _run(tmp_path, f"""
[tile]
rows = 7
cols = 6
r_source = 4.0
r_sense = 2.0
v_sense = 0.05
{device}
[inputs]
count = 5
[sweep]
r_wire = [0.5, 5.0]
""")
    for name in ("p0", "p1"):
        p = read_point(out, name)
        a, arr = p.attrs, p.arrays
        parts = sum(arr[f"power/{k}"] for k in
                    ("drivers", "wires", "sense", "devices", "transistors"))
        np.testing.assert_allclose(parts, arr["power/delivered"], rtol=1e-9)
        # delivered power from the stored currents alone (sources minus sense nodes)
        delivered = (arr["v_in"] * arr["i_source"]).sum(axis=1) - 0.05 * arr["i_out"].sum(axis=1)
        np.testing.assert_allclose(arr["power/delivered"], delivered, rtol=1e-12)
        assert (arr["power/transistors"] > 0).all() == (kind == "1T1R")
        # metrics recomputed from the stored arrays with plain numpy
        ideal = (arr["v_in"] - 0.05) @ arr["g"]
        np.testing.assert_allclose(arr["i_ideal"], ideal, rtol=1e-13)
        err = np.linalg.norm(arr["i_out"] - ideal) / np.linalg.norm(ideal)
        assert a["err_rms"] == pytest.approx(err, rel=1e-12)
        worst = np.max(np.abs(arr["i_out"] - ideal) / np.abs(ideal).max(axis=1, keepdims=True))
        assert a["err_max"] == pytest.approx(worst, rel=1e-12)
        drop = np.abs(arr["v_in"][:, :, None] - arr["v_wl"])
        assert a["wl_drop"] == pytest.approx(drop.max(), rel=1e-12)
        k, i, j = np.unravel_index(np.argmax(drop), drop.shape)
        assert (a["wl_drop_input"], a["wl_drop_row"], a["wl_drop_col"]) == (k, i, j)
        assert a["bl_rise"] == pytest.approx(np.abs(arr["v_bl"] - 0.05).max(), rel=1e-12)
        assert a["power_delivered"] == pytest.approx(arr["power/delivered"].mean(), rel=1e-12)
        assert ("v_int" in arr) == (kind == "1T1R")
    if kind == "linear":  # (sinh devices: the larger drop partly offsets their superlinearity)
        err = read_summary(out).column("err_rms")
        assert err[1] > err[0]


def test_batched_points_match_tiles_built_directly(tmp_path):
    """Points solved as one batched tile give what cs.crossbar/cs.solve give for each point
    alone, with the point's own scalar parameters."""
    study = load_study(text=f"""
[tile]
rows = 5
cols = 4
device = {{ model = "sinh" }}
access = {LEVEL1}
[inputs]
count = 3
[sweep]
r_wl = [0.5, 2.0]
r_source = [1.0, 7.0]
v_gate = [1.5, 2.5]
device.a = [2.0, 3.0]
""")
    batches = plan_batches(study)
    assert len(batches) == 1 and len(batches[0].points) == 16
    results = solve_batch(batches[0])
    for r in results:
        t = r.point.config["tile"]
        g = conductance_map(r.point.config)
        v = input_vectors(r.point.config)
        tile = cs.crossbar(g, t["r_wl"], t["r_bl"], t["r_source"], t["r_sense"],
                           device=cs.devices.Sinh(a=t["device"]["a"]),
                           access=cs.devices.Level1(vto=0.5, kp=2e-4, lambda_=0.01, w=1e-6,
                                                    l=1e-7),
                           v_gate=t["v_gate"])
        sol = cs.solve(tile, v)
        np.testing.assert_allclose(r.arrays["i_out"], sol.i_out, rtol=1e-12, atol=1e-20)
        np.testing.assert_allclose(r.arrays["v_int"], sol.v_int, rtol=1e-12, atol=1e-15)


def test_seeded_maps_and_inputs():
    study = load_study(text="""
[tile]
rows = 3
cols = 4
[conductance]
distribution = "binary"
g_min = 1e-6
g_max = 1e-4
seed = 7
[inputs]
count = 2
v_min = -0.1
v_max = 0.2
seed = 3
""")
    cfg = study.points[0].config
    g = conductance_map(cfg)
    assert set(np.unique(g)) <= {1e-6, 1e-4}
    np.testing.assert_array_equal(g, conductance_map(cfg))
    v = input_vectors(cfg)
    assert v.shape == (3, 3)
    np.testing.assert_array_equal(v[0], 0.2)
    np.testing.assert_array_equal(v[1:], np.random.default_rng(3).uniform(-0.1, 0.2, (2, 3)))


def test_non_converged_points_are_recorded_with_reason(tmp_path):
    """Newton capped at one iteration without fallbacks fails the KCL audit: the point is kept,
    marked, its values NaN (never numbers), and the reason says why (and the solve's warning
    says it as it happens)."""
    with pytest.warns(RuntimeWarning, match="Newton did not converge"):
        _, report, out = _run(tmp_path, f"""
[tile]
rows = 12
cols = 12
r_wire = 1.0
device = {{ model = "sinh", a = 3.0 }}
access = {LEVEL1}
v_gate = 1.8
[inputs]
count = 2
[solve]
gmin_stepping = false
source_stepping = false
[sweep]
solve.max_iter = [100, 1]
""")
    summary = read_summary(out)
    assert list(summary.column("status")) == ["ok", "not converged"]
    assert report.unconverged == ["p1"] and summary.complete
    reason = summary.column("reason")[1]
    assert "3 of 3 input vectors did not converge" in reason and "KCL residual" in reason
    assert math.isnan(summary.column("err_rms")[1]) and summary.column("iterations")[1] == -1
    bad = read_point(out, "p1")
    assert bad.status == "not converged" and not bad.arrays["converged"].any()
    for name in ("i_out", "i_source", "v_wl", "v_bl", "v_int", "power/delivered"):
        assert np.isnan(bad.arrays[name]).all(), name
    assert np.isfinite(bad.arrays["g"]).all() and (bad.arrays["residual"] > 0).all()
    good = read_point(out, "p0")
    assert good.arrays["converged"].all() and np.isfinite(good.arrays["i_out"]).all()
    assert "p1: not converged: 3 of 3" in summary.text()


def test_engine_errors_land_on_their_point(tmp_path):
    """The Stanford-PKU model refuses states outside its gap range: that point is 'failed'
    with the engine's message; its batch-mate is solved alone and is fine."""
    _, _, out = _run(tmp_path, """
[tile]
rows = 4
cols = 4
device = { model = "stanford-pku" }
[sweep]
conductance.g_min = [1e-6, 1e-7]
""")
    summary = read_summary(out)
    assert list(summary.column("status")) == ["ok", "failed"]
    assert "ValueError: StanfordPKU: state conductance" in summary.column("reason")[1]
    p = read_point(out, "p1")
    assert set(p.arrays) == {"g", "v_in"} and math.isnan(p.attrs["err_rms"])


def test_node_voltages_kept_for_first_inputs_or_none(tmp_path):
    _, _, out = _run(tmp_path, """
[tile]
rows = 3
cols = 3
[inputs]
count = 4
[output]
node_voltages = 2
metrics = ["err_rms", "power"]
""")
    p = read_point(out, "p0")
    assert p.arrays["v_wl"].shape == (2, 3, 3) and p.arrays["i_out"].shape == (5, 3)
    assert "wl_drop" not in p.attrs and "power_wires" in p.attrs
    assert set(read_summary(out).table.dtype.names) >= {"err_rms", "power_wires"}
    _, _, out2 = _run(tmp_path, "[tile]\nrows = 3\ncols = 3\n[output]\nnode_voltages = false\n",
                      name="r2.h5")
    assert "v_wl" not in read_point(out2, "p0").arrays
