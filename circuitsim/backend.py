"""The array backend of one call: numpy/scipy on the CPU, or cupy/cupyx on an NVIDIA GPU.

:func:`resolve` picks it once, at the public entry point, from the ``backend=`` argument or the
input arrays (array-module dispatch, as ``cupy.get_array_module`` does), and the engine passes
the resulting :class:`Backend` value down; nothing is kept in a module-level ``xp`` or a
singleton, so one process can run both. The CPU path never imports cupy: the GPU is probed only
when ``backend="cupy"`` or ``"auto"`` asks for it, or when an input already is a cupy array.

The probe (:func:`probe`, cached per process) tells apart, each with its own message: cupy not
installed; cupy installed but the CUDA libraries it needs missing; no usable NVIDIA driver; no
visible device. ``backend="cupy"`` raises :class:`GPUUnavailableError` with that message;
``backend="auto"`` falls back to numpy and says why in ``Solution.method``.

>>> b = resolve("numpy")
>>> b.name, b.gpu, b.xp.__name__
('numpy', False, 'numpy')
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from circuitsim.solvers.arrays import array_module, is_device_array

__all__ = [
    "BACKENDS",
    "Backend",
    "GPUUnavailableError",
    "array_module",
    "is_device_array",
    "numpy_backend",
    "probe",
    "resolve",
]

#: Values of the ``backend=`` argument.
BACKENDS = ("numpy", "cupy", "auto")

#: How to get the GPU extra (README, "GPU backend").
INSTALL_HINT = "pip install 'circuitsim[gpu]' for CUDA 13, 'circuitsim[gpu-cu12]' for CUDA 12"


class GPUUnavailableError(RuntimeError):
    """``backend="cupy"`` was asked for but no usable GPU was found; the message says why."""


@dataclass(frozen=True, eq=False)
class Backend:
    """What a call computes with: array module, sparse modules and where arrays live.

    Attributes
    ----------
    name : str
        ``"numpy"`` or ``"cupy"``.
    xp : module
        ``numpy`` or ``cupy``.
    sparse, linalg : module
        ``scipy.sparse`` and ``scipy.sparse.linalg``, or their ``cupyx.scipy`` counterparts.
    direct : object or None
        The GPU's direct factorisation provider (:mod:`circuitsim.solvers.gpu`: cuDSS through
        nvmath-python, or cupyx's SuperLU); None on the CPU, whose policy lives in
        :mod:`circuitsim.factor` (CHOLMOD or SuperLU).
    device : str
        The processor, for ``Solution.method``.
    note : str
        Why this backend was chosen when it is not the one asked for (``"auto"`` without a GPU).
    device_path : bool
        Whether the engine takes its device path: plans copied with
        :func:`circuitsim.mna.on_backend`, factorisations through ``direct``, results moved with
        :meth:`to_host`. True for cupy; the plain CPU backend takes the host path. (A backend
        built on numpy with ``device_path`` True runs the device path on the CPU, which is how
        the tests exercise it without a GPU.)
    batched_preconditioner : bool
        Newton-Krylov factors the linearised matrices of all tiles of a plan as one
        block-diagonal matrix (GPU: one large factorisation beats many small ones) instead of one
        factorisation per tile (CPU: measured as fast, and less memory at once).
    oom_errors : tuple of exception types
        What the device raises when it runs out of memory.
    """

    name: str
    xp: Any
    sparse: Any
    linalg: Any
    direct: Any
    device: str
    note: str = ""
    device_path: bool = False
    batched_preconditioner: bool = False
    _to_device: Callable = dataclasses.field(default=np.asarray, repr=False)
    _to_host: Callable = dataclasses.field(default=np.asarray, repr=False)
    _free_bytes: Callable | None = dataclasses.field(default=None, repr=False)
    oom_errors: tuple = (MemoryError,)

    @property
    def gpu(self) -> bool:
        return self.name == "cupy"

    def to_device(self, x):
        """``x`` as an array of this backend (no copy when it already is one)."""
        return self._to_device(x)

    def to_host(self, x):
        """``x`` as a numpy array (no copy on the CPU)."""
        return self._to_host(x)

    def convert(self, obj):
        """Arrays, scipy sparse matrices and tuples of them, moved to this backend (a scipy
        matrix becomes one of ``self.sparse`` in the same format); other objects unchanged."""
        if isinstance(obj, tuple):
            return tuple(self.convert(o) for o in obj)
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "iu" and self.device_path:
                obj = obj.astype(np.int32) if obj.size and obj.max() < 2**31 else obj
            return self.to_device(obj)
        if sp.issparse(obj):
            if not self.device_path:
                return obj
            cls = {"csr": self.sparse.csr_matrix, "csc": self.sparse.csc_matrix}.get(obj.format)
            return (cls or self.sparse.csr_matrix)(obj if cls else obj.tocsr())
        return obj

    def free_bytes(self) -> int | None:
        """Device memory this process may still allocate (bytes), or None when unknown (the CPU:
        :func:`circuitsim.memory.available_bytes` applies there)."""
        return None if self._free_bytes is None else self._free_bytes()

    def label(self, method: str) -> str:
        """``Solution.method`` for an engine method string computed on this backend."""
        if self.gpu:
            return f"{method} [gpu: cupy on {self.device}]"
        if self.device_path:
            return f"{method} [{self.name} on {self.device}]"
        if self.note:
            return f"{method} [cpu: {self.note}]"
        return method


@functools.cache
def numpy_backend() -> Backend:
    """The CPU backend (numpy, scipy, CHOLMOD or SuperLU)."""
    return Backend("numpy", np, sp, spla, None, "CPU")


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _classify_runtime(exc: BaseException) -> str:
    """The message for a CUDA runtime error at device discovery, by CUDA's error name."""
    text = str(exc)
    if "NoDevice" in text or "no CUDA-capable device" in text:
        return ("no CUDA device is visible (is CUDA_VISIBLE_DEVICES empty, or is the GPU taken "
                f"by another container?): {_first_line(exc)}")
    if ("InsufficientDriver" in text or "NoDriver" in text or "libcuda" in text
            or "driver" in text.lower()):
        return ("no usable NVIDIA driver (none installed, or one too old for this CuPy build's "
                f"CUDA version): {_first_line(exc)}")
    return f"CUDA cannot be initialised: {_first_line(exc)}"


def _classify_library(exc: BaseException) -> str:
    return ("cupy is installed but the CUDA libraries it needs cannot be loaded (install the "
            "CUDA toolkit, or cupy's wheel with its libraries, e.g. pip install "
            f"'cupy-cuda13x[ctk]'): {_first_line(exc)}")


def _import_cupy():
    """(cupy, None) or (None, why) without treating a missing package as an error of CUDA."""
    if importlib.util.find_spec("cupy") is None:
        return None, f"cupy is not installed; {INSTALL_HINT}"
    try:
        import cupy
    except ModuleNotFoundError as exc:
        if exc.name == "cupy":
            return None, f"cupy is not installed; {INSTALL_HINT}"
        return None, _classify_library(exc)
    except Exception as exc:  # noqa: BLE001 - ImportError of libcudart & co., CUDA errors
        text = str(exc)
        if "driver" in text.lower() or "libcuda." in text:
            return None, _classify_runtime(exc)
        return None, _classify_library(exc)
    return cupy, None


def _smoke(cupy) -> str | None:
    """Run the CUDA libraries the engine needs (kernels, cuSPARSE); None when they work."""
    try:
        x = cupy.arange(3, dtype=cupy.float64) * 2.0  # a kernel: NVRTC and the runtime
        import cupyx.scipy.sparse as csp

        y = csp.identity(3, format="csr", dtype=cupy.float64) @ x  # cuSPARSE
        if float(y.sum()) != 6.0:
            return f"a test computation on the GPU gave a wrong result ({float(y.sum())} != 6)"
    except Exception as exc:  # noqa: BLE001 - whatever fails here, the GPU is unusable
        text = str(exc)
        if "NoDevice" in text or "InsufficientDriver" in text:
            return _classify_runtime(exc)
        return _classify_library(exc)
    return None


def _device_name(cupy) -> str:
    try:
        dev = cupy.cuda.Device()
        name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        return f"{name} (device {dev.id})"
    except Exception:  # noqa: BLE001 - the name is decoration only
        return "a CUDA device"


def _cupy_backend(cupy) -> Backend:
    import cupyx.scipy.sparse as csp
    import cupyx.scipy.sparse.linalg as cspla

    from circuitsim.solvers import gpu

    pool = cupy.get_default_memory_pool()

    def free_bytes():
        free, _total = cupy.cuda.runtime.memGetInfo()
        return int(free + pool.free_bytes())  # blocks held by cupy's pool are reusable

    def to_host(x):
        return cupy.asnumpy(x) if is_device_array(x) else np.asarray(x)

    oom = [cupy.cuda.memory.OutOfMemoryError, MemoryError]
    direct = gpu.best_provider()
    oom.extend(direct.oom_errors)
    return Backend("cupy", cupy, csp, cspla, direct, _device_name(cupy),
                   device_path=True, batched_preconditioner=True, _to_device=cupy.asarray, _to_host=to_host,
                   _free_bytes=free_bytes, oom_errors=tuple(oom))


@functools.cache
def probe() -> tuple[Backend | None, str]:
    """Look for a usable GPU once per process: ``(backend, "")`` or ``(None, why not)``."""
    cupy, why = _import_cupy()
    if cupy is None:
        return None, why
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError, by CUDA's error name
        return None, _classify_runtime(exc)
    if count < 1:
        return None, "no CUDA device is visible (CUDA_VISIBLE_DEVICES empty?)"
    why = _smoke(cupy)
    if why is not None:
        return None, why
    try:
        return _cupy_backend(cupy), ""
    except Exception as exc:  # noqa: BLE001 - reported, never hidden
        return None, f"the GPU backend could not be set up: {_first_line(exc)}"


def resolve(backend: str | None, *arrays) -> Backend:
    """The backend of a call.

    ``backend`` None: cupy when any of ``arrays`` is a cupy array, else numpy. ``"cupy"``: the
    GPU, or :class:`GPUUnavailableError` saying why there is none. ``"auto"``: the GPU when
    usable, else numpy with the reason in :attr:`Backend.note`. ``"numpy"``: the CPU (cupy
    inputs are copied to the host).
    """
    if isinstance(backend, Backend):
        return backend
    if backend is None:
        backend = "cupy" if any(is_device_array(a) for a in arrays) else "numpy"
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, None or a "
                         f"Backend, got {backend!r}")
    if backend == "numpy":
        return numpy_backend()
    found, why = probe()
    if found is not None:
        return found
    if backend == "cupy":
        raise GPUUnavailableError(f"backend='cupy': {why}")
    return dataclasses.replace(numpy_backend(), note=f"backend='auto' found no usable GPU: {why}")
