"""Input checks guarded directly: invalid gate voltages and I-V tables are refused with an
error naming the argument, instead of reaching the solver."""

import numpy as np
import pytest

import circuitsim as cs
from circuitsim.devices import IVTable

G = np.full((3, 2), 1e-4)
NMOS = cs.devices.Level1(vto=0.5, kp=2e-4)


@pytest.mark.parametrize(
    "v_gate, match",
    [
        (np.nan, r"v_gate is nan: values must be finite"),
        (np.inf, r"v_gate is inf: values must be finite"),
        ([[1.5], [np.inf], [1.5]], r"v_gate\[1, 0\] is inf"),
        ([[1.5, 1.5], [1.5, 1.5], [1.5, -np.inf]], r"v_gate\[2, 1\] is -inf"),
        (np.full((2, 3, 2), np.nan), r"v_gate\[0, 0, 0\] is nan"),
    ],
    ids=["nan", "inf", "row-inf", "cell-minus-inf", "batched-nan"],
)
def test_non_finite_gate_voltage_is_refused(v_gate, match):
    g = np.stack([G, G]) if np.ndim(v_gate) == 3 else G
    with pytest.raises(ValueError, match=match):
        cs.crossbar(g, 1.0, 1.0, access=NMOS, v_gate=v_gate)


def test_finite_gate_voltages_are_accepted():
    tile = cs.crossbar(G, 1.0, 1.0, access=NMOS, v_gate=[[1.5], [0.0], [-0.3]])
    assert np.isfinite(tile.v_gate).all() and tile.v_gate.shape == (1, 3, 2)


def _pchip_end_slope(h0, h1, m0, m1):
    """Fritsch-Carlson end derivative (three-point formula, then made shape-preserving)."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    return d


@pytest.mark.parametrize(
    "v, i, where",
    [
        ([-1.0, 0.0, 1.0, 2.0], [-0.1e-4, 0.0, 1e-4, 2e-4], -1.0),  # flat secant at the low end
        ([-2.0, -1.0, 0.0, 1.0], [-2e-4, -1e-4, 0.0, 0.1e-4], 1.0),  # and at the high end
    ],
)
def test_table_with_zero_conductance_is_refused(v, i, where):
    # The end slope of the monotone interpolant is 0 here (the three-point estimate has the
    # wrong sign), so the curve would be flat at the end and beyond it: the docs call that
    # invalid ("interpolated conductance must be positive across the table").
    h, m = np.diff(v), np.diff(i) / np.diff(v)
    end = (h[0], h[1], m[0], m[1]) if where < 0 else (h[-1], h[-2], m[-1], m[-2])
    assert _pchip_end_slope(*end) == 0.0
    with pytest.raises(ValueError, match=r"IVTable: interpolated conductance must be > 0, got 0\.0 "
                                         rf"at V = {where!r}"):
        IVTable(v=v, i=i)


def test_table_with_positive_end_slopes_is_accepted():
    m = IVTable(v=[-1.0, 0.0, 1.0, 2.0], i=[-0.5e-4, 0.0, 1e-4, 2e-4])
    assert m.conductance(np.array([-3.0, -1.0, 2.0, 5.0]), 1e-4).min() > 0
