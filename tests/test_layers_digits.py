"""Networks on digits: accuracy, the survey preset in circuit mode, evaluate's report, and the
ngspice cross-check of mapped tiles."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from circuitsim.validation import ngspice

import circuitsim as cs
from circuitsim import layers as L

pytest.importorskip("sklearn")
pytest.importorskip("onnx")

needs_ngspice = pytest.mark.skipif(
    ngspice.find_executable() is None
    and (importlib.util.find_spec("PySpice") is None or ngspice.find_library() is None),
    reason="ngspice is not installed (apt-get install ngspice libngspice0)",
)


@pytest.fixture(scope="module")
def digits():
    return L.dataset("digits", "test")


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_shipped_model_ideal_accuracy(name, digits):
    X, y = digits
    report = L.evaluate(L.load_onnx(L.model_path(name)), X, y, modes=("ideal",))
    print(f"{name}: ideal accuracy {100 * report.accuracy['ideal']:.2f} % on {len(y)} images")
    assert len(y) == 360
    assert report.accuracy["ideal"] > 0.90


def test_zero_wire_resistance_reproduces_ideal(digits):
    X, y = digits
    cfg = L.TileConfig(rows=32, cols=32, r_wl=0.0, r_bl=0.0)
    rep = L.evaluate(L.load_npz(L.model_path("cnn", "npz"), config=cfg), X[:60], y[:60])
    assert rep.accuracy["circuit"] == rep.accuracy["mapped"] == rep.accuracy["ideal"]
    for lay in rep.layers:
        assert lay.rel_rms_propagated["circuit"] < 1e-9 and lay.rel_max_isolated["circuit"] < 1e-9


def test_report_is_independent_of_batch_size(digits):
    X, y = digits
    cfg = L.TileConfig(rows=32, cols=32, r_wl=5.0, r_bl=5.0, adc=L.ADC(bits=6),
                       variability=L.Variability(0.05), seed=3)
    calib = L.dataset("digits", "train")[0][:50]
    reps = [L.evaluate(L.load_onnx(L.model_path("mlp"), config=cfg), X[:40], y[:40],
                       calibration=calib, batch_size=bs) for bs in (None, 7)]
    assert reps[0].accuracy == reps[1].accuracy
    for a, b in zip(reps[0].layers, reps[1].layers):
        assert a.rel_rms_propagated == pytest.approx(b.rel_rms_propagated, rel=1e-12)
        assert a.adc_clipped == b.adc_clipped


def test_survey_preset():
    s = L.presets.SURVEY
    assert (s.rows, s.cols, s.mapping, s.levels, s.adc.bits) == (16, 16, "separate", 6, 6)
    assert (1 / s.g_max, 1 / s.g_min) == pytest.approx((10e3, 100e3))
    assert s.access is not None and s.variability.on == "R" and s.variability.sigma == 0.1
    assert "Lammie" in L.presets.__doc__


def test_survey_in_circuit_mode_reports_per_layer_errors(digits):
    X, y = digits
    net = L.load_onnx(L.model_path("mlp"), config=L.presets.SURVEY)
    rep = L.evaluate(net, X[:8], y[:8], calibration=L.dataset("digits", "train")[0][:100])
    text = rep.table()
    print(text)
    assert set(rep.accuracy) == {"ideal", "mapped", "circuit"}
    assert [lay.tiles for lay in rep.layers] == [32, 8]  # 64x64 and 64x10 on 16x16 G+/G- tiles
    for lay in rep.layers:
        for m in ("mapped", "circuit"):
            for d in (lay.rel_rms_isolated, lay.rel_max_isolated, lay.rel_rms_propagated,
                      lay.rel_max_propagated):
                assert 0 < d[m] < 1.5
            assert lay.adc_conversions[m] > 0
        assert lay.newton_iterations_max["circuit"] >= 2  # 1T1R tiles: Newton
        # the transistors' on-resistance makes the circuit differ from the mapped product
        assert lay.rel_rms_isolated["circuit"] != lay.rel_rms_isolated["mapped"]
    assert "gemm0" in text and "Newton its" in text
    d = rep.to_dict()
    assert d["layers"][0]["rel_rms_propagated"]["circuit"] == rep.layers[0].rel_rms_propagated[
        "circuit"]


@needs_ngspice
def test_survey_layer_validates_against_ngspice(digits):
    X, _ = digits
    net = L.load_onnx(L.model_path("mlp"), config=L.presets.SURVEY)
    net.calibrate(X[:20])
    layer = net.analog_layers[0]
    layer(X[:3], mode="circuit")
    check = layer.validate(tiles=2, inputs=2)
    print(check.summary())
    assert len(check.reports) == 4 and len({t for t, _, _ in check.cases}) == 2
    assert check.passed, check.summary()
    assert check.v_rel < 1e-6 and check.i_rel < 1e-6
    assert all(r.shape == (16, 16) for r in check.reports)


@needs_ngspice
def test_linear_layer_validates_to_1e9():
    rng = np.random.default_rng(0)
    layer = L.Linear(rng.normal(size=(20, 24)), config=L.TileConfig(rows=16, cols=16, r_wl=1.0,
                                                                    r_bl=1.0), x_max=1.0)
    check = layer.validate(tiles=2, inputs=1, x=rng.uniform(0, 1, (3, 24)))
    assert check.passed and check.i_rel < 1e-9 and check.reports[0].rtol == 1e-9


def test_validate_needs_inputs():
    layer = L.Linear(np.ones((2, 2)), x_max=1.0)
    with pytest.raises(ValueError, match="no input vectors yet"):
        layer.validate()


def test_nonlinear_layer_reports_newton_iterations():
    rng = np.random.default_rng(2)
    cfg = L.TileConfig(rows=8, cols=8, device=cs.devices.Sinh(a=3.0), g_min=1e-6, g_max=1e-4,
                       v_read=0.3)
    layer = L.Linear(rng.normal(size=(6, 10)), config=cfg, x_max=1.0)
    x = rng.uniform(0, 1, (5, 10))
    y = layer(x, "circuit")
    assert layer.last.newton_iterations_max >= 2 and layer.last.inputs == 5
    # sinh devices conduct more than their small-signal conductance: outputs move off the mapped
    assert np.abs(y - layer(x, "mapped")).max() > 1e-3 * np.abs(y).max()
