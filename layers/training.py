"""Circuit-aware training: gradients of a network's loss through its exact tile solves.

:func:`record` runs a :class:`~.network.Sequential` in a mode and keeps what the backward pass
needs; :meth:`Tape.backward` returns the gradients of ``sum(dL/dy * y)`` with respect to the
input and every analog layer's weights and biases (:mod:`~.backprop` says how each layer is
differentiated: in ``"circuit"`` mode through the exact tiles, linear ones by their transfer
matrices, nonlinear and 1T1R ones by adjoint solves; converters straight through).
:func:`loss_and_gradients` is the softmax cross-entropy on top, and :func:`finetune` trains a
copy of a mapped network with the exact circuit in the loop (mini-batches, :class:`SGD` or
:class:`Adam`), the weights kept within the range their scaling can program.

>>> import numpy as np
>>> from circuitsim import layers as L
>>> cfg = L.TileConfig(rows=4, cols=4, r_wl=20.0, r_bl=20.0)
>>> rng = np.random.default_rng(0)
>>> net = L.Sequential([L.Linear(rng.normal(size=(3, 6)), np.zeros(3), config=cfg, x_max=1.0),
...                     L.Softmax()])
>>> X, y = rng.uniform(0, 1, (32, 6)), rng.integers(0, 3, 32)
>>> before = L.loss_and_gradients(net, X, y).loss
>>> tuned = L.finetune(net, X, y, epochs=5, batch_size=32, optimizer=L.Adam(lr=0.05))
>>> bool(L.loss_and_gradients(tuned.net, X, y).loss < before)
True
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np

from .analog import check_mode
from .backprop import layer_backward, layer_forward
from .digital import Softmax
from .network import Sequential

__all__ = ["SGD", "Adam", "FineTuning", "LayerGradient", "Loss", "Tape", "cross_entropy",
           "finetune", "loss_and_gradients", "record"]


@dataclass(frozen=True)
class LayerGradient:
    """Gradients of one analog layer: ``weight`` in the shape of ``layer.weight``, ``bias``."""

    weight: np.ndarray
    bias: np.ndarray


@dataclass
class Tape:
    """A recorded forward pass (:func:`record`).

    Attributes
    ----------
    net : Sequential
    mode : str
    outputs : list of ndarray
        The input and every layer's output (``len(net) + 1`` arrays).
    """

    net: Sequential
    mode: str
    outputs: list
    records: list = field(repr=False)

    @property
    def output(self) -> np.ndarray:
        return self.outputs[-1]

    def backward(self, grad_output):
        """Gradients of ``sum(grad_output * output)``.

        Returns
        -------
        grad_input : ndarray
            With respect to the network's input, in the shape it was given to :meth:`prepare`.
        grads : list of LayerGradient
            One per analog layer, in the order of ``net.analog_layers``.
        """
        g = np.asarray(grad_output, dtype=np.float64)
        if g.shape != self.output.shape:
            raise ValueError(f"grad_output has shape {g.shape}; expected {self.output.shape}, "
                             "the shape of the output")
        grads = []
        for k in range(len(self.net) - 1, -1, -1):
            layer = self.net[k]
            g, params = layer_backward(layer, self.outputs[k], self.outputs[k + 1],
                                       self.records[k], g)
            if params is not None:
                grads.append(LayerGradient(*params))
        return g, grads[::-1]


def record(net, x, mode: str = "circuit") -> Tape:
    """Run ``net`` (a :class:`Sequential` or one layer) on ``x`` in ``mode``, keeping what
    :meth:`Tape.backward` needs."""
    check_mode(mode)
    net = net if isinstance(net, Sequential) else Sequential([net])
    outputs, records = [net.prepare(x)], []
    for layer in net:
        y, rec = layer_forward(layer, outputs[-1], mode)
        outputs.append(y)
        records.append(rec)
    return Tape(net, mode, outputs, records)


def cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """Mean softmax cross-entropy of ``logits`` ``(N, classes)`` and its gradient."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    N = len(labels)
    loss = -float(log_p[np.arange(N), labels].mean())
    grad = np.exp(log_p)
    grad[np.arange(N), labels] -= 1.0
    return loss, grad / N


@dataclass(frozen=True)
class Loss:
    """The result of :func:`loss_and_gradients`.

    Attributes
    ----------
    loss : float
        Mean cross-entropy.
    accuracy : float
        Fraction of arg-max predictions equal to the labels.
    grads : list of LayerGradient
        One per analog layer.
    logits : ndarray, (N, classes)
    """

    loss: float
    accuracy: float
    grads: list
    logits: np.ndarray


def _logit_net(net: Sequential) -> Sequential:
    """``net`` without a final softmax over the classes (the loss applies its own)."""
    last = net[len(net) - 1] if len(net) else None
    if isinstance(last, Softmax) and last.axis in (-1, 1):
        return Sequential(net.layers[:-1], input_shape=net.input_shape)
    return net


def _labels(labels, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {n} integers, got an array of shape {y.shape} and "
                         f"dtype {y.dtype}")
    return y


def loss_and_gradients(net, X, labels, mode: str = "circuit") -> Loss:
    """Softmax cross-entropy of ``net`` on ``X`` in ``mode`` and its gradients.

    The logits are the network's output, or the input of its final :class:`~.digital.Softmax`
    when it ends with one. The network must be calibrated (``net.calibrate``) for the
    ``"mapped"`` and ``"circuit"`` modes.
    """
    net = net if isinstance(net, Sequential) else Sequential([net])
    tape = record(_logit_net(net), X, mode)
    logits = tape.output.reshape(len(tape.output), -1)
    y = _labels(labels, len(logits))
    if y.min(initial=0) < 0 or y.max(initial=0) >= logits.shape[1]:
        raise ValueError(f"labels must be in [0, {logits.shape[1]}), the classes of the output")
    loss, g = cross_entropy(logits, y)
    _, grads = tape.backward(g.reshape(tape.output.shape))
    return Loss(loss, float(np.mean(np.argmax(logits, axis=1) == y)), grads, logits)


# -- optimisers -------------------------------------------------------------------------------

class SGD:
    """Stochastic gradient descent: ``p -= lr (g + momentum v)`` with the heavy-ball velocity
    ``v = momentum v + g`` (``momentum=0``: plain SGD)."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0):
        if not lr > 0:
            raise ValueError(f"SGD: lr must be > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        self.lr, self.momentum = float(lr), float(momentum)
        self._v = None

    def step(self, params: list, grads: list) -> list:
        """New parameters from ``params`` and their gradients (lists of arrays)."""
        if self.momentum == 0:
            return [p - self.lr * g for p, g in zip(params, grads)]
        if self._v is None:
            self._v = [np.zeros_like(p) for p in params]
        self._v = [self.momentum * v + g for v, g in zip(self._v, grads)]
        return [p - self.lr * v for p, v in zip(params, self._v)]


class Adam:
    """Adam (Kingma and Ba, ICLR 2015): bias-corrected moment estimates, step
    ``lr m_hat / (sqrt(v_hat) + eps)``."""

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        b1, b2 = betas
        if not lr > 0:
            raise ValueError(f"Adam: lr must be > 0, got {lr}")
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"Adam: eps must be > 0, got {eps}")
        self.lr, self.b1, self.b2, self.eps = float(lr), float(b1), float(b2), float(eps)
        self._m = self._v = None
        self._t = 0

    def step(self, params: list, grads: list) -> list:
        """New parameters from ``params`` and their gradients (lists of arrays)."""
        if self._m is None:
            self._m = [np.zeros_like(p) for p in params]
            self._v = [np.zeros_like(p) for p in params]
        self._t += 1
        b1, b2, t = self.b1, self.b2, self._t
        self._m = [b1 * m + (1 - b1) * g for m, g in zip(self._m, grads)]
        self._v = [b2 * v + (1 - b2) * g * g for v, g in zip(self._v, grads)]
        return [p - self.lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + self.eps)
                for p, m, v in zip(params, self._m, self._v)]


# -- fine-tuning ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FineTuning:
    """The result of :func:`finetune`.

    Attributes
    ----------
    net : Sequential
        The fine-tuned copy (the network given is left as it was).
    losses : ndarray, (steps,)
        Each mini-batch's loss, before its step.
    accuracies : ndarray, (steps,)
        Each mini-batch's accuracy, before its step.
    steps : int
    seconds : float
    """

    net: Sequential
    losses: np.ndarray
    accuracies: np.ndarray
    steps: int
    seconds: float


def _parameters(net: Sequential) -> list:
    out = []
    for layer in net.analog_layers:
        out += [layer.weight.copy(), layer.bias.copy()]
    return out


def _assign(net: Sequential, params: list) -> None:
    """Program the weights (clipped to each layer's programmable range) and set the biases."""
    for k, layer in enumerate(net.analog_layers):
        W, b = params[2 * k], params[2 * k + 1]
        lo, hi = layer.core.weight_range
        W = np.clip(W, lo, hi)
        params[2 * k] = W
        layer.reprogram(W, b)


def finetune(net, X, labels, *, mode: str = "circuit", epochs: int = 1, batch_size: int = 64,
             optimizer=None, seed: int = 0, max_steps: int | None = None) -> FineTuning:
    """Train a copy of ``net`` on ``X``, ``labels`` with its loss computed in ``mode``.

    Parameters
    ----------
    net : Sequential
        A mapped network; calibrated on ``X`` first if it is not calibrated yet. Its input and
        ADC ranges stay fixed while training.
    X, labels : array_like
        Training inputs and integer classes.
    mode : str
        ``"circuit"`` (the exact tiles in the loop), ``"mapped"`` or ``"ideal"``.
    epochs, batch_size : int
        Passes over ``X`` in shuffled mini-batches (the last one may be smaller).
    optimizer : SGD or Adam, optional
        Default ``Adam(lr=1e-3)``.
    seed : int
        Seed of the shuffling.
    max_steps : int, optional
        Stop after this many steps.

    After every step each analog layer's weights are clipped to the range its scaling can
    program (:attr:`~.analog.AnalogMatrix.weight_range`) and programmed again
    (:meth:`~.layers.Linear.reprogram`), so that the next step sees the new circuit.
    """
    check_mode(mode)
    if not isinstance(net, Sequential):
        raise TypeError(f"finetune needs a circuitsim.layers.Sequential, got {type(net).__name__}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    net = copy.deepcopy(net)
    X = net.prepare(X)
    y = _labels(labels, len(X))
    if mode != "ideal" and not net.calibrated:
        net.calibrate(X)
    optimizer = Adam() if optimizer is None else optimizer
    params = _parameters(net)
    rng = np.random.default_rng(seed)
    losses, accuracies = [], []
    start = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for s in range(0, len(X), batch_size):
            if max_steps is not None and len(losses) >= max_steps:
                break
            idx = order[s : s + batch_size]
            res = loss_and_gradients(net, X[idx], y[idx], mode)
            losses.append(res.loss)
            accuracies.append(res.accuracy)
            grads = [a for g in res.grads for a in (g.weight, g.bias)]
            params = optimizer.step(params, grads)
            _assign(net, params)
    return FineTuning(net, np.array(losses), np.array(accuracies), len(losses),
                      time.perf_counter() - start)
