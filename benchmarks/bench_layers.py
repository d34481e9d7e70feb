"""Issue 8: trained networks on solved tiles (circuitsim.layers).

- ``digits``: the digits test split (360 images) through the shipped MLP and CNN, ``"circuit"``
  (passive linear tiles, 1 ohm wire segments, 64x64 tiles, G+/G- on separate tiles) against
  ``"ideal"`` (the float64 matrix products of the same network). circuitsim's time is cold: a
  freshly mapped network, transfer-matrix extraction of every tile included; the warm time (the
  transfer matrices kept) and the per-image costs are in the note.
- ``badcrossbar``: the same mapped MLP, every tile of both layers solved by badcrossbar 1.1.0
  (one ``compute`` per tile, all 360 input vectors as right-hand sides, ``r_i`` = 1 ohm, which is
  circuitsim's tile with ``r_source = r_sense = 0``) against circuitsim's batched solve of the
  same tiles (fresh network: extraction included); agreement of every tile's bit-line currents,
  relative to the tile's largest, 1e-9. Target: >= 30x.
- ``survey`` and ``1t1r-sinh``: the MLP on ``L.presets.SURVEY`` (16x16 1T1R tiles) and on 64x64
  1T1R tiles of ``Sinh(a=3)`` devices: time per image and Newton iterations of the batched solve.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .common import Row, clear_caches, compare, fmt_s, not_run, warmup

BENCH = "layers"
TOL = 1e-9
TARGET = 30.0


def available() -> str | None:
    try:
        import onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed; pip install 'circuitsim[layers]'"
    return None


def _data(limit):
    from circuitsim import layers as L

    X, y = L.dataset("digits", "test")
    calib = L.dataset("digits", "train")[0][:200]
    return (X, y, calib) if limit is None else (X[:limit], y[:limit], calib)


def linear_config():
    from circuitsim import layers as L

    return L.TileConfig(rows=64, cols=64, r_wl=1.0, r_bl=1.0, r_source=0.0, r_sense=0.0)


def _net(name: str, cfg, calib):
    from circuitsim import layers as L

    return L.load_onnx(L.model_path(name), config=cfg).calibrate(calib)


def digits_case(name: str, repeats: int, limit: int | None = None) -> Row:
    """Circuit (cold) against ideal on the digits test split through a shipped model."""
    X, y, calib = _data(limit)
    cfg = linear_config()
    ideal_net = _net(name, cfg, calib)
    box = {}

    def fresh():
        clear_caches()
        box["net"] = _net(name, cfg, calib)

    res = compare({"ideal": lambda: ideal_net(X, "ideal"),
                   "circuit": lambda: box["net"](X, "circuit")}, repeats,
                  setup={"circuit": fresh})
    t_i, _, y_i = res["ideal"]
    t_c, times_c, y_c = res["circuit"]
    warm = compare({"circuit": lambda: box["net"](X, "circuit")}, repeats)["circuit"][0]
    acc_i = float(np.mean(np.argmax(y_i, 1) == y))
    acc_c = float(np.mean(np.argmax(y_c, 1) == y))
    n = len(X)
    row = Row(BENCH, f"digits {name}, {n} images", baseline="ideal", baseline_s=t_i,
              circuitsim_s=t_c,
              extra={"images": n, "accuracy_ideal": acc_i, "accuracy_circuit": acc_c,
                     "circuit_warm_s": warm, "times_circuit": times_c,
                     "tiles": [len(layer.tiles) for layer in ideal_net.analog_layers]})
    row.note = (f"64x64 passive, 1 ohm: per image circuit {fmt_s(t_c / n)} cold, "
                f"{fmt_s(warm / n)} warm, ideal {fmt_s(t_i / n)}; accuracy ideal "
                f"{100 * acc_i:.2f} %, circuit {100 * acc_c:.2f} %")
    return row.finish()


def run_badcrossbar(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bit-line currents ``(K, n)`` of one tile ``g`` ``(m, n)`` for inputs ``v`` ``(K, m)``."""
    import badcrossbar

    sol = badcrossbar.compute(v.T, 1.0 / g, r_i=1.0, node_voltages=False, all_currents=False)
    return np.atleast_2d(sol.currents.output).reshape(len(v), g.shape[1])


def _layer_inputs(net, X):
    """Each analog layer's input in the circuit pass ``[(layer, x)]``."""
    trace = net.trace(X, "circuit")
    return [(layer, trace[k]) for k, layer in enumerate(net) if getattr(layer, "analog", False)]


def badcrossbar_case(repeats: int, limit: int | None = None) -> Row:
    """The mapped MLP tile by tile: badcrossbar against circuitsim's batched solve."""
    import logging

    logging.getLogger("badcrossbar").setLevel(logging.WARNING)
    X, _, calib = _data(limit)
    cfg = linear_config()
    inputs = _layer_inputs(_net("mlp", cfg, calib), X)
    jobs = [(layer.tile_voltages(x), layer.core.G) for layer, x in inputs]
    box = {}

    def fresh():
        clear_caches()
        net = _net("mlp", cfg, calib)
        box["layers"] = [(layer, x) for layer, (_, x) in zip(net.analog_layers, inputs)]

    def ours():
        return [layer.tile_currents(x, "circuit") for layer, x in box["layers"]]

    def theirs():
        return [np.stack([run_badcrossbar(g[b], v[b]) for b in range(len(g))]) for v, g in jobs]

    run_badcrossbar(jobs[0][1][0][:4, :4], jobs[0][0][0][:2, :4])  # warm-up, untimed
    res = compare({"badcrossbar": theirs, "circuitsim": ours}, repeats,
                  setup={"circuitsim": fresh})
    t_b, times_b, i_b = res["badcrossbar"]
    t_c, times_c, i_c = res["circuitsim"]
    diff = max(float(np.abs(c[b] - r[b]).max() / np.abs(r[b]).max())
               for c, r in zip(i_c, i_b) for b in range(len(r)))
    tiles = sum(len(g) for _, g in jobs)
    K = len(X)
    row = Row(BENCH, f"MLP tiles vs badcrossbar, K={K}", baseline="badcrossbar", baseline_s=t_b,
              circuitsim_s=t_c, max_rel_diff=diff, tolerance=TOL, target=TARGET,
              extra={"tiles": tiles, "K": K, "times_badcrossbar": times_b,
                     "times_circuitsim": times_c})
    row.note = (f"{tiles} tiles of 64x64, {K} inputs each; per tile badcrossbar "
                f"{fmt_s(t_b / tiles)}, circuitsim {fmt_s(t_c / tiles)}")
    return row.finish()


def sinh_config():
    import circuitsim as cs

    return dataclasses.replace(
        linear_config(), device=cs.devices.Sinh(a=3.0), v_read=0.3, v_gate=1.8,
        access=cs.devices.Level1(vto=0.5, kp=2e-4, lambda_=0.01, w=1e-6, l=0.1e-6))


def nonlinear_case(label: str, cfg, repeats: int, limit: int) -> Row:
    """Time per image and Newton iterations of the MLP on nonlinear (1T1R) tiles."""
    X, y, calib = _data(limit)
    net = _net("mlp", cfg, calib)
    t, times, out = compare({"circuit": lambda: net(X, "circuit")}, repeats)["circuit"]
    its = [(layer.last.newton_iterations_max, layer.last.newton_iterations_mean)
           for layer in net.analog_layers]
    acc = float(np.mean(np.argmax(out, 1) == y))
    n = len(X)
    tiles = [len(layer.tiles) for layer in net.analog_layers]
    row = Row(BENCH, f"MLP {label}, {n} images", circuitsim_s=t,
              extra={"images": n, "per_image_s": t / n, "newton_iterations": its,
                     "tiles": tiles, "accuracy_circuit": acc, "times": times})
    row.note = (f"{fmt_s(t / n)} per image ({sum(tiles)} tiles of {cfg.rows}x{cfg.cols}); "
                "Newton iterations max/mean per layer: "
                + ", ".join(f"{m}/{a:.2f}" for m, a in its)
                + f"; accuracy {100 * acc:.1f} %")
    return row.finish()


def run(cfg) -> list[Row]:
    reason = available()
    cases = ["digits mlp", "digits cnn", "MLP tiles vs badcrossbar", "MLP survey",
             "MLP 1t1r-sinh"]
    if reason:
        return [not_run(BENCH, c, reason) for c in cases]
    from circuitsim import layers as L

    warmup()
    rows = [cfg.progress(digits_case("mlp", cfg.repeats)),
            cfg.progress(digits_case("cnn", cfg.repeats))]
    try:
        import badcrossbar  # noqa: F401

        rows.append(cfg.progress(badcrossbar_case(cfg.repeats)))
    except Exception as exc:  # noqa: BLE001 - ImportError, or pycairo failing to load
        rows.append(not_run(BENCH, cases[2], f"badcrossbar not importable ({exc}); "
                            "pip install 'circuitsim[bench]'", target_text=f">={TARGET:g}x"))
    rows.append(cfg.progress(nonlinear_case("survey 16x16 1T1R", L.presets.SURVEY,
                                            cfg.repeats, 20 if cfg.quick else 100)))
    rows.append(cfg.progress(nonlinear_case("64x64 1T1R sinh", sinh_config(), cfg.repeats,
                                            10 if cfg.quick else 50)))
    return rows
