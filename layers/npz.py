"""Networks as ``.npz`` files (numpy's zipped arrays), readable without circuitsim.

Layout of a file written by :func:`save_npz` and read by :func:`load_npz`:

- ``format``: the string ``"circuitsim.layers/1"``;
- ``spec``: a JSON string ``{"input_shape": [null, 1, 8, 8], "layers": [...]}``, one dict per
  layer in order, with ``"type"`` one of

  ===============  ==============================================================================
  ``linear``       arrays ``layer{k}.weight`` ``(out, in)`` and ``layer{k}.bias`` ``(out,)``
  ``conv2d``       arrays ``layer{k}.weight`` ``(out_c, in_c, kh, kw)``, ``layer{k}.bias``;
                   keys ``stride`` ``[sh, sw]``, ``padding`` ``[top, left, bottom, right]``
  ``relu``         no keys
  ``maxpool2d``    ``kernel``, ``stride``, ``padding`` as above
  ``avgpool2d``    the same and ``count_include_pad`` (bool)
  ``flatten``      ``axis``
  ``reshape``      ``shape`` (ONNX semantics: 0 copies a dimension, -1 is inferred)
  ``softmax``      ``axis``
  ===============  ==============================================================================

  (``k`` is the layer's position, from 0). ``input_shape`` may be null.

>>> import io, numpy as np
>>> from circuitsim import layers as L
>>> net = L.Sequential([L.Linear(np.eye(2), [0.0, 1.0]), L.ReLU()], input_shape=(None, 2))
>>> buf = io.BytesIO(); L.save_npz(net, buf); _ = buf.seek(0)
>>> L.load_npz(buf)(np.array([[1.0, -3.0]]))
array([[1., 0.]])
"""

from __future__ import annotations

import json

import numpy as np

from .config import TileConfig
from .digital import AvgPool2d, Flatten, MaxPool2d, ReLU, Reshape, Softmax
from .layers import Conv2d, Linear
from .network import Sequential

__all__ = ["FORMAT", "load_npz", "save_npz"]

FORMAT = "circuitsim.layers/1"

_DIGITAL = {
    "relu": lambda s: ReLU(),
    "maxpool2d": lambda s: MaxPool2d(s["kernel"], s["stride"], s["padding"]),
    "avgpool2d": lambda s: AvgPool2d(s["kernel"], s["stride"], s["padding"],
                                     s.get("count_include_pad", False)),
    "flatten": lambda s: Flatten(s.get("axis", 1)),
    "reshape": lambda s: Reshape(s["shape"]),
    "softmax": lambda s: Softmax(s.get("axis", -1)),
}


def save_npz(net: Sequential, path) -> None:
    """Write ``net`` (its ideal weights, not the programmed conductances) in the layout above."""
    arrays, specs = {}, []
    for k, layer in enumerate(net.layers):
        if isinstance(layer, Linear):
            specs.append({"type": "linear"})
        elif isinstance(layer, Conv2d):
            specs.append({"type": "conv2d", "stride": list(layer.stride),
                          "padding": list(layer.padding)})
        elif hasattr(layer, "spec"):
            specs.append(layer.spec())
            continue
        else:
            raise TypeError(f"save_npz: layer {k} ({type(layer).__name__}) has no npz form")
        arrays[f"layer{k}.weight"] = layer.weight
        arrays[f"layer{k}.bias"] = layer.bias
    spec = {"input_shape": None if net.input_shape is None else list(net.input_shape),
            "layers": specs}
    np.savez(path, format=np.array(FORMAT), spec=np.array(json.dumps(spec)), **arrays)


def load_npz(path, config: TileConfig | None = None) -> Sequential:
    """Read a network written in the layout above; analog layers are mapped with ``config``
    (default ``TileConfig()``), analog layer ``j`` drawing random stream ``j``.

    Raises
    ------
    ValueError
        For a file of another format, an unknown layer type (named with its position) or a
        missing array.
    """
    with np.load(path, allow_pickle=False) as data:
        fmt = str(data["format"]) if "format" in data.files else None
        if fmt != FORMAT:
            raise ValueError(f"{path}: not a circuitsim.layers .npz file (format {fmt!r}, "
                             f"expected {FORMAT!r})")
        spec = json.loads(str(data["spec"]))
        arrays = {k: np.array(data[k]) for k in data.files}
    layers, stream = [], 0
    for k, s in enumerate(spec["layers"]):
        kind = s.get("type")
        if kind in ("linear", "conv2d"):
            try:
                w, b = arrays[f"layer{k}.weight"], arrays[f"layer{k}.bias"]
            except KeyError as exc:
                raise ValueError(f"{path}: layer {k} ({kind}) lacks array {exc.args[0]}") from None
            name = f"{kind}{k}"
            if kind == "linear":
                layers.append(Linear(w, b, config=config, stream=stream, name=name))
            else:
                layers.append(Conv2d(w, b, s.get("stride", 1), s.get("padding", 0),
                                     config=config, stream=stream, name=name))
            stream += 1
        elif kind in _DIGITAL:
            layers.append(_DIGITAL[kind](s))
        else:
            raise ValueError(f"{path}: layer {k} has unknown type {kind!r}; known: "
                             f"linear, conv2d, {', '.join(_DIGITAL)}")
    return Sequential(layers, spec.get("input_shape"))
