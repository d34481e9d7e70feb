"""``circuitsim evaluate``: accuracy of a network on mapped, solved tiles.

    circuitsim evaluate mlp                                   # shipped digits MLP, 128x128 tiles
    circuitsim evaluate cnn --tile 64x64 --r-wire 1           # shipped digits CNN
    circuitsim evaluate model.onnx --preset survey --validate 2
    circuitsim evaluate mlp --tile 16x16 64x64 --r-wire 0 1 5 # a sweep: one accuracy table

Prints the report of :func:`circuitsim.layers.evaluate` as tables (``--json``: as JSON). With
several ``--tile`` or ``--r-wire`` values it evaluates every combination and prints the accuracy
of the last mode per combination. Exit status: 0 done, 1 an ngspice cross-check disagreed,
2 a usage error (bad option, missing file or package, no ngspice).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

__all__ = ["main"]


class UsageError(Exception):
    """A bad option or argument: reported with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _tile(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        rows, cols = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
    except ValueError:
        rows = cols = 0
    if rows < 1 or cols < 1:
        raise argparse.ArgumentTypeError(f"tile must be ROWSxCOLS (e.g. 64x64) or N, got {text!r}")
    return rows, cols


def _nonneg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="circuitsim evaluate", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Exit status: 0 done, 1 an ngspice cross-check disagreed, 2 usage error.")
    p.add_argument("model", help="a shipped model (mlp, cnn: digits) or an .onnx / .npz file")
    p.add_argument("--dataset", choices=("digits", "mnist5k"), default="digits")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N inputs")
    p.add_argument("--calibrate", type=int, default=200, metavar="N",
                   help="calibrate input and ADC ranges on N training images (digits; mnist5k: "
                   "on the evaluated images) (default 200)")
    p.add_argument("--preset", choices=("survey",), default=None,
                   help="start from a preset configuration (circuitsim.layers.presets)")
    p.add_argument("--tile", type=_tile, nargs="+", default=None, metavar="RxC",
                   help="tile size(s) (default 128x128, survey 16x16)")
    p.add_argument("--r-wire", type=_nonneg, nargs="+", default=None, metavar="OHM",
                   help="wire resistance(s) per cell segment, word and bit lines (default 1)")
    for name in ("r-source", "r-sense"):
        p.add_argument(f"--{name}", type=_nonneg, default=None, metavar="OHM")
    p.add_argument("--mapping", choices=("separate", "interleaved", "offset"), default=None)
    p.add_argument("--g-min", type=_nonneg, default=None, metavar="S")
    p.add_argument("--g-max", type=_nonneg, default=None, metavar="S")
    p.add_argument("--v-read", type=_nonneg, default=None, metavar="V")
    p.add_argument("--levels", type=int, default=None, help="conductance levels")
    p.add_argument("--adc-bits", type=int, default=None, help="ADC bits (calibrated range)")
    p.add_argument("--dac-bits", type=int, default=None, help="DAC bits (unsigned range)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--modes", nargs="+", choices=("ideal", "mapped", "circuit"),
                   default=["ideal", "mapped", "circuit"])
    p.add_argument("--no-isolated", action="store_true",
                   help="skip the per-layer errors with ideal inputs (half the time)")
    p.add_argument("--validate", type=int, default=0, metavar="N",
                   help="cross-check N tiles of every layer against ngspice")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _base_config(args):
    from circuitsim import layers as L

    cfg = L.presets.SURVEY if args.preset == "survey" else L.TileConfig()
    changes = {}
    for opt, name in (("r_source", "r_source"), ("r_sense", "r_sense"), ("mapping", "mapping"),
                      ("g_min", "g_min"), ("g_max", "g_max"), ("v_read", "v_read"),
                      ("levels", "levels"), ("seed", "seed")):
        if getattr(args, opt) is not None:
            changes[name] = getattr(args, opt)
    if args.adc_bits is not None:
        changes["adc"] = L.ADC(bits=args.adc_bits)
    if args.dac_bits is not None:
        changes["dac"] = L.DAC(bits=args.dac_bits, signed=False)
    return dataclasses.replace(cfg, **changes)


def _load(model: str, config):
    from circuitsim import layers as L

    path = L.model_path(model) if model in L.data.MODELS else Path(model)
    if not path.exists():
        raise UsageError(f"model {model!r}: no such file, and not a shipped model "
                         f"({', '.join(L.data.MODELS)})")
    if path.suffix == ".onnx":
        return L.load_onnx(path, config=config)
    if path.suffix == ".npz":
        return L.load_npz(path, config=config)
    raise UsageError(f"model {model!r}: expected an .onnx or .npz file")


def _data(args):
    from circuitsim import layers as L

    X, y = L.dataset(args.dataset, "test")
    if args.limit is not None:
        X, y = X[: args.limit], y[: args.limit]
    if args.dataset == "digits":
        calib = L.dataset("digits", "train")[0][: args.calibrate]
    else:
        calib = X[: args.calibrate]
    return X, y, calib


def _run(args) -> int:
    from circuitsim.validation import NgspiceMissingError

    from circuitsim import layers as L

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    if args.calibrate < 1:
        raise UsageError(f"--calibrate must be >= 1, got {args.calibrate}")
    if args.validate < 0:
        raise UsageError(f"--validate must be >= 0, got {args.validate}")
    try:
        base = _base_config(args)
        tiles = args.tile or [(base.rows, base.cols)]
        wires = args.r_wire or [base.r_wl]
        configs = [(t, r, dataclasses.replace(base, rows=t[0], cols=t[1], r_wl=r, r_bl=r))
                   for r in wires for t in tiles]
        X, y, calib = _data(args)
    except (ValueError, TypeError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    runs = []
    for tile, r, cfg in configs:
        try:
            net = _load(args.model, cfg)
            rep = L.evaluate(net, X, y, modes=args.modes, calibration=calib,
                             isolated=not args.no_isolated, validate=args.validate)
        except NgspiceMissingError as exc:
            print(f"circuitsim evaluate: {exc}", file=sys.stderr)
            return 2
        except (ValueError, TypeError, ImportError) as exc:
            raise UsageError(f"{args.model}: {exc}") from None
        runs.append((tile, r, rep))
    if args.json:
        print(json.dumps([{"tile": list(t), "r_wire": r, "report": rep.to_dict()}
                          for t, r, rep in runs], indent=1, default=_jsonable))
    elif len(runs) == 1:
        print(f"{args.model} on {args.dataset}:")
        print(runs[0][2].table())
    else:
        print(_sweep_table(args, runs))
    bad = [rep for *_, rep in runs for lay in rep.layers
           if lay.validation is not None and not lay.validation.passed]
    return 1 if bad else 0


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _sweep_table(args, runs) -> str:
    mode = args.modes[-1]
    tiles = list(dict.fromkeys(t for t, _, _ in runs))
    wires = list(dict.fromkeys(r for _, r, _ in runs))
    cell = {}
    for t, r, rep in runs:
        text = f"{100 * rep.accuracy[mode]:.2f} %"
        if mode != "ideal" and rep.layers:
            text += f" / {rep.layers[-1].rel_rms_propagated[mode]:.1e}"
        cell[(t, r)] = text
    n = runs[0][2].n
    head = [f"{args.model} on {args.dataset} ({n} images), {mode} accuracy"]
    if mode != "ideal":
        head[0] += " / relative RMS error of the last analog layer's output"
    if "ideal" in args.modes:
        head[0] += f"; ideal accuracy {100 * runs[0][2].accuracy['ideal']:.2f} %"
    rows = [["r_wire (ohm)"] + [f"{t[0]}x{t[1]}" for t in tiles]]
    rows += [[f"{r:g}"] + [cell[(t, r)] for t in tiles] for r in wires]
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(head + body)


def main(argv=None) -> int:
    """Entry point of ``circuitsim evaluate``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        return _run(args)
    except UsageError as exc:
        print(parser.format_usage().rstrip(), file=sys.stderr)
        print(f"circuitsim evaluate: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
