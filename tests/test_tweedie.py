"""The ``tweedie`` strategy: E[x | y] in one evaluation, exact for Gaussian priors."""
from __future__ import annotations

import pytest
import torch

from restore.plugins import default_registry
from restore.priors.spec import load_prior
from restore.strategies.base import Problem, StrategyNotApplicable
from restore.strategies.engine import solve


@pytest.fixture(scope="module")
def registry():
    return default_registry()


def test_tweedie_is_the_exact_posterior_mean_of_a_gaussian_prior(registry):
    std, sigma = 0.5, 0.2
    prior = load_prior(f"gaussian:3x4x4:{std}", registry=registry)
    op = registry.get("operator", "denoise")(noise={"kind": "gaussian", "sigma": sigma})
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * std
    y = op.measure(x, generator=torch.Generator().manual_seed(1))
    result = solve(Problem(prior, op, y), registry.get("strategy", "tweedie")(),
                   generator=torch.Generator().manual_seed(2))
    # N(0, std^2 I) prior, y = x + sigma n: E[x | y] = std^2 / (std^2 + sigma^2) y
    expected = std**2 / (std**2 + sigma**2) * y
    assert result.nfe == 1
    assert torch.allclose(result.image.double(), expected, atol=1e-6)


def test_tweedie_refuses_other_tasks_and_noiseless_data(registry):
    prior = load_prior("gaussian:3x4x4:0.5", registry=registry)
    tweedie = registry.get("strategy", "tweedie")()
    blur = registry.get("operator", "inpaint")(mask=torch.ones(1, 1, 4, 4), noise={"kind": "gaussian", "sigma": 0.1})
    with pytest.raises(StrategyNotApplicable, match="needs the denoise operator"):
        solve(Problem(prior, blur, torch.zeros(1, 3, 4, 4)), tweedie)
    clean = registry.get("operator", "denoise")()
    with pytest.raises(StrategyNotApplicable, match="Gaussian measurement noise"):
        solve(Problem(prior, clean, torch.zeros(1, 3, 4, 4)), tweedie)
