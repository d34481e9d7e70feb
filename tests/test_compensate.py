"""cs.compensate: reachable targets built from known programmed maps are recovered (checked with
cs.transfer_matrix and cs.solve, not with the compensation's own extractions); unreachable ones
stop at the bounds, name the cells that bind, and sit at a bounded least-squares point (checked
by finite differences of the objective)."""

from __future__ import annotations

import numpy as np
import pytest

import circuitsim as cs
from circuitsim import devices

M, N = 6, 5
WIRES = {"r_wl": 5.0, "r_bl": 5.0, "r_source": 20.0, "r_sense": 10.0}


def _rel(got, ref):
    return np.abs(np.asarray(got) - ref).max() / np.abs(ref).max()


def _known_map(seed=0, lo=2e-4, hi=8e-4, shape=(M, N)):
    return np.random.default_rng(seed).uniform(lo, hi, shape)


@pytest.mark.parametrize("layout", ["plain", "both", "zero-driver"])
def test_reachable_transfer_target_is_recovered(layout):
    wires = dict(WIRES)
    if layout == "both":
        wires["drive"] = "both"
    if layout == "zero-driver":
        wires["r_source"] = 0.0
        wires["r_wl"] = np.where(np.arange(N) == 0, 0.0, 5.0) * np.ones((M, 1))
    g_p = _known_map()
    target = cs.transfer_matrix(cs.crossbar(g_p, **wires))
    tile = cs.crossbar(_known_map(seed=1), **wires)
    comp = cs.compensate(tile, target, g_min=1e-5, g_max=2e-3)
    assert comp.converged and comp.error_after <= 1e-12
    assert comp.extractions <= 10
    assert _rel(cs.transfer_matrix(comp.tile), target) < 1e-9
    assert _rel(comp.g, g_p) < 1e-8  # the map is locally one-to-one: the known map comes back
    assert not comp.at_lower.any() and not comp.at_upper.any()
    assert comp.error_before > 1e-2 and comp.history[0][0] == comp.error_before


def test_default_target_is_the_ideal_crossbar():
    g = _known_map(seed=2, lo=1e-4, hi=4e-4)
    tile = cs.crossbar(g, **WIRES)
    comp = cs.compensate(tile, g_min=1e-6, g_max=1e-2)
    assert comp.converged
    assert _rel(cs.transfer_matrix(comp.tile), g.T) < 1e-9
    assert comp.error_before == pytest.approx(_rel(cs.transfer_matrix(tile), g.T), rel=1e-9)
    assert comp.target.shape == (N, M)
    v = np.random.default_rng(0).uniform(0, 1, (4, M))
    assert _rel(cs.solve(comp.tile, v).i_out, v @ g) < 1e-9


def _objective(tile, g, target):
    t = cs.crossbar(g, **{k: getattr(tile, k)[0] for k in ("r_wl", "r_bl", "r_source",
                                                           "r_sense")})
    return float(np.sum((cs.transfer_matrix(t) - target) ** 2))


def test_unreachable_target_stops_at_the_bound_and_names_the_cell():
    g_p = _known_map(seed=3)
    g_max = 1.05 * g_p.max()
    target = cs.transfer_matrix(cs.crossbar(g_p, **WIRES))
    i0, j0 = 2, 3
    target[j0, i0] *= 3.0  # the cell would have to triple, far above g_max
    tile = cs.crossbar(g_p, **WIRES)
    comp = cs.compensate(tile, target, g_min=1e-5, g_max=g_max)
    assert not comp.converged
    assert comp.at_upper[i0, j0] and comp.g[i0, j0] == g_max
    assert np.all(comp.g <= g_max) and np.all(comp.g >= 1e-5)
    start = np.clip(target.T, 1e-5, g_max)
    assert _objective(tile, comp.g, target) < _objective(tile, start, target)
    assert comp.rms_after < comp.rms_before
    T = cs.transfer_matrix(comp.tile)
    assert comp.rms_after == pytest.approx(np.linalg.norm(T - target) / np.linalg.norm(target),
                                           rel=1e-9)
    # a bounded least-squares point: moving the bound cell inward raises |T - target|^2, and the
    # free cells' derivatives vanish next to the bound cell's
    h = 1e-9
    f0 = _objective(tile, comp.g, target)

    def deriv(i, j):
        gp, gm = comp.g.copy(), comp.g.copy()
        gp[i, j] += h
        gm[i, j] -= h
        return (_objective(tile, gp, target) - _objective(tile, gm, target)) / (2 * h)

    g_in = comp.g.copy()
    g_in[i0, j0] -= 1e-3 * g_max
    assert _objective(tile, g_in, target) > f0
    bound = deriv(i0, j0)
    assert bound < 0
    free = [(0, 0), (2, 2), (3, 3), (5, 4)]
    assert all(not comp.at_upper[c] and not comp.at_lower[c] for c in free)
    assert max(abs(deriv(*c)) for c in free) < 1e-4 * abs(bound)


def test_a_target_below_the_range_binds_at_g_min():
    g_p = _known_map(seed=4)
    target = cs.transfer_matrix(cs.crossbar(g_p, **WIRES))
    target[1, 0] = 0.0  # cell (0, 1) would have to go below g_min (sneak paths feed it)
    comp = cs.compensate(cs.crossbar(g_p, **WIRES), target, g_min=1e-5, g_max=2e-3)
    assert comp.at_lower[0, 1] and comp.g[0, 1] == 1e-5
    assert comp.at_lower.sum() == 1 and not comp.at_upper.any()


def test_column_gain_reaches_a_target_scaled_per_bit_line():
    g_p = _known_map(seed=12)
    c = np.linspace(0.7, 1.3, N)
    target = cs.transfer_matrix(cs.crossbar(g_p, **WIRES)) * c[:, None]
    comp = cs.compensate(cs.crossbar(g_p, **WIRES), target, g_min=1e-5, g_max=2e-3,
                         gain="column")
    assert comp.converged and comp.gain.shape == (N,)
    assert _rel(comp.gain[:, None] * cs.transfer_matrix(comp.tile), target) < 1e-9


def test_column_gain_beats_calibration_alone_when_the_target_is_out_of_reach():
    """10 ohm wires on a 12 x 12 tile with the whole device range used: no programming gives
    g.T; fitting the conductances with the column gains does better than the gains alone."""
    g = _known_map(seed=13, lo=1e-5, hi=1e-3, shape=(12, 12))
    wires = {"r_wl": 10.0, "r_bl": 10.0}
    tile = cs.crossbar(g, **wires)
    T0 = cs.transfer_matrix(tile)
    cal = (np.sum(T0 * g.T, axis=1) / np.sum(T0 * T0, axis=1))[:, None] * T0
    rms_cal = np.linalg.norm(cal - g.T) / np.linalg.norm(g.T)
    plain = cs.compensate(tile, g_min=1e-5, g_max=1e-3)
    joint = cs.compensate(tile, g_min=1e-5, g_max=1e-3, gain="column")
    assert not plain.converged and plain.at_upper.any()
    Tj = joint.gain[:, None] * cs.transfer_matrix(joint.tile)
    rms_joint = np.linalg.norm(Tj - g.T) / np.linalg.norm(g.T)
    assert rms_joint == pytest.approx(joint.rms_after, rel=1e-9)
    assert rms_joint < 0.5 * rms_cal and rms_joint < 0.5 * plain.rms_after
    assert plain.gain is None


INPUT_KINDS = {
    "sinh": {"device": devices.Sinh(a=2.0)},
    "1t1r": {"access": devices.Level1(vto=0.5, kp=2e-4, lambda_=0.02), "v_gate": 2.5},
}


@pytest.mark.parametrize("kind", sorted(INPUT_KINDS))
def test_nonlinear_tile_matched_on_inputs(kind):
    rng = np.random.default_rng(5)
    v = rng.uniform(0.2, 1.0, (8, M))
    g_p = _known_map(seed=6)
    target = cs.solve(cs.crossbar(g_p, **WIRES, **INPUT_KINDS[kind]), v, reltol=1e-12,
                      abstol=1e-18).i_out
    tile = cs.crossbar(_known_map(seed=7), **WIRES, **INPUT_KINDS[kind])
    comp = cs.compensate(tile, target, v_in=v, g_min=1e-5, g_max=2e-3)
    assert comp.converged and comp.error_after <= 1e-10
    out = cs.solve(comp.tile, v, reltol=1e-12, abstol=1e-18).i_out
    assert _rel(out, target) < 1e-9
    assert comp.error_before > 1e-2
    assert comp.target.shape == (8, N)


def test_ideal_target_of_a_1t1r_tile_binds_where_the_transistors_limit():
    """The access transistors add series resistance: cells whose ideal current needs more than
    g_max can give bind there; the others are matched on the inputs."""
    rng = np.random.default_rng(8)
    v = rng.uniform(0.2, 1.0, (8, M))
    g = _known_map(seed=9)
    tile = cs.crossbar(g, **WIRES, **INPUT_KINDS["1t1r"])
    comp = cs.compensate(tile, v_in=v, g_min=1e-5, g_max=1.2 * g.max())
    assert not comp.converged and comp.at_upper.any()
    assert comp.rms_after < comp.rms_before
    assert np.all(comp.g[comp.at_upper] == 1.2 * g.max())


def test_batched_tiles_are_compensated_each():
    g_p = np.stack([_known_map(seed=10), _known_map(seed=11)])
    tile = cs.crossbar(g_p, **WIRES)
    comp = cs.compensate(tile, g_min=1e-6, g_max=1e-2)
    assert comp.g.shape == (2, M, N) and comp.converged.shape == (2,)
    assert comp.converged.all() and comp.error_after.shape == (2,)
    assert _rel(cs.transfer_matrix(comp.tile), g_p.transpose(0, 2, 1)) < 1e-9
    assert len(comp.history) == 2


def test_bad_arguments_name_themselves():
    tile = cs.crossbar(_known_map(), **WIRES)
    with pytest.raises(ValueError, match="g_max must exceed g_min"):
        cs.compensate(tile, g_min=1e-3, g_max=1e-4)
    with pytest.raises(ValueError, match="g_min must be >= 0"):
        cs.compensate(tile, g_min=-1.0, g_max=1e-4)
    with pytest.raises(ValueError, match=r"target has shape \(6, 5\)"):
        cs.compensate(tile, np.ones((M, N)), g_max=1.0)
    with pytest.raises(ValueError, match="v_in"):
        cs.compensate(cs.crossbar(_known_map(), **WIRES, **INPUT_KINDS["sinh"]), g_max=1.0)
    with pytest.raises(ValueError, match="tol"):
        cs.compensate(tile, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        cs.compensate(tile, max_iter=-1)
    with pytest.raises(TypeError, match="max_iterations"):
        cs.compensate(tile, max_iterations=3)
    with pytest.raises(ValueError, match="g_max has shape"):
        cs.compensate(tile, g_max=np.ones((2, 2)))
    with pytest.raises(ValueError, match="target has shape"):
        cs.compensate(tile, np.ones(3), v_in=np.ones((2, M)))
    with pytest.raises(ValueError, match="gain must be"):
        cs.compensate(tile, gain="row")
    with pytest.raises(ValueError, match="gain='column'"):
        cs.compensate(tile, v_in=np.ones((2, M)), gain="column")
