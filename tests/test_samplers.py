"""Unconditional samplers against exact distributions.

Mixture check (reference mixture, d = 8, 2000 samples, 100 steps on ADM's linear grid):
sliced-Wasserstein distance to exact samples within FACTOR times the mean exact-vs-exact
distance.  Measured on 2026-11-22 (seed-to-seed): floor 0.70 (0.48-0.99 over 8 pairs);
samplers 0.59-1.50, i.e. up to 2.1x the floor; a mixture with the wrong (uniform)
weights lands at 3.8-4.3, 5.4x or more.  FACTOR = 3 separates the two.

Sliced Wasserstein here is dominated by how the 25 modes are weighted; the Gaussian
check below catches errors in spread that it would miss.
"""
import pytest
import torch

from restore.diffusion.samplers import SAMPLERS
from restore.metrics.distribution import sliced_wasserstein
from restore.priors.analytic import GaussianMixture, gaussian, reference_mixture

FACTOR = 3.0
N = 2000


def _directions():
    return torch.Generator().manual_seed(123)


@pytest.fixture(scope="module")
def mixture_reference():
    mixture = reference_mixture(8)
    gen = torch.Generator().manual_seed(0)
    exact = mixture.sample(N, generator=gen)
    floor = sum(sliced_wasserstein(exact, mixture.sample(N, generator=gen), generator=_directions()) for _ in range(4)) / 4
    return mixture, exact, floor


def _run(name, denoiser, shape, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    sigmas = denoiser.sampling_sigmas(steps)
    x = denoiser.init_noise((N, *shape), float(sigmas[0]), generator=gen, dtype=torch.float64)
    return SAMPLERS[name](denoiser, x, sigmas, generator=gen)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_matches_the_reference_mixture(name, mixture_reference):
    mixture, exact, floor = mixture_reference
    samples = _run(name, mixture, (8,), 100, seed=10)
    assert sliced_wasserstein(samples, exact, generator=_directions()) <= FACTOR * floor


def test_the_mixture_check_can_fail(mixture_reference):
    mixture, exact, floor = mixture_reference
    wrong = GaussianMixture(torch.ones(25), mixture.means, variances=torch.ones(25))
    gen = torch.Generator().manual_seed(1)
    assert sliced_wasserstein(wrong.sample(N, generator=gen), exact, generator=_directions()) > FACTOR * floor


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_reproduces_a_gaussian_covariance(name):
    """N(m, C) with eigenvalues 0.25..4 in d = 6: sample mean within 0.15 and covariance within
    20% in operator norm (the standard error of a variance from 2000 draws is about 3%)."""
    d = 6
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    cov = q @ torch.diag(torch.linspace(0.25, 4.0, d, dtype=torch.float64)) @ q.T
    mean = torch.linspace(-2, 2, d, dtype=torch.float64)
    samples = _run(name, gaussian(mean, cov), (d,), 100, seed=4)
    assert (samples.mean(0) - mean).abs().max() < 0.15
    err = torch.linalg.matrix_norm(torch.cov(samples.T) - cov, ord=2) / torch.linalg.matrix_norm(cov, ord=2)
    assert err < 0.2


@pytest.mark.parametrize("name", ["ddpm", "pc", "euler-maruyama"])
def test_same_seed_same_samples_and_batch_shape(name):
    mixture = reference_mixture(8)
    sigmas = mixture.sampling_sigmas(10)

    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        x = mixture.init_noise((5, 8), float(sigmas[0]), generator=gen, dtype=torch.float64)
        return SAMPLERS[name](mixture, x, sigmas, generator=gen)

    a, b, c = draw(0), draw(0), draw(1)
    assert a.shape == (5, 8) and torch.equal(a, b) and not torch.equal(a, c)


def test_ddim_with_eta_one_is_ddpm_in_distribution():
    """DDIM's eta = 1 has DDPM's posterior variance: same mean and noise, hence equal draws."""
    mixture = reference_mixture(8)
    sigmas = mixture.sampling_sigmas(20)
    outs = []
    for name, opts in (("ddpm", {}), ("ddim", {"eta": 1.0})):
        gen = torch.Generator().manual_seed(7)
        x = mixture.init_noise((64, 8), float(sigmas[0]), generator=gen, dtype=torch.float64)
        outs.append(SAMPLERS[name](mixture, x, sigmas, generator=gen, **opts))
    assert torch.allclose(outs[0], outs[1], atol=1e-8)


def test_samplers_run_in_float32_and_report_each_step():
    mixture = reference_mixture(8)
    sigmas = mixture.sampling_sigmas(5)
    events = []
    x = mixture.init_noise((3, 8), float(sigmas[0]), generator=torch.Generator().manual_seed(0))
    out = SAMPLERS["heun"](mixture, x, sigmas, callback=events.append)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert [e.step for e in events] == list(range(5)) and events[-1].sigma == 0.0
