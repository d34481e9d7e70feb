"""Circuit-aware training (circuitsim.layers.training) and compensated layers (compensate=True).

Gradients are checked against central finite differences of the loss as the layers compute it
(``net(X, "circuit")``, re-programmed for every perturbed weight), which shares no code with the
backward pass; compensation against the ideal-wire ``"mapped"`` outputs; column gains against
least squares solved here.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from circuitsim.layers import backprop

import circuitsim as cs
from circuitsim import layers as L

LEVEL1 = cs.devices.Level1(vto=0.5, kp=2e-4)
KINDS = {
    "linear": {},
    "linear+programming": {"variability": L.Variability(0.1, distribution="lognormal"),
                           "drift": L.Drift(t=200.0, nu=0.05, nu_std=0.02),
                           "faults": L.Faults(0.05, 0.05)},
    "sinh": {"device": cs.devices.Sinh(a=3.0)},
    "1T1R": {"device": cs.devices.Sinh(a=3.0), "access": LEVEL1, "v_gate": 1.8, "v_read": 0.3},
}


def cross_entropy(p, y):
    return -float(np.mean(np.log(p[np.arange(len(y)), y])))


def circuit_loss(net, X, y):
    return cross_entropy(net(X, "circuit"), y)


def mlp(mapping, kind, r=30.0, seed=0):
    """6 -> 5 -> 3 on tiles of 4 rows: several row and column blocks, edge tiles."""
    rng = np.random.default_rng(seed)
    cfg = L.TileConfig(rows=4, cols=4, r_wl=r, r_bl=r, r_source=20.0, r_sense=10.0,
                       mapping=mapping, **KINDS[kind])
    net = L.Sequential([
        L.Linear(rng.normal(size=(5, 6)), rng.normal(size=5), config=cfg, w_max=4.0),
        L.ReLU(),
        L.Linear(rng.normal(size=(3, 5)), rng.normal(size=3), config=cfg.replace(rows=3),
                 w_max=4.0, stream=1),
        L.Softmax(),
    ])
    X = rng.uniform(0.0, 1.0, (7, 6))
    y = rng.integers(0, 3, 7)
    return net.calibrate(X), X, y


def fd_weights(net, X, y, k, h=2e-5):
    """Central differences of the circuit loss in the weights of analog layer ``k``."""
    layer = net.analog_layers[k]
    W0 = layer.weight.copy()
    out = np.zeros_like(W0)
    for idx in np.ndindex(W0.shape):
        losses = []
        for sign in (1.0, -1.0):
            W = W0.copy()
            W[idx] += sign * h
            layer.reprogram(W)
            losses.append(circuit_loss(net, X, y))
        out[idx] = (losses[0] - losses[1]) / (2 * h)
    layer.reprogram(W0)
    return out


def fd_bias(net, X, y, k, h=1e-6):
    layer = net.analog_layers[k]
    b0 = layer.bias.copy()
    out = np.zeros_like(b0)
    for j in range(len(b0)):
        losses = []
        for sign in (1.0, -1.0):
            layer.bias = b0.copy()
            layer.bias[j] += sign * h
            losses.append(circuit_loss(net, X, y))
        out[j] = (losses[0] - losses[1]) / (2 * h)
    layer.bias = b0
    return out


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


# -- gradients ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mapping, kind, seed", [
    ("separate", "linear", 0), ("interleaved", "sinh", 0), ("offset", "1T1R", 1),
    ("separate", "linear+programming", 0)])
def test_circuit_gradients_match_central_differences(mapping, kind, seed):
    net, X, y = mlp(mapping, kind, seed=seed)
    res = L.loss_and_gradients(net, X, y, mode="circuit")
    assert res.loss == pytest.approx(circuit_loss(net, X, y), rel=1e-12)
    mapped = L.loss_and_gradients(net, X, y, mode="mapped")
    for k in range(2):
        fd = fd_weights(net, X, y, k)
        assert np.abs(fd).max() > 1e-3  # live units
        assert rel(res.grads[k].weight, fd) < 1e-6
        assert rel(res.grads[k].bias, fd_bias(net, X, y, k)) < 1e-6
        # the wires matter: the ideal-wire gradient is far from the circuit's
        assert rel(mapped.grads[k].weight, fd) > 1e-3


def cnn(seed=1):
    rng = np.random.default_rng(seed)
    cfg = L.TileConfig(rows=8, cols=4, r_wl=20.0, r_bl=20.0)
    net = L.Sequential([
        L.Conv2d(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), padding=1, config=cfg,
                 w_max=4.0),
        L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(rng.normal(size=(3, 2, 2, 2)), rng.normal(size=3), stride=(2, 1),
                 padding=(1, 0, 0, 1), config=cfg, w_max=4.0, stream=1),
        L.AvgPool2d(2, padding=1), L.Flatten(),
        L.Linear(rng.normal(size=(3, 12)), np.zeros(3), config=cfg, w_max=4.0, stream=2),
        L.Softmax(),
    ], input_shape=(None, 1, 6, 6))
    X = rng.uniform(0.0, 1.0, (4, 36))
    return net.calibrate(X), X, rng.integers(0, 3, 4)


def test_convolutional_network_gradients_match_central_differences():
    net, X, y = cnn()
    res = L.loss_and_gradients(net, X, y)
    for k in range(3):
        assert rel(res.grads[k].weight, fd_weights(net, X, y, k)) < 1e-6
        assert rel(res.grads[k].bias, fd_bias(net, X, y, k)) < 1e-6


def test_input_gradient_matches_central_differences():
    net, X, _ = cnn()
    tape = L.record(net, X, "circuit")
    seed = np.random.default_rng(5).standard_normal(tape.output.shape)
    g_x, _ = tape.backward(seed)
    x0 = net.prepare(X)
    fd = np.zeros_like(x0)
    h = 1e-6
    for idx in np.ndindex(x0.shape):
        xp, xm = x0.copy(), x0.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = np.sum(seed * (net(xp, "circuit") - net(xm, "circuit"))) / (2 * h)
    assert rel(g_x, fd) < 1e-6


def test_recorded_forward_pass_is_the_layers_own():
    rng = np.random.default_rng(3)
    cfg = L.TileConfig(rows=4, cols=4, r_wl=10.0, r_bl=10.0, dac=L.DAC(bits=5),
                       adc=L.ADC(bits=6, quantile=0.9), levels=9)
    net = L.Sequential([L.Linear(rng.normal(size=(5, 6)), rng.normal(size=5), config=cfg),
                        L.ReLU(), L.Linear(rng.normal(size=(3, 5)), config=cfg, stream=1)])
    X = rng.normal(size=(9, 6))
    net.calibrate(X[:4])  # the others exceed the DAC range, some currents the ADC's
    for mode in L.MODES:
        assert np.array_equal(L.record(net, X, mode).output, net(X, mode))


@pytest.mark.parametrize("kind", ["linear", "sinh"])
def test_backward_is_of_the_recorded_pass(kind):
    net, X, _ = mlp("separate", kind)
    seed = np.random.default_rng(2).standard_normal((7, 3))
    g_x, grads = L.record(net, X).backward(seed)
    tape = L.record(net, X)
    for layer in net.analog_layers:  # programmed anew between the passes
        layer.reprogram(0.5 * layer.weight)
    g_x2, grads2 = tape.backward(seed)
    assert np.array_equal(g_x, g_x2)
    for a, b in zip(grads, grads2):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)


def test_converters_are_straight_through():
    """With a DAC and a clipping ADC the gradients are those of the converter-free layer fed
    the quantized inputs, with zero gradient where either converter clipped."""
    rng = np.random.default_rng(4)
    W = rng.normal(size=(3, 6))
    base = L.TileConfig(rows=6, cols=3, r_wl=20.0, r_bl=20.0)
    plain = L.Linear(W, config=base, x_max=1.0)
    x = rng.uniform(-1.3, 1.3, (8, 6))
    xq = np.clip(np.rint(np.clip(x, -1, 1) * 15) / 15, -1, 1)  # 5-bit signed DAC, by hand
    i = plain.tile_currents(xq)
    d = i[0] - i[1]  # (K, 3): one row block, G+ and G- tiles
    full = 0.5 * np.abs(d).max()
    conv = L.Linear(W, config=base.replace(dac=L.DAC(bits=5), adc=L.ADC(bits=8, range=full)),
                    x_max=1.0)
    c = rng.standard_normal((8, 3))
    g_x, (grad,) = L.record(conv, x).backward(c)
    ref_x, (ref,) = L.record(plain, xq).backward(c * (np.abs(d) <= full))
    assert (np.abs(d) > full).any() and (np.abs(x) > 1).any()
    assert rel(grad.weight, ref.weight) < 1e-12
    assert rel(g_x, ref_x * (np.abs(x) <= 1)) < 1e-12


def test_programming_slope_is_the_per_device_factor():
    cfg = L.TileConfig(rows=4, cols=4, variability=L.Variability(0.2, distribution="lognormal"),
                       drift=L.Drift(t=500.0, nu=0.05, nu_std=0.03), faults=L.Faults(0.1, 0.1))
    layer = L.Linear(np.random.default_rng(6).normal(size=(5, 7)), config=cfg)
    core = layer.core
    slope = backprop.programming_slope(core)
    stuck = (core.devices == cfg.g_max) | (core.devices == cfg.g_min)
    assert stuck.sum() == layer.programming.stuck_on + layer.programming.stuck_off > 0
    # lognormal spread and drift multiply each device by a factor: programmed / target
    ratio = core.devices / core.target
    assert np.allclose(slope[~stuck], ratio[~stuck], rtol=1e-8, atol=0)
    assert np.all(slope[stuck] == 0)


@pytest.mark.parametrize("mapping", ["separate", "interleaved", "offset"])
def test_differential_adjoint_is_the_transpose(mapping):
    layer = L.Linear(np.ones((7, 5)), config=L.TileConfig(rows=3, cols=4, mapping=mapping))
    core = layer.core
    rng = np.random.default_rng(7)
    i = rng.standard_normal((core.layout.n_tiles, 2, 4))
    gd = rng.standard_normal((core.layout.n_row_blocks, 2, 7))
    lhs = np.sum(core._differential(i) * gd)
    rhs = np.sum(i * backprop.differential_adjoint(gd, core))
    assert lhs == pytest.approx(rhs, rel=1e-13)


# -- fine-tuning -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_mlp():
    pytest.importorskip("onnx")
    pytest.importorskip("sklearn")
    X, y = L.dataset("digits", "train")
    cfg = L.TileConfig(rows=64, cols=64, r_wl=75.0, r_bl=75.0)
    net = L.load_onnx(L.model_path("mlp"), config=cfg).calibrate(X[:200])
    return net, X, y


def test_finetuning_lowers_the_exact_circuit_loss(digits_mlp):
    net, X, y = digits_mlp
    Xb, yb = X[:128], y[:128]
    before = circuit_loss(net, Xb, yb)
    tuned = L.finetune(net, Xb, yb, epochs=3, batch_size=128, optimizer=L.Adam(lr=1e-3))
    assert tuned.steps == 3 and tuned.losses[0] == pytest.approx(before, rel=1e-12)
    after = circuit_loss(tuned.net, Xb, yb)
    assert after < before - 0.02
    # the network given is left as it was, the tuned one programs its new weights
    assert circuit_loss(net, Xb, yb) == before
    assert not np.array_equal(tuned.net[0].core.G, net[0].core.G)
    # a step on the ideal network's loss does not see the circuit: it lowers the circuit
    # loss by less
    ideal = L.finetune(net, Xb, yb, mode="ideal", epochs=3, batch_size=128,
                       optimizer=L.Adam(lr=1e-3))
    assert circuit_loss(ideal.net, Xb, yb) > after


def test_finetuning_keeps_weights_programmable():
    net, X, y = mlp("offset", "linear")
    tuned = L.finetune(net, X, y, epochs=20, batch_size=7, optimizer=L.SGD(lr=50.0))
    for layer in tuned.net.analog_layers:
        lo, hi = layer.core.weight_range
        assert lo <= layer.weight.min() and layer.weight.max() <= hi
        fresh = L.Linear(layer.weight, config=layer.config, w_max=4.0, stream=layer.core.stream)
        assert np.array_equal(fresh.core.G, layer.core.G)  # reprogram = mapping afresh


def test_optimisers_closed_form():
    p, g = [np.array([1.0, -2.0])], [np.array([0.5, -4.0])]
    (a1,) = L.Adam(lr=0.1, eps=1e-12).step(p, g)  # first step: lr g / |g|
    assert np.allclose(a1, p[0] - 0.1 * np.sign(g[0]), rtol=1e-12)
    sgd = L.SGD(lr=0.1, momentum=0.5)
    (s1,) = sgd.step(p, g)
    (s2,) = sgd.step([s1], g)
    assert np.allclose(s2, p[0] - 0.1 * g[0] - 0.1 * 1.5 * g[0], rtol=1e-12)


# -- compensation and column gains ---------------------------------------------------------------

def test_compensated_linear_layer_computes_its_mapped_outputs():
    rng = np.random.default_rng(8)
    W = rng.normal(size=(6, 10))
    X = rng.uniform(0.0, 1.0, (20, 10))
    cfg = L.TileConfig(rows=8, cols=4, r_wl=5.0, r_bl=5.0)  # edge tiles in both directions
    plain = L.Linear(W, config=cfg, w_max=2 * np.abs(W).max()).calibrate(X)
    comp = L.Linear(W, config=cfg.replace(compensate=True), w_max=2 * np.abs(W).max())
    comp.calibrate(X)
    ref = plain(X, "mapped")
    assert np.array_equal(comp(X, "mapped"), ref)  # the ideal-wire reference is unchanged
    assert rel(plain(X, "circuit"), ref) > 1e-3
    assert rel(comp(X, "circuit"), ref) < 1e-10
    report = comp.compensation
    assert report.converged.all() and not report.at_upper.any()
    g = np.stack([t.g for t in comp.tiles])
    assert cfg.g_min <= g.min() and g.max() <= cfg.g_max


def nonlinear_layers(kind, **changes):
    rng = np.random.default_rng(9)
    W = rng.normal(size=(8, 16))  # full 8 x 4 tiles: every row carries inputs
    X = rng.uniform(0.0, 1.0, (6, 16))  # fewer inputs than word lines
    cfg = L.TileConfig(rows=8, cols=4, r_wl=5.0, r_bl=5.0, mapping="offset",
                       **dict(KINDS[kind], **changes))
    plain = L.Linear(W, config=cfg, w_max=2 * np.abs(W).max()).calibrate(X)
    comp = L.Linear(W, config=cfg.replace(compensate=True), w_max=2 * np.abs(W).max())
    return plain, comp.calibrate(X), X


@pytest.mark.parametrize("kind, changes", [("sinh", {}), ("1T1R", {"v_gate": 2.5})])
def test_compensated_nonlinear_layer_matches_on_calibration_inputs(kind, changes):
    plain, comp, X = nonlinear_layers(kind, **changes)
    ref = plain.tile_currents(X, "mapped")
    assert rel(plain.tile_currents(X, "circuit"), ref) > 1e-2
    assert rel(comp.tile_currents(X, "circuit"), ref) < 1e-9
    assert comp.compensation.converged.all()


def test_unreachable_compensation_reports_the_cells_at_a_bound():
    _, comp, _ = nonlinear_layers("1T1R")  # v_gate 1.8 V: the transistors limit the currents
    report = comp.compensation
    missed = ~report.converged
    assert missed.any() and report.at_upper[missed].any()
    assert (report.error_after < report.error_before).all()


def test_column_gains_are_least_squares_fits():
    rng = np.random.default_rng(10)
    W = rng.normal(size=(5, 9))
    X = rng.uniform(0.0, 1.0, (12, 9))
    cfg = L.TileConfig(rows=6, cols=4, r_wl=20.0, r_bl=20.0, column_gain=True)
    layer = L.Linear(W, config=cfg).calibrate(X)
    T = cs.transfer_matrix(layer.circuit_tile())
    gains = np.empty(T.shape[:2])
    for b, j in np.ndindex(gains.shape):  # min |gain T[j] - G[:, j]|, by lstsq
        gains[b, j] = np.linalg.lstsq(T[b, j][:, None], layer.core.G[b][:, j], rcond=None)[0][0]
    assert np.allclose(layer.core.circuit_program().gain, gains, rtol=1e-10, atol=0)
    plain = L.Linear(W, config=cfg.replace(column_gain=False)).calibrate(X)
    i = plain.tile_currents(X) * gains[:, None, :]
    d = i[0::2] - i[1::2]  # G+ minus G- tile of each (row block, column block)
    lay = layer.core.layout
    R, C = lay.n_row_blocks, lay.n_col_blocks
    d = d.reshape(R, C, len(X), 4).transpose(0, 2, 1, 3).reshape(R, len(X), C * 4)
    scale = layer.core.scaling.weight_per_siemens(cfg) * layer.core.x_max / cfg.v_read
    y = d.sum(axis=0)[:, :5] * scale
    assert rel(layer(X, "circuit"), y) < 1e-12
    assert rel(layer(X, "circuit"), layer(X, "mapped")) < rel(plain(X, "circuit"),
                                                              plain(X, "mapped"))


def test_nonlinear_column_gains_fit_the_calibration_inputs():
    rng = np.random.default_rng(11)
    W = rng.normal(size=(4, 8))
    X = rng.uniform(0.0, 1.0, (10, 8))
    cfg = L.TileConfig(rows=8, cols=4, r_wl=5.0, r_bl=5.0, column_gain=True, **KINDS["sinh"])
    layer = L.Linear(W, config=cfg).calibrate(X)
    v = layer.tile_voltages(X)
    i = layer.tile_currents(X)
    ideal = layer.tile_currents(X, "mapped")
    gain = layer.core.circuit_program().gain
    for b, j in np.ndindex(gain.shape):
        ref = np.linalg.lstsq(i[b, :, j][:, None], ideal[b, :, j], rcond=None)[0][0]
        assert gain[b, j] == pytest.approx(ref, rel=1e-10)
    assert v.shape[1] == 10


# -- errors ------------------------------------------------------------------------------------

def test_bad_configurations_are_errors():
    with pytest.raises(TypeError, match="compensate must be True or False"):
        L.TileConfig(compensate=1)
    with pytest.raises(TypeError, match="column_gain"):
        L.TileConfig(column_gain="yes")
    with pytest.raises(ValueError, match="compensate_inputs"):
        L.TileConfig(compensate_inputs=0)
    with pytest.raises(ValueError, match="jointly"):
        L.TileConfig(compensate=True, column_gain=True, device=cs.devices.Sinh(a=3.0))
    assert "compensated + column gains" in L.TileConfig(compensate=True,
                                                        column_gain=True).describe()


def test_nonlinear_compensation_needs_calibration_inputs():
    cfg = L.TileConfig(rows=4, cols=4, compensate=True, device=cs.devices.Sinh(a=3.0))
    layer = L.Linear(np.ones((2, 3)), config=cfg, x_max=1.0)  # calibrated, but on no inputs
    with pytest.raises(ValueError, match="call calibrate"):
        layer(np.ones((1, 3)), "circuit")


def test_training_errors():
    net, X, y = mlp("separate", "linear")
    comp = L.Sequential([L.Linear(np.ones((2, 3)), config=L.TileConfig(compensate=True),
                                  x_max=1.0)])
    with pytest.raises(ValueError, match="compensate=False"):
        L.loss_and_gradients(comp, np.ones((1, 3)), [0])
    with pytest.raises(ValueError, match="labels must be 7 integers"):
        L.loss_and_gradients(net, X, y[:3])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        L.loss_and_gradients(net, X, y + 3)
    with pytest.raises(ValueError, match="grad_output has shape"):
        L.record(net, X).backward(np.ones((7, 2)))
    with pytest.raises(ValueError, match="beyond the programmable range"):
        net[0].reprogram(net[0].weight * 10)
    with pytest.raises(ValueError, match="new weights have shape"):
        net[0].reprogram(net[0].weight[:2])
    with pytest.raises(ValueError, match="lr must be > 0"):
        L.Adam(lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        L.SGD(momentum=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        L.finetune(net, X, y, batch_size=0)


# -- PyTorch -----------------------------------------------------------------------------------

def test_torch_module_backward_is_the_tapes():
    torch = pytest.importorskip("torch")
    net, X, y = mlp("interleaved", "linear")
    module = L.to_torch(net)
    p = module(torch.tensor(X))
    loss = -torch.log(p[torch.arange(len(y)), torch.tensor(y)]).mean()
    loss.backward()
    ref = L.loss_and_gradients(net, X, y)
    assert loss.item() == pytest.approx(ref.loss, rel=1e-12)
    for k, g in enumerate(ref.grads):
        assert np.allclose(module.params[2 * k].grad.numpy(), g.weight, rtol=1e-10, atol=0)
        assert np.allclose(module.params[2 * k + 1].grad.numpy(), g.bias, rtol=1e-10, atol=0)
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    opt.step()
    after = module(torch.tensor(X)).detach().numpy()
    assert cross_entropy(after, y) < ref.loss


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_torch_bridge_without_torch_says_what_to_install():
    net, _, _ = mlp("separate", "linear")
    with pytest.raises(ImportError, match="pip install torch"):
        L.to_torch(net)
