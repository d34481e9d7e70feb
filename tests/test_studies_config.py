"""Study files: the contract of the issue, sweep expansion, and every validation error."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("h5py")

from circuitsim.studies import StudyError, default_study_text, load_study

#: The study file of the issue, verbatim (scripts outside the project rely on it).
ISSUE_EXAMPLE = """
[tile]
rows = 64
cols = 64
r_wl = 1.0
r_bl = 1.0
r_source = 5.0
r_sense = 1.0
device = { model = "sinh", a = 3.0 }          # optional; "linear" by default
# access = { model = "level1", vto = 0.5, kp = 2e-4, lambda_ = 0.01, w = 1e-6, l = 1e-7 }
# v_gate = 1.8
[conductance]
distribution = "uniform"
g_min = 1e-6
g_max = 1e-4
seed = 0
[inputs]
count = 16
v_max = 0.3
seed = 1
[sweep]
rows = [16, 32, 64]
r_wl = [0.5, 1.0, 2.0]
"""


def test_issue_example_is_a_grid_product():
    study = load_study(text=ISSUE_EXAMPLE)
    assert len(study.points) == 9
    assert study.sweep_keys == ("rows", "r_wl")
    got = [(p.config["tile"]["rows"], p.config["tile"]["r_wl"]) for p in study.points]
    assert got == [(r, w) for r in (16, 32, 64) for w in (0.5, 1.0, 2.0)]
    p = study.points[4]
    assert p.config["tile"]["cols"] == 64 and p.config["tile"]["r_bl"] == 1.0
    assert p.config["tile"]["device"] == {"model": "sinh", "a": 3.0}
    assert p.config["tile"]["access"] == {"model": "none"}
    assert p.config["inputs"] == {"count": 16, "v_min": 0.0, "v_max": 0.3, "seed": 1,
                                  "all_on": True}


def test_issue_example_with_access_lines_enabled():
    text = ISSUE_EXAMPLE.replace("# access", "access").replace("# v_gate", "v_gate")
    study = load_study(text=text)
    acc = study.points[0].config["tile"]["access"]
    assert acc == {"model": "level1", "vto": 0.5, "kp": 2e-4, "lambda_": 0.01, "w": 1e-6,
                   "l": 1e-7}
    assert study.points[0].config["tile"]["v_gate"] == 1.8


def test_default_study_is_the_irdrop_sweep():
    study = load_study(text=default_study_text())
    assert study.sweep_keys == ("size", "r_wire", "access")
    sizes = sorted({p.config["tile"]["rows"] for p in study.points})
    assert sizes == [32, 64, 128, 256]
    assert all(p.config["tile"]["rows"] == p.config["tile"]["cols"] for p in study.points)
    wires = sorted({p.config["tile"]["r_wl"] for p in study.points})
    assert wires[0] == 0.1 and wires[-1] == 10.0
    assert all(p.config["tile"]["r_wl"] == p.config["tile"]["r_bl"] for p in study.points)
    assert {p.config["tile"]["access"]["model"] for p in study.points} == {"none", "level1"}
    assert len(study.points) == 40


def test_explicit_points_combine_with_the_grid():
    study = load_study(text="""
[tile]
rows = 4
cols = 4
[sweep]
r_wire = [1.0, 2.0]
points = [{ size = 8 }, { rows = 2, cols = 3, device = { model = "sinh", a = 2.0 } }]
""")
    got = [(p.config["tile"]["rows"], p.config["tile"]["cols"], p.config["tile"]["r_bl"],
            p.config["tile"]["device"]["model"]) for p in study.points]
    assert got == [(8, 8, 1.0, "linear"), (2, 3, 1.0, "sinh"), (8, 8, 2.0, "linear"),
                   (2, 3, 2.0, "sinh")]


def test_model_parameters_and_other_tables_sweep():
    study = load_study(text="""
[tile]
rows = 3
cols = 3
device = { model = "sinh" }
[sweep]
device.a = [1.0, 4.0]
conductance.g_max = [1e-4, 1e-3]
inputs.v_max = [0.2]
solve.max_iter = [50]
""")
    assert study.sweep_keys == ("device.a", "conductance.g_max", "inputs.v_max",
                                "solve.max_iter")
    assert [p.config["tile"]["device"]["a"] for p in study.points] == [1.0, 1.0, 4.0, 4.0]
    assert [p.config["conductance"]["g_max"] for p in study.points] == [1e-4, 1e-3] * 2
    assert all(p.config["solve"]["max_iter"] == 50 for p in study.points)


def test_fingerprint_depends_on_configuration_not_on_comments_or_name():
    a = load_study(text=ISSUE_EXAMPLE)
    b = load_study(text="# a comment\n[study]\nname = \"other\"\n" + ISSUE_EXAMPLE)
    c = load_study(text=ISSUE_EXAMPLE.replace("r_source = 5.0", "r_source = 5.5"))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert [p.key for p in a.points] == [p.key for p in b.points]


def test_conductance_file(tmp_path):
    g = np.random.default_rng(0).uniform(1e-6, 1e-4, (5, 7))
    np.save(tmp_path / "g.npy", g)
    (tmp_path / "s.toml").write_text('[conductance]\nfile = "g.npy"\n[sweep]\nr_wl = [1.0, 2.0]\n')
    study = load_study(tmp_path / "s.toml")
    assert study.points[0].config["tile"]["rows"] == 5 and study.points[0].config["tile"][
        "cols"] == 7
    np.testing.assert_array_equal(study.g_file, g)


BASE = """
[tile]
rows = 4
cols = 4
"""


@pytest.mark.parametrize("text, where, why", [
    ("[tile]\nrows = 4\ncols = 4\nr_wll = 1.0\n", "[tile] key 'r_wll'", "unknown key"),
    ("[tiles]\nrows = 4\n", "[tiles]", "unknown table"),
    (BASE + "r_wl = -1.0\n", "[tile] key 'r_wl'", "must be >= 0"),
    (BASE + "r_wl = 'one'\n", "[tile] key 'r_wl'", "must be a number"),
    (BASE + "r_wl = true\n", "[tile] key 'r_wl'", "must be a number"),
    (BASE + "r_wl = nan\n", "[tile] key 'r_wl'", "must be finite"),
    ("[tile]\nrows = 0\ncols = 4\n", "[tile] key 'rows'", "must be >= 1"),
    ("[tile]\nrows = 2.5\ncols = 4\n", "[tile] key 'rows'", "must be an integer"),
    ("[tile]\ncols = 4\n", "[tile] key 'rows'", "required"),
    (BASE + "size = 8\n", "[tile] key 'size'", "sets 'rows'"),
    (BASE + "drive = 'middle'\n", "[tile] key 'drive'", "must be one of"),
    (BASE + "device = { model = 'sinus' }\n", "[tile] key 'device' key 'model'", "unknown model"),
    (BASE + "device = { a = 3.0 }\n", "[tile] key 'device'", "needs a 'model' key"),
    (BASE + "device = { model = 'sinh', b = 3.0 }\n", "[tile] key 'device' key 'b'",
     "has no parameter 'b'"),
    (BASE + "device = { model = 'sinh', a = -3.0 }\n", "[tile] key 'device'",
     "parameter a must be > 0"),
    (BASE + "access = { model = 'level1' }\n", "[tile] key 'v_gate'", "required with access"),
    (BASE + "access = { model = 'level1', kp = 0.0 }\nv_gate = 1.8\n", "[tile] key 'access'",
     "parameter kp must be > 0"),
    (BASE + "v_gate = 1.8\n", "[tile] key 'v_gate'", "no point has an access transistor"),
    (BASE + "[conductance]\ng_min = 1e-3\ng_max = 1e-4\n", "[conductance] key 'g_min'",
     "exceeds g_max"),
    (BASE + "[conductance]\ndistribution = 'loguniform'\ng_min = 0.0\n",
     "[conductance] key 'g_min'", "must be > 0 for a loguniform"),
    (BASE + "[conductance]\ndistribution = 'normal'\n", "[conductance] key 'distribution'",
     "must be one of"),
    (BASE + "[inputs]\ncount = -1\n", "[inputs] key 'count'", "must be >= 0"),
    (BASE + "[inputs]\ncount = 0\nall_on = false\n", "[inputs] key 'count'", "leave no input"),
    (BASE + "[inputs]\nv_min = 0.5\nv_max = 0.3\n", "[inputs] key 'v_min'", "exceeds v_max"),
    (BASE + "[inputs]\nall_on = 1\n", "[inputs] key 'all_on'", "must be true or false"),
    (BASE + "[solve]\nsolver = 'magic'\n", "[solve] key 'solver'", "must be one of"),
    (BASE + "device = 'sinh'\n[solve]\nsolver = 'cg'\n", "[solve] key 'solver'",
     "cannot solve the nonlinear"),
    (BASE + "[solve]\nreltol = 0.0\n", "[solve] key 'reltol'", "must be > 0"),
    (BASE + "[output]\nmetrics = ['err_rms', 'speed']\n", "[output] key 'metrics'",
     "unknown metric 'speed'"),
    (BASE + "[output]\nnode_voltages = 0\n", "[output] key 'node_voltages'",
     "must be true, false or a number"),
    (BASE + "[output]\ncompression = 'zip'\n", "[output] key 'compression'", "must be one of"),
    (BASE + "[sweep]\nr_wl = 1.0\n", "[sweep] key 'r_wl'", "must be a non-empty list"),
    (BASE + "[sweep]\nr_wl = []\n", "[sweep] key 'r_wl'", "must be a non-empty list"),
    (BASE + "[sweep]\nr_wl = [1.0, 1.0]\n", "[sweep] key 'r_wl'", "listed twice"),
    (BASE + "[sweep]\nr_wl = [1.0, -2.0]\n", "[sweep] key 'r_wl' item 1", "must be >= 0"),
    (BASE + "[sweep]\nwire = [1.0]\n", "[sweep] key 'wire'", "not a sweepable parameter"),
    (BASE + "[sweep]\nconductance.file = ['a.npy']\n", "[sweep] key 'conductance.file'",
     "cannot be swept"),
    (BASE + "[sweep]\noutput.compression = ['lzf']\n", "[sweep] key 'output'",
     "not a sweepable parameter"),
    (BASE + "[sweep]\ndevice.a = [1.0, 2.0]\n", "[sweep] key 'device.a'",
     "model 'linear' has no parameter 'a'"),
    (BASE + "[sweep]\nsize = [2]\nrows = [3]\n", "[sweep] key", "which 'size' sets too"),
    (BASE + "[sweep]\nr_wl = [1.0]\npoints = [{ r_wl = 2.0 }]\n", "[sweep] points item 0 key 'r_wl'",
     "also swept by the grid"),
    (BASE + "[sweep]\npoints = [{ r_wl = 2.0 }, { r_wl = 2.0 }]\n", "[sweep]",
     "have the same configuration"),
    (BASE + "[sweep]\npoints = [1, 2]\n", "[sweep] key 'points'", "list of tables"),
    (BASE + "[sweep]\naccess = [{ model = 'level2' }]\n", "[sweep] key 'access' item 0 key 'model'",
     "unknown model"),
    ("rows = 4\n[tile]\ncols = 4\n", "key 'rows' outside any table", "belong in tables"),
    ("[tile\nrows = 4\n", "not valid TOML", "line 1"),
])
def test_bad_study_names_table_key_and_reason(text, where, why):
    with pytest.raises(StudyError) as info:
        load_study(text=text)
    msg = str(info.value)
    assert msg.startswith("<text>: ")
    assert where in msg and why in msg, msg


def test_conductance_file_errors(tmp_path):
    np.save(tmp_path / "g.npy", np.array([[1e-5, -1e-5]]))
    (tmp_path / "s.toml").write_text('[conductance]\nfile = "g.npy"\n')
    with pytest.raises(StudyError, match=r"s.toml: \[conductance\] key 'file'.*g\[\(0, 1\)\]"):
        load_study(tmp_path / "s.toml")
    (tmp_path / "t.toml").write_text('[conductance]\nfile = "g.npy"\ng_max = 1e-3\n')
    with pytest.raises(StudyError, match=r"\[conductance\] key 'g_max': not used with 'file'"):
        load_study(tmp_path / "t.toml")
    (tmp_path / "u.toml").write_text('[conductance]\nfile = "missing.npy"\n')
    with pytest.raises(StudyError, match=r"cannot read .*missing.npy"):
        load_study(tmp_path / "u.toml")
    np.save(tmp_path / "h.npy", np.ones((2, 2)) * 1e-5)
    (tmp_path / "v.toml").write_text('[conductance]\nfile = "h.npy"\n[sweep]\nsize = [2, 3]\n')
    with pytest.raises(StudyError, match=r"\[sweep\] key 'size': the tile shape is fixed"):
        load_study(tmp_path / "v.toml")


def test_missing_study_file(tmp_path):
    with pytest.raises(StudyError, match="cannot read the study file"):
        load_study(tmp_path / "nope.toml")
