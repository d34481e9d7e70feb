"""Analog layers: :class:`Linear` and :class:`Conv2d` on mapped crossbar tiles.

Both hold an :class:`~.analog.AnalogMatrix` (the weights on tiles) and add the bias digitally.
Calling a layer takes a ``mode``: ``"ideal"`` (the matrix product), ``"mapped"`` (mapping,
programming non-idealities and converters with ideal wires) or ``"circuit"`` (every tile solved
by the engine).

>>> import numpy as np
>>> from circuitsim import layers as L
>>> layer = L.Linear([[1.0, -2.0]], [0.5], config=L.TileConfig(rows=2, cols=2), x_max=1.0)
>>> layer(np.array([[1.0, 1.0]]), mode="ideal")
array([[-0.5]])
>>> print(f"{layer(np.array([[1.0, 1.0]]), mode='circuit')[0, 0]:.4f}")  # 1 ohm wires
-0.4997
"""

from __future__ import annotations

import numpy as np

from .analog import AnalogMatrix, check_mode
from .config import TileConfig
from .windows import im2col, pads4, pair

__all__ = ["Conv2d", "Linear"]


def _bias(b, n: int, name: str) -> np.ndarray:
    if b is None:
        return np.zeros(n)
    b = np.array(b, dtype=np.float64).reshape(-1)
    if b.shape != (n,):
        raise ValueError(f"{name}: bias has {b.size} entries; expected {n}")
    if not np.isfinite(b).all():
        raise ValueError(f"{name}: bias contains NaN or inf")
    return b


class _Analog:
    """Shared by the analog layers: tiles, calibration, inspection, validation."""

    analog = True
    core: AnalogMatrix

    def _columns(self, x: np.ndarray) -> np.ndarray:
        """The layer's input as the analog core's input vectors ``(K', in)``."""
        raise NotImplementedError

    @property
    def config(self) -> TileConfig:
        return self.core.config

    @property
    def tiles(self):
        """The mapped tiles (:class:`~.analog.TileInfo`), in the order of the batched tile."""
        return self.core.tiles

    @property
    def programming(self):
        """What programming did (:class:`~.programming.ProgrammingStats`)."""
        return self.core.programming

    @property
    def last(self):
        """Statistics of the last call (:class:`~.analog.CallStats`)."""
        return self.core.last

    @property
    def calibrated(self) -> bool:
        return self.core.calibrated

    def circuit_tile(self):
        """All tiles of the layer as one batched :class:`circuitsim.Tile`."""
        return self.core.circuit_tile()

    def calibrate(self, x):
        """Fix input and ADC ranges on sample inputs ``x`` (see :meth:`AnalogMatrix.calibrate`)."""
        self.core.calibrate(self._columns(np.asarray(x, dtype=np.float64)))
        return self

    def tile_voltages(self, x) -> np.ndarray:
        """Word-line voltages ``(B, K', rows)`` of every tile for the layer input ``x``."""
        return self.core.tile_voltages(self._columns(np.asarray(x, dtype=np.float64)))

    def tile_currents(self, x, mode: str = "circuit") -> np.ndarray:
        """Bit-line currents ``(B, K', cols)`` of every tile for the layer input ``x``."""
        return self.core.tile_currents(self._columns(np.asarray(x, dtype=np.float64)), mode)

    def ir_drop(self, x):
        """Per-tile IR-drop figures on the layer input ``x`` (:class:`~.analog.IRDrop`)."""
        return self.core.ir_drop(self._columns(np.asarray(x, dtype=np.float64)))

    @property
    def compensation(self):
        """The compensation of the layer's tiles (:class:`circuitsim.Compensation`, computed on
        first use) where ``config.compensate``, else None."""
        return self.core.circuit_program().report if self.config.compensate else None

    def reprogram(self, weight, bias=None):
        """Program new weights (the shape of :attr:`weight`) on the same tiles, with the
        layer's scaling, input and ADC ranges and random streams kept
        (:meth:`AnalogMatrix.reprogram`), and a new bias if given. Returns self."""
        w = np.array(weight, dtype=np.float64)
        if w.shape != self.weight.shape:
            raise ValueError(f"{self.name}: new weights have shape {w.shape}; expected "
                             f"{self.weight.shape}")
        self.core.reprogram(w.reshape(len(w), -1))
        if bias is not None:
            self.bias = _bias(bias, self.core.n_out, self.name)
        return self

    def validate(self, tiles: int = 2, inputs: int = 4, *, x=None, **options):
        """Cross-check ``tiles`` mapped tiles with ``inputs`` of their actual input vectors
        against ngspice (:meth:`AnalogMatrix.validate`); ``x`` is a layer input, default the
        last call's."""
        cols = None if x is None else self._columns(np.asarray(x, dtype=np.float64))
        return self.core.validate(tiles, inputs, x=cols, **options)


class Linear(_Analog):
    """Dense layer ``y = x @ W.T + b`` on mapped tiles.

    Parameters
    ----------
    W : array_like, (out, in)
    b : array_like, (out,), optional
    config : TileConfig, optional
        Default ``TileConfig()``.
    x_max : float, optional
        Input full scale; default calibrated (:meth:`calibrate`).
    w_max : float, optional
        Weight full scale; default ``max |W|``.
    stream : int
        Random stream of the programming non-idealities (networks number their analog layers).
    name : str, optional
    """

    def __init__(self, W, b=None, *, config: TileConfig | None = None, x_max=None, w_max=None,
                 stream: int = 0, name: str | None = None):
        self.name = name or "linear"
        self.core = AnalogMatrix(W, config if config is not None else TileConfig(), x_max=x_max,
                                 w_max=w_max, stream=stream, name=self.name)
        self.bias = _bias(b, self.core.n_out, self.name)

    @property
    def weight(self) -> np.ndarray:
        return self.core.W

    def _columns(self, x):
        return x

    def __call__(self, x, mode: str = "ideal") -> np.ndarray:
        """``(K, out)`` for ``x`` ``(K, in)``."""
        return self.core(x, check_mode(mode)) + self.bias

    def __repr__(self):
        return f"Linear({self.core.n_in} -> {self.core.n_out}, {self.core.layout.n_tiles} tiles)"


class Conv2d(_Analog):
    """2-D convolution (cross-correlation, as in ONNX and PyTorch) by unfolding (im2col).

    Every output pixel is one input vector of the analog core: the patch ``(C, kh, kw)`` under
    the kernel, against the weights ``weight.reshape(out_c, -1)``. Groups = 1, dilation 1.

    Parameters
    ----------
    weight : array_like, (out_c, in_c, kh, kw)
    bias : array_like, (out_c,), optional
    stride : int or (int, int)
    padding : int, (ph, pw) or (top, left, bottom, right)
        Zero padding.
    config, x_max, w_max, stream, name
        As for :class:`Linear`.
    """

    def __init__(self, weight, bias=None, stride=1, padding=0, *,
                 config: TileConfig | None = None, x_max=None, w_max=None, stream: int = 0,
                 name: str | None = None):
        self.name = name or "conv2d"
        weight = np.array(weight, dtype=np.float64)
        if weight.ndim != 4 or 0 in weight.shape:
            raise ValueError(f"{self.name}: weight has shape {weight.shape}; "
                             "expected (out_c, in_c, kh, kw)")
        self.weight = weight
        self.stride = pair(stride, "stride")
        self.padding = pads4(padding)
        self.kernel = weight.shape[2:]
        self.core = AnalogMatrix(weight.reshape(weight.shape[0], -1),
                                 config if config is not None else TileConfig(), x_max=x_max,
                                 w_max=w_max, stream=stream, name=self.name)
        self.bias = _bias(bias, weight.shape[0], self.name)

    def reprogram(self, weight, bias=None):
        super().reprogram(weight, bias)
        self.weight = np.array(weight, dtype=np.float64)
        return self

    def _check(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 4 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"{self.name}: input has shape {x.shape}; expected "
                             f"(K, {self.weight.shape[1]}, H, W)")
        return x

    def _columns(self, x):
        return im2col(self._check(x), self.kernel, self.stride, self.padding)

    def output_shape(self, h: int, w: int) -> tuple[int, int]:
        top, left, bottom, right = self.padding
        return ((h + top + bottom - self.kernel[0]) // self.stride[0] + 1,
                (w + left + right - self.kernel[1]) // self.stride[1] + 1)

    def __call__(self, x, mode: str = "ideal") -> np.ndarray:
        """``(K, out_c, Ho, Wo)`` for ``x`` ``(K, in_c, H, W)``."""
        check_mode(mode)
        x = self._check(x)
        ho, wo = self.output_shape(*x.shape[2:])
        y = self.core(self._columns(x), mode) + self.bias
        return y.reshape(len(x), ho, wo, -1).transpose(0, 3, 1, 2)

    def __repr__(self):
        o, c, kh, kw = self.weight.shape
        return (f"Conv2d({c} -> {o}, {kh}x{kw}, stride {self.stride}, padding {self.padding}, "
                f"{self.core.layout.n_tiles} tiles)")
