"""The ``tweedie`` strategy: E[x | y] in one evaluation, exact for Gaussian priors."""
from __future__ import annotations

import dataclasses

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


def censored_problem(registry):
    """A Gaussian prior near the top of [0, 1] (mean 0.9, std 0.1 per pixel) and its 8-bit
    measurement at sigma 0.1: about a quarter of the samples clipped at 1."""
    from restore.priors.analytic import gaussian
    from restore.priors.base import Prior

    mean, std, sigma, step = 0.9, 0.1, 0.1, 1 / 255
    shape, d = (3, 8, 8), 192
    prior = Prior(gaussian(torch.full((d,), mean, dtype=torch.float64), std**2), name="g", shape=shape,
                  data_range=(0.0, 1.0))
    op = registry.get("operator", "denoise")(noise={"kind": "gaussian", "sigma": sigma})
    g = torch.Generator().manual_seed(0)
    x = mean + std * torch.randn(4, *shape, generator=g, dtype=torch.float64)
    y = torch.round((x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1) / step) * step
    return prior, op, x, y, (mean, std, sigma, step)


def censored_posterior_mean(y, mean, std, sigma, step):
    """E[x | y] per pixel for x ~ N(mean, std^2) and y = clip(round(x + sigma n)), by quadrature:
    the likelihood of a sample at 1 is P(x + sigma n >= 1 - step / 2), at 0 P(x + sigma n < step / 2)."""
    grid = torch.linspace(mean - 8 * std, mean + 8 * std, 4001, dtype=torch.float64)
    log_prior = -0.5 * ((grid - mean) / std) ** 2

    def one(v: float) -> float:
        if v >= 1 - step / 2:
            log_lik = torch.special.log_ndtr((grid - (1 - step / 2)) / sigma)
        elif v <= step / 2:
            log_lik = torch.special.log_ndtr((step / 2 - grid) / sigma)
        else:
            log_lik = -0.5 * ((v - grid) / sigma) ** 2
        return float((torch.softmax(log_prior + log_lik, 0) * grid).sum())

    return torch.tensor([one(float(v)) for v in y.flatten()], dtype=torch.float64).reshape(y.shape)


def test_em_passes_close_in_on_the_posterior_mean_under_clipping(registry):
    """On a Gaussian prior the exact posterior mean under the censored likelihood is a 1-D
    integral per pixel: Tweedie alone, reading the clipped samples as Gaussian, is 0.04 off it
    there (rms); 4 EM passes come within a sixth of that and score a lower squared error to the
    truth, at 4 NFE."""
    prior, op, x, y, facts = censored_problem(registry)
    exact = censored_posterior_mean(y, *facts)
    at_one = y >= 1 - facts[3] / 2
    assert 0.15 < at_one.double().mean() < 0.35
    errors, nfe, tweedie = {}, {}, registry.get("strategy", "tweedie")
    for passes in (1, 4):
        result = solve(Problem(prior, op, y, clip_step=facts[3]), tweedie(clipped_passes=passes))
        estimate, nfe[passes] = result.image.double(), result.nfe
        errors[passes] = (((estimate - exact)[at_one] ** 2).mean().sqrt(), ((estimate - x) ** 2).mean())
        assert torch.allclose(estimate[~at_one], exact[~at_one], atol=0.02), passes
    assert nfe == {1: 1, 4: 4}
    assert errors[1][0] > 0.03 and errors[4][0] < errors[1][0] / 6
    assert errors[4][1] < errors[1][1]


def test_em_passes_run_once_where_nothing_is_clipped(registry):
    """Float data (no ``clip_step``) and integer data without a sample at 0 or 1 take one pass,
    the plain Tweedie estimate, whatever ``clipped_passes`` asks."""
    prior, op, x, y, facts = censored_problem(registry)
    tweedie = registry.get("strategy", "tweedie")
    plain = solve(Problem(prior, op, y), tweedie()).image
    for problem in (Problem(prior, op, y), Problem(prior, op, y.clamp(0.1, 0.9), clip_step=facts[3])):
        result = solve(problem, tweedie(clipped_passes=3))
        assert result.nfe == 1
        assert torch.equal(result.image, solve(dataclasses.replace(problem, clip_step=None), tweedie()).image)
    assert torch.equal(solve(Problem(prior, op, y), tweedie(clipped_passes=3)).image, plain)
    with pytest.raises(ValueError, match="clipped_passes"):
        tweedie(clipped_passes=0)


def test_the_truncated_normal_means_are_those_of_quadrature():
    """restore.strategies.censored: a sample at 1 becomes E[v | v >= 1 - q / 2], one at 0
    E[v | v < q / 2], for v ~ N(m, s^2), far in the tails too; the others stay."""
    from restore.strategies.censored import expected_unclipped

    step, sigma = 1 / 255, 0.1
    m = torch.tensor([-0.5, 0.0, 0.3, 0.97, 1.0, 1.6, 0.5], dtype=torch.float64)
    y = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5], dtype=torch.float64)
    got = expected_unclipped(y, m, sigma, step)
    for k in range(6):
        edge = step / 2 if y[k] == 0 else 1 - step / 2
        grid = torch.linspace(edge - 12 * sigma, edge, 200001, dtype=torch.float64) if y[k] == 0 else \
            torch.linspace(edge, edge + 12 * sigma, 200001, dtype=torch.float64)
        weight = torch.exp(-0.5 * ((grid - m[k]) / sigma) ** 2 - (-0.5 * ((edge - m[k]) / sigma) ** 2))
        assert float(got[k]) == pytest.approx(float((weight * grid).sum() / weight.sum()), abs=1e-5), k
    assert got[6] == 0.5


def test_the_front_doors_tell_integer_data_from_floats(registry):
    """An 8-bit array was clipped, so ``clipped_passes`` runs its passes on it; the same values as
    floats were not, so one pass runs (``Problem.clip_step`` from the measurement's bits)."""
    import numpy as np

    import restore

    prior, op, x, y, facts = censored_problem(registry)
    pixels = np.round(y[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    runs = {kind: restore.restore(data, "denoise", prior=prior, method="tweedie", noise=facts[2],
                                  params={"clipped_passes": 3}, precision="fp32")
            for kind, data in (("uint8", pixels), ("float", pixels.astype(np.float32) / 255))}
    assert runs["uint8"].nfe == 3 and runs["float"].nfe == 1


def test_the_truncated_normal_draws_lie_beyond_the_edge_with_the_truncated_mean():
    """restore.strategies.censored.draw_unclipped: a sample at 1 is drawn above 1 - q / 2 (at 0,
    below q / 2), with the truncated normal's mean (expected_unclipped) to Monte Carlo error,
    from the generator's normal draws (seeded: the same draws again); unclipped samples stay."""
    from restore.strategies.censored import draw_unclipped, expected_unclipped

    step, n = 1 / 255, 200_000
    y = torch.cat([torch.ones(n), torch.zeros(n), torch.full((1,), 0.4)]).double()
    m = torch.cat([torch.full((n,), 0.95), torch.full((n,), 0.2), torch.full((1,), 0.3)]).double()
    draws = draw_unclipped(y, m, 0.1, step, torch.Generator().manual_seed(0))
    assert torch.equal(draws, draw_unclipped(y, m, 0.1, step, torch.Generator().manual_seed(0)))
    high, low = draws[:n], draws[n:2 * n]
    assert high.min() >= 1 - step / 2 and low.max() <= step / 2 and draws[-1] == y[-1]
    means = expected_unclipped(y, m, 0.1, step)
    for part, mean in ((high, means[0]), (low, means[n])):
        assert abs(part.mean() - mean) < 4 * part.std() / n**0.5


def test_the_command_and_batch_read_an_8_bit_file_as_clipped(tmp_path):
    """``restore denoise`` and ``restore batch`` go through the same pipeline as the API: on an
    8-bit PNG with clipped samples 3 passes run (the sidecar's NFE), on the same values as a float
    .npy one; batch writes the same estimate as the command."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from restore.cli import app
    from restore.operators import io as rio

    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.3  # near 0: clipped below
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    rio.write_image(tmp_path / "y.png", y, bits=8)
    np.save(tmp_path / "y.npy", rio.read_image(tmp_path / "y.png")[0].permute(1, 2, 0).numpy())
    common = ["--sigma", "0.1", "--prior", "gaussian:3x16x16:0.3", "--method", "tweedie",
              "--param", "clipped_passes=3", "--quiet"]
    runner, nfe = CliRunner(), {}
    for name, out in (("y.png", "png.png"), ("y.npy", "npy.npy")):
        done = runner.invoke(app, ["denoise", str(tmp_path / name), "-o", str(tmp_path / out), *common])
        assert done.exit_code == 0, done.output
        nfe[name] = json.loads((tmp_path / out).with_suffix(".json").read_text())["nfe"]
    assert nfe == {"y.png": 3, "y.npy": 1}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "y.png").write_bytes((tmp_path / "y.png").read_bytes())
    done = runner.invoke(app, ["batch", str(tmp_path / "in"), "-o", str(tmp_path / "b"), "--op", "denoise",
                               "--noise", "0.1", "--prior", "gaussian:3x16x16:0.3", "--method", "tweedie",
                               "--param", "clipped_passes=3", "--quiet"])
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "b" / "y.json").read_text())["nfe"] == 3
    assert torch.equal(rio.read_image(tmp_path / "b" / "y.png")[0], rio.read_image(tmp_path / "png.png")[0])
