"""The ``dpir`` strategy (plug-and-play HQS) on Gaussian priors, where its fixed points are known.

With the exact denoiser of N(mu, Sigma), D(z, s) = mu + Sigma (Sigma + s^2 I)^{-1} (z - mu), one
HQS iteration at fixed (alpha, s) is the affine map x -> D(prox(x), s), prox(x) =
(A^T A + alpha I)^{-1} (A^T y + alpha x); its fixed point x* solves
(I - alpha G M) x* = (I - G) mu + G M A^T y with G = Sigma (Sigma + s^2 I)^{-1} and
M = (A^T A + alpha I)^{-1}.  It is also block coordinate descent on
||y - A z||^2 / (lambda sigma_y^2) + ||z - x||^2 / s^2 + (x - mu)^T Sigma^{-1} (x - mu), so
z* = prox(x*) is the posterior mean for the prior N(mu, Sigma + s^2 I) and noise sqrt(lambda) sigma_y.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import small_operator
from restore.diffusion.denoiser import DelegatingDenoiser
from restore.diffusion.symmetry import GROUPS, act_inverse
from restore.operators.matrix import MatrixOperator
from restore.operators.noise import GaussianNoise
from restore.plugins import default_registry
from restore.priors.analytic import GaussianMixture, gaussian
from restore.priors.base import Prior
from restore.priors.spec import load_prior
from restore.strategies.base import Problem
from restore.strategies.dpir import DPIR, SIGMA_Y_FLOOR
from restore.strategies.engine import solve

D, M = 8, 3


def full_gaussian(gen: torch.Generator):
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=gen, dtype=torch.float64))
    cov = q @ torch.diag(torch.linspace(0.2, 2.0, D, dtype=torch.float64)) @ q.T
    mu = torch.randn(D, generator=gen, dtype=torch.float64)
    return mu, cov


def problem(sigma_y: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    mu, cov = full_gaussian(gen)
    prior = gaussian(mu, cov)
    op = MatrixOperator(torch.randn(M, D, generator=gen, dtype=torch.float64) / math.sqrt(D),
                        noise=GaussianNoise(sigma_y) if sigma_y > 0 else None)
    y = op.measure(prior.sample(2, generator=gen), generator=gen)
    return Problem(Prior(prior, "gaussian", shape=(D,), data_range=(0.0, 1.0)), op, y), mu, cov


def test_at_fixed_alpha_and_sigma_the_iterate_converges_to_the_closed_form_fixed_point():
    sigma_y, s, lam = 0.1, 0.7, 0.5
    prob, mu, cov = problem(sigma_y)
    a, y = prob.operator.matrix, prob.y
    rho = lam * sigma_y**2 / s**2
    eye = torch.eye(D, dtype=torch.float64)
    g = cov @ torch.linalg.inv(cov + s**2 * eye)
    m_inv = torch.linalg.inv(a.T @ a + rho * eye)
    rhs = ((eye - g) @ mu)[:, None] + g @ m_inv @ a.T @ y.T
    fixed = torch.linalg.solve(eye - rho * g @ m_inv, rhs).T
    steps = 300
    result = solve(prob, DPIR(lambda_=lam), sigmas=torch.tensor([s] * steps + [0.0], dtype=torch.float64))
    assert result.nfe == steps
    assert torch.allclose(result.sample, fixed, atol=1e-10)
    # the same point as block coordinate descent: z* the posterior mean of N(mu, Sigma + s^2 I), noise sqrt(lam) sigma_y
    for item in range(2):
        widened = gaussian(mu, cov + s**2 * eye).posterior(a, y[item], math.sqrt(lam) * sigma_y).means[0]
        assert torch.allclose(prob.prior.denoiser(widened[None], torch.tensor([s])), fixed[item:item + 1], atol=1e-10)


def test_noiseless_with_levels_down_to_zero_it_reaches_the_exact_posterior_mean():
    prob, mu, cov = problem(0.0, seed=1)
    a, y = prob.operator.matrix, prob.y
    exact = mu + (cov @ a.T @ torch.linalg.solve(a @ cov @ a.T, (y - mu @ a.T).T)).T  # E[x | A x = y]
    start = (mu - exact).norm(dim=1)  # the prior mean's distance
    errors = []
    for steps in (100, 400):
        result = solve(prob, DPIR(lambda_=1.0, sigma_start=3.0, sigma_end=1e-3), steps=steps)
        assert result.nfe == steps
        errors.append(float(((result.sample - exact).norm(dim=1) / start).max()))
    # The iterate trails the moving fixed point (the posterior mean of N(mu, Sigma + s^2 I), exact as s -> 0)
    # by about 1 - r^2, r the ratio of consecutive levels: error ~ 1 / steps.  Measured 2026-12-02:
    # 0.057 at 100 steps, 0.0158 at 400 (0.0041 at 1600).
    assert errors[1] < 0.025 and errors[1] < errors[0] / 3


def test_dpir_is_deterministic_and_counts_one_evaluation_per_iteration():
    registry = default_registry()
    prior = load_prior("gaussian:3x8x8:0.2", registry=registry)
    op = registry.get("operator", "inpaint")(mask="random", ratio=0.7, seed=0, noise=GaussianNoise(0.02))
    y = op.measure(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)),
                   generator=torch.Generator().manual_seed(1))
    runs = [solve(Problem(prior, op, y), DPIR(), steps=12, generator=torch.Generator().manual_seed(seed))
            for seed in (0, 1)]
    assert torch.equal(runs[0].sample, runs[1].sample)
    assert runs[0].nfe == 12 and solve(Problem(prior, op, y), DPIR()).nfe == DPIR.default_steps
    assert solve(Problem(prior, op, y), DPIR(symmetry="dihedral"), steps=3).nfe == 24


def test_default_levels_follow_the_released_schedule():
    prob, _, _ = problem(0.05)
    grid = DPIR().grid(prob, prob.prior.denoiser, 40)
    assert grid[0] == pytest.approx(0.5) and grid[-2] == pytest.approx(0.05) and grid[-1] == 0
    ratios = grid[1:-1] / grid[:-2]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))  # geometric
    noiseless, _, _ = problem(0.0)
    sigma_min = noiseless.prior.denoiser.sigma_min
    assert DPIR().grid(noiseless, noiseless.prior.denoiser, 5)[-2] == pytest.approx(max(0.6 / 255, sigma_min))
    assert SIGMA_Y_FLOOR == pytest.approx(0.001)
    with pytest.raises(ValueError, match="sigma_end must be"):
        DPIR(sigma_end=1.0)


def test_dpir_serves_every_linear_operator(operator_name):
    """Noiseless measurements of an isotropic Gaussian prior N(0.3, 0.1^2 I): the exact posterior
    mean is the prior mean projected onto {A x = y}; DPIR lands near it on every linear operator,
    with or without an SVD."""
    # a well-conditioned blur: DPIR's noise floor (0.255/255 inside alpha_k) regularizes directions of gain
    # below about 1e-2, where it does not reach the exact (noiseless) posterior mean
    overrides = {"size": 3, "std": 0.5} if operator_name == "blur" else {}
    op = small_operator(operator_name, shape=(3, 8, 8), noise=None, **overrides)
    if not op.linear:
        pytest.skip(f"{operator_name} is not linear")
    shape = (3, 8, 8)
    mean = torch.full((1, *shape), 0.3, dtype=torch.float64)
    prior = Prior(GaussianMixture(torch.ones(1), mean, variances=torch.tensor([0.01]), shape=shape), "gaussian",
                  shape=shape, data_range=(0.0, 1.0))
    x = prior.denoiser.sample(2, generator=torch.Generator().manual_seed(0))
    padded = small_operator("blur", shape=shape, noise=None, boundary="reflect", **overrides)
    for operator in [op, padded] if operator_name == "blur" else [op]:
        operator = operator.bound_to(shape)
        y = operator.forward(x)
        result = solve(Problem(prior, operator, y), DPIR(), steps=40)
        projected = mean + operator.pinv(y - operator.forward(mean))
        error = (result.sample - projected).flatten(1).norm(dim=1)
        # measured 0.0099-0.0101: the last denoiser call at sigma_K = sigma_min = 0.01 (the analytic prior's VP
        # grid) shrinks toward the mean by sigma_K^2 / (0.1^2 + sigma_K^2) = 0.0099
        assert torch.all(error < 0.02 * (mean - projected).flatten(1).norm(dim=1)), (operator_name, operator)


def test_one_image_problem_on_two_prior_ranges_gives_one_image():
    """The same image distribution N(m, c I) in [0, 1] seen by a [0, 1] prior and by a [-1, 1] prior
    (N(2m - 1, 4c I)), the same measured image: DPIR's levels and start are fractions of the range, so
    the restored images agree."""
    registry = default_registry()
    shape = (3, 4, 4)
    op = registry.get("operator", "inpaint")(mask="random", ratio=0.5, seed=2, noise=GaussianNoise(0.03))
    x = 0.4 + 0.15 * torch.randn(2, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = op.measure(x, generator=torch.Generator().manual_seed(1))
    images = []
    for lo, hi in ((0.0, 1.0), (-1.0, 1.0)):
        mean = torch.full((1, *shape), lo + (hi - lo) * 0.4, dtype=torch.float64)
        mixture = GaussianMixture(torch.ones(1), mean, variances=torch.tensor([(hi - lo) ** 2 * 0.15**2]), shape=shape)
        prior = Prior(mixture, "gaussian", shape=shape, data_range=(lo, hi))
        images.append(solve(Problem(prior, op, y), DPIR(sigma_end=0.02), steps=10).image)
    torch.testing.assert_close(images[1], images[0], rtol=0, atol=1e-9)


def test_a_noiseless_inpainting_keeps_the_known_pixels_exactly():
    """Noiseless: the result is projected onto {A x = y}, so the measured pixels come back as
    measured (the paper's x_K, a denoiser output, only nearly keeps them)."""
    gen = torch.Generator().manual_seed(3)
    prior = load_prior("gaussian:3x8x8")
    known = (torch.rand(1, 1, 8, 8, generator=gen) > 0.5).float()
    op = default_registry().get("operator", "inpaint")(mask=known)
    x = torch.rand(1, 3, 8, 8, generator=gen)
    y = op.measure(x)
    out = solve(Problem(prior, op, y), DPIR(), steps=6).image
    keep = known.expand_as(out).bool()
    assert torch.equal(out[keep], x[keep])
    assert not torch.equal(out[~keep], x[~keep])


class Spy(DelegatingDenoiser):
    """The inner denoiser, recording the input of every call."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.inputs = []

    def predict(self, x, sigma):
        self.inputs.append(x.clone())
        return self.inner.predict(x, sigma)


def spied_mask_problem(noise=None, size=8):
    gen = torch.Generator().manual_seed(5)
    spy = Spy(load_prior(f"gaussian:3x{size}x{size}:0.2").denoiser)
    prior = Prior(spy, "gaussian", shape=(3, size, size), data_range=(0.0, 1.0))
    known = (torch.rand(1, 1, size, size, generator=gen) > 0.4).float()
    op = default_registry().get("operator", "inpaint")(mask=known, noise=noise)
    x = torch.rand(1, 3, size, size, generator=gen, dtype=torch.float64)
    return Problem(prior, op, op.measure(x, generator=gen)), spy, known.bool().expand(1, 3, size, size)


def test_a_mask_starts_from_the_biharmonic_fill_at_49_over_255():
    """On a noiseless mask the first data step keeps the start in the holes, so the first denoiser
    call sees exactly the measured pixels with scikit-image's biharmonic fill of the holes; the
    levels start at the paper's 49/255 there and at 0.5 from grey (``start="grey"``, other operators)."""
    from skimage.restoration import inpaint_biharmonic

    prob, spy, keep = spied_mask_problem(size=12)
    solve(prob, DPIR(), steps=3)
    y = prob.y[0].numpy()
    expected = torch.from_numpy(np.stack([inpaint_biharmonic(y[c], ~keep[0, c].numpy()) for c in range(3)]))
    torch.testing.assert_close(spy.inputs[0][0], expected.to(spy.inputs[0]), rtol=0, atol=1e-9)
    assert DPIR().grid(prob, spy, 5)[0] == pytest.approx(49 / 255)
    assert DPIR(start="grey").grid(prob, spy, 5)[0] == pytest.approx(0.5)
    spy.inputs.clear()
    solve(prob, DPIR(start="grey"), steps=3)
    assert torch.all(spy.inputs[0][~keep] == 0.5)  # the grey start, kept in the holes
    blur, _, _ = problem(0.05)
    assert DPIR().grid(blur, blur.prior.denoiser, 5)[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="start must be 'grey' or 'fill'"):
        DPIR(start="zeros")


def test_channels_that_share_a_mask_are_filled_as_each_alone():
    """``Problem.filled`` solves the channels sharing a mask in one call: per channel it is
    scikit-image's fill of that channel alone, whichever channels share (here the first and last,
    not the middle one, as on a Bayer mosaic), and a channel hidden entirely is mid-range."""
    from skimage.restoration import inpaint_biharmonic

    gen = torch.Generator().manual_seed(7)
    size = 10
    shared, own = (torch.rand(2, size, size, generator=gen) > 0.5).float()
    prior = load_prior(f"gaussian:3x{size}x{size}:0.2")
    x = torch.rand(2, 3, size, size, generator=gen, dtype=torch.float64)
    for masks in [(shared, own, shared), (shared, torch.zeros(size, size), own)]:
        op = default_registry().get("operator", "inpaint")(mask=torch.stack(masks))
        y = op.measure(x, generator=gen)
        filled = Problem(prior, op, y).filled(x)
        for b in range(2):
            for c, mask in enumerate(masks):
                expected = (np.full((size, size), 0.5) if not mask.any() else
                            inpaint_biharmonic(y[b, c].numpy(), (mask == 0).numpy()))
                np.testing.assert_allclose(filled[b, c].numpy(), expected, rtol=0, atol=1e-12)


def test_the_self_ensemble_turns_iteration_k_by_the_group_element_k_mod_8_at_no_extra_nfe():
    """Each call's input, turned back by g_k^{-1}, is a data-step output: on a noiseless random
    mask its measured pixels are y's (to the data step's weight on the iterate, under 1e-5 with
    sigma_y floored at 0.255/255).  Had the input not been turned, the check would fail on the
    asymmetric mask."""
    prob, spy, keep = spied_mask_problem()
    result = solve(prob, DPIR(ensemble="dihedral"), steps=16)
    assert result.nfe == 16 and len(spy.inputs) == 16
    for k, seen in enumerate(spy.inputs):
        turns, mirror = GROUPS["dihedral"][k % 8]
        back = act_inverse(seen, turns, mirror)
        torch.testing.assert_close(back[keep], prob.y.to(back)[keep], rtol=0, atol=1e-4)
        if (turns, mirror) != (0, False):
            assert (seen[keep] - prob.y.to(seen)[keep]).abs().max() > 0.05
    # the isotropic Gaussian's exact denoiser is equivariant: g^{-1} D(g z) = D(z), so the cycle changes nothing
    torch.testing.assert_close(solve(prob, DPIR(ensemble="none"), steps=16).image, result.image, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="ensemble must be"):
        DPIR(ensemble="rotations")


def test_more_iterations_pull_a_hole_further_toward_the_prior_mean():
    """Why DPIR at more steps loses on a large box (docs/STRATEGIES.md): in a noiseless mask's
    holes the data step keeps the iterate, so each iteration only denoises it, and on N(0, s^2 I)
    a hole pixel ends at prod_k s^2 / (s^2 + sigma_k^2) times its start (the biharmonic fill):
    more levels shrink it further toward the prior's mean, whatever the known pixels around say."""
    prob, spy, keep = spied_mask_problem(size=12)  # N(0, 0.2^2 I)
    factors = {}
    for steps in (20, 100):
        spy.inputs.clear()
        out = solve(prob, DPIR(), steps=steps).image
        levels = DPIR().grid(prob, spy, steps)[:steps].double()
        assert len(spy.inputs) == steps
        factors[steps] = float(torch.prod(0.2**2 / (0.2**2 + levels**2)))
        torch.testing.assert_close(out[~keep].double(), factors[steps] * spy.inputs[0][~keep].double(), rtol=1e-6,
                                   atol=1e-8)
    assert factors[100] < 0.5 * factors[20]
