"""Train the shipped digits models: ``python -m circuitsim.layers.train [--out DIR]``.

Writes ``digits_mlp.{npz,onnx}`` and ``digits_cnn.{npz,onnx}`` (default: the package's
``models/`` folder) from scikit-learn's digits training split (:mod:`circuitsim.layers.data`):

- MLP 64 -> 64 -> 10 (ReLU, softmax), trained by scikit-learn's ``MLPClassifier``;
- CNN: Conv 1 -> 8 (3x3, padding 1), ReLU, MaxPool 2, Conv 8 -> 16 (3x3, padding 1), ReLU,
  AvgPool 2, Flatten, Linear 64 -> 10, softmax; trained here in numpy (cross-entropy, Adam,
  mini-batches), no deep-learning framework needed.

Weights are rounded to float32, so the ``.npz`` (float64) and ``.onnx`` (float32) files hold the
same numbers. Seeds are fixed; the test accuracies are printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .data import MODELS_DIR, dataset
from .digital import AvgPool2d, Flatten, MaxPool2d, ReLU, Softmax
from .layers import Conv2d, Linear
from .network import Sequential
from .npz import save_npz
from .onnx_export import save_onnx
from .windows import im2col

__all__ = ["main", "train_cnn", "train_mlp"]


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def train_mlp(X, y, seed: int = 0) -> Sequential:
    """The 64 -> 64 -> 10 MLP, trained by scikit-learn."""
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(64,), activation="relu", alpha=1e-4, max_iter=1000,
                        random_state=seed).fit(X, y)
    (W1, W2), (b1, b2) = clf.coefs_, clf.intercepts_
    return Sequential([Linear(_f32(W1.T), _f32(b1)), ReLU(), Linear(_f32(W2.T), _f32(b2)),
                       Softmax()], input_shape=(None, 64))


# --- a small numpy CNN trainer --------------------------------------------------------------


def _col2im(d_cols, shape, kernel, pad):
    """Adjoint of ``im2col`` at stride 1: patch gradients ``(N Ho Wo, C kh kw)`` to ``shape``."""
    N, C, H, W = shape
    kh, kw = kernel
    Hp, Wp = H + 2 * pad, W + 2 * pad
    Ho, Wo = Hp - kh + 1, Wp - kw + 1
    d = d_cols.reshape(N, Ho, Wo, C, kh, kw)
    dx = np.zeros((N, C, Hp, Wp))
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i : i + Ho, j : j + Wo] += d[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dx[:, :, pad : pad + H, pad : pad + W]


def _conv(x, W, b):
    cols = im2col(x, W.shape[2:], (1, 1), (1, 1, 1, 1))
    y = cols @ W.reshape(len(W), -1).T + b
    N, _, H, Wd = x.shape
    return y.reshape(N, H, Wd, -1).transpose(0, 3, 1, 2), cols


def _conv_back(dy, cols, x_shape, W):
    d = dy.transpose(0, 2, 3, 1).reshape(-1, len(W))
    dW = (d.T @ cols).reshape(W.shape)
    dx = _col2im(d @ W.reshape(len(W), -1), x_shape, W.shape[2:], 1)
    return dx, dW, d.sum(axis=0)


def _cnn_forward(p, x):
    c1, cols1 = _conv(x, p["W1"], p["b1"])
    a1 = np.maximum(c1, 0.0)
    N, C, H, W = a1.shape
    win = a1.reshape(N, C, H // 2, 2, W // 2, 2)
    p1 = win.max(axis=(3, 5))
    c2, cols2 = _conv(p1, p["W2"], p["b2"])
    a2 = np.maximum(c2, 0.0)
    N, C2, H2, W2 = a2.shape
    f = a2.reshape(N, C2, H2 // 2, 2, W2 // 2, 2).mean(axis=(3, 5)).reshape(N, -1)
    z = f @ p["W3"].T + p["b3"]
    cache = (x, c1, cols1, win, p1, c2, cols2, f)
    return z, cache


def _cnn_grads(p, x, onehot):
    z, (x, c1, cols1, win, p1, c2, cols2, f) = _cnn_forward(p, x)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    dz = (e / e.sum(axis=1, keepdims=True) - onehot) / len(x)
    g = {"W3": dz.T @ f, "b3": dz.sum(axis=0)}
    N, C2, H2, W2 = c2.shape
    da2 = np.repeat(np.repeat((dz @ p["W3"]).reshape(N, C2, H2 // 2, W2 // 2), 2, 2), 2, 3) / 4
    dp1, g["W2"], g["b2"] = _conv_back(da2 * (c2 > 0), cols2, p1.shape, p["W2"])
    mask = win == p1[:, :, :, None, :, None]
    mask = mask / mask.sum(axis=(3, 5), keepdims=True)
    da1 = (mask * dp1[:, :, :, None, :, None]).reshape(c1.shape)
    _, g["W1"], g["b1"] = _conv_back(da1 * (c1 > 0), cols1, x.shape, p["W1"])
    return g


def train_cnn(X, y, seed: int = 0, epochs: int = 60, batch: int = 64, lr: float = 3e-3):
    """The digits CNN (module docstring), trained with Adam on cross-entropy."""
    rng = np.random.default_rng(seed)
    x = X.reshape(-1, 1, 8, 8)
    onehot = np.eye(10)[y]
    p = {
        "W1": rng.normal(0, np.sqrt(2 / 9), (8, 1, 3, 3)), "b1": np.zeros(8),
        "W2": rng.normal(0, np.sqrt(2 / 72), (16, 8, 3, 3)), "b2": np.zeros(16),
        "W3": rng.normal(0, np.sqrt(1 / 64), (10, 64)), "b3": np.zeros(10),
    }
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), batch):
            idx = order[s : s + batch]
            g = _cnn_grads(p, x[idx], onehot[idx])
            step += 1
            for k in p:  # Adam (Kingma and Ba, 2015), beta1 0.9, beta2 0.999
                m[k] = 0.9 * m[k] + 0.1 * g[k]
                v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
                p[k] -= lr * (m[k] / (1 - 0.9**step)) / (np.sqrt(v[k] / (1 - 0.999**step)) + 1e-8)
    return Sequential([
        Conv2d(_f32(p["W1"]), _f32(p["b1"]), padding=1), ReLU(), MaxPool2d(2),
        Conv2d(_f32(p["W2"]), _f32(p["b2"]), padding=1), ReLU(), AvgPool2d(2), Flatten(),
        Linear(_f32(p["W3"]), _f32(p["b3"])), Softmax(),
    ], input_shape=(None, 1, 8, 8))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m circuitsim.layers.train",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=MODELS_DIR, help="folder for the model files")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    X, y = dataset("digits", "train")
    X_test, y_test = dataset("digits", "test")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, net in (("digits_mlp", train_mlp(X, y, args.seed)),
                      ("digits_cnn", train_cnn(X, y, args.seed))):
        acc = np.mean(np.argmax(net(X_test), axis=1) == y_test)
        save_npz(net, args.out / f"{name}.npz")
        save_onnx(net, args.out / f"{name}.onnx")
        print(f"{name}: test accuracy {100 * acc:.2f} % ({len(y_test)} images) -> "
              f"{args.out / name}.{{npz,onnx}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
