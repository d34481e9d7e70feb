"""The IR-drop study: solve a realistic tile exactly and summarise what the wires do to it.

The embedded default is a 128 x 128 passive tile of metal-oxide RRAM (20 kOhm to 1 MOhm, random
weights), 1 Ohm of word- and bit-line wire per cell, 20 Ohm drivers and 10 Ohm sense inputs,
read at 0.2 V: all rows driven (the worst case) plus 64 random input vectors. Run it with
``python -m circuitsim.study`` (``--help`` lists the knobs).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import circuitsim as cs

__all__ = ["irdrop_main", "irdrop_summary"]


def irdrop_summary(tile, v_in: np.ndarray) -> dict:
    """Solve ``tile`` for ``v_in`` ``(K, m)`` and compare it with the ideal crossbar ``v_in @ g``.

    Returns a dict: ``worst_wl_drop`` (largest magnitude of a word-line node's difference from its
    input, V), ``worst_bl_rise`` (largest magnitude of a bit-line node's difference from the sense
    voltage, V; both hold for inputs of either sign), their locations,
    ``i_out`` and ``i_ideal`` ``(K, n)``, relative output-current errors (``err_mean``,
    ``err_max``, relative to the largest ideal output of the same vector), ``read_power`` (W,
    mean over inputs) and the solve time.
    """
    start = time.perf_counter()
    sol = cs.solve(tile, v_in)
    elapsed = time.perf_counter() - start
    g = tile.g[0]
    ideal = v_in @ g if tile.is_linear else None
    drop = np.abs(v_in[:, :, None] - sol.v_wl)
    rise = np.abs(sol.v_bl - tile.v_sense[0][None, None, :])
    k_wl, i_wl, j_wl = np.unravel_index(np.argmax(drop), drop.shape)
    k_bl, i_bl, j_bl = np.unravel_index(np.argmax(rise), rise.shape)
    out = {
        "m": tile.m,
        "n": tile.n,
        "inputs": len(v_in),
        "worst_wl_drop": float(drop.max()),
        "worst_wl_node": (int(i_wl), int(j_wl), int(k_wl)),
        "worst_bl_rise": float(rise.max()),
        "worst_bl_node": (int(i_bl), int(j_bl), int(k_bl)),
        "i_out": sol.i_out,
        "read_power": float(np.mean(np.sum(v_in * sol.i_source, axis=1))),
        "seconds": elapsed,
        "method": sol.method,
        "max_kcl_residual": float(np.max(sol.residual)),
    }
    if ideal is None:  # nonlinear devices: the ideal crossbar is the small-signal one
        ideal = v_in @ g
    scale = np.abs(ideal).max(axis=1, keepdims=True)
    err = np.abs(sol.i_out - ideal) / np.where(scale > 0, scale, 1.0)
    out.update(i_ideal=ideal, err_mean=float(err.mean()), err_max=float(err.max()))
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circuitsim irdrop", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=128, help="word lines m (default 128)")
    p.add_argument("--cols", type=int, default=128, help="bit lines n (default 128)")
    p.add_argument("--r-wire", type=float, default=1.0, help="WL and BL resistance per cell, ohm")
    p.add_argument("--r-source", type=float, default=20.0, help="driver resistance, ohm")
    p.add_argument("--r-sense", type=float, default=10.0, help="sense resistance, ohm")
    p.add_argument("--r-on", type=float, default=2e4, help="lowest device resistance, ohm")
    p.add_argument("--r-off", type=float, default=1e6, help="highest device resistance, ohm")
    p.add_argument("--v-read", type=float, default=0.2, help="read voltage, V")
    p.add_argument("--inputs", type=int, default=64, help="random input vectors besides all-on")
    p.add_argument("--sinh", type=float, default=None, metavar="A",
                   help="use the sinh device I = (g/a) sinh(a V) with this a (1/V)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _check(parser: argparse.ArgumentParser, args) -> None:
    """Refuse option values that make no tile (argparse exits with status 2)."""
    for name in ("rows", "cols"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.inputs < 0:
        parser.error(f"--inputs must be >= 0, got {args.inputs}")
    for name in ("r_wire", "r_source", "r_sense"):
        value = getattr(args, name)
        if not (np.isfinite(value) and value >= 0):
            parser.error(f"--{name.replace('_', '-')} must be a resistance >= 0 ohm, got {value:g}")
    for name in ("r_on", "r_off"):
        value = getattr(args, name)
        if not (np.isfinite(value) and value > 0):
            parser.error(f"--{name.replace('_', '-')} must be a resistance > 0 ohm, got {value:g}")
    if args.r_on > args.r_off:
        parser.error(f"--r-on ({args.r_on:g} ohm) must not exceed --r-off ({args.r_off:g} ohm)")
    if not (np.isfinite(args.v_read) and args.v_read != 0):
        parser.error(f"--v-read must be a nonzero voltage, got {args.v_read:g}")
    if args.sinh is not None and not (np.isfinite(args.sinh) and args.sinh > 0):
        parser.error(f"--sinh must be a coefficient > 0 (1/V), got {args.sinh:g}")


def irdrop_main(argv=None) -> int:
    """Command-line entry of the study; prints the summary and returns 0 (2 for bad options)."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    rng = np.random.default_rng(args.seed)
    m, n = args.rows, args.cols
    g = rng.uniform(1 / args.r_off, 1 / args.r_on, (m, n))
    device = cs.devices.Sinh(a=args.sinh) if args.sinh is not None else None
    tile = cs.crossbar(g, args.r_wire, args.r_wire, args.r_source, args.r_sense, device=device)
    v_in = np.vstack([np.full(m, args.v_read), args.v_read * rng.random((args.inputs, m))])
    s = irdrop_summary(tile, v_in)
    i_wl, j_wl, _ = s["worst_wl_node"]
    i_bl, j_bl, _ = s["worst_bl_node"]
    print(f"IR-drop study: {m} x {n} tile, {s['inputs']} input vectors (first: all rows at "
          f"{args.v_read:g} V)")
    print(f"  devices {args.r_on:g}..{args.r_off:g} ohm"
          + (f", sinh a = {args.sinh:g} 1/V" if device else ", linear")
          + f"; wire {args.r_wire:g} ohm/cell; driver {args.r_source:g} ohm; "
          f"sense {args.r_sense:g} ohm")
    print(f"  solved exactly in {s['seconds']:.3f} s ({s['method']}), "
          f"largest KCL residual {s['max_kcl_residual']:.2e} A")
    print(f"  worst word-line drop : {1e3 * s['worst_wl_drop']:8.3f} mV "
          f"({100 * s['worst_wl_drop'] / abs(args.v_read):.2f} % of the read voltage) "
          f"at wl[{i_wl},{j_wl}]")
    print(f"  worst bit-line rise  : {1e3 * s['worst_bl_rise']:8.3f} mV at bl[{i_bl},{j_bl}]")
    print(f"  output current error vs ideal crossbar: mean {100 * s['err_mean']:.3f} %, "
          f"max {100 * s['err_max']:.3f} % (of each vector's largest ideal output)")
    all_on = s["i_out"][0] / s["i_ideal"][0]
    print(f"  all rows on: outputs are {100 * all_on.min():.2f} % .. {100 * all_on.max():.2f} % "
          f"of ideal (worst column {int(np.argmin(all_on))})")
    print(f"  mean read power: {1e3 * s['read_power']:.3f} mW")
    return 0


if __name__ == "__main__":
    raise SystemExit(irdrop_main())
