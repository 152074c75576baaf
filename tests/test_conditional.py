"""SR3 / Palette conditional networks: the condition image, the bound denoiser, a tiny
conditional UNet trained in seconds on a toy super-resolution task, and sampling through
the engine on every linear operator.

Margins were set from measurement (seeds fixed, numbers in each test's comment).
"""
from __future__ import annotations

import math

import pytest
import torch
from conftest import small_operator
import torch.nn.functional as F

from restore.diffusion.conditional import ConditionalNetwork, LeadingChannels
from restore.diffusion.denoiser import Denoiser
from restore.diffusion.schedules import VPDiscrete
from restore.operators.noise import GaussianNoise
from restore.plugins import load_registry
from restore.priors.analytic import gaussian
from restore.priors.base import Prior
from restore.priors.unet import CompactUNet, UNetConfig
from restore.strategies.base import DivergenceError, Problem, StrategyNotApplicable
from restore.strategies.conditional import Conditional, conditional_loss, measurement_condition, train_conditional
from restore.strategies.dps import DPS
from restore.strategies.engine import solve

REGISTRY = load_registry()
SCHEDULE = VPDiscrete.linear(1000)


def operator(name: str, **kwargs):
    return REGISTRY.get("operator", name)(**kwargs)


def conditional_prior(network, shape=(3, 8, 8), condition="auto", clip=None, **kinds) -> Prior:
    return Prior(ConditionalNetwork(network, SCHEDULE, condition=condition, clip=clip, **kinds), name="conditional",
                 shape=shape, data_range=(-1.0, 1.0))


def small_unet(channels: int = 3, base: int = 16) -> LeadingChannels:
    torch.manual_seed(0)
    config = UNetConfig(channels=2 * channels, base_channels=base, channel_mult=(1,), num_res_blocks=1, groups=8)
    return LeadingChannels(CompactUNet(config), channels)


def test_condition_images():
    prior = conditional_prior(small_unet())
    y = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    sr = operator("sr", scale=2)
    upsampled = measurement_condition(Problem(prior, sr, y), (3, 8, 8))
    torch.testing.assert_close(upsampled, 2 * F.interpolate(y, size=(8, 8), mode="bicubic", align_corners=False) - 1)
    torch.testing.assert_close(measurement_condition(Problem(prior, sr, y), (3, 8, 8), "pinv"), 2 * sr.pinv(y) - 1)
    inpaint = operator("inpaint", mask="box")
    y_full = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(measurement_condition(Problem(prior, inpaint, y_full), (3, 8, 8)),
                               2 * inpaint.pinv(y_full) - 1)
    with pytest.raises(StrategyNotApplicable, match="smaller image"):
        measurement_condition(Problem(prior, inpaint, y_full), (3, 8, 8), "upsample")
    with pytest.raises(StrategyNotApplicable, match="linear"):
        measurement_condition(Problem(prior, operator("jpeg"), y_full), (3, 8, 8))
    with pytest.raises(ValueError, match="condition"):
        measurement_condition(Problem(prior, sr, y), (3, 8, 8), "bicubic")


def test_bound_denoiser_feeds_the_concatenated_input():
    seen = {}

    def network(inputs, t):
        seen["inputs"], seen["t"] = inputs, t
        return 0.1 * inputs[:, :2] + inputs[:, 2:]

    cond = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    sigma = SCHEDULE.sigmas[[5, 50, 500]]
    x0 = ConditionalNetwork(network, SCHEDULE).bind(cond)(x, sigma)
    s = sigma.reshape(-1, 1, 1, 1)
    x_vp = x / (1 + s**2).sqrt()
    torch.testing.assert_close(seen["inputs"], torch.cat([x_vp, cond], dim=1))
    torch.testing.assert_close(seen["t"], torch.tensor([5.0, 50.0, 500.0], dtype=torch.float64))
    torch.testing.assert_close(x0, x - s * (0.1 * x_vp + cond))


def test_residual_bound_denoiser_adds_the_condition_and_clips_the_image():
    def network(inputs, t):
        seen["inputs"] = inputs
        return 0.5 * inputs[:, :2]

    seen = {}
    cond = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    sigma = SCHEDULE.sigmas[[5, 50, 500]]
    model = ConditionalNetwork(network, SCHEDULE, parametrization="x0", residual=True, clip=(-1.0, 1.0))
    x0 = model.bind(cond)(x, sigma)
    s = sigma.reshape(-1, 1, 1, 1)
    r_vp = (x - cond) / (1 + s**2).sqrt()
    # the network sees the noisy residual x - c (VP-scaled) and the condition; its output is r0
    torch.testing.assert_close(seen["inputs"], torch.cat([r_vp, cond], dim=1))
    torch.testing.assert_close(x0, (cond + 0.5 * r_vp).clamp(-1.0, 1.0))
    torch.testing.assert_close(model.diffused(x, cond), x - cond)
    with pytest.raises(ValueError, match="parametrization"):
        ConditionalNetwork(network, SCHEDULE, parametrization="v")


@pytest.mark.parametrize("eta", [None, 0.0, 1.0])
def test_an_untrained_residual_network_returns_the_bicubic_upsample(eta):
    # A fresh `restore train sr3` network (its config and the compact UNet's zero output layer):
    # every sample, hence the posterior mean, is bicubic(y) clipped to the data range, exactly.
    from restore.priors.native import native_denoiser
    from restore.training.sr3 import conditional_config

    architecture = UNetConfig(channels=3, in_channels=6, base_channels=8, channel_mult=(1, 2), groups=8)
    sr = operator("sr", scale=2, noise=GaussianNoise(0.02))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 12, 16, generator=g)
    y = sr.measure(x, generator=g)
    bicubic = F.interpolate(y, size=(12, 16), mode="bicubic", align_corners=False).clamp(0, 1)
    images = {}
    for residual in (True, False):
        config = conditional_config(architecture, residual=residual, measurement_sigma=0.02)
        prior = Prior(native_denoiser(CompactUNet(architecture), config), name="fresh", data_range=(-1.0, 1.0))
        with torch.no_grad():
            images[residual] = solve(Problem(prior, sr, y), Conditional(eta=eta), steps=10, shape=(3, 12, 16),
                                     generator=torch.Generator().manual_seed(1)).image
    torch.testing.assert_close(images[True], bicubic, atol=1e-6, rtol=0)
    # SR3's own (epsilon, non-residual) network untrained: far from it (measured RMSE 0.42-0.51)
    assert float(((images[False] - bicubic) ** 2).mean().sqrt()) > 0.2


def test_conditional_loss_targets_the_residual_of_a_residual_network():
    # a network that outputs zero has loss mean(z0^2): z0 = x0 - c(y) for a residual x0
    # network, x0 for a plain one (whatever t and eps were drawn)
    def zero(inputs, t):
        return torch.zeros_like(inputs[:, :3])

    sr = operator("sr", scale=2)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for residual in (True, False):
        prior = conditional_prior(zero, parametrization="x0", residual=residual)
        loss = conditional_loss(prior, sr, x, generator=torch.Generator().manual_seed(1))
        cond = measurement_condition(Problem(prior, sr, sr.measure(x)), (3, 8, 8))
        z0 = 2 * x - 1 - (cond if residual else 0)
        torch.testing.assert_close(loss, (z0**2).mean())


def test_conditional_network_needs_the_conditional_strategy():
    prior = conditional_prior(small_unet())
    # a conditional network is no denoiser: other strategies refuse it, naming the one to use
    assert not isinstance(prior.denoiser, Denoiser)
    with pytest.raises(StrategyNotApplicable, match="use strategy 'conditional'"):
        solve(Problem(prior, operator("sr", scale=2), torch.zeros(1, 3, 4, 4)), DPS(zeta=0.3), steps=5)
    plain = Prior(gaussian(torch.zeros(192), 1.0), name="gaussian", shape=(3, 8, 8), data_range=(0.0, 1.0))
    with pytest.raises(StrategyNotApplicable, match="ConditionalNetwork"):
        solve(Problem(plain, operator("sr", scale=2), torch.zeros(1, 3, 4, 4)), Conditional(), steps=5)
    # without steps: the default, 20 (the benchmark's budget), one network call each
    assert solve(Problem(prior, operator("sr", scale=2), torch.zeros(1, 3, 4, 4)), Conditional()).nfe == 20
    with pytest.raises(ValueError, match="eta"):
        Conditional(eta=2.0)
    with pytest.raises(StrategyNotApplicable, match="would not flip or turn with the input"):
        solve(Problem(prior, operator("sr", scale=2), torch.zeros(1, 3, 4, 4)), Conditional(symmetry="hflip"), steps=5)


def test_training_a_tiny_sr3_model_beats_the_unconditional_guess():
    # Toy task: constant-colour 4x4 images, x2 super-resolution with noise 0.01; the compact
    # UNet (16 channels, one level) with the condition in 3 extra input channels, 300 Adam
    # steps (a few seconds).  Measured: held-out epsilon loss 1.003 -> 0.058; with the
    # conditions shuffled between images 0.193; samples (20 ancestral steps, x0 clipped to the
    # data range) have MSE 0.0097 to the truth where the best unconditional guess (the mean
    # colour) has 0.075.
    def images(batch, generator):
        return torch.rand(batch, 3, 1, 1, generator=generator).expand(batch, 3, 4, 4).clone()

    prior = conditional_prior(small_unet(), shape=(3, 4, 4), clip=(-1.0, 1.0), measurement_sigma=0.01)
    sr = operator("sr", scale=2, noise=GaussianNoise(0.01))

    def held_out(shuffle=False):
        g = torch.Generator().manual_seed(123)
        x = images(1024, g)
        y = sr.measure(x, generator=g)
        cond = measurement_condition(Problem(prior, sr, y), (3, 4, 4))
        if shuffle:
            cond = cond.roll(1, dims=0)
        x_t_eps = torch.randn(x.shape, generator=g)
        t = torch.randint(0, 1000, (1024,), generator=g)
        a = SCHEDULE.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
        x_t = a.sqrt() * (2 * x - 1) + (1 - a).sqrt() * x_t_eps
        with torch.no_grad():
            return float(F.mse_loss(prior.denoiser.network(torch.cat([x_t, cond], 1), t.float()), x_t_eps))

    before = held_out()
    losses = train_conditional(prior, sr, images, steps=300, batch_size=32, lr=2e-3)
    after = held_out()
    assert len(losses) == 300 and after < 0.2 * before
    assert held_out(shuffle=True) > 2 * after

    g = torch.Generator().manual_seed(7)
    x = images(64, g)
    y = sr.measure(x, generator=g)
    with torch.no_grad():
        result = solve(Problem(prior, sr, y), Conditional(), steps=20, generator=g)
    assert result.nfe == 20
    assert ((result.image - x) ** 2).mean() < 0.35 * x.var()
    # the same objective as the training loop, through the public helper
    with torch.no_grad():
        assert float(conditional_loss(prior, sr, images(512, g), generator=g)) < 0.2 * before


def test_conditional_sampling_runs_on_every_linear_operator(operator_name):
    op = small_operator(operator_name, (3, 8, 8), noise=GaussianNoise(0.05))
    prior = conditional_prior(small_unet(base=8), clip=(-1.0, 1.0), measurement_sigma=0.05)
    torch.nn.init.normal_(prior.denoiser.network.network.out[-1].weight, std=0.01)  # not the zero-initialised output
    g = torch.Generator().manual_seed(0)
    y = op.measure(torch.rand(2, 3, 8, 8, generator=g), generator=g)
    if not op.linear:  # no pseudo-inverse condition image: refused, naming the capability
        with pytest.raises(StrategyNotApplicable, match="linear"):
            solve(Problem(prior, op, y), Conditional(), steps=5, generator=g)
        return
    for eta in (None, 0.0):
        with torch.no_grad():
            result = solve(Problem(prior, op, y), Conditional(eta=eta), steps=5, generator=g)
        assert result.image.shape == (2, 3, 8, 8) and torch.isfinite(result.image).all() and result.nfe == 5


def test_nan_network_raises_divergence_error_with_the_step_number():
    sigmas = SCHEDULE.sampling_sigmas(10)
    t_bad = float(SCHEDULE.sigma_to_t(sigmas[6:7]))

    def network(inputs, t):
        out = inputs[:, :3]
        return out * math.nan if float(t[0]) <= t_bad + 1e-6 else out

    prior = conditional_prior(network)
    y = torch.zeros(2, 3, 4, 4)
    with pytest.raises(DivergenceError, match="step 6 of 10"):
        solve(Problem(prior, operator("sr", scale=2), y), Conditional(), steps=10)


def test_the_conditional_strategy_serves_only_the_noise_level_its_network_was_trained_for():
    # tolerance: |sigma - 0.025| <= 0.25 * 0.025 + 1/255 = 0.03517 - 0.025
    from restore.measurement import with_quantization_noise
    from restore.operators.noise import PoissonNoise

    prior = conditional_prior(small_unet(base=8), clip=(-1.0, 1.0), measurement_sigma=0.025)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def run(op, **params):
        y = op.measure(x, generator=torch.Generator().manual_seed(1))
        return solve(Problem(prior, op, y), Conditional(**params), steps=2, generator=torch.Generator().manual_seed(2))

    sr = operator("sr", scale=2, noise=GaussianNoise(0.025))
    for served in (sr, with_quantization_noise(sr, 8)[0], operator("sr", scale=2, noise=GaussianNoise(0.035))):
        assert run(served).image.shape == x.shape
    for noise, why in ((GaussianNoise(0.036), "sigma 0.036, the network was trained on sigma 0.025"),
                       (None, "sigma 0, the network was trained on sigma 0.025"),
                       (PoissonNoise(1600.0), "PoissonNoise measurement noise")):
        with pytest.raises(StrategyNotApplicable, match=why):
            run(operator("sr", scale=2, noise=noise))
    assert run(operator("sr", scale=2), check_noise=False).image.shape == x.shape
    with pytest.raises(ValueError, match="check_noise must be true or false"):
        Conditional(check_noise="no")
    # a network trained without noise takes an 8-bit file (its rounding, 0.0011, is within 1/255)
    noiseless = conditional_prior(small_unet(base=8), clip=(-1.0, 1.0))
    quantized = with_quantization_noise(operator("sr", scale=2), 8)[0]
    y = quantized.measure(x, generator=torch.Generator().manual_seed(1))
    assert solve(Problem(noiseless, quantized, y), Conditional(), steps=2).image.shape == x.shape


def test_the_conditional_strategy_serves_only_the_operator_its_network_was_trained_for():
    # config.json's measurement_operator: registry name and attributes, each compared; no override
    prior = conditional_prior(small_unet(base=8), clip=(-1.0, 1.0),
                              measurement_operator={"name": "sr", "scale": 2, "method": "bicubic"})
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def run(op, **params):
        y = op.measure(x, generator=torch.Generator().manual_seed(1))
        return solve(Problem(prior, op, y), Conditional(**params), steps=2, generator=torch.Generator().manual_seed(2))

    assert run(operator("sr", scale=2)).image.shape == x.shape
    trained = "the network was trained for sr \\(scale 2, method bicubic\\)"
    for op, why in ((operator("sr", scale=4), "the operator has scale 4"),
                    (operator("sr", scale=2, method="avgpool"), "the operator has method avgpool"),
                    (operator("blur", kernel="gaussian", size=3, std=1.0), "the operator is blur")):
        with pytest.raises(StrategyNotApplicable, match=f"{trained}, {why}; a conditional network serves only"):
            run(op, check_noise=False)
