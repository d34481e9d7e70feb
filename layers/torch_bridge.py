"""An optional bridge to PyTorch: a mapped network as a ``torch.nn.Module``.

:func:`to_torch` wraps a copy of a :class:`~.network.Sequential` in a module whose parameters are
the analog layers' weights and biases; its forward pass programs them and runs the network in
``mode`` (``"circuit"``: the exact tiles), and its backward pass is :meth:`.training.Tape.backward`
through a ``torch.autograd.Function``, so torch's optimisers and losses apply. The weights are
clamped to the range their scaling can program before each forward pass. Computation is numpy
float64 on the CPU; tensors come back in the input's dtype and device. torch is not a dependency of
circuitsim: this module imports it only when :func:`to_torch` is called.
"""

from __future__ import annotations

import copy

from .analog import check_mode
from .network import Sequential
from .training import record

__all__ = ["to_torch"]


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch needs PyTorch, which circuitsim does not install: "
                          "pip install torch") from None
    return torch


def _classes(torch):
    def numpy(t):
        return t.detach().cpu().double().numpy()

    class CircuitFunction(torch.autograd.Function):
        """``net(x, mode)`` with the weights and biases ``params`` programmed first."""

        @staticmethod
        def forward(ctx, net, mode, x, *params):
            arrays = [numpy(p) for p in params]
            for k, layer in enumerate(net.analog_layers):
                layer.reprogram(arrays[2 * k], arrays[2 * k + 1])
            tape = record(net, numpy(x), mode)
            ctx.tape = tape
            ctx.x_meta = (x.shape, x.dtype, x.device)
            ctx.p_meta = [(p.dtype, p.device) for p in params]
            return torch.as_tensor(tape.output, dtype=x.dtype, device=x.device)

        @staticmethod
        def backward(ctx, grad_output):
            g_x, grads = ctx.tape.backward(numpy(grad_output))
            shape, dtype, device = ctx.x_meta
            out = [None, None, torch.as_tensor(g_x, dtype=dtype, device=device).reshape(shape)]
            arrays = [a for g in grads for a in (g.weight, g.bias)]
            out += [torch.as_tensor(a, dtype=dt, device=dev)
                    for a, (dt, dev) in zip(arrays, ctx.p_meta)]
            return tuple(out)

    class CircuitModule(torch.nn.Module):
        """A mapped network as a module (:func:`to_torch`)."""

        def __init__(self, net: Sequential, mode: str):
            super().__init__()
            self.net = copy.deepcopy(net)
            self.mode = mode
            self.params = torch.nn.ParameterList()
            for layer in self.net.analog_layers:
                self.params.append(torch.nn.Parameter(torch.tensor(layer.weight)))
                self.params.append(torch.nn.Parameter(torch.tensor(layer.bias)))

        def forward(self, x):
            with torch.no_grad():
                for k, layer in enumerate(self.net.analog_layers):
                    lo, hi = layer.core.weight_range
                    self.params[2 * k].clamp_(lo, hi)
            return CircuitFunction.apply(self.net, self.mode, x, *self.params)

    return CircuitModule


def to_torch(net, mode: str = "circuit"):
    """A ``torch.nn.Module`` computing ``net(x, mode)`` with exact gradients.

    Parameters
    ----------
    net : Sequential
        A mapped network, calibrated for the ``"mapped"`` and ``"circuit"`` modes; the module
        holds a copy.
    mode : str
        ``"circuit"``, ``"mapped"`` or ``"ideal"``.
    """
    check_mode(mode)
    if not isinstance(net, Sequential):
        raise TypeError(f"to_torch needs a circuitsim.layers.Sequential, got "
                        f"{type(net).__name__}")
    if mode != "ideal" and not net.calibrated:
        raise ValueError("to_torch: calibrate the network first (net.calibrate(x))")
    return _classes(_torch())(net, mode)
