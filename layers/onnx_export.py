"""Write a :class:`~.network.Sequential` as an ONNX model (opset 13) of its ideal weights.

Linear becomes Gemm (``transB=1``), Conv2d Conv, and the digital layers Relu, MaxPool,
AveragePool, Flatten, Reshape and Softmax, so :func:`~.onnx_import.load_onnx` reads it back and
onnxruntime runs it.
"""

from __future__ import annotations

import numpy as np

from .digital import AvgPool2d, Flatten, MaxPool2d, ReLU, Reshape, Softmax
from .layers import Conv2d, Linear
from .network import Sequential

__all__ = ["save_onnx"]


def save_onnx(net: Sequential, path, *, dtype=np.float32, name: str = "circuitsim") -> None:
    """Write ``net`` to ``path``; weights in ``dtype`` (float32, or float64 for a double model).

    ``net.input_shape`` gives the graph input's shape (batch axis symbolic, ``"N"``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}[np.dtype(dtype).type]
    nodes, inits = [], []
    x = "input"

    def const(label, value, kind=dtype):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=kind), label))
        return label

    for k, layer in enumerate(net.layers):
        y = f"t{k}"
        if isinstance(layer, Linear):
            ins = [x, const(f"W{k}", layer.weight), const(f"b{k}", layer.bias)]
            nodes.append(helper.make_node("Gemm", ins, [y], name=f"gemm{k}", transB=1))
        elif isinstance(layer, Conv2d):
            ins = [x, const(f"W{k}", layer.weight), const(f"b{k}", layer.bias)]
            nodes.append(helper.make_node("Conv", ins, [y], name=f"conv{k}",
                                          kernel_shape=list(layer.kernel),
                                          strides=list(layer.stride), pads=list(layer.padding)))
        elif isinstance(layer, ReLU):
            nodes.append(helper.make_node("Relu", [x], [y], name=f"relu{k}"))
        elif isinstance(layer, (MaxPool2d, AvgPool2d)):
            op = "MaxPool" if isinstance(layer, MaxPool2d) else "AveragePool"
            extra = ({"count_include_pad": int(layer.count_include_pad)}
                     if isinstance(layer, AvgPool2d) else {})
            nodes.append(helper.make_node(op, [x], [y], name=f"pool{k}",
                                          kernel_shape=list(layer.kernel),
                                          strides=list(layer.stride), pads=list(layer.padding),
                                          **extra))
        elif isinstance(layer, Flatten):
            nodes.append(helper.make_node("Flatten", [x], [y], name=f"flatten{k}",
                                          axis=layer.axis))
        elif isinstance(layer, Reshape):
            shape = const(f"shape{k}", layer.shape, np.int64)
            nodes.append(helper.make_node("Reshape", [x, shape], [y], name=f"reshape{k}"))
        elif isinstance(layer, Softmax):
            nodes.append(helper.make_node("Softmax", [x], [y], name=f"softmax{k}",
                                          axis=layer.axis))
        else:
            raise TypeError(f"save_onnx: layer {k} ({type(layer).__name__}) has no ONNX form")
        x = y
    if net.input_shape is None:
        raise ValueError("save_onnx: the network needs an input_shape, e.g. (None, 64)")
    shape = ["N", *net.input_shape[1:]]
    out_shape = ["N", *net(np.zeros([1, *net.input_shape[1:]])).shape[1:]]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", elem, shape)],
        [helper.make_tensor_value_info(x, elem, out_shape)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="circuitsim.layers")
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
