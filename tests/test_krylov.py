"""BiCGSTAB on many systems at once (circuitsim.krylov), against dense solves."""

import numpy as np
import pytest

from circuitsim.krylov import bicgstab_many


def _systems(n: int, S: int, seed: int):
    """S nonsymmetric, diagonally dominant matrices ``(S, n, n)``, a preconditioner per system
    (the inverse of the matrix with its off-diagonal part halved) and right-hand sides."""
    rng = np.random.default_rng(seed)
    off = rng.uniform(-1.0, 1.0, (S, n, n)) * (rng.uniform(size=(S, n, n)) < 0.2)
    off[:, np.arange(n), np.arange(n)] = 0.0
    A = off + np.eye(n) * (np.abs(off).sum(axis=2, keepdims=True) + 1.0)
    M = np.linalg.inv(A - 0.5 * off)
    b = rng.standard_normal((n, S))
    return A, M, b


def _operators(A, M):
    def matvec(x, mask):
        return np.einsum("sij,js->is", A[mask], x)

    def precond(r, mask):
        return np.einsum("sij,js->is", M[mask], r)

    return matvec, precond


@pytest.mark.parametrize("zero_columns", [(), (0,), (1, 4)])
def test_every_system_solved_to_its_tolerance_and_zero_ones_stay_zero(zero_columns):
    n, S, rtol = 40, 6, 1e-10
    A, M, b = _systems(n, S, seed=len(zero_columns))
    b[:, list(zero_columns)] = 0.0  # converged before the first iteration: x must stay 0
    # system 5 is harder: a weaker preconditioner, so it runs on after the others stop
    M[5] = np.diag(1.0 / np.diag(A[5]))
    matvec, precond = _operators(A, M)
    x, converged, iterations = bicgstab_many(matvec, precond, b.copy(), rtol=rtol, maxiter=200)
    assert converged.all()
    assert iterations > 1
    expected = np.linalg.solve(A, b.T[:, :, None])[:, :, 0].T
    for s in range(S):
        res = np.linalg.norm(b[:, s] - A[s] @ x[:, s])
        assert res <= 2 * rtol * np.linalg.norm(b[:, s]) + 0.0
        if s in zero_columns:
            assert np.all(x[:, s] == 0.0)
        else:
            np.testing.assert_allclose(x[:, s], expected[:, s], rtol=0, atol=1e-8)


def test_right_hand_side_is_not_written():
    A, M, b = _systems(30, 3, seed=7)
    matvec, precond = _operators(A, M)
    keep = b.copy()
    bicgstab_many(matvec, precond, b, rtol=1e-12, maxiter=100)
    np.testing.assert_array_equal(b, keep)


def test_a_system_that_cannot_converge_in_maxiter_is_flagged():
    A, M, b = _systems(30, 3, seed=9)
    M[1] = np.eye(30)  # no preconditioning: far more than two iterations needed
    matvec, precond = _operators(A, M)
    _, converged, iterations = bicgstab_many(matvec, precond, b, rtol=1e-14, maxiter=2)
    assert iterations == 2
    assert not converged[1]


def test_size_tolerance_loosens_only_systems_with_small_solutions():
    n, S = 40, 4
    A, M, b = _systems(n, S, seed=11)
    M[:] = [np.diag(1.0 / np.diag(a)) for a in A]  # a weak preconditioner: many iterations
    b[:, :2] *= 1e-6  # systems 0, 1: solutions of about 1e-6; systems 2, 3: of about 1
    matvec, precond = _operators(A, M)
    exact = np.linalg.solve(A, b.T[:, :, None])[:, :, 0].T
    c, cap = np.full(S, 1e-13), 1e-3  # the error wanted below about c, whatever |x|
    x_full, ok_full, it_full = bicgstab_many(matvec, precond, b, rtol=1e-12, maxiter=200)
    x, ok, it = bicgstab_many(matvec, precond, b, rtol=1e-12, maxiter=200, size_tol=(c, cap))
    assert ok_full.all() and ok.all()
    assert it == it_full  # systems 2, 3 still run to rtol
    residual = np.linalg.norm(b - np.einsum("sij,js->is", A, x), axis=0)
    b_norm = np.linalg.norm(b, axis=0)
    size = np.abs(x).max(axis=0)
    allowed = np.maximum(1e-12, np.minimum(cap, c / size))
    assert np.all(residual <= 2 * allowed * b_norm)
    # the small systems stopped well before rtol, the large ones did not
    assert np.all(residual[:2] > 1e3 * 1e-12 * b_norm[:2])
    assert np.all(residual[2:] <= 2e-12 * b_norm[2:])
    np.testing.assert_array_equal(x[:, 2:], x_full[:, 2:])
    # and the small systems' error is still about c or less
    assert np.abs(x[:, :2] - exact[:, :2]).max() <= 10 * c[0]
    assert np.abs(x_full - exact).max() <= 1e-9
