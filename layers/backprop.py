"""Forward passes that keep what their backward pass needs, and the backward passes.

An analog layer in ``"circuit"`` mode computes, for inputs ``x`` ``(K, in)``
(:mod:`~.analog`): ``xq = DAC(x)``; word-line voltages ``v = blocks(xq) v_read / x_max``
``(B, K, rows)``; bit-line currents ``i`` ``(B, K, cols)`` of the exact tiles; the per-block
differential currents ``d = i+ - i-`` ``(R, K, out)``; ``y = sum_R ADC(d) s`` with
``s = w_per_siemens x_max / v_read`` (plus the offset term ``o sum(xq)`` of the offset mapping).
Its backward pass, for ``dL/dy``:

- ``dL/dd = s dL/dy`` per row block; the ADC is a straight-through estimator (its rounding is
  taken as the identity), with zero gradient where it clipped;
- the differential pairs: ``dL/di+ = dL/dd``, ``dL/di- = -dL/dd`` on their columns;
- the tiles: linear tiles ``i = v @ T.T`` give ``dL/dv = dL/di @ T`` and
  ``dL/dG = cs.transfer_matrix_vjp(tile, dL/di.T @ v).g``; nonlinear and 1T1R tiles
  ``cs.vjp(tile, v, dL/di)`` (adjoint solves at the converged Newton points); ``"mapped"`` mode
  (``i = v @ G``) its products;
- the DAC, like the ADC, straight through (zero where it clipped);
- the conductances back to the weights: the tiles' cells to the layer's devices
  ``(S, in, out)``, through the programming (levels straight through; variability, drift and
  faults by their exact per-device slope, :func:`programming_slope`), and the mapping
  ``G+ - G- = (g_max - g_min) W.T / w_max`` (``dG+/dW = span / w_max`` where ``W > 0``,
  ``dG-/dW = -span / w_max`` where ``W < 0``, half of each at ``W = 0``) or the offset mapping's
  ``dG/dW = span / (w_hi - w_lo)``.

``"ideal"`` mode is the plain matrix product. Digital layers (:mod:`~.digital`) have their exact
backward passes; max pooling splits the gradient among tied maxima.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import circuit, converters, mapping
from .analog import AnalogMatrix, check_mode
from .digital import AvgPool2d, Flatten, MaxPool2d, ReLU, Reshape, Softmax
from .layers import Conv2d, Linear
from .programming import program
from .windows import windows

__all__ = ["AnalogRecord", "analog_backward", "analog_forward", "differential_adjoint",
           "layer_backward", "layer_forward", "programming_slope", "windows_adjoint"]


@dataclass
class AnalogRecord:
    """What :func:`analog_backward` needs from a forward pass of an :class:`AnalogMatrix`: the
    inputs, word-line voltages, pre-ADC currents and DAC pass mask, and the layer's state then
    (weights, device targets, conductances, tiles and transfer matrices), so that a later
    :meth:`~AnalogMatrix.reprogram` does not change the gradients of this pass."""

    mode: str
    x: np.ndarray
    W: np.ndarray
    v: np.ndarray | None = None
    d: np.ndarray | None = None
    dac_pass: np.ndarray | None = None
    target: np.ndarray | None = None
    G: np.ndarray | None = None
    tile: object = None
    T: np.ndarray | None = None


def _check_trainable(core: AnalogMatrix, mode: str) -> None:
    cfg = core.config
    if mode == "circuit" and (cfg.compensate or cfg.column_gain):
        raise ValueError(f"{core.name}: gradients in circuit mode are of the plain mapping; "
                         "compensate and column_gain re-fit the programming to the weights and "
                         "have no gradient here: fine-tune with compensate=False, "
                         "column_gain=False")


def _dac_pass(x: np.ndarray, core: AnalogMatrix) -> np.ndarray | None:
    """Where the DAC passes the gradient (inside its range), or None without a DAC."""
    spec = core.config.dac
    if spec is None:
        return None
    lo = -core.x_max if spec.signed else 0.0
    return (x >= lo) & (x <= core.x_max)


def _scale(core: AnalogMatrix) -> float:
    cfg = core.config
    return core.scaling.weight_per_siemens(cfg) * core.x_max / cfg.v_read


def _offset(core: AnalogMatrix) -> float:
    cfg = core.config
    return core.scaling.w_lo - cfg.g_min * core.scaling.weight_per_siemens(cfg)


def analog_forward(core: AnalogMatrix, x, mode: str):
    """``core(x, mode)`` ``(K, out)`` and its :class:`AnalogRecord`."""
    check_mode(mode)
    _check_trainable(core, mode)
    x = core._check_input(x)
    if mode == "ideal":
        return x @ core.W.T, AnalogRecord(mode, x, core.W)
    core._require_calibration()
    cfg = core.config
    v, xq, _ = core._voltages(x)
    currents, _ = core._currents(v, mode)
    d = core._differential(currents)
    dq, _ = converters.adc(d, core.adc_full_scale, cfg.adc)
    y = dq.sum(axis=0) * _scale(core)
    if not cfg.differential:
        y += _offset(core) * xq.sum(axis=1, keepdims=True)
    circuit_mode = mode == "circuit"
    return y, AnalogRecord(mode, x, core.W, v, d, _dac_pass(x, core), core.target, core.G,
                           core.circuit_tile() if circuit_mode else None,
                           core._T if circuit_mode else None)


def differential_adjoint(gd: np.ndarray, core: AnalogMatrix) -> np.ndarray:
    """The adjoint of ``core._differential``: gradients ``(R, K, out)`` of the per-block
    outputs to the tiles' bit-line currents ``(B, K, cols)``."""
    lay = core.layout
    R, K, _ = gd.shape
    C, q = lay.n_col_blocks, lay.per_tile
    g = np.zeros((R, K, C * q))
    g[:, :, : lay.n_out] = gd
    g = g.reshape(R, K, C, q).transpose(0, 2, 1, 3)  # (R, C, K, q)
    gi = np.stack([g, -g]) if core.config.differential else g[None]  # (S, R, C, K, q)
    if lay.mapping == "interleaved":
        out = np.zeros((R * C, K, lay.cols))
        out[..., : 2 * q] = gi.transpose(1, 2, 3, 4, 0).reshape(R * C, K, 2 * q)
        return out
    return gi.transpose(1, 2, 0, 3, 4).reshape(R * C * lay.sides, K, q)


def programming_slope(core: AnalogMatrix, target: np.ndarray | None = None) -> np.ndarray:
    """``d programmed / d target`` of every device ``(S, in, out)`` at ``target`` (default the
    layer's).

    Every programming step acts on each device alone, with random draws that do not depend on
    the values (:mod:`~.programming`), so the Jacobian is diagonal. Levels are taken straight
    through (slope 1: their rounding has no useful derivative); the other steps' slope is one
    central difference of the whole device array with the layer's random streams (exact to
    round-off for the multiplicative and additive steps, which all but the absolute variability
    on R are; a stuck device has slope 0).
    """
    cfg = core.config
    target = core.target if target is None else target
    if cfg.variability is None and cfg.drift is None and cfg.faults is None:
        return np.ones_like(target)
    smooth = cfg.replace(levels=None)
    h = 1e-6 * (cfg.g_max - cfg.g_min)
    hi = target + h
    lo = np.maximum(target - h, 0.0)
    up, _ = program(hi, smooth, core.stream)
    down, _ = program(lo, smooth, core.stream)
    return (up - down) / (hi - lo)


def _weights_from_devices(core: AnalogMatrix, W: np.ndarray, g_dev: np.ndarray) -> np.ndarray:
    """``dL/dW`` ``(out, in)`` at ``W`` from ``dL/d target`` of the devices ``(S, in, out)``."""
    cfg, s = core.config, core.scaling
    span = cfg.g_max - cfg.g_min
    if not cfg.differential:
        return (span / (s.w_hi - s.w_lo) * g_dev[0]).T
    Wt = W.T
    plus = np.where(Wt > 0, 1.0, np.where(Wt == 0, 0.5, 0.0))
    minus = np.where(Wt < 0, 1.0, np.where(Wt == 0, 0.5, 0.0))
    return (span / s.w_max * (plus * g_dev[0] - minus * g_dev[1])).T


def _tiles_backward(core: AnalogMatrix, rec: AnalogRecord, g_cur: np.ndarray):
    """``dL/dv`` ``(B, K, rows)`` and ``dL/dG`` ``(B, rows, cols)`` from ``dL/di``."""
    v = rec.v
    if rec.mode == "mapped":
        return np.matmul(g_cur, rec.G.transpose(0, 2, 1)), np.matmul(v.transpose(0, 2, 1), g_cur)
    if core.config.linear:
        C = np.matmul(g_cur.transpose(0, 2, 1), v)  # rec.T (B, cols, rows): the forward's
        return np.matmul(g_cur, rec.T), circuit.transfer_vjp(rec.tile, C)
    gG, gv = circuit.solve_vjp(rec.tile, v, g_cur)
    return gv, gG


def analog_backward(core: AnalogMatrix, rec: AnalogRecord, gy: np.ndarray):
    """``dL/dx`` ``(K, in)`` and ``dL/dW`` ``(out, in)`` from ``dL/dy`` ``(K, out)``."""
    if rec.mode == "ideal":
        return gy @ rec.W, gy.T @ rec.x
    cfg, lay = core.config, core.layout
    K = len(gy)
    gd = np.broadcast_to(gy * _scale(core), rec.d.shape)
    if cfg.adc is not None:
        gd = gd * (np.abs(rec.d) <= core.adc_full_scale)
    gv, gG = _tiles_backward(core, rec, differential_adjoint(gd, core))
    # word-line voltages -> quantized inputs: tiles of a row block share its inputs
    R = lay.n_row_blocks
    g_blocks = gv.reshape(R, -1, K, lay.rows).sum(axis=1)
    gx = g_blocks.transpose(1, 0, 2).reshape(K, R * lay.rows)[:, : lay.n_in]
    gx = gx * (cfg.v_read / core.x_max)
    if not cfg.differential:
        gx = gx + _offset(core) * gy.sum(axis=1, keepdims=True)
    if rec.dac_pass is not None:
        gx = gx * rec.dac_pass
    # tile cells -> the layer's devices -> their targets -> weights
    index = mapping.place_index(lay, core.devices.shape[0])
    used = index >= 0
    g_dev = np.zeros(core.devices.size)
    g_dev[index[used]] = gG[used]
    g_dev = g_dev.reshape(core.devices.shape) * programming_slope(core, rec.target)
    return gx, _weights_from_devices(core, rec.W, g_dev)


# -- digital layers and the analog layers around the core ------------------------------------

def windows_adjoint(d: np.ndarray, shape, kernel, stride, pads) -> np.ndarray:
    """The adjoint of :func:`~.windows.windows`: window values ``(K, C, Ho, Wo, kh, kw)`` summed
    back onto the image ``shape`` ``(K, C, H, W)`` (the padding dropped)."""
    K, C, H, W = shape
    kh, kw = kernel
    sh, sw = stride
    top, left, bottom, right = pads
    Ho, Wo = d.shape[2:4]
    out = np.zeros((K, C, H + top + bottom, W + left + right))
    for i in range(kh):  # one pass per kernel offset, every window at once
        for j in range(kw):
            rows = slice(i, i + sh * (Ho - 1) + 1, sh)
            out[:, :, rows, j : j + sw * (Wo - 1) + 1 : sw] += d[..., i, j]
    return out[:, :, top : top + H, left : left + W]


def _pool_backward(layer, x, gy):
    if isinstance(layer, MaxPool2d):
        w = windows(x, layer.kernel, layer.stride, layer.padding, -np.inf)
        top = w.max(axis=(4, 5), keepdims=True)
        share = (w == top).astype(np.float64)
        share /= share.sum(axis=(4, 5), keepdims=True)
    else:
        kh, kw = layer.kernel
        if layer.count_include_pad or not any(layer.padding):
            count = np.full((1, 1, *gy.shape[2:]), float(kh * kw))
        else:
            ones = np.ones((1, 1, *x.shape[2:]))
            count = windows(ones, layer.kernel, layer.stride, layer.padding).sum(axis=(4, 5))
        share = np.broadcast_to((1.0 / count)[..., None, None], (*gy.shape, kh, kw))
    return windows_adjoint(share * gy[..., None, None], x.shape, layer.kernel, layer.stride,
                           layer.padding)


def _digital_backward(layer, x, y, gy):
    if isinstance(layer, ReLU):
        return gy * (x > 0)
    if isinstance(layer, (MaxPool2d, AvgPool2d)):
        return _pool_backward(layer, x, gy)
    if isinstance(layer, (Flatten, Reshape)):
        return gy.reshape(x.shape)
    if isinstance(layer, Softmax):
        return y * (gy - np.sum(gy * y, axis=layer.axis, keepdims=True))
    raise TypeError(f"no backward pass for layer {getattr(layer, 'name', '?')!r} "
                    f"({type(layer).__name__})")


def layer_forward(layer, x: np.ndarray, mode: str):
    """``layer(x, mode)`` and what its backward pass needs."""
    if isinstance(layer, Linear):
        y, rec = analog_forward(layer.core, x, mode)
        return y + layer.bias, rec
    if isinstance(layer, Conv2d):
        x = layer._check(x)
        ho, wo = layer.output_shape(*x.shape[2:])
        y, rec = analog_forward(layer.core, layer._columns(x), mode)
        y = (y + layer.bias).reshape(len(x), ho, wo, -1).transpose(0, 3, 1, 2)
        return y, rec
    if getattr(layer, "analog", False):
        raise TypeError(f"no backward pass for analog layer {type(layer).__name__}")
    return layer(x, mode), None


def layer_backward(layer, x: np.ndarray, y: np.ndarray, record, gy: np.ndarray):
    """``dL/dx`` and, for analog layers, ``(dL/dweight, dL/dbias)`` (else None)."""
    if isinstance(layer, Linear):
        gx, gW = analog_backward(layer.core, record, gy)
        return gx, (gW, gy.sum(axis=0))
    if isinstance(layer, Conv2d):
        g = gy.transpose(0, 2, 3, 1).reshape(-1, gy.shape[1])
        g_cols, gW = analog_backward(layer.core, record, g)
        K, C = x.shape[:2]
        Ho, Wo = gy.shape[2:]
        kh, kw = layer.kernel
        d = g_cols.reshape(K, Ho, Wo, C, kh, kw).transpose(0, 3, 1, 2, 4, 5)
        gx = windows_adjoint(d, x.shape, layer.kernel, layer.stride, layer.padding)
        return gx, (gW.reshape(layer.weight.shape), g.sum(axis=0))
    return _digital_backward(layer, x, y, gy), None
