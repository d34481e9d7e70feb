"""Model import: ONNX (against onnxruntime), skl2onnx exports, and the ``.npz`` layout."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from circuitsim import layers as L

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper


def _ort(model, x):
    if hasattr(model, "SerializeToString"):
        data = model.SerializeToString()
    else:
        with open(model, "rb") as f:
            data = f.read()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


@pytest.fixture(scope="module")
def digits():
    return L.dataset("digits", "test")


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_shipped_models_match_onnxruntime(name, digits):
    X, _ = digits
    net = L.load_onnx(L.model_path(name))
    x = net.prepare(X).astype(np.float32)  # the model is float32; onnxruntime computes in it
    theirs = _ort(str(L.model_path(name)), x)[0]
    ours = net(x.astype(np.float64))
    assert ours.shape == theirs.shape == (len(X), 10)
    # float64 against float32 arithmetic on the same float32 numbers
    assert np.abs(ours - theirs).max() < 1e-5
    np.testing.assert_array_equal(np.argmax(ours, 1), np.argmax(theirs, 1))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_shipped_npz_equals_shipped_onnx(name, digits):
    X, _ = digits
    a, b = L.load_onnx(L.model_path(name)), L.load_npz(L.model_path(name, "npz"))
    assert [type(x).__name__ for x in a] == [type(x).__name__ for x in b]
    np.testing.assert_allclose(a(X[:50]), b(X[:50]), rtol=1e-13, atol=1e-15)


@pytest.fixture(scope="module")
def sklearn_mlp(digits):
    nn = pytest.importorskip("sklearn.neural_network")
    from sklearn.exceptions import ConvergenceWarning

    X, y = L.dataset("digits", "train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return nn.MLPClassifier((24, 12), max_iter=300, random_state=0).fit(X, y)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_skl2onnx_mlpclassifier(sklearn_mlp, digits, dtype, tol):
    skl2onnx = pytest.importorskip("skl2onnx")
    X, _ = digits
    model = skl2onnx.to_onnx(sklearn_mlp, X[:1].astype(dtype),
                             options={id(sklearn_mlp): {"zipmap": False}})
    net = L.load_onnx(model)  # follows the probabilities output, not the integer label
    label, proba = _ort(model, X.astype(dtype))
    ours = net(X.astype(dtype).astype(np.float64))
    assert np.abs(ours - proba).max() < tol
    np.testing.assert_array_equal(np.argmax(ours, 1), label)
    np.testing.assert_allclose(ours, sklearn_mlp.predict_proba(X), atol=10 * tol)
    assert [type(x).__name__ for x in net] == ["Linear", "ReLU", "Linear", "ReLU", "Linear",
                                              "Softmax"]


def _model(nodes, inits, in_shape, opset=13, out="y"):
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", None])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32 if k[0] != "s" else np.int64), k)
         for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_all_operators_against_onnxruntime():
    rng = np.random.default_rng(0)
    inits = {"cw": rng.normal(size=(4, 2, 3, 3)), "cb": rng.normal(size=4),
             "shape": np.array([0, -1]), "mw": rng.normal(size=(24, 5)), "mb": rng.normal(size=5),
             "gw": rng.normal(size=(3, 5)), "gb": rng.normal(size=(1, 3))}
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[1, 0, 2, 1],
                         strides=[1, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="maxpool", kernel_shape=[2, 2],
                         strides=[2, 1], pads=[1, 1, 0, 0]),
        helper.make_node("AveragePool", ["p"], ["a"], name="avgpool", kernel_shape=[2, 2],
                         strides=[2, 2], pads=[0, 1, 1, 0]),
        helper.make_node("Identity", ["a"], ["i"], name="identity"),
        helper.make_node("Reshape", ["i", "shape"], ["f"], name="reshape"),
        helper.make_node("MatMul", ["f", "mw"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mb", "mm"], ["ad"], name="add"),
        helper.make_node("Gemm", ["ad", "gw", "gb"], ["g"], name="gemm", transB=1, alpha=0.5,
                         beta=2.0),
        helper.make_node("Flatten", ["g"], ["fl"], name="flatten"),
        helper.make_node("Softmax", ["fl"], ["y"], name="softmax"),
    ]
    model = _model(nodes, inits, ["N", 2, 9, 8])
    onnx.checker.check_model(model)
    x = rng.normal(size=(3, 2, 9, 8)).astype(np.float32)
    theirs = _ort(model, x)[0]
    net = L.load_onnx(model)
    assert np.abs(net(x.astype(np.float64)) - theirs).max() < 1e-5
    assert [type(x).__name__ for x in net] == ["Conv2d", "ReLU", "MaxPool2d", "AvgPool2d",
                                              "Reshape", "Linear", "Linear", "Flatten", "Softmax"]
    assert net.input_shape == (None, 2, 9, 8)


def test_legacy_softmax_opset():
    w = np.random.default_rng(1).normal(size=(4, 3))
    model = _model([helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                    helper.make_node("Softmax", ["m"], ["y"], name="sm")], {"w": w}, ["N", 4],
                   opset=11)
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    assert np.abs(L.load_onnx(model)(x.astype(np.float64)) - _ort(model, x)[0]).max() < 1e-6


def test_unsupported_operator_is_named():
    model = _model([helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                    helper.make_node("Tanh", ["m"], ["y"], name="squash")],
                   {"w": np.ones((4, 3))}, ["N", 4])
    with pytest.raises(ValueError, match=r"node 'squash' \(Tanh\): unsupported operator"):
        L.load_onnx(model)


@pytest.mark.parametrize("node, message", [
    (helper.make_node("Conv", ["x", "w4"], ["y"], name="grouped", group=2),
     r"'grouped' \(Conv\): attribute group=2"),
    (helper.make_node("Add", ["x", "x"], ["y"], name="residual"),
     r"'residual' \(Add\): takes 2 non-constant inputs"),
    (helper.make_node("MaxPool", ["x"], ["y"], name="ceil", kernel_shape=[2, 2], ceil_mode=1),
     r"'ceil' \(MaxPool\): attribute ceil_mode=1"),
    (helper.make_node("Add", ["x", "w4"], ["y"], name="lonely"),
     r"'lonely' \(Add\): only a constant bias added right after MatMul or Gemm"),
])
def test_unsupported_attributes_and_graphs(node, message):
    model = _model([node], {"w4": np.ones((2, 1, 1, 1))}, ["N", 2, 4, 4])
    with pytest.raises(ValueError, match=message):
        L.load_onnx(model)


def test_npz_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(3)
    net = L.Sequential([
        L.Conv2d(rng.normal(size=(3, 1, 2, 2)), rng.normal(size=3), stride=2, padding=(1, 0)),
        L.ReLU(), L.AvgPool2d(2, 1, count_include_pad=True), L.MaxPool2d(1),
        L.Reshape([0, -1]), L.Flatten(), L.Linear(rng.normal(size=(2, 9)), [0.5, -0.5]),
        L.Softmax(),
    ], input_shape=(None, 1, 6, 4))
    path = tmp_path / "net.npz"
    L.save_npz(net, path)
    back = L.load_npz(path)
    x = rng.normal(size=(4, 1, 6, 4))
    np.testing.assert_array_equal(back(x), net(x))
    assert back.input_shape == (None, 1, 6, 4)
    L.save_onnx(net, tmp_path / "net.onnx")  # and the same network through onnxruntime
    theirs = _ort(str(tmp_path / "net.onnx"), x.astype(np.float32))[0]
    assert np.abs(net(x.astype(np.float32).astype(np.float64)) - theirs).max() < 1e-6
    bad = io.BytesIO()
    np.savez(bad, format=np.array("something else"))
    bad.seek(0)
    with pytest.raises(ValueError, match="not a circuitsim.layers .npz file"):
        L.load_npz(bad)
    odd = io.BytesIO()
    np.savez(odd, format=np.array("circuitsim.layers/1"),
             spec=np.array('{"layers": [{"type": "relu"}, {"type": "gelu"}]}'))
    odd.seek(0)
    with pytest.raises(ValueError, match="layer 1 has unknown type 'gelu'"):
        L.load_npz(odd)


def test_imported_layers_draw_distinct_streams():
    cfg = L.TileConfig(rows=64, cols=64, variability=L.Variability(0.1), seed=1)
    net = L.load_onnx(L.model_path("mlp"), config=cfg)
    a, b = net.analog_layers
    assert (a.core.stream, b.core.stream) == (0, 1)
    again = L.load_npz(L.model_path("mlp", "npz"), config=cfg)
    np.testing.assert_array_equal(again.analog_layers[1].core.devices, b.core.devices)
