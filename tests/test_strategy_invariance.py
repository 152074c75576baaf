"""One prior-space problem, two data ranges, identical samples: every registered strategy
measures residuals and noise in prior pixel units, so posing the same problem on priors
with ``data_range`` (0, 1) and (-1, 1) must not change a single sample (issue 12: DPS
stepped half as far on [-1, 1] priors because its residual was taken in image units)."""
from __future__ import annotations

import pytest
import torch

from restore.operators.noise import GaussianNoise
from restore.plugins import load_registry
from restore.priors.analytic import GaussianMixture
from restore.priors.base import Prior
from restore.strategies.base import Problem
from restore.strategies.engine import solve

REGISTRY = load_registry()
SHAPE = (1, 4, 4)
SIGMA_PRIOR = 0.1  # measurement noise in prior pixel units

#: Parameters for strategies that cannot be built without any (and cheap settings for slow ones).
PARAMS = {
    "classifier-guidance": {"strategy": "dps", "strategy_params": {"zeta": 0.5}, "classifier": "mixture", "labels": 1},
    "daps": {"langevin_steps": 5, "ode_steps": 2},
    "repaint": {"jump_length": 2, "jump_n_sample": 2},
}

#: Strategies the property does not apply to, and why.
EXEMPT = {
    "conditional": "a conditional network takes c(y) in the range it was trained on: the same network "
                   "on two data ranges is two different models, not one problem",
    "dpir": "its schedule (0.5 down to 0.6/255) and mid-grey start are fractions of the image range, as in "
            "the paper: one prior-space problem on two ranges is two image problems; tests/test_dpir.py checks "
            "that one image problem under two priors related by the range map gives one image",
}


def mixture() -> GaussianMixture:
    """Two components in prior space, so that the classifier has something to guide."""
    means = torch.stack([torch.full((16,), -0.4), torch.full((16,), 0.4)]).to(torch.float64)
    return GaussianMixture(torch.tensor([0.5, 0.5], dtype=torch.float64), means,
                           variances=torch.tensor([0.05, 0.05], dtype=torch.float64), shape=SHAPE)


def denoises_only(name):
    """The problem's operator is a mask (which every built-in linear method can serve), or the
    identity for the strategies that only denoise (``Strategy.only_task``)."""
    return REGISTRY.get("strategy", name).only_task == "denoise"


def posed(name, data_range, y_prior, mask):
    """The prior-space problem  A x = y_prior + noise (sigma SIGMA_PRIOR)  with images on [0, 1]:
    y = (y_prior - lo A(1)) / (hi - lo), noise SIGMA_PRIOR / (hi - lo)."""
    lo, hi = data_range
    noise = GaussianNoise(SIGMA_PRIOR / (hi - lo))
    if denoises_only(name):
        op = REGISTRY.get("operator", "denoise")(noise=noise)
    else:
        op = REGISTRY.get("operator", "inpaint")(mask=mask, noise=noise)
    ones = torch.ones(1, *SHAPE, dtype=torch.float64)
    y = (y_prior - lo * op(ones)) / (hi - lo)
    return Problem(Prior(mixture(), name="mixture", shape=SHAPE, data_range=data_range), op, y)


@pytest.mark.parametrize("name", REGISTRY.names("strategy"))
def test_two_data_ranges_give_identical_samples(name):
    if name in EXEMPT:
        pytest.skip(EXEMPT[name])
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(SHAPE, generator=g) > 0.4).to(torch.float64)
    x_true = 0.4 + 0.2 * torch.randn(2, *SHAPE, generator=g, dtype=torch.float64)
    noisy = x_true + SIGMA_PRIOR * torch.randn(x_true.shape, generator=g, dtype=torch.float64)
    y_prior = noisy if denoises_only(name) else mask * noisy
    samples = []
    for data_range in ((0.0, 1.0), (-1.0, 1.0)):
        problem = posed(name, data_range, y_prior, mask)
        strategy = REGISTRY.get("strategy", name)(**PARAMS.get(name, {}))
        with pytest.warns() if name in ("ddnm", "repaint") else _nothing():  # noisy y: warned, still comparable
            result = solve(problem, strategy, steps=8, generator=torch.Generator().manual_seed(1), registry=REGISTRY)
        samples.append(result.sample)
    assert torch.isfinite(samples[0]).all()
    torch.testing.assert_close(samples[1], samples[0], rtol=0, atol=1e-9)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
