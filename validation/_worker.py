"""Worker process: run one deck through ngspice's shared library (PySpice's ``NgSpiceShared``).

Run as ``python -m circuitsim.validation._worker REQUEST RESULT``: ``REQUEST`` is a JSON file with
``deck`` (the netlist text), ``RESULT`` the JSON file this writes. Running each deck in its own
process keeps PySpice's per-analysis memory leak and any crash of the library away from the
caller. The result holds ``status`` (``"ok"``, ``"ngspice"`` for an error of ngspice's, or
``"unsupported"`` when PySpice cannot drive this library), ``vectors`` (name to value: node
voltages by node name, branch currents as ``i(vname)``), ``time_s`` (loading and running the
circuit), ``version`` and ngspice's output lines.
"""

from __future__ import annotations

import json
import logging
import sys
import time

#: ngspice versions PySpice 1.5 cannot drive (its issues #373, #379).
FIRST_UNSUPPORTED = 42


def _vectors(ng) -> dict[str, float]:
    """Every vector of the last plot (the operating point) as one float, names normalised."""
    import numpy as np

    out = {}
    for name, vector in ng.plot(None, ng.last_plot).items():
        value = float(np.asarray(vector.to_waveform(to_real=True), dtype=float)[0])
        key = name.lower()
        out[f"i({key[:-7]})" if key.endswith("#branch") else key] = value
    return out


def run(deck: str) -> dict:
    """Run ``deck`` and return the result dictionary described in the module docstring."""
    # PySpice logs "Unsupported Ngspice version" for any version it does not list, and every
    # ngspice message; this process has no other use for that logger, so silence it here.
    logging.getLogger("PySpice").setLevel(logging.CRITICAL + 1)
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared

    lines: list[str] = []

    class Recorder(NgSpiceShared):
        def send_char(self, message, ngspice_id):
            lines.append(message.partition(" ")[2])
            return 0

    ng = Recorder(ngspice_id=0)
    version = ng._ngspice_version
    result = {"version": version, "output": lines}
    if version is not None and version >= FIRST_UNSUPPORTED:
        return {
            **result,
            "status": "unsupported",
            "error": f"PySpice 1.5 cannot drive ngspice {version} (>= {FIRST_UNSUPPORTED})",
        }
    lines.clear()
    start = time.perf_counter()
    try:
        ng.load_circuit(deck)
        ng.run()
    except NameError as exc:  # PySpice's NgSpiceCircuitError and NgSpiceCommandError
        return {**result, "status": "ngspice", "error": str(exc)}
    elapsed = time.perf_counter() - start
    try:
        vectors = _vectors(ng)
    except Exception as exc:  # noqa: BLE001 - report anything PySpice trips on, and fall back
        return {**result, "status": "unsupported", "error": f"{type(exc).__name__}: {exc}"}
    return {**result, "status": "ok", "vectors": vectors, "time_s": elapsed}


def main(argv: list[str]) -> int:
    request, result_path = argv
    with open(request) as fh:
        deck = json.load(fh)["deck"]
    try:
        result = run(deck)
    except Exception as exc:  # noqa: BLE001 - PySpice missing or broken: the caller falls back
        result = {"status": "unsupported", "error": f"{type(exc).__name__}: {exc}", "output": []}
    with open(result_path, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
