"""``circuitsim study init|run|show|plot`` and the figures they write."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("matplotlib")

from circuitsim.studies import default_study_text, load_study, read_point, read_summary
from circuitsim.studies.cli import main
from circuitsim.studies.plots import currents_figure, error_figure, heatmap_figure

from circuitsim import cli as top_cli

STUDY = """
[study]
name = "cli"
[tile]
rows = 8
cols = 6
r_source = 2.0
r_sense = 1.0
v_gate = 1.8
[inputs]
count = 3
[sweep]
size = [4, 8]
r_wire = [0.3, 1.0, 3.0]
access = ["none", { model = "level1", vto = 0.5, kp = 2e-4, lambda_ = 0.01, w = 1e-6, l = 1e-7 }]
"""


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished study: (folder, study file, results file)."""
    d = tmp_path_factory.mktemp("cli")
    (d / "s.toml").write_text(STUDY)
    assert main(["run", str(d / "s.toml"), "-o", str(d / "r.h5"), "--quiet"]) == 0
    return d, d / "s.toml", d / "r.h5"


def test_init_writes_the_default_and_keeps_existing_files(tmp_path, capsys):
    path = tmp_path / "study.toml"
    assert main(["init", str(path)]) == 0
    assert path.read_text() == default_study_text()
    assert len(load_study(path).points) == 40
    path.write_text("mine")
    assert main(["init", str(path)]) == 2
    assert "exists; --force replaces it" in capsys.readouterr().err
    assert path.read_text() == "mine"
    assert main(["init", str(path), "--force"]) == 0 and path.read_text() == default_study_text()


def test_run_prints_progress_and_summary(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(STUDY)
    out = tmp_path / "r.h5"
    assert main(["run", str(tmp_path / "s.toml"), "-o", str(out)]) == 0
    cap = capsys.readouterr()
    assert "12/12" in cap.err and "point" in cap.err  # tqdm's bar
    lines = cap.out.splitlines()
    assert lines[0] == f"study 'cli': 12 points (size, r_wire, access) -> {out}"
    assert lines[1] == "study 'cli': 12 of 12 points (complete), circuitsim 0.1.0"
    head = lines[2].split()
    assert head[:5] == ["point", "size", "r_wire", "(ohm)", "access"]
    assert "err" in head and "mV" in head
    rows = [ln.split() for ln in lines[4:16]]
    assert [r[0] for r in rows] == [f"p{i:02d}" for i in range(12)]
    assert {r[4] for r in rows} == {"ok"}
    assert "12 points computed" in lines[16] and f"results: {out}" in lines[16]
    # a second run refuses, a resume has nothing to do
    assert main(["run", str(tmp_path / "s.toml"), "-o", str(out), "--quiet"]) == 2
    assert "already holds this study (12 of 12 points, complete)" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "s.toml"), "-o", str(out), "--quiet", "--resume"]) == 0
    assert "0 points computed" in capsys.readouterr().out


def test_show(done, capsys):
    _, _, out = done
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert text == read_summary(out).text() + "\n"
    assert main(["show", str(out), "--point", "p03"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("p03: ok")
    assert "tile.r_wl = 1.0 ohm" in text and "dataset v_wl: float64 (4, 4, 4) V" in text
    assert main(["show", str(out), "--verify"]) == 0
    assert "every dataset matches its SHA-256" in capsys.readouterr().out
    assert main(["show", str(out), "--point", "p99"]) == 2
    assert "has no point 'p99'" in capsys.readouterr().err


def test_plot_writes_png_and_svg(done, capsys):
    d, _, out = done
    figs = d / "figs"
    assert main(["plot", str(out), "-o", str(figs)]) == 0
    names = sorted(p.name for p in figs.iterdir())
    # default point: the converged point with the largest RMS error (largest tile, most wire)
    worst = str(read_summary(out).column("name")[np.argmax(read_summary(out).column("err_rms"))])
    assert names == sorted(f"{stem}.{ext}" for stem in
                           (f"heatmap-{worst}", f"currents-{worst}", "error-vs-r_wire")
                           for ext in ("png", "svg"))
    for p in figs.iterdir():
        data = p.read_bytes()
        assert data.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in data[:2000]
    capsys.readouterr()
    assert main(["plot", str(out), "-o", str(figs), "--point", "p00", "--x", "size", "--line",
                 "access", "--format", "png"]) == 0
    assert (figs / "error-vs-size.png").exists() and (figs / "heatmap-p00.png").exists()
    assert main(["plot", str(out), "-o", str(figs), "--x", "rows"]) == 2
    assert "x = 'rows' is not a swept key; swept: size, r_wire, access" in capsys.readouterr().err


def test_figures_have_labels_units_and_colour_bars(done):
    _, _, out = done
    point = read_point(out, "p11")
    fig = heatmap_figure(point, 0)
    axes = fig.axes
    assert len(axes) == 6  # three maps and their colour bars
    labels = [ax.get_ylabel() for ax in axes[3:]]
    assert labels == ["word-line node voltage (V)", "bit-line node voltage (mV)",
                      "cell-voltage error (mV)"]
    assert all(ax.get_xlabel() == "bit line (column) j" for ax in axes[:3])
    assert "input 0 (all rows at 0.3 V)" in fig.get_suptitle()
    summary = read_summary(out)
    fig = error_figure(summary)  # x = r_wire, lines = size, one row of panels per access
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert ax.get_xlabel() == "r_wire (ohm)" and ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["size = 4", "size = 8"]
        assert len(ax.get_lines()) == 2 and all(len(ln.get_xdata()) == 3 for ln in ax.get_lines())
    assert {ax.get_title() for ax in fig.axes} == {"access = none", "access = level1"}
    fig = currents_figure(point)
    assert fig.axes[0].get_xlabel() == "ideal output current (µA)"
    with pytest.raises(ValueError, match="keeps node voltages of inputs 0..3, not of input 9"):
        heatmap_figure(point, 9)


def test_bad_study_and_options_exit_2(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text("[tile]\nrows = 4\ncols = 4\nr_wl = -1\n")
    assert main(["run", str(tmp_path / "bad.toml"), "-o", str(tmp_path / "r.h5")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml: [tile] key 'r_wl': must be >= 0, got -1.0" in err
    assert not (tmp_path / "r.h5").exists()
    (tmp_path / "s.toml").write_text(STUDY)
    assert main(["run", str(tmp_path / "s.toml"), "--scheduler", "tls://127.0.0.1:1"]) == 2
    assert "tls:// needs --tls-ca-file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["run", str(tmp_path / "s.toml"), "--workers", "2", "--dask-local", "2"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["run", str(tmp_path / "s.toml"), "--resume", "--overwrite"])
    with pytest.raises(SystemExit):
        main(["run", str(tmp_path / "s.toml"), "--no-such-option"])


def test_plot_without_node_voltages(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(STUDY + "\n[output]\nnode_voltages = false\n")
    assert main(["run", str(tmp_path / "s.toml"), "-o", str(tmp_path / "r.h5"), "--quiet"]) == 0
    assert main(["plot", str(tmp_path / "r.h5"), "-o", str(tmp_path / "f"), "--format",
                 "png"]) == 0
    assert not list((tmp_path / "f").glob("heatmap-*"))
    assert list((tmp_path / "f").glob("error-vs-*.png"))
    assert main(["plot", str(tmp_path / "r.h5"), "-o", str(tmp_path / "f"), "--point",
                 "p01"]) == 2
    assert "has no node voltages" in capsys.readouterr().err


def test_top_level_command_dispatches(done, capsys):
    _, _, out = done
    assert top_cli.main(["study", "show", str(out)]) == 0
    assert "12 of 12 points" in capsys.readouterr().out
