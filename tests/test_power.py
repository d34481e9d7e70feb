"""Read power: the breakdown adds up to what the sources deliver, and each part is right."""

import numpy as np
import pytest
from conftest import dissipated_power

import circuitsim as cs


def _tile(rng, **kw):
    m, n = 5, 7
    g = rng.uniform(1e-5, 1e-3, (m, n))
    return cs.crossbar(g, r_wl=rng.uniform(0.5, 3, (m, n)), r_bl=rng.uniform(0.5, 3, (m, n)),
                       r_source=rng.uniform(5, 20, (m, 1))[:, 0], r_sense=4.0, **kw)


def test_one_cell_closed_form():
    # v = 1 V through 100 ohm driver, 2 + 3 ohm wires, 1 kohm device, 50 ohm sense
    tile = cs.crossbar([[1e-3]], 2.0, 3.0, 100.0, 50.0)
    p = cs.solve(tile, [1.0]).power
    i = 1.0 / (100.0 + 2.0 + 3.0 + 1000.0 + 50.0)
    assert p.delivered == pytest.approx(i, rel=1e-13, abs=0)
    assert p.drivers == pytest.approx(i * i * 100.0, rel=1e-12, abs=0)
    assert p.wires == pytest.approx(i * i * 5.0, rel=1e-12, abs=0)
    assert p.sense == pytest.approx(i * i * 50.0, rel=1e-12, abs=0)
    assert p.devices == pytest.approx(i * i * 1000.0, rel=1e-12, abs=0)
    assert p.transistors == 0.0


@pytest.mark.parametrize("drive", ["left", "both"])
def test_linear_tile_matches_independent_sum_and_conservation(rng, drive):
    tile = _tile(rng, drive=drive)
    v = rng.uniform(-0.3, 0.3, (3, tile.m))
    sol = cs.solve(tile, v)
    p = sol.power
    assert p.delivered.shape == (3,)
    for k in range(3):
        ref = dissipated_power(tile, 0, v[k], sol.v_wl[k], sol.v_bl[k])
        assert p.dissipated[k] == pytest.approx(ref, rel=1e-12, abs=0)
    np.testing.assert_allclose(p.dissipated, p.delivered, rtol=1e-10)
    assert np.all(p.drivers > 0) and np.all(p.sense > 0) and np.all(p.wires > 0)


def test_sense_voltage_absorbs_power(rng):
    tile = cs.crossbar(rng.uniform(1e-5, 1e-4, (4, 3)), 1.0, 1.0, 2.0, 3.0, v_sense=0.05)
    p = cs.solve(tile, np.full(4, 0.2)).power
    assert p.dissipated == pytest.approx(p.delivered, rel=1e-10, abs=0)


def test_nonlinear_1t1r_parts_add_up(rng):
    tile = _tile(rng, device=cs.devices.Sinh(a=3.0),
                 access=cs.devices.Level1(vto=0.5, kp=2e-4, lambda_=0.01, w=1e-6, l=1e-7),
                 v_gate=1.8)
    v = rng.uniform(0, 0.5, (2, tile.m))
    p = cs.solve(tile, v).power
    assert np.all(p.transistors > 0) and np.all(p.devices > 0)
    np.testing.assert_allclose(p.dissipated, p.delivered, rtol=1e-8)


def test_batched_shapes(rng):
    g = rng.uniform(1e-5, 1e-4, (2, 3, 4))
    tile = cs.crossbar(g, 1.0, 1.0, 1.0, 1.0)
    p = cs.solve(tile, np.full((2, 5, 3), 0.1)).power
    assert p.devices.shape == (2, 5)
    np.testing.assert_allclose(p.dissipated, p.delivered, rtol=1e-10)
