"""The proximal map of the data term, ``LinearOperator.prox_l2``: argmin_x ||A x - y||^2 + rho ||x - z||^2.

Checked against a dense solve of the normal equations (A^T A + rho I) x = A^T y + rho z on small
instances of every registered linear operator (closed forms: SVD, masks), conjugate gradients
against the SVD closed form, and rho = 0 as the projection onto {A x = y}.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from conftest import small_operator
from restore.operators.base import LinearOperator, SVDOperator

SHAPE = (3, 8, 8)


def dense(op, shape=SHAPE) -> torch.Tensor:
    """The matrix of ``op`` on inputs of ``shape``, (m, n), from its action on the unit vectors."""
    n = 1
    for s in shape:
        n *= s
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    return op.forward(eye).reshape(n, -1).T


def data(op, rho_seed=0, shape=SHAPE):
    gen = torch.Generator().manual_seed(rho_seed)
    z = torch.randn(2, *shape, generator=gen, dtype=torch.float64)
    y = op.forward(torch.randn(2, *shape, generator=gen, dtype=torch.float64))
    return z, y + 0.1 * torch.randn(y.shape, generator=gen, dtype=torch.float64)


def dense_prox(a: torch.Tensor, z: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    zf, yf = z.reshape(z.shape[0], -1).T, y.reshape(y.shape[0], -1).T
    if rho == 0:  # the least-squares solution nearest z: z + A^+ (y - A z)
        x = zf + torch.linalg.pinv(a) @ (yf - a @ zf)
    else:
        x = torch.linalg.solve(a.T @ a + rho * torch.eye(a.shape[1], dtype=a.dtype), a.T @ yf + rho * zf)
    return x.T.reshape(z.shape)


def linear_small(name: str, **overrides) -> LinearOperator:
    op = small_operator(name, shape=SHAPE, **overrides)
    if not op.linear:
        pytest.skip(f"{name} is not linear")
    return op.bound_to(SHAPE)


def assert_conjugate_gradients_within_tolerance(op, z, y, rho, exact):
    """CG stops at normal-equation residual prox_tol ||b||, b = A^T (y - A z); its error is then at
    most that residual over the smallest eigenvalue of A^T A + rho I, which is >= rho."""
    x = LinearOperator.prox_l2(op, z, y, rho)
    b = op.adjoint(y - op.forward(z)).flatten(1).norm(dim=1)
    residual = (op.adjoint(y - op.forward(x)) - rho * (x - z)).flatten(1).norm(dim=1)
    assert torch.all(residual <= op.prox_tol * b)
    assert torch.all((x - exact).flatten(1).norm(dim=1) <= residual / rho * (1 + 1e-6))
    assert torch.all((x - exact).flatten(1).norm(dim=1) < 1e-2 * (exact - z).flatten(1).norm(dim=1))


@pytest.mark.parametrize("rho", [0.0, 0.05, 3.0])
def test_prox_is_the_dense_solution(operator_name, rho):
    overrides = {"scale": 2} if operator_name == "sr" else {}
    if operator_name == "blur":
        overrides = {"size": 3}
    op = linear_small(operator_name, **overrides)
    z, y = data(op)
    expected = dense_prox(dense(op), z, y, rho)
    assert torch.allclose(op.prox_l2(z, y, rho), expected, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("rho", [0.01, 1.0])
def test_conjugate_gradients_agree_with_the_svd_closed_form(operator_name, rho):
    op = linear_small(operator_name, **({"size": 3} if operator_name == "blur" else {}))
    if not op.has_svd:
        pytest.skip(f"{operator_name} has no SVD")
    z, y = data(op, rho_seed=1)
    assert_conjugate_gradients_within_tolerance(op, z, y, rho, op.prox_l2(z, y, rho))


@pytest.mark.parametrize("rho", [0.0, 0.01, 1.0])
def test_circular_blur_prox_by_the_fft_is_the_svd_closed_form(rho):
    op = linear_small("blur", size=5)
    z, y = data(op, rho_seed=4)
    assert torch.allclose(op.prox_l2(z, y, rho), SVDOperator.prox_l2(op, z, y, rho), atol=1e-10)
    unbound = small_operator("blur", size=5)  # no SVD without a bound shape; the FFT form takes any size
    assert torch.allclose(unbound.prox_l2(z, y, rho), op.prox_l2(z, y, rho), atol=1e-12)


def test_padded_blur_prox_by_conjugate_gradients_is_the_dense_solution():
    op = linear_small("blur", size=3, boundary="reflect")
    assert not op.has_svd
    z, y = data(op, rho_seed=2)
    for rho in (0.02, 1.0):
        assert_conjugate_gradients_within_tolerance(op, z, y, rho, dense_prox(dense(op), z, y, rho))


def test_rho_zero_on_a_mask_is_the_projection():
    op = linear_small("inpaint", mask="random", ratio=0.5, seed=3)
    mask = op.mask_like(torch.zeros(1, *SHAPE, dtype=torch.float64)).expand(SHAPE)
    z, y = data(op, rho_seed=3)
    x = op.prox_l2(z, y, 0.0)
    assert torch.equal(op.forward(x), y * mask)  # on {A x = y}
    assert torch.equal(x[:, mask == 0], z[:, mask == 0])  # nearest z: the unknown pixels keep z's values
    assert torch.allclose(LinearOperator.prox_l2(op, z, y, 0.0), x, atol=1e-12)  # CG agrees


def test_prox_refuses_a_negative_rho():
    op = linear_small("inpaint")
    z, y = data(op)
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        op.prox_l2(z, y, -1.0)
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        LinearOperator.prox_l2(op, z, y, float("nan"))


def test_conjugate_gradients_stop_quietly_at_max_iter_having_reduced_the_residual():
    op = linear_small("blur", size=5, boundary="reflect")
    z, y = data(op)
    op.prox_max_iter = 2

    def residual(x):
        return (op.adjoint(y - op.forward(x)) - 1e-6 * (x - z)).flatten(1).norm(dim=1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = op.prox_l2(z, y, 1e-6)
    assert torch.all(residual(x) < 0.5 * residual(z)) and torch.all(residual(x) > op.prox_tol * residual(z))
