"""Programming non-idealities and converters: seeded, reproducible, batch-size independent, and
statistically as configured (tolerances from the sample size)."""

from __future__ import annotations

import numpy as np
import pytest

from circuitsim import layers as L

G_MIN, G_MAX = 1e-6, 1e-4


def _layer(W, stream=0, **kw):
    cfg = L.TileConfig(rows=32, cols=32, g_min=G_MIN, g_max=G_MAX, **kw)
    return L.Linear(W, config=cfg, stream=stream, x_max=1.0)


@pytest.fixture
def W():
    return np.random.default_rng(0).normal(size=(60, 80))


def _targets(W):
    """G+ and G- of the differential mapping, ``(2, in, out)``, from the issue's formula."""
    s = (G_MAX - G_MIN) / np.abs(W).max()
    return G_MIN + s * np.stack([np.maximum(W.T, 0), np.maximum(-W.T, 0)])


ALL = {"levels": 8, "variability": L.Variability(0.1), "faults": L.Faults(0.02, 0.03),
           "drift": L.Drift(t=1000.0, nu=0.05, nu_std=0.02)}


def test_seeded_and_reproducible(W):
    a, b = _layer(W, seed=3, **ALL), _layer(W, seed=3, **ALL)
    np.testing.assert_array_equal(a.core.devices, b.core.devices)
    assert not np.array_equal(a.core.devices, _layer(W, seed=4, **ALL).core.devices)
    assert not np.array_equal(a.core.devices, _layer(W, seed=3, stream=1, **ALL).core.devices)


def test_results_do_not_depend_on_batch_size(W):
    x = np.random.default_rng(1).uniform(0.0, 1.0, (40, 80))
    layer = _layer(W, seed=2, dac=L.DAC(bits=6, signed=False), adc=L.ADC(bits=7), **ALL)
    layer.calibrate(x[:10])
    full = layer(x, "mapped")
    parts = np.concatenate([layer(x[s : s + 7], "mapped") for s in range(0, 40, 7)])
    np.testing.assert_array_equal(full, parts)
    one = layer(x[13:14], "mapped")
    np.testing.assert_array_equal(one, full[13:14])


def test_levels_are_evenly_spaced_and_nearest(W):
    g = _layer(W, levels=5).core.devices
    levels = np.linspace(G_MIN, G_MAX, 5)
    nearest = levels[np.argmin(np.abs(_targets(W)[..., None] - levels), axis=-1)]
    np.testing.assert_allclose(g, nearest, rtol=1e-12)


def _std_ok(sample, sigma):
    """Sample standard deviation within 5 standard errors (sigma / sqrt(2N)) of sigma, and mean
    within 5 sigma / sqrt(N) of 0."""
    n = sample.size
    assert abs(sample.std() - sigma) < 5 * sigma / np.sqrt(2 * n)
    assert abs(sample.mean()) < 5 * sigma / np.sqrt(n)


@pytest.mark.parametrize("var, transform", [
    (L.Variability(0.1), lambda g, t: g / t - 1),
    (L.Variability(2e-7, relative=False), lambda g, t: g - t),
    (L.Variability(0.1, on="R"), lambda g, t: (1 / g) / (1 / t) - 1),
    (L.Variability(2e3, on="R", relative=False), lambda g, t: 1 / g - 1 / t),
    (L.Variability(0.2, distribution="lognormal"), lambda g, t: np.log(g / t)),
    (L.Variability(0.2, distribution="lognormal", on="R"), lambda g, t: np.log(t / g)),
])
def test_variability_statistics(W, var, transform):
    layer = _layer(W, variability=var, seed=5)
    t = _targets(W)
    _std_ok(transform(layer.core.devices, t), var.sigma)
    assert layer.programming.devices == t.size


def test_negative_conductances_are_clipped_and_counted(W):
    layer = _layer(W, variability=L.Variability(1.5e-6, relative=False))
    g = layer.core.devices
    assert g.min() == 0.0
    assert layer.programming.clipped == np.count_nonzero(g == 0.0) > 0


def test_nonpositive_resistance_is_an_error(W):
    with pytest.raises(ValueError, match="non-positive resistance.*lognormal"):
        _layer(W, variability=L.Variability(0.5, on="R"))


def test_fault_rates(W):
    p_on, p_off = 0.05, 0.1
    layer = _layer(W, faults=L.Faults(stuck_on=p_on, stuck_off=p_off), seed=1)
    g, t = layer.core.devices, _targets(W)
    n = g.size
    on, off = layer.programming.stuck_on, layer.programming.stuck_off
    for count, p in ((on, p_on), (off, p_off)):
        assert abs(count - p * n) < 5 * np.sqrt(n * p * (1 - p))
    changed = ~np.isclose(g, t, rtol=1e-12, atol=0.0)
    assert np.all(np.isin(g[changed], [G_MIN, G_MAX]))
    assert np.count_nonzero(g == G_MAX) >= on


def test_drift_follows_the_power_law(W):
    g = _layer(W, drift=L.Drift(t=2000.0, nu=0.06)).core.devices
    np.testing.assert_allclose(g, _targets(W) * (2000.0 / 20.0) ** -0.06, rtol=1e-13)
    spread = _layer(W, drift=L.Drift(t=2000.0, nu=0.06, nu_std=0.01), seed=9).core.devices
    nu = -np.log(spread / _targets(W)) / np.log(100.0)
    _std_ok(nu - 0.06, 0.01)


def test_dac_levels_and_clipping():
    x = np.array([[-0.3, 0.0, 0.1, 0.5, 1.2]])
    layer = L.Linear(np.eye(5), config=L.TileConfig(rows=8, cols=8, r_wl=0, r_bl=0,
                                                    dac=L.DAC(bits=2, signed=False)), x_max=1.0)
    y = layer(x, "mapped")  # unsigned 2 bits: levels 0, 1/3, 2/3, 1
    np.testing.assert_allclose(y, [[0.0, 0.0, 0.0, 2 / 3, 1.0]], atol=1e-15)
    assert (layer.last.dac_clipped, layer.last.dac_conversions) == (2, 5)
    signed = L.Linear(np.eye(5), config=L.TileConfig(rows=8, cols=8, r_wl=0, r_bl=0,
                                                     dac=L.DAC(bits=3)), x_max=1.0)
    np.testing.assert_allclose(signed(x, "circuit"), [[-1 / 3, 0.0, 0.0, 2 / 3, 1.0]],
                               atol=1e-15)


def test_adc_quantizes_differential_currents_and_counts_clips():
    W = np.array([[1.0, 0.5], [-1.0, 0.25]])
    cfg = L.TileConfig(rows=2, cols=2, r_wl=0, r_bl=0, v_read=0.2,
                       adc=L.ADC(bits=3, range=0.5 * 0.2 * (G_MAX - G_MIN)))
    layer = L.Linear(W, config=cfg, x_max=1.0)
    x = np.array([[0.2, 0.2], [1.0, 1.0]])
    # full scale = 0.5 in weight units; 3 bits: steps of 0.5 / 3; ideal outputs 0.3, -0.15, 1.5,
    # -0.75 -> 1/3, -1/6, 1/2 (clipped), -1/2 (clipped)
    np.testing.assert_allclose(layer(x, "mapped"), [[1 / 3, -1 / 6], [0.5, -0.5]], rtol=1e-12)
    assert (layer.last.adc_clipped, layer.last.adc_conversions) == (2, 4)


def test_adc_ranges():
    rng = np.random.default_rng(4)
    W, x = rng.normal(size=(6, 10)), rng.uniform(0, 1, (20, 10))
    full = L.Linear(W, config=L.TileConfig(rows=4, cols=4, adc=L.ADC(bits=6, range="max")),
                    x_max=1.0)
    assert full.core.adc_full_scale == pytest.approx(4 * 0.2 * (G_MAX - G_MIN))
    offset = L.Linear(W, config=L.TileConfig(rows=4, cols=4, mapping="offset",
                                             adc=L.ADC(bits=6, range="max")), x_max=1.0)
    assert offset.core.adc_full_scale == pytest.approx(4 * 0.2 * G_MAX)
    cal = L.Linear(W, config=L.TileConfig(rows=4, cols=4, adc=L.ADC(bits=6))).calibrate(x)
    assert cal.core.x_max == x.max()
    d = cal.tile_currents(x, "mapped")  # (B, K, cols): G+ and G- tiles alternate
    diff = d[0::2] - d[1::2]  # per (row block, column block): 3 x 2
    used = [diff[rc][:, : 4 if rc % 2 == 0 else 2] for rc in range(6)]  # outputs 0-3 and 4-5
    ref = max(np.abs(u).max() for u in used)
    assert cal.core.adc_full_scale == pytest.approx(ref, rel=1e-12)
    assert cal(x, "mapped").shape == (20, 6) and cal.last.adc_clipped == 0
    q = L.Linear(W, config=L.TileConfig(rows=4, cols=4, adc=L.ADC(bits=6, quantile=0.5)))
    q.calibrate(x)
    assert q.core.adc_full_scale < cal.core.adc_full_scale
    q(x, "mapped")
    assert q.last.adc_clipped > 0
