"""A strict stand-in for device arrays: host and "device" arrays must not mix, as with cupy.

cupy refuses to combine its arrays with numpy arrays (``TypeError``: no implicit transfers), and
scipy's sparse matrices cannot multiply cupy arrays. :class:`Dev` is a numpy array that plays the
device array: any ufunc, numpy function or indexing that mixes it with a plain numpy array raises
:class:`HostDeviceMix`, and :func:`strict_backend` computes with a namespace whose array
constructors make :class:`Dev` arrays and whose sparse matrices (:class:`DevCSR` and friends)
refuse plain operands. The engine's device path run on it shows every place where a host array
would reach the GPU unconverted (an ``np.zeros`` where ``xp.zeros`` belongs, a host index array, a
scipy matrix), without a GPU. Explicit transfers (``xp.asarray(host)``, ``backend.to_host``) are
allowed, as cupy allows them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from circuitsim.solvers.gpu import CudssProvider
from gpu_support import FakeAdvanced

from circuitsim.backend import Backend


class HostDeviceMix(TypeError):
    """A host array met a device array (cupy raises TypeError there)."""


def _check(obj, where: str) -> None:
    if isinstance(obj, (list, tuple)):
        for x in obj:
            _check(x, where)
    elif isinstance(obj, dict):
        for x in obj.values():
            _check(x, where)
    elif isinstance(obj, np.ndarray) and not isinstance(obj, Dev):
        raise HostDeviceMix(f"a host array {obj.shape} {obj.dtype} met device arrays in {where}")
    elif sp.issparse(obj) and not isinstance(obj, _DevSparse):
        raise HostDeviceMix(f"a host sparse matrix {obj.shape} met device arrays in {where}")


def _plain(obj):
    if isinstance(obj, Dev):
        return obj.view(np.ndarray)
    if isinstance(obj, tuple):
        return tuple(_plain(x) for x in obj)
    if isinstance(obj, list):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray) and not isinstance(obj, Dev):
        return obj.view(Dev)
    if isinstance(obj, tuple):
        return tuple(_wrap(x) for x in obj)
    if isinstance(obj, list):
        return [_wrap(x) for x in obj]
    if sp.issparse(obj) and not isinstance(obj, _DevSparse):
        return _dev_sparse(obj)
    return obj


class Dev(np.ndarray):
    """A numpy array standing for a device array (see the module docstring)."""

    def __array_namespace__(self, api_version=None):
        return STRICT

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _check(inputs, f"np.{ufunc.__name__}")
        if out is not None:
            _check(out, f"np.{ufunc.__name__}(out=)")
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*_plain(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        _check((args, kwargs), f"np.{func.__name__}")
        return _wrap(func(*_plain(args), **_plain(kwargs)))

    def __getitem__(self, key):
        _check(key, "indexing")
        return _wrap(np.ndarray.__getitem__(self.view(np.ndarray), _plain(key)))

    def __setitem__(self, key, value):
        _check((key, value), "assignment")
        np.ndarray.__setitem__(self.view(np.ndarray), _plain(key), _plain(value))


#: Functions that transfer host data explicitly (cupy's accept numpy arrays).
_TRANSFERS = {"asarray", "array", "ascontiguousarray", "asfortranarray"}


class _StrictNumpy:
    """numpy whose functions make device arrays and refuse host arrays (but for transfers)."""

    def __getattr__(self, name):
        obj = getattr(np, name)
        if not callable(obj) or isinstance(obj, (type, np.ufunc)):
            return obj

        def call(*args, **kwargs):
            if name not in _TRANSFERS:
                _check((args, kwargs), f"xp.{name}")
            return _wrap(obj(*_plain(args), **_plain(kwargs)))

        return call


STRICT = _StrictNumpy()


class _DevSparse:
    """Mixin: products take and give device operands only; conversions stay on the device."""

    def _matmul_dispatch(self, other):
        _check(other, "a sparse product")
        result = super()._matmul_dispatch(other.view(np.ndarray) if isinstance(other, Dev)
                                          else other)
        return _wrap(np.asarray(result) if isinstance(result, np.matrix) else result)

    def _host(self):
        """The same matrix as a plain scipy one (sharing the arrays)."""
        if self.format == "coo":
            return sp.coo_matrix((self.data, (self.row, self.col)), shape=self.shape)
        base = sp.csr_matrix if self.format == "csr" else sp.csc_matrix
        return base((self.data, self.indices, self.indptr), shape=self.shape)

    def tocsr(self, copy=False):
        return _dev_sparse(self._host().tocsr(copy=copy))

    def tocsc(self, copy=False):
        return _dev_sparse(self._host().tocsc(copy=copy))

    def sum(self, *args, **kwargs):
        return _wrap(np.asarray(super().sum(*args, **kwargs)))

    def diagonal(self, k=0):
        return _wrap(super().diagonal(k))

    def toarray(self, *args, **kwargs):
        return _wrap(super().toarray(*args, **kwargs))


class DevCSR(_DevSparse, sp.csr_matrix):
    pass


class DevCSC(_DevSparse, sp.csc_matrix):
    pass


class DevCOO(_DevSparse, sp.coo_matrix):
    pass


def _dev_sparse(m):
    cls = {"csr": DevCSR, "csc": DevCSC, "coo": DevCOO}.get(m.format, DevCSR)
    return cls(m if m.format in ("csr", "csc", "coo") else m.tocsr())


class _StrictSparse:
    """scipy.sparse whose constructors make device matrices from device arrays."""

    def __getattr__(self, name):
        obj = getattr(sp, name)
        if not callable(obj):
            return obj

        def call(*args, **kwargs):
            _check_sparse_args(args, name)
            made = obj(*_plain(args), **_plain(kwargs))
            return _dev_sparse(made) if sp.issparse(made) else _wrap(made)

        return call


def _check_sparse_args(args, name):
    for a in args:
        if isinstance(a, tuple):
            _check_sparse_args(a, name)
        elif sp.issparse(a):
            continue  # scipy matrices are converted from the host on purpose (convert())
        else:
            _check(a, f"sparse.{name}")


class _DeviceFakeAdvanced(FakeAdvanced):
    """The nvmath stand-in whose results are device arrays."""

    def DirectSolver(self, a, b, *, options=None):
        solver = super().DirectSolver(a, b, options=options)
        solve = solver.solve
        solver.solve = lambda: _wrap(solve())
        return solver


def strict_backend(*, free_bytes: int | None = None) -> Backend:
    """The device path on :class:`Dev` arrays (see the module docstring)."""
    provider = CudssProvider(_DeviceFakeAdvanced())
    return Backend(
        "numpy-strict", STRICT, _StrictSparse(), spla, provider,
        "CPU, strict host/device separation", device_path=True, batched_preconditioner=True,
        _to_device=lambda x: np.array(x).view(Dev), _to_host=lambda x: np.array(_plain(x)),
        _free_bytes=None if free_bytes is None else (lambda: free_bytes))
