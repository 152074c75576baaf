"""Antithetic pairs of samples (restore/diffusion/randomness.py): sample 2j + 1 draws the
negation of sample 2j's noise, so the pair's mean cancels every part of a sample that is odd in
the noise.  On a Gaussian prior an SVD sampler is linear in its noise (the denoiser is affine in
x, every coefficient depends on the noise levels and singular values only), so the mean of one
antithetic pair is the sampler's expectation exactly, whatever the seed.
"""
from __future__ import annotations

import pytest
import torch

from restore.diffusion.randomness import ItemGenerators, antithetic_pairs, antithetic_seeds, randn
from restore.operators.matrix import MatrixOperator
from restore.operators.noise import GaussianNoise
from restore.priors.analytic import gaussian
from restore.priors.base import Prior
from restore.strategies.base import Problem
from restore.strategies.ddnm import DDNMPlus
from restore.strategies.ddrm import DDRM
from restore.strategies.engine import solve


def test_a_negative_sign_draws_the_exact_negation_of_the_generators_numbers():
    plain = randn((2, 5), ItemGenerators.from_seeds([7, 8]))
    signed = randn((2, 5), ItemGenerators.from_seeds([7, 8], signs=[1, -1]))
    assert torch.equal(signed[0], plain[0])
    assert torch.equal(signed[1], -plain[1])


@pytest.mark.parametrize("signs", [[1], [1, 0], [1, 2]])
def test_signs_are_one_plus_or_minus_one_per_generator(signs):
    with pytest.raises(ValueError, match="one \\+1 or -1 per generator"):
        ItemGenerators.from_seeds([1, 2], signs=signs)


def test_antithetic_seeds_give_odd_samples_their_partners_seed_and_even_samples_their_own():
    # 3 samples of 2 images, sample-major: the independent seeds are 10 + k
    assert antithetic_seeds(range(10, 16), 3) == [10, 11, 10, 11, 14, 15]
    draws = randn((6, 4), antithetic_pairs(antithetic_seeds(range(10, 16), 3), 3))
    independent = randn((6, 4), ItemGenerators.from_seeds(range(10, 16)))
    assert torch.equal(draws[2:4], -draws[0:2])  # sample 1 negates sample 0, image by image
    assert torch.equal(draws[[0, 1, 4, 5]], independent[[0, 1, 4, 5]])  # the unpaired last sample too


def test_a_pair_whose_seeds_differ_is_refused_with_the_seed_it_needs():
    with pytest.raises(ValueError, match="sample 1 of image 0 .* must be 10, got 12"):
        antithetic_pairs([10, 11, 12, 13], 2)
    for make in (antithetic_pairs, antithetic_seeds):
        with pytest.raises(ValueError, match="cannot hold 3 samples"):
            make([1, 2, 3, 4], 3)


def gaussian_problem(pairs: int) -> Problem:
    """N(0.5, 0.05 I) in d = 16 seen through 4 noisy projections (sigma_y 0.05), ``pairs`` copies
    of one measurement in a batch."""
    gen = torch.Generator().manual_seed(0)
    prior = gaussian(torch.full((16,), 0.5), 0.05)
    u, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen, dtype=torch.float64))
    op = MatrixOperator(u=u, s=torch.tensor([1.0, 0.6, 0.3, 0.1], dtype=torch.float64), v=v,
                        noise=GaussianNoise(0.05))
    y = op.measure(prior.sample(1, generator=gen), generator=gen)
    return Problem(Prior(prior, "test", shape=prior.shape, data_range=(0.0, 1.0)), op,
                   y.expand(2 * pairs, 4).clone(), copies=2)


@pytest.mark.parametrize("strategy", [DDRM, DDNMPlus])
def test_on_a_gaussian_prior_one_antithetic_pair_averages_to_the_samplers_expectation(strategy):
    pairs = 3
    problem = gaussian_problem(pairs)

    def means(generator):
        sample = solve(problem, strategy(), steps=20, generator=generator).sample
        return sample.reshape(2, pairs, -1).mean(dim=0)  # copy-major: the mean of each pair

    antithetic = means(antithetic_pairs(antithetic_seeds(range(100, 100 + 2 * pairs), 2), 2))
    independent = means(ItemGenerators.from_seeds(range(100, 100 + 2 * pairs)))
    spread = (independent - independent.mean(dim=0)).abs().max()
    assert spread > 1e-2  # independent pairs scatter around the expectation by the samples' spread
    # ... antithetic pairs of three different seeds agree to rounding: each is the expectation
    assert (antithetic - antithetic[0]).abs().max() < 1e-10
    # and the expectation is what the independent pairs scatter around
    assert (antithetic[0] - independent.mean(dim=0)).abs().max() < spread


IMAGE = 0.4 + 0.2 * torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
BLUR = {"prior": "gaussian:3x16x16", "method": "ddrm", "steps": 10, "samples": 2, "noise": 0.02,
        "operator_options": {"kernel": "gaussian:1:5"}}


def test_the_api_draws_antithetic_pairs_when_asked_and_records_them():
    import restore

    def mean(seed, antithetic):
        result = restore.restore(IMAGE, "blur", seed=seed, antithetic=antithetic, **BLUR)
        return result.tensors["mean"], result.provenance

    paired, record = mean(0, True)
    assert (record["seeds"], record["antithetic"]) == ([0, 0], True)
    assert (mean(7, True)[0] - paired).abs().max() < 1e-5  # a Gaussian prior: every pair's mean is the expectation
    independent, record = mean(0, None)  # a method given: independent samples, unless asked
    assert (record["seeds"], record["antithetic"]) == ([0, 1], False)
    assert (mean(7, None)[0] - independent).abs().max() > 0.1


def test_given_seeds_that_do_not_pair_are_refused_before_the_run():
    from restore import pipeline
    from restore.measurement import from_array

    measurement, _ = from_array(IMAGE, "blur", options=BLUR["operator_options"], noise=BLUR["noise"])
    with pytest.raises(ValueError, match="sample 1 of image 0 .* its seed must be 3, got 4"):
        pipeline.run(measurement, BLUR["prior"], method="ddrm", steps=10, samples=2, seeds=[3, 4], antithetic=True)


def test_the_command_takes_antithetic_and_independent(tmp_path):
    import json

    from typer.testing import CliRunner

    from restore.cli import app
    from restore.operators import io as rio

    rio.write_array(tmp_path / "y.npy", IMAGE[None])
    records = {}
    for flag in ("--antithetic", "--independent"):
        out = tmp_path / f"{flag[2:]}.npy"
        result = CliRunner().invoke(app, ["deblur", str(tmp_path / "y.npy"), "--kernel", "gaussian:1:5",
                                          "--noise", "0.02", "--prior", "gaussian:3x16x16", "--method", "ddrm",
                                          "--steps", "10", "--samples", "2", "--seed", "5", flag, "-o", str(out)])
        assert result.exit_code == 0, result.output
        records[flag] = json.loads(out.with_suffix(".json").read_text())
    assert (records["--antithetic"]["seeds"], records["--antithetic"]["antithetic"]) == ([5, 5], True)
    assert (records["--independent"]["seeds"], records["--independent"]["antithetic"]) == ([5, 6], False)
