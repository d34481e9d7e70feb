"""GPU detection, simulated through the environment: each way of having no usable GPU gives its
own message, ``backend="cupy"`` raises it, ``backend="auto"`` falls back to the CPU and says so,
and the probe runs once per process. Each case runs in a fresh interpreter with a ``cupy``
package on ``PYTHONPATH`` that fails the way CuPy does (or, where a real cupy is installed, with
the real one and ``CUDA_VISIBLE_DEVICES=""``). The CPU path never imports cupy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

#: Fake ``cupy/__init__.py`` bodies, each failing as CuPy does in that situation.
FAKES = {
    "not-installed": 'raise ModuleNotFoundError("No module named \'cupy\'", name="cupy")',
    "no-libraries": (
        'raise ImportError("CuPy failed to load libcudart.so.13: OSError: libcudart.so.13: '
        'cannot open shared object file: No such file or directory")'),
    "no-driver": '''
        class CUDARuntimeError(RuntimeError):
            pass

        def getDeviceCount():
            raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                                   "insufficient for CUDA runtime version")

        from types import SimpleNamespace
        cuda = SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=getDeviceCount))
    ''',
    "no-device": '''
        class CUDARuntimeError(RuntimeError):
            pass

        def getDeviceCount():
            raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

        from types import SimpleNamespace
        cuda = SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=getDeviceCount))
    ''',
    "libraries-fail-at-first-use": '''
        from types import SimpleNamespace
        cuda = SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=lambda: 1))
        float64 = float

        def arange(*args, **kwargs):
            raise RuntimeError("CuPy failed to load libnvrtc.so.13: OSError: libnvrtc.so.13: "
                               "cannot open shared object file: No such file or directory")
    ''',
}

EXPECTED = {
    "not-installed": "cupy is not installed; pip install 'circuitsim[gpu]' for CUDA 13",
    "no-libraries": "cupy is installed but the CUDA libraries it needs cannot be loaded",
    "no-driver": "no usable NVIDIA driver (none installed, or one too old",
    "no-device": "no CUDA device is visible",
    "libraries-fail-at-first-use": "cupy is installed but the CUDA libraries it needs cannot",
}

#: Runs in the fresh interpreter: asks for the GPU three times, reports what it got.
PROBE = """
import json, sys
import numpy as np
import circuitsim as cs
from circuitsim import backend
tile = cs.crossbar([[1e-3, 2e-3]], r_wl=1.0, r_bl=1.0)
try:
    cs.solve(tile, [1.0], backend="cupy")
    raised = None
except backend.GPUUnavailableError as exc:
    raised = str(exc)
sol = cs.solve(tile, [1.0], backend="auto")
T = cs.transfer_matrix(tile, backend="auto")
print(json.dumps({"raised": raised, "method": sol.method, "i_out": sol.i_out.tolist(),
                  "T": T.tolist(), "misses": backend.probe.cache_info().misses,
                  "calls": backend.probe.cache_info().hits + backend.probe.cache_info().misses}))
"""


def run_python(code: str, path: str | None = None, **env) -> dict:
    environ = dict(os.environ, **env)
    if path is not None:
        environ["PYTHONPATH"] = os.pathsep.join([path, environ.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         env=environ, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def fake_cupy(tmp_path, kind: str) -> str:
    package = tmp_path / kind / "cupy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(FAKES[kind]))
    return str(tmp_path / kind)


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """What the probe reports with each fake cupy (one fresh interpreter each)."""
    root = tmp_path_factory.mktemp("fakes")
    return {kind: run_python(PROBE, fake_cupy(root, kind)) for kind in FAKES}


@pytest.mark.parametrize("kind", sorted(FAKES))
def test_each_missing_piece_has_its_message(probed, kind):
    got = probed[kind]
    assert got["raised"].startswith("backend='cupy': " + EXPECTED[kind]), got["raised"]
    reason = got["raised"].removeprefix("backend='cupy': ")
    assert got["method"] == f"cholmod [cpu: backend='auto' found no usable GPU: {reason}]" or \
        got["method"].endswith(f"[cpu: backend='auto' found no usable GPU: {reason}]")
    assert got["i_out"] == pytest.approx([1e-3 / (1 + 1e-3 * 2), 2e-3 / (1 + 2e-3 * 2)],
                                         rel=0.05)  # solved on the CPU all the same
    assert got["misses"] == 1 and got["calls"] == 3  # probed once, answered from the cache


def test_the_four_situations_are_told_apart(probed):
    kinds = ("not-installed", "no-libraries", "no-driver", "no-device")
    heads = {probed[k]["raised"].split(":")[1].split("(")[0].strip() for k in kinds}
    assert len(heads) == 4, heads


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed")
def test_without_cupy_installed():
    got = run_python(PROBE)
    assert got["raised"].startswith("backend='cupy': " + EXPECTED["not-installed"])


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="cupy is not installed")
def test_real_cupy_with_no_visible_device():
    got = run_python(PROBE, CUDA_VISIBLE_DEVICES="")
    assert got["raised"] is not None and ("no CUDA device is visible" in got["raised"]
                                          or "no usable NVIDIA driver" in got["raised"])
    assert "[cpu: backend='auto' found no usable GPU:" in got["method"]


#: Solves every kind of tile on the CPU path, then reports which GPU modules were imported.
CPU_PATH = """
import json, sys
import numpy as np
import circuitsim as cs
rng = np.random.default_rng(0)
g = rng.uniform(1e-6, 1e-4, (2, 5, 4))
v = rng.uniform(0, 0.3, (2, 3, 5))
cs.solve(cs.crossbar(g, 1.0, 1.0, 2.0, 1.0), v)
cs.solve(cs.crossbar(g, 1.0, 1.0, 2.0, 1.0), v, backend="numpy", voltages=False)
cs.solve(cs.crossbar(g, 1.0, 1.0, device=cs.devices.Sinh(a=3.0)), v).power
cs.solve(cs.crossbar(g, 1.0, 1.0, device=cs.devices.Sinh(a=3.0),
                     access=cs.devices.Level1(kp=2e-4, w=1e-6, l=1e-7), v_gate=1.8), v,
         mode="newton")
cs.transfer_matrix(cs.crossbar(g, 1.0, 1.0, 2.0, 1.0))
cs.vjp(cs.crossbar(g[0], 1.0, 1.0, 2.0, 1.0), v[0], np.ones((3, 4)))
print(json.dumps({name: name in sys.modules
                  for name in ("cupy", "cupyx", "nvmath", "circuitsim.solvers.gpu")}))
"""


def test_the_cpu_path_never_imports_cupy(tmp_path):
    # an importable cupy (a fake that would work as far as importing goes) is on the path, so
    # any import of it on the CPU path would show
    path = fake_cupy(tmp_path, "no-device")
    got = run_python(CPU_PATH, path)
    assert got == {"cupy": False, "cupyx": False, "nvmath": False,
                   "circuitsim.solvers.gpu": False}
    auto = CPU_PATH.replace("cs.transfer_matrix(", "cs.transfer_matrix(backend='auto', tile=")
    assert run_python(auto, path)["cupy"]  # the check sees an import: "auto" probes the GPU
