"""Array-module dispatch: the module to compute with, taken from the arrays themselves.

cupy arrays are recognised by their type's module, so nothing here imports cupy; other array
types that declare an array namespace (``__array_namespace__``, the Array API standard) get theirs;
everything else is numpy.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["array_module", "is_device_array"]


def is_device_array(x) -> bool:
    """True for a cupy array (checked by type name: cupy is never imported for this)."""
    return type(x).__module__.split(".", 1)[0] == "cupy"


def array_module(*arrays):
    """``cupy`` if any argument is a cupy array, else the namespace an ndarray subclass declares,
    else ``numpy`` (scalars and None count as numpy)."""
    for a in arrays:
        if is_device_array(a):
            return sys.modules["cupy"]
    for a in arrays:
        if isinstance(a, np.ndarray) and type(a) is not np.ndarray:
            namespace = a.__array_namespace__()
            if namespace is not np:
                return namespace
    return np
