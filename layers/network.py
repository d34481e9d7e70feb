"""Networks: a chain of analog and digital layers."""

from __future__ import annotations

import numpy as np

from .analog import check_mode

__all__ = ["Sequential"]


class Sequential:
    """Layers applied in order: ``net(x, mode)``.

    Parameters
    ----------
    layers : sequence
        Analog layers (:class:`~.layers.Linear`, :class:`~.layers.Conv2d`) and digital ones
        (:mod:`circuitsim.layers.digital`): anything called as ``layer(x, mode)``.
    input_shape : tuple, optional
        Shape of one input with ``None`` for the batch axis, e.g. ``(None, 1, 8, 8)``; used to
        reshape flat data (:meth:`prepare`).
    """

    def __init__(self, layers, input_shape=None):
        self.layers = list(layers)
        for k, layer in enumerate(self.layers):
            if not callable(layer):
                raise TypeError(f"layer {k} ({type(layer).__name__}) is not callable")
        self.input_shape = None if input_shape is None else tuple(input_shape)

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, k):
        return self.layers[k]

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"

    @property
    def analog_layers(self) -> list:
        """The layers on tiles, in order."""
        return [layer for layer in self.layers if getattr(layer, "analog", False)]

    @property
    def calibrated(self) -> bool:
        return all(layer.calibrated for layer in self.analog_layers)

    def prepare(self, X) -> np.ndarray:
        """``X`` as float64, reshaped to :attr:`input_shape` when that is known."""
        X = np.asarray(X, dtype=np.float64)
        if self.input_shape is not None and len(self.input_shape) != X.ndim:
            tail = tuple(d for d in self.input_shape[1:])
            if None in tail:
                raise ValueError(f"cannot reshape inputs of shape {X.shape} to "
                                 f"{self.input_shape}")
            X = X.reshape((len(X),) + tail)
        return X

    def trace(self, x, mode: str = "ideal") -> list[np.ndarray]:
        """The input and every layer's output in ``mode``: ``len(self) + 1`` arrays."""
        check_mode(mode)
        out = [self.prepare(x)]
        for layer in self.layers:
            out.append(layer(out[-1], mode))
        return out

    def __call__(self, x, mode: str = "ideal") -> np.ndarray:
        return self.trace(x, mode)[-1]

    def calibrate(self, x) -> Sequential:
        """Calibrate every analog layer on its input in the ideal network fed ``x``."""
        h = self.prepare(x)
        for layer in self.layers:
            if getattr(layer, "analog", False):
                layer.calibrate(h)
            h = layer(h, "ideal")
        return self
