"""Digital layers between the analog ones: activations, pooling, reshaping, softmax.

They compute in float64 whatever the mode (the mode argument is checked and otherwise ignored).

>>> import numpy as np
>>> x = np.array([[[[1.0, -2.0], [3.0, 0.5]]]])
>>> MaxPool2d(2)(x)[..., 0, 0], AvgPool2d(2)(x)[..., 0, 0]
(array([[3.]]), array([[0.625]]))
"""

from __future__ import annotations

import numpy as np

from .analog import check_mode
from .windows import pads4, pair, windows

__all__ = ["AvgPool2d", "Flatten", "MaxPool2d", "ReLU", "Reshape", "Softmax"]


class _Digital:
    analog = False
    name = "digital"

    def __call__(self, x, mode: str = "ideal"):
        check_mode(mode)
        return self.forward(np.asarray(x, dtype=np.float64))

    def forward(self, x):
        raise NotImplementedError

    def spec(self) -> dict:
        """The layer as a JSON-able dict (the ``.npz`` layout, :mod:`circuitsim.layers.npz`)."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.spec().items() if k != "type")
        return f"{type(self).__name__}({args})"


class ReLU(_Digital):
    """``max(x, 0)``."""

    name = "relu"

    def forward(self, x):
        return np.maximum(x, 0.0)

    def spec(self):
        return {"type": "relu"}


class _Pool(_Digital):
    def __init__(self, kernel, stride=None, padding=0):
        self.kernel = pair(kernel, "kernel")
        self.stride = self.kernel if stride is None else pair(stride, "stride")
        self.padding = pads4(padding)
        top, left, bottom, right = self.padding
        if max(top, bottom) >= self.kernel[0] or max(left, right) >= self.kernel[1]:
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be smaller "
                             f"than the kernel {self.kernel}")

    def _spec(self, kind):
        return {"type": kind, "kernel": list(self.kernel), "stride": list(self.stride),
                "padding": list(self.padding)}


class MaxPool2d(_Pool):
    """Max pooling over ``(K, C, H, W)``; padding holds ``-inf`` (as ONNX's MaxPool)."""

    name = "maxpool2d"

    def forward(self, x):
        return windows(x, self.kernel, self.stride, self.padding, -np.inf).max(axis=(4, 5))

    def spec(self):
        return self._spec("maxpool2d")


class AvgPool2d(_Pool):
    """Average pooling over ``(K, C, H, W)``, zero padding; ``count_include_pad`` as in ONNX's
    AveragePool (False: divide by the number of real pixels under the window)."""

    name = "avgpool2d"

    def __init__(self, kernel, stride=None, padding=0, count_include_pad: bool = False):
        super().__init__(kernel, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        total = windows(x, self.kernel, self.stride, self.padding).sum(axis=(4, 5))
        if self.count_include_pad or not any(self.padding):
            return total / (self.kernel[0] * self.kernel[1])
        ones = np.ones((1, 1) + x.shape[2:])
        count = windows(ones, self.kernel, self.stride, self.padding).sum(axis=(4, 5))
        return total / count

    def spec(self):
        return dict(self._spec("avgpool2d"), count_include_pad=self.count_include_pad)


class Flatten(_Digital):
    """Reshape to ``(prod(shape[:axis]), prod(shape[axis:]))`` (ONNX Flatten; axis 1 keeps the
    batch)."""

    name = "flatten"

    def __init__(self, axis: int = 1):
        self.axis = int(axis)

    def forward(self, x):
        axis = self.axis if self.axis >= 0 else x.ndim + self.axis
        return x.reshape(int(np.prod(x.shape[:axis])), -1)

    def spec(self):
        return {"type": "flatten", "axis": self.axis}


class Reshape(_Digital):
    """Reshape with ONNX semantics: 0 copies the input's dimension, -1 is inferred."""

    name = "reshape"

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)
        if sum(s == -1 for s in self.shape) > 1:
            raise ValueError(f"Reshape: at most one -1 in shape {self.shape}")

    def forward(self, x):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)]
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"Reshape: cannot reshape input of shape {x.shape} to "
                             f"{self.shape}") from None

    def spec(self):
        return {"type": "reshape", "shape": list(self.shape)}


class Softmax(_Digital):
    """``exp(x) / sum exp(x)`` along ``axis`` (shifted by the maximum first)."""

    name = "softmax"

    def __init__(self, axis: int = -1):
        self.axis = int(axis)

    def forward(self, x):
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        return e / e.sum(axis=self.axis, keepdims=True)

    def spec(self):
        return {"type": "softmax", "axis": self.axis}
