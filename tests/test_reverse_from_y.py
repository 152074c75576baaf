"""``reverse-from-y``: posterior samples of Gaussian denoising from the prior's reverse process
started at sigma_y from y, checked against the exact posterior of a Gaussian prior."""
from __future__ import annotations

import pytest
import torch

from restore.operators.noise import GaussianNoise
from restore.plugins import default_registry
from restore.priors.analytic import gaussian
from restore.priors.base import Prior
from restore.strategies.base import Problem, StrategyNotApplicable
from restore.strategies.engine import solve
from test_dpir import full_gaussian
from test_strategies_svd import N, sw

REGISTRY = default_registry()
SHAPE = (2, 2, 2)


def denoising(sigma_y: float):
    """An 8-dimensional anisotropic Gaussian prior (as an image of SHAPE), one noisy draw of it, the
    exact posterior's samples and the SW distance of prior samples to them (the scale of a ratio)."""
    gen = torch.Generator().manual_seed(0)
    mu, cov = full_gaussian(gen)
    mixture = gaussian(mu, cov)
    mixture.shape = SHAPE
    op = REGISTRY.get("operator", "denoise")(noise=GaussianNoise(sigma_y), shape=SHAPE)
    y = op.measure(mixture.sample(1, generator=gen).reshape(1, *SHAPE), generator=gen)
    exact = mixture.posterior(torch.eye(8, dtype=torch.float64), y[0].reshape(-1), sigma_y).sample(N, generator=gen)
    problem = Problem(Prior(mixture, "test", shape=SHAPE, data_range=(0.0, 1.0)), op, y.expand(N, *SHAPE).clone())
    return problem, exact, sw(mixture.sample(N, generator=gen), exact)


def ratio(problem, exact, reference, name, steps, **params):
    result = solve(problem, REGISTRY.get("strategy", name)(**params), steps=steps,
                   generator=torch.Generator().manual_seed(3))
    assert result.nfe == steps
    return sw(result.sample.reshape(N, -1), exact) / reference


@pytest.mark.parametrize("sampler", ["ddpm", "euler-maruyama"])
def test_samples_from_y_approach_the_exact_posterior_where_ddrm_stays_off(sampler):
    """sigma_y = 0.3 (in the prior's units): DDRM's cold start spends most of its grid above
    sigma_y and over-trusts y below it (SW ratio 0.13 at 20 steps, 0.16 at 100, measured); from y
    the unconditional reverse process closes in (measured at 20 / 100 steps: ddpm 0.073 / 0.049,
    Euler-Maruyama 0.042 / 0.048; two exact sample sets differ by about that much)."""
    problem, exact, reference = denoising(0.3)
    ddrm_20, ddrm_100 = (ratio(problem, exact, reference, "ddrm", steps) for steps in (20, 100))
    at_20 = ratio(problem, exact, reference, "reverse-from-y", 20, sampler=sampler)
    at_100 = ratio(problem, exact, reference, "reverse-from-y", 100, sampler=sampler)
    assert at_20 < 0.8 * ddrm_20 and at_100 < 0.5 * ddrm_100 and at_100 < 0.065


def test_the_first_step_denoises_y_at_its_noise_level():
    """The first evaluation is D(y, sigma_y), the posterior mean ``tweedie`` returns."""
    problem, _, _ = denoising(0.3)
    seen = []
    result = solve(problem, REGISTRY.get("strategy", "reverse-from-y")(), steps=5,
                   generator=torch.Generator().manual_seed(3), callback=seen.append)
    mean = solve(problem, REGISTRY.get("strategy", "tweedie")(symmetry="none"), steps=1).sample
    assert result.nfe == 5 and len(seen) == 5
    torch.testing.assert_close(seen[0].x0, mean, rtol=0, atol=1e-12)


@pytest.mark.parametrize("make, params, message", [
    (lambda: REGISTRY.get("operator", "inpaint")(mask="box", noise=GaussianNoise(0.1), shape=(3, 8, 8)), {},
     "needs the denoise operator"),
    (lambda: REGISTRY.get("operator", "denoise")(shape=(3, 8, 8)), {}, "white Gaussian measurement noise"),
    (lambda: REGISTRY.get("operator", "denoise")(noise=GaussianNoise(0.1), shape=(3, 8, 8)),
     {"warm_start": "dpir"}, "does not apply"),
])
def test_it_refuses_what_is_not_gaussian_denoising(make, params, message):
    op = make()
    prior = REGISTRY.get("prior", "gaussian")("gaussian:3x8x8:0.5")
    with pytest.raises(StrategyNotApplicable, match=message):
        solve(Problem(prior, op, torch.zeros(1, 3, 8, 8)), REGISTRY.get("strategy", "reverse-from-y")(**params),
              steps=3)


def test_an_ode_sampler_is_refused():
    with pytest.raises(ValueError, match="an ODE maps y to one point"):
        REGISTRY.get("strategy", "reverse-from-y")(sampler="heun")


def test_clipped_samples_drawn_anew_bring_the_samples_to_the_posterior_under_clipping():
    """On the clipped 8-bit measurement of a Gaussian prior near 1 (test_tweedie.censored_problem),
    reading the samples at 1 as y leaves the mean of 32 samples 0.04 (rms) off the exact posterior
    mean under clipping there; drawing them anew around the 4-pass EM estimate brings it within a
    half of that (measured 0.013, the Monte Carlo error of 32 samples elsewhere: 0.012), for 4 more
    NFE on one copy of the measurements.  Float data is not clipped: the same samples as without."""
    from test_tweedie import censored_posterior_mean, censored_problem

    prior, op, x, y, facts = censored_problem(REGISTRY)
    exact, at_one, copies = censored_posterior_mean(y, *facts), y >= 1 - facts[3] / 2, 32
    strategy = REGISTRY.get("strategy", "reverse-from-y")
    errors, nfe = {}, {}
    for passes in (1, 4):
        problem = Problem(prior, op, y.repeat(copies, 1, 1, 1), copies, clip_step=facts[3])
        result = solve(problem, strategy(clipped_passes=passes), steps=20, generator=torch.Generator().manual_seed(5))
        mean = result.sample.double().reshape(copies, *y.shape).mean(0)
        errors[passes], nfe[passes] = ((mean - exact)[at_one] ** 2).mean().sqrt(), result.nfe
    assert errors[1] > 0.03 and errors[4] < errors[1] / 2 and nfe[4] - nfe[1] == 4
    floats = [solve(Problem(prior, op, y), strategy(clipped_passes=passes), steps=5,
                    generator=torch.Generator().manual_seed(5)) for passes in (1, 4)]
    assert torch.equal(floats[0].sample, floats[1].sample) and floats[0].nfe == floats[1].nfe
