"""Classifier guidance: the denoiser shift is exact on the reference mixture, it is D&N's
Alg. 2 in the VP view, the ADM adapter feeds the classifier what it was trained on, and the
strategy composes with DPS and RePaint on every operator they serve.

Margins were set from measurement (seeds fixed, numbers in each test's comment).
"""
from __future__ import annotations

import math

import pytest
import torch
from conftest import small_operator

from restore.diffusion.classifier import ADMClassifierGuide, GuidedDenoiser, MixtureClassifier, NoisyClassifier
from restore.diffusion.samplers import sample_ddpm
from restore.diffusion.schedules import VPDiscrete
from restore.metrics.distribution import sliced_wasserstein
from restore.operators.noise import GaussianNoise
from restore.plugins import load_registry
from restore.priors.adm import ADMClassifier
from restore.priors.analytic import GaussianMixture, gaussian, reference_mixture
from restore.priors.base import Prior
from restore.strategies.base import DivergenceError, Problem, StrategyNotApplicable
from restore.strategies.dps import DPS
from restore.strategies.engine import solve
from restore.strategies.guidance import ClassifierGuidance
from restore.strategies.repaint import RePaint, repaint_schedule

REGISTRY = load_registry()
IMAGE_SHAPE = (3, 16, 16)
RARE_CLASS = 16  # weight 0.0003 in reference_mixture(8)


def sw(a, b) -> float:
    return sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(5))


def tiny_adm_classifier(classes: int = 3) -> ADMClassifier:
    torch.manual_seed(0)
    net = ADMClassifier(image_size=16, in_channels=3, model_channels=32, out_channels=classes, num_res_blocks=1,
                        attention_resolutions=(2,), channel_mult=(1, 2), pool="adaptive", num_head_channels=32)
    torch.nn.init.normal_(net.out[-2].weight, std=0.5)  # the released head starts at zero: give it a gradient
    return net.eval().requires_grad_(False)


def image_prior() -> Prior:
    mixture = GaussianMixture(torch.ones(1), torch.full((1, 768), 0.5), variances=torch.tensor([0.04]),
                              shape=IMAGE_SHAPE)
    return Prior(mixture, name="gaussian-image", shape=IMAGE_SHAPE, data_range=(0.0, 1.0))


def test_guided_mixture_denoiser_is_the_exact_class_conditional_denoiser():
    # D(x, sigma) + sigma^2 grad log p(k | x) = E[x0 | x, k] = mu_k + (x - mu_k) / (1 + sigma^2)
    mixture = reference_mixture(8)
    g = torch.Generator().manual_seed(0)
    x = 20 * torch.randn(6, 8, generator=g, dtype=torch.float64)
    for k in (0, 7, RARE_CLASS):
        guided = GuidedDenoiser(mixture, MixtureClassifier(mixture), k, scale=1.0)
        for sigma in (0.05, 1.0, 30.0):
            s = torch.full((6,), sigma, dtype=torch.float64)
            expected = mixture.means[k] + (x - mixture.means[k]) / (1 + sigma**2)
            torch.testing.assert_close(guided(x, s), expected, rtol=1e-9, atol=1e-9)


def test_guided_samples_match_the_class_distribution():
    # Rare class 16 (weight 0.0003), 100 ancestral steps, 1000 samples.  Measured: SW to the
    # class's Gaussian N(mu_16, I) 0.084 with scale 1, against an exact-vs-exact floor of
    # 0.081; 12.7 with scale 0 (the whole mixture).
    mixture, n = reference_mixture(8), 1000
    component = gaussian(mixture.means[RARE_CLASS], 1.0)
    g = torch.Generator().manual_seed(0)
    exact, exact2 = component.sample(n, generator=g), component.sample(n, generator=g)
    floor = sw(exact2, exact)
    sigmas = mixture.sampling_sigmas(100)
    start = mixture.init_noise((n, 8), float(sigmas[0]), generator=torch.Generator().manual_seed(1),
                               dtype=torch.float64)
    for scale, check in ((1.0, lambda d: d < 1.5 * floor), (0.0, lambda d: d > 50 * floor)):
        guided = GuidedDenoiser(mixture, MixtureClassifier(mixture), RARE_CLASS, scale)
        samples = sample_ddpm(guided, start, sigmas, generator=torch.Generator().manual_seed(2))
        assert check(sw(samples, exact)), (scale, sw(samples, exact), floor)


def test_shift_is_dhariwal_nichol_alg2_through_the_adm_adapter():
    # eps_hat = eps - s sqrt(1 - abar) grad_{x_vp} log p(c | x_vp), the classifier fed x_vp and t.
    prior, net, scale, label = image_prior(), tiny_adm_classifier(), 2.5, 1
    schedule = VPDiscrete.linear(1000)
    guided = GuidedDenoiser(prior.denoiser, ADMClassifierGuide(net, schedule), label, scale)
    g = torch.Generator().manual_seed(0)
    for t in (40, 500):
        sigma = float(schedule.sigmas[t])
        abar = 1 / (1 + sigma**2)
        x = 0.5 + sigma * torch.randn(2, *IMAGE_SHAPE, generator=g)
        s = torch.full((2,), sigma, dtype=torch.float64)
        eps = (x - prior.denoiser(x, s)) / sigma
        eps_guided = (x - guided(x, s)) / sigma
        x_vp = (math.sqrt(abar) * x).requires_grad_(True)
        log_p = net(x_vp, torch.full((2,), float(t))).log_softmax(dim=1)[:, label].sum()
        grad_vp, = torch.autograd.grad(log_p, x_vp)
        torch.testing.assert_close(eps_guided, eps - scale * math.sqrt(1 - abar) * grad_vp, rtol=1e-4, atol=1e-5)


def test_adm_adapter_converts_sigma_to_its_timestep():
    seen = {}

    def network(x_vp, t):
        seen["x_vp"], seen["t"] = x_vp, t
        return torch.stack([x_vp.flatten(1).sum(1), -x_vp.flatten(1).sum(1)], dim=1)

    schedule = VPDiscrete.linear(1000)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    sigma = schedule.sigmas[[10, 300, 999]]
    log_p = ADMClassifierGuide(network, schedule).log_prob(x, sigma, torch.tensor([0, 1, 0]))
    torch.testing.assert_close(seen["t"], torch.tensor([10.0, 300.0, 999.0], dtype=torch.float64))
    torch.testing.assert_close(seen["x_vp"], x / (1 + sigma**2).sqrt().reshape(-1, 1, 1, 1))
    logits = network(seen["x_vp"], seen["t"])
    torch.testing.assert_close(log_p, logits.log_softmax(1)[torch.arange(3), torch.tensor([0, 1, 0])])


def test_adm_adapter_reproduces_the_reference_classifier(shared_dir):
    # guided-diffusion's tiny EncoderUNetModel reference: logits at (x_vp, integer t).  Fed the
    # VE-view point x = x_vp sqrt(1 + sigma_t^2) at sigma_t, the adapter must give the same log-probs.
    # Its random weights make the logits vary little (doubling x or moving t changes them by ~1e-3,
    # skipping the VP scaling or using the cosine schedule by 2e-4), so the tolerance is tight:
    # measured difference 0.
    path = shared_dir / "reference" / "adm" / "tiny_classifier_reference.pt"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    ref = torch.load(path, weights_only=True)
    net = ADMClassifier(**ref["config"]).eval()
    net.load_state_dict(ref["state_dict"], strict=True)
    schedule = VPDiscrete.linear(1000)
    sigma = schedule.sigmas[ref["t"].long()]
    x = ref["x"] * (1 + sigma**2).sqrt().float().reshape(-1, 1, 1, 1)
    labels = torch.tensor([3, 7])
    with torch.no_grad():
        got = ADMClassifierGuide(net, schedule).log_prob(x, sigma, labels)
    expected = ref["output"].log_softmax(dim=1)[torch.arange(2), labels]
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_guidance_composes_with_repaint():
    # The mixture as a 2x2x2 image with only coordinate 0 known: the posterior spreads over the
    # 5 components that share its first mean coordinate.  Guided to one of them (scale 1), RePaint
    # must land on that component's exact posterior.  Measured (500 samples, 50 levels, j = r = 5):
    # SW 0.138 with guidance against a floor of 0.102; 11.2 without.
    mixture, n, sigma_y = reference_mixture(8), 500, 0.1
    prior = Prior(mixture, name="gmm", shape=(2, 2, 2), data_range=(0.0, 1.0))
    mask = torch.zeros(2, 2, 2)
    mask[0, 0, 0] = 1
    op = REGISTRY.get("operator", "inpaint")(mask=mask, noise=GaussianNoise(sigma_y))
    g = torch.Generator().manual_seed(0)
    x_true = mixture.means[12].reshape(1, 2, 2, 2)  # mean (0, 0, ...): first coordinate 0
    y = op.measure(x_true.clone(), generator=g)
    target = 10  # mean (0, -16, 0, -16, ...): same first coordinate
    exact_posterior = gaussian(mixture.means[target], 1.0).posterior(torch.eye(8, dtype=torch.float64)[:1],
                                                                     y.flatten()[:1], sigma_y)
    exact, exact2 = exact_posterior.sample(n, generator=g), exact_posterior.sample(n, generator=g)
    problem = Problem(prior, op, y.expand(n, -1, -1, -1).clone())
    distances = {}
    for scale in (1.0, 0.0):
        strategy = ClassifierGuidance(RePaint(jump_length=5, jump_n_sample=5), MixtureClassifier(mixture), target,
                                      scale)
        result = solve(problem, strategy, steps=50, generator=torch.Generator().manual_seed(1))
        distances[scale] = sw(result.sample, exact)
    floor = sw(exact2, exact)
    assert distances[1.0] < 2 * floor and distances[0.0] > 20 * floor, (distances, floor)


def test_guidance_composes_with_dps():
    # DPS differentiates the guided denoiser (second order through the classifier).  y measures
    # coordinates 0-1 of the mixture's mean 12 = (0, 0, ...); guided to class 7 = (-8, 0, ...)
    # with scale 1 the samples follow the class; without guidance they stay at mean 12.
    # Measured (200 samples, 100 steps): 100% nearest to mean 7 guided, 100% to mean 12 unguided.
    mixture, n = reference_mixture(8), 200
    prior = Prior(mixture, name="gmm", shape=(8,), data_range=(0.0, 1.0))
    op = REGISTRY.get("operator", "matrix")(matrix=torch.eye(8, dtype=torch.float64)[:2], noise=GaussianNoise(2.0))
    y = torch.zeros(n, 2, dtype=torch.float64)
    nearest = {}
    for scale in (1.0, 0.0):
        strategy = ClassifierGuidance(DPS(zeta=0.3), MixtureClassifier(mixture), 7, scale)
        result = solve(Problem(prior, op, y), strategy, steps=100, generator=torch.Generator().manual_seed(0))
        assert result.nfe == 100
        nearest[scale] = torch.cdist(result.sample, mixture.means).argmin(1)
    assert (nearest[1.0] == 7).float().mean() > 0.9 and (nearest[0.0] == 12).float().mean() > 0.9


def test_guidance_runs_on_every_registered_operator(operator_name):
    op = small_operator(operator_name, IMAGE_SHAPE, noise=GaussianNoise(0.02))
    prior, classifier = image_prior(), ADMClassifierGuide(tiny_adm_classifier())
    g = torch.Generator().manual_seed(0)
    y = op.measure(prior.denoiser.sample(2, generator=g, dtype=torch.float32).clamp(0, 1), generator=g)
    inner = RePaint(jump_length=2, jump_n_sample=2) if op.is_mask else DPS(zeta=0.5)
    result = solve(Problem(prior, op, y), ClassifierGuidance(inner, classifier, torch.tensor([0, 2]), 1.0), steps=6,
                   generator=g)
    path = repaint_schedule(6, 2, 2)
    assert result.image.shape == (2, *IMAGE_SHAPE) and torch.isfinite(result.image).all()
    assert result.nfe == (sum(b > a for a, b in zip(path, path[1:])) if op.is_mask else 6)


def test_guidance_checks_and_divergence():
    mixture = reference_mixture(8)
    prior = Prior(mixture, name="gmm", shape=(8,), data_range=(0.0, 1.0))
    classifier = MixtureClassifier(mixture)
    with pytest.raises(ValueError, match="scale"):
        ClassifierGuidance(DPS(), classifier, 0, scale=-1.0)
    with pytest.raises(TypeError, match="strategy"):
        ClassifierGuidance(42, classifier, 0)
    with pytest.raises(KeyError, match="registered strategys"):
        ClassifierGuidance("nosuch", classifier, 0)
    with pytest.raises(ValueError, match="unknown classifier spec"):
        solve(Problem(prior, REGISTRY.get("operator", "matrix")(matrix=torch.eye(8, dtype=torch.float64)[:2]),
                      torch.zeros(1, 2, dtype=torch.float64)),
              ClassifierGuidance("dps", "nosuch:x", 0, strategy_params={"zeta": 0.3}),
              steps=2)
    with pytest.raises(TypeError, match="classifier"):
        ClassifierGuidance(DPS(), lambda x: x, 0)
    assert ClassifierGuidance(RePaint(), classifier, 0).default_steps == 250

    class OwnGrid(DPS):
        def sampling_sigmas(self, denoiser, steps):
            return torch.tensor([3.0, 1.0, 0.0])

    assert torch.equal(ClassifierGuidance(OwnGrid(), classifier, 0).sampling_sigmas(mixture, 10),
                       torch.tensor([3.0, 1.0, 0.0]))
    op = REGISTRY.get("operator", "matrix")(matrix=torch.eye(8, dtype=torch.float64)[:2], noise=GaussianNoise(0.1))
    with pytest.raises(StrategyNotApplicable, match="is_mask"):  # the wrapped strategy's check
        solve(Problem(prior, op, torch.zeros(1, 2, dtype=torch.float64)), ClassifierGuidance(RePaint(), classifier, 0))

    class NaNBelow(NoisyClassifier):
        def log_prob(self, x, sigma, labels):
            lp = classifier.log_prob(x, sigma, labels)
            return lp * math.nan if float(sigma.reshape(-1)[0]) < threshold else lp

    sigmas = mixture.sampling_sigmas(20)
    threshold = float(sigmas[5]) * 1.01
    with pytest.raises(DivergenceError, match="step 5 of 20"):
        solve(Problem(prior, op, torch.zeros(2, 2, dtype=torch.float64)),
              ClassifierGuidance(DPS(zeta=0.3), NaNBelow(), 0),
              steps=20)


def test_guidance_builds_from_json_parameters_and_counts_classifier_evaluations():
    # As the CLI builds it: the registry's factory with JSON-able parameters only.
    import json

    mixture = reference_mixture(8)
    prior = Prior(mixture, name="gmm", shape=(8,), data_range=(0.0, 1.0))
    op = REGISTRY.get("operator", "matrix")(matrix=torch.eye(8, dtype=torch.float64)[:2], noise=GaussianNoise(2.0))
    params = json.loads(json.dumps({"strategy": "dps", "strategy_params": {"zeta": 0.3}, "classifier": "mixture",
                                    "labels": 7, "scale": 1.0}))
    strategy = REGISTRY.get("strategy", "classifier-guidance")(**params)
    assert json.loads(json.dumps(strategy.params())) == {**params, "strategy_params": {"zeta": 0.3}}
    y = torch.zeros(50, 2, dtype=torch.float64)
    result = solve(Problem(prior, op, y), strategy, steps=40, generator=torch.Generator().manual_seed(0))
    # one classifier forward + backward per denoiser evaluation, reported next to the NFE
    assert result.nfe == 40 and result.evaluations == {"nfe": 40, "classifier": 40}
    # and it guides exactly like the object-built strategy (same seed, same samples)
    same = solve(Problem(prior, op, y), ClassifierGuidance(DPS(zeta=0.3), MixtureClassifier(mixture), 7, 1.0),
                 steps=40, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(result.sample, same.sample, rtol=0, atol=0)


def test_common_parameters_and_the_grid_are_the_inner_strategys():
    # symmetry / warm_start / t0 are the inner strategy's, given to either, and act on the run (hflip
    # doubles the NFE and the classifier evaluations, a warm start at t0 = 0.5 runs half the steps)
    # and on its parameters (so a record rebuilds it); the inner strategy's own grid is sampled on.
    prior = image_prior()
    classifier = MixtureClassifier(prior.denoiser)
    op = REGISTRY.get("operator", "inpaint")(mask="random", ratio=0.5, seed=1, noise=GaussianNoise(0.05))
    g = torch.Generator().manual_seed(0)
    problem = Problem(prior, op, op.measure(prior.denoiser.sample(1, generator=g).clamp(0, 1), generator=g))

    def run(inner=None, **common):
        strategy = ClassifierGuidance(inner or DPS(zeta=0.3), classifier, 0, **common)
        return solve(problem, strategy, steps=8, generator=torch.Generator().manual_seed(1))

    plain, hflip = run(), run(symmetry="hflip")
    assert plain.evaluations == {"nfe": 8, "classifier": 8}
    assert hflip.evaluations == {"nfe": 16, "classifier": 16}
    assert run(DPS(zeta=0.3, symmetry="hflip")).nfe == 16  # set on the inner strategy, it acts as well
    assert run(warm_start="pinv", t0=0.5).nfe == 4

    built = REGISTRY.get("strategy", "classifier-guidance")(strategy="dps", strategy_params={"zeta": 0.3},
                                                            classifier="mixture", labels=0, symmetry="hflip")
    assert built.strategy.symmetry == built.symmetry == "hflip"
    assert built.params()["strategy_params"] == {"zeta": 0.3, "symmetry": "hflip"}
    assert REGISTRY.get("strategy", "classifier-guidance")(**built.params()).symmetry == "hflip"
    with pytest.raises(ValueError, match="symmetry must be 'prior' or one of"):
        ClassifierGuidance(DPS(), classifier, 0, symmetry="mirror")

    class ThreeLevels(DPS):
        def grid(self, problem, denoiser, steps):
            return denoiser.sampling_sigmas(3)

    assert run(ThreeLevels(zeta=0.3)).nfe == 3
