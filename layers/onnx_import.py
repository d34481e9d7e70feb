"""Import ONNX networks (the ``onnx`` package): a chain of supported operators.

Supported: Gemm, MatMul (+ Add of a constant bias), Conv, Relu, MaxPool, AveragePool, Flatten,
Reshape, Softmax, and the no-ops Identity, Dropout and Cast to a floating type. The importer
follows the graph backwards from one output (default: the first floating-point output, so a
classifier's probabilities rather than its integer label) and needs a chain: every node takes the
previous node's output and constants (initializers or Constant nodes). An unsupported operator,
attribute or graph shape is an error naming the node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import TileConfig
from .digital import AvgPool2d, Flatten, MaxPool2d, ReLU, Reshape, Softmax
from .layers import Conv2d, Linear
from .network import Sequential

__all__ = ["load_onnx"]

SUPPORTED = ("Gemm", "MatMul", "Add", "Conv", "Relu", "MaxPool", "AveragePool", "Flatten",
             "Reshape", "Softmax", "Identity", "Dropout", "Cast")
_FLOATS = (1, 10, 11)  # TensorProto FLOAT, FLOAT16, DOUBLE


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportError("load_onnx needs the onnx package: pip install 'circuitsim[layers]'") \
            from None
    return onnx, numpy_helper


class _Node:
    """An ONNX node with its attributes decoded, for error messages and conversion."""

    def __init__(self, node, onnx):
        self.op = node.op_type
        self.name = node.name or f"<unnamed {node.op_type} -> {node.output[0]}>"
        self.inputs = [i for i in node.input]
        self.outputs = list(node.output)
        self.attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        self.domain = node.domain

    def fail(self, message: str):
        raise ValueError(f"ONNX node {self.name!r} ({self.op}): {message}")

    def attr(self, name, default=None):
        value = self.attrs.get(name, default)
        if isinstance(value, bytes):
            value = value.decode()
        return value

    def only(self, **allowed):
        """Fail for attributes outside their allowed values (``name=(values...)``)."""
        for name, values in allowed.items():
            value = self.attr(name, values[0])
            value = tuple(value) if isinstance(value, list) else value
            if value not in values:
                self.fail(f"attribute {name}={value!r} is not supported (only {values[0]!r})")


def _pads(node: _Node) -> tuple:
    pads = node.attr("pads", [0, 0, 0, 0])
    if len(pads) != 4:
        node.fail(f"pads {pads} are not those of a 2-D operator")
    top, left, bottom, right = pads
    return (top, left, bottom, right)


def _check_2d(node: _Node, kernel):
    if len(kernel) != 2:
        node.fail(f"kernel_shape {kernel} is not 2-D (only 2-D images are supported)")


def _pool(node: _Node):
    node.only(auto_pad=("NOTSET", "VALID"), ceil_mode=(0,), dilations=(None, (1, 1)))
    kernel = node.attr("kernel_shape")
    _check_2d(node, kernel)
    strides = node.attr("strides", [1, 1])
    if len(node.outputs) > 1 and node.outputs[1]:
        node.fail("the Indices output is not supported")
    if node.op == "MaxPool":
        return MaxPool2d(kernel, strides, _pads(node))
    return AvgPool2d(kernel, strides, _pads(node), bool(node.attr("count_include_pad", 0)))


def _graph_chain(graph, consts, output, onnx):
    """The nodes computing ``output`` from the single graph input, in order; and that input."""
    nodes = [_Node(n, onnx) for n in graph.node if n.op_type != "Constant"]
    producer = {o: node for node in nodes for o in node.outputs}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise ValueError(f"ONNX graph has {len(inputs)} non-constant inputs "
                         f"({[i.name for i in inputs]}); one is supported")
    chain, name = [], output
    while name != inputs[0].name:
        node = producer.get(name)
        if node is None:
            raise ValueError(f"ONNX graph: tensor {name!r} has no producer and is not the input")
        live = [i for i in node.inputs if i and i not in consts]
        if len(live) != 1:
            node.fail(f"takes {len(live)} non-constant inputs {live}; only a chain of single-input "
                      "operators is supported")
        chain.append(node)
        name = live[0]
    return chain[::-1], inputs[0]


def _const(node: _Node, consts, index: int, what: str):
    if index >= len(node.inputs) or not node.inputs[index]:
        return None
    name = node.inputs[index]
    if name not in consts:
        node.fail(f"its {what} ({name!r}) must be a constant (initializer)")
    return np.asarray(consts[name], dtype=np.float64)


def _convert(chain, consts, opset: int):
    """Recipes: ``("linear", W, b, fusable)``, ``("conv", W, b, stride, pads)`` or a digital
    layer, in order."""
    recipes = []
    for node in chain:
        if node.domain not in ("", "ai.onnx"):
            node.fail(f"operator domain {node.domain!r} is not supported")
        op = node.op
        if op == "Gemm":
            node.only(transA=(0,))
            B = _const(node, consts, 1, "B (weights)")
            if B is None or B.ndim != 2:
                node.fail("B must be a 2-D constant")
            Bp = B.T if node.attr("transB", 0) else B
            W = (node.attr("alpha", 1.0) * Bp).T
            C = _const(node, consts, 2, "C (bias)")
            n = W.shape[0]
            if C is not None and C.size not in (1, n):
                node.fail(f"bias C of shape {C.shape} does not fit {n} outputs")
            b = (np.zeros(n) if C is None
                 else node.attr("beta", 1.0) * np.broadcast_to(C.reshape(-1), (n,)))
            recipes.append(["linear", W, np.array(b, dtype=np.float64), C is None, node.name])
        elif op == "MatMul":
            B = _const(node, consts, 1, "second operand (weights)")
            if B is None or B.ndim != 2:
                node.fail("the weights must be a 2-D constant second operand")
            recipes.append(["linear", B.T, np.zeros(B.shape[1]), True, node.name])
        elif op == "Add":
            prev = recipes[-1] if recipes else None
            c = next((np.asarray(consts[i], dtype=np.float64) for i in node.inputs
                      if i in consts), None)
            if not (isinstance(prev, list) and prev[0] == "linear" and prev[3]) or c is None:
                node.fail("only a constant bias added right after MatMul or Gemm is supported")
            n = prev[1].shape[0]
            if c.size not in (1, n):
                node.fail(f"bias of shape {c.shape} does not fit {n} outputs")
            prev[2] = prev[2] + np.broadcast_to(c.reshape(-1), (n,))
            prev[3] = False
        elif op == "Conv":
            node.only(auto_pad=("NOTSET", "VALID"), group=(1,), dilations=(None, (1, 1)))
            W = _const(node, consts, 1, "W (weights)")
            if W is None or W.ndim != 4:
                node.fail("the weights must be a 4-D constant (2-D convolution)")
            b = _const(node, consts, 2, "B (bias)")
            recipes.append(["conv", W, b, tuple(node.attr("strides", [1, 1])), _pads(node),
                            node.name])
        elif op == "Relu":
            recipes.append(ReLU())
        elif op in ("MaxPool", "AveragePool"):
            recipes.append(_pool(node))
        elif op == "Flatten":
            recipes.append(Flatten(node.attr("axis", 1)))
        elif op == "Reshape":
            node.only(allowzero=(0,))
            shape = _const(node, consts, 1, "shape")
            recipes.append(Reshape(shape.astype(np.int64)))
        elif op == "Softmax":
            axis = node.attr("axis", -1 if opset >= 13 else 1)
            if opset < 13 and axis not in (-1, 1):
                node.fail(f"axis {axis} before opset 13 (coerced to 2-D) is not supported")
            recipes.append(Softmax(-1 if opset < 13 else axis))
        elif op in ("Identity", "Dropout"):
            if op == "Dropout" and len(node.outputs) > 1 and node.outputs[1]:
                node.fail("the mask output is not supported")
        elif op == "Cast":
            if node.attr("to") not in _FLOATS:
                node.fail(f"cast to type {node.attr('to')} (not a floating type) is not supported")
        else:
            node.fail(f"unsupported operator (supported: {', '.join(SUPPORTED)})")
    return recipes


def load_onnx(path, config: TileConfig | None = None, *, output: str | None = None) -> Sequential:
    """Read an ONNX model as a :class:`~.network.Sequential` mapped with ``config``.

    Parameters
    ----------
    path : str, Path or onnx.ModelProto
    config : TileConfig, optional
        Default ``TileConfig()``. Analog layer ``j`` draws random stream ``j``.
    output : str, optional
        Graph output to compute; default the first floating-point one.
    """
    onnx, numpy_helper = _onnx()
    model = path if isinstance(path, onnx.ModelProto) else onnx.load(str(Path(path)))
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            attr = {a.name: a for a in n.attribute}
            if "value" not in attr:
                raise ValueError(f"ONNX node {n.name!r} (Constant): only the 'value' form is "
                                 "supported")
            consts[n.output[0]] = numpy_helper.to_array(attr["value"].t)
    outputs = list(graph.output)
    if output is None:
        floats = [o for o in outputs if o.type.tensor_type.elem_type in _FLOATS]
        if not floats:
            raise ValueError("ONNX graph has no floating-point output")
        output = floats[0].name
    elif output not in [o.name for o in outputs]:
        raise ValueError(f"ONNX graph has no output {output!r} (outputs: "
                         f"{[o.name for o in outputs]})")
    chain, graph_input = _graph_chain(graph, consts, output, onnx)
    layers, stream = [], 0
    for r in _convert(chain, consts, opset):
        if isinstance(r, list) and r[0] == "linear":
            layers.append(Linear(r[1], r[2], config=config, stream=stream, name=r[4]))
            stream += 1
        elif isinstance(r, list):
            layers.append(Conv2d(r[1], r[2], r[3], r[4], config=config, stream=stream,
                                 name=r[5]))
            stream += 1
        else:
            layers.append(r)
    dims = graph_input.type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    if shape:
        shape = (None,) + shape[1:]
    return Sequential(layers, shape or None)
