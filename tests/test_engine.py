"""The engine: binds unbound operators to the sample shape, counts NFE, refuses clearly."""
import pytest
import torch

from restore.plugins import load_registry
from restore.priors.spec import load_prior
from restore.strategies.base import Problem
from restore.strategies.engine import solve


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def _problem(registry, image=16, **blur):
    prior = load_prior(f"gaussian:3x{image}x{image}:0.3", registry=registry)
    op = registry.get("operator", "blur")(noise={"kind": "gaussian", "sigma": 0.01}, **blur)
    x = torch.rand(2, 3, image, image, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return Problem(prior, op, op.measure(x, generator=torch.Generator().manual_seed(1)))


def test_svd_strategy_binds_an_unbound_operator_and_counts_nfe(registry):
    problem = _problem(registry, kernel="gaussian", size=5, std=1.0)
    assert problem.operator.shape is None
    result = solve(problem, registry.get("strategy", "ddnm")(), steps=12, generator=torch.Generator().manual_seed(0))
    assert result.nfe == 12 and result.image.shape == (2, 3, 16, 16)
    # noiseless-consistency of DDNM: A x = y exactly in the observed subspace (up to rounding)
    assert torch.allclose(problem.operator(result.image), problem.y, atol=1e-9)


def test_an_operator_that_cannot_take_the_image_is_refused_before_sampling(registry):
    prior = load_prior("gaussian:3x8x8:0.3", registry=registry)
    op = registry.get("operator", "blur")(kernel="gaussian", size=11, std=2.0)
    y = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="kernel is 11x11, larger than the 8x8 image"):
        solve(Problem(prior, op, y), registry.get("strategy", "ddrm")(), steps=5)
