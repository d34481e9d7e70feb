"""circuitsim.layers: trained networks on solved crossbar tiles.

A weight matrix is mapped onto tiles of memristors (differential pairs or an offset column),
programmed with finite levels, variability, faults and drift, read through DACs and ADCs, and
computed in one of three modes: ``"ideal"`` (the matrix product), ``"mapped"`` (all of the above
with ideal wires) or ``"circuit"`` (every tile solved by the engine, all tiles of a layer as one
batched tile). Networks chain analog and digital layers, come from ONNX or ``.npz`` files, and
:func:`evaluate` reports accuracy per mode and the error of every layer. :func:`finetune` trains
a mapped network with its exact circuit in the loop (:mod:`~.training`);
``TileConfig(compensate=True)`` programs tiles whose circuit computes the mapped weights
(:mod:`~.compensation`).

>>> import numpy as np
>>> from circuitsim import layers as L
>>> cfg = L.TileConfig(rows=4, cols=4, r_wl=0.0, r_bl=0.0)
>>> W = np.array([[1.0, -1.0, 0.5], [0.25, 2.0, -2.0]])
>>> layer = L.Linear(W, [0.0, 1.0], config=cfg, x_max=1.0)
>>> x = np.array([[1.0, 0.5, 0.25]])
>>> bool(np.allclose(layer(x, mode="circuit"), layer(x, mode="ideal"), rtol=1e-12))
True
>>> [(t.side, t.inputs, t.outputs) for t in layer.tiles]
[('+', (0, 3), (0, 2)), ('-', (0, 3), (0, 2))]
"""

from . import presets
from .analog import MODES, AnalogMatrix, CallStats, IRDrop, TileInfo, Validation
from .config import ADC, DAC, Drift, Faults, TileConfig, Variability
from .data import dataset, model_path
from .digital import AvgPool2d, Flatten, MaxPool2d, ReLU, Reshape, Softmax
from .evaluate import LayerReport, Report, evaluate
from .layers import Conv2d, Linear
from .network import Sequential
from .npz import load_npz, save_npz
from .onnx_export import save_onnx
from .onnx_import import load_onnx
from .programming import ProgrammingStats
from .torch_bridge import to_torch
from .training import (
    SGD,
    Adam,
    FineTuning,
    LayerGradient,
    Loss,
    Tape,
    finetune,
    loss_and_gradients,
    record,
)

__all__ = [
    "ADC",
    "DAC",
    "MODES",
    "SGD",
    "Adam",
    "AnalogMatrix",
    "AvgPool2d",
    "CallStats",
    "Conv2d",
    "Drift",
    "Faults",
    "FineTuning",
    "Flatten",
    "IRDrop",
    "LayerGradient",
    "LayerReport",
    "Linear",
    "Loss",
    "MaxPool2d",
    "ProgrammingStats",
    "ReLU",
    "Report",
    "Reshape",
    "Sequential",
    "Softmax",
    "Tape",
    "TileConfig",
    "TileInfo",
    "Validation",
    "Variability",
    "dataset",
    "evaluate",
    "finetune",
    "load_npz",
    "load_onnx",
    "loss_and_gradients",
    "model_path",
    "presets",
    "record",
    "save_npz",
    "save_onnx",
    "to_torch",
]
