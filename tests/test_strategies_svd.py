"""MatrixOperator and the SVD-family strategies (PiGDM, DDRM, DDNM / DDNM+, DiffPIR, DAPS).

Exactness checks compare N = 400 samples of each strategy with as many exact posterior
samples by the sliced Wasserstein distance (SW, 200 directions), relative to the SW of prior
samples to the same posterior:

* Gaussian prior N(0.5, I) in d = 8, d_y = 2, s = (1, 0.3), sigma_y = 0.1 (unimodal: every
  strategy should be close);
* the reference mixture (d = 8, d_y = 2, sigma_y = 0.1, problems 1 and 3 of the benchmark's
  generator), where sliced Wasserstein is dominated by how the strategies weight the modes.

Margins (RATIO_*) are the measured ratios (MEASURED_*, 2026-11-22, this file's seeds) times
about 1.5 and capped well below 1; a strategy that ignores y scores about 1.

Noise calibration: for measurements y = A x + sigma_y n of x drawn from the prior, an exact
posterior sample x' gives residuals y - A x' distributed exactly like the noise, so
mean ||y - A x'||^2 / (d_y sigma_y^2) = 1 (standard error 0.05 for 400 draws of d_y = 2).
All strategies here are approximate: the test asserts each one's measured band (CALIBRATION)
— plain DDNM projects onto the noisy y and gives exactly 0 — and, for noiseless y, that
DDRM, DDNM, DDNM+ and DiffPIR reproduce y to rounding.
"""
from __future__ import annotations

import pytest
import torch

from restore.diffusion.samplers import forward_noise
from restore.metrics.distribution import sliced_wasserstein
from restore.operators.base import LinearOperator, Operator
from restore.operators.matrix import MatrixOperator
from restore.operators.noise import GaussianNoise
from restore.plugins import load_registry
from restore.priors.analytic import GaussianMixture, gaussian, reference_mixture
from restore.priors.base import Prior
from restore.strategies.base import Problem, StrategyNotApplicable
from restore.strategies.daps import DAPS
from restore.strategies.ddnm import DDNM, DDNMPlus
from restore.strategies.ddrm import DDRM
from restore.strategies.diffpir import DiffPIR
from restore.strategies.engine import solve
from restore.strategies.pigdm import PiGDM
from restore.strategies.spectral import Spectrum

N = 400
SIGMA_Y = 0.1
#: Strategy factories and the step counts the exactness checks use (DAPS: 20 levels = 100 NFE).
STRATEGIES = {
    "pigdm": (PiGDM, 100),
    "ddrm": (DDRM, 20),
    "ddnm": (DDNM, 100),
    "ddnm+": (DDNMPlus, 100),
    "diffpir": (DiffPIR, 100),
    "daps": (DAPS, 20),
}
#: The strategies that need an SVD (DiffPIR's data step is the operator's prox_l2: any linear operator).
SVD_ONLY = [name for name in STRATEGIES if name not in ("daps", "diffpir")]


def haar(n: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def random_operator(d: int, s: torch.Tensor, gen: torch.Generator, sigma_y: float = SIGMA_Y) -> MatrixOperator:
    return MatrixOperator(u=haar(s.numel(), gen), s=s, v=haar(d, gen), noise=GaussianNoise(sigma_y))


def problem_for(prior: GaussianMixture, operator: MatrixOperator, y: torch.Tensor) -> Problem:
    return Problem(Prior(prior, "test", shape=prior.shape, data_range=(0.0, 1.0)), operator, y)


def run(name: str, problem: Problem, seed: int = 3, **options) -> torch.Tensor:
    factory, steps = STRATEGIES[name]
    return solve(problem, factory(**options), steps=steps, generator=torch.Generator().manual_seed(seed)).sample


def sw(a: torch.Tensor, b: torch.Tensor) -> float:
    return sliced_wasserstein(a, b, directions=200, generator=torch.Generator().manual_seed(2))


# -- MatrixOperator -----------------------------------------------------------------------------

@pytest.mark.parametrize("m, d, shape", [(3, 8, None), (8, 3, None), (5, 5, None), (4, 12, (3, 2, 2))])
def test_matrix_operator_adjoint_dot_product(m, d, shape):
    gen = torch.Generator().manual_seed(m * 100 + d)
    op = MatrixOperator(torch.randn(m, d, generator=gen, dtype=torch.float64), shape=shape)
    x = torch.randn(6, *(shape or (d,)), generator=gen, dtype=torch.float64)
    y = torch.randn(6, m, generator=gen, dtype=torch.float64)
    lhs, rhs = (op(x) * y).sum(), (x * op.adjoint(y)).sum()
    assert abs(float(lhs - rhs)) <= 1e-10 * float(lhs.abs().clamp_min(1.0))
    assert op.adjoint(y).shape == x.shape


@pytest.mark.parametrize("m, d", [(3, 8), (8, 3)])
def test_matrix_operator_svd_reconstructs_the_matrix(m, d):
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(m, d, generator=gen, dtype=torch.float64)
    op = MatrixOperator(a)
    u, s, v = op.tensors()["u"], op.singulars(), op.tensors()["v"]
    k = min(m, d)
    assert torch.allclose((u[:, :k] * s) @ v[:, :k].T, a, atol=1e-12)
    assert torch.allclose(u.T @ u, torch.eye(m, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(v.T @ v, torch.eye(d, dtype=torch.float64), atol=1e-12)
    x = torch.randn(4, d, generator=gen, dtype=torch.float64)
    y = torch.randn(4, m, generator=gen, dtype=torch.float64)
    assert torch.allclose(op.v(op.vt(x)), x, atol=1e-12) and torch.allclose(op.u(op.ut(y)), y, atol=1e-12)
    assert torch.allclose(op.vt(x)[:, :k] * s, op.ut(op(x))[:, :k], atol=1e-12)  # A = U S V^T coordinate-wise
    assert torch.allclose(op(op.pinv(op(x))), op(x), atol=1e-10)  # A A^+ A = A
    rebuilt = MatrixOperator(**op.params(), **op.tensors())
    assert torch.equal(rebuilt(x), op(x))


def test_matrix_operator_from_factors_and_its_errors():
    gen = torch.Generator().manual_seed(8)
    u, v, s = haar(2, gen), haar(4, gen), torch.tensor([0.9, 0.2], dtype=torch.float64)
    op = MatrixOperator(u=u, s=s, v=v)
    assert torch.allclose(op.matrix, (u * s) @ v[:, :2].T, atol=1e-14)
    with pytest.raises(ValueError, match="not orthogonal"):
        MatrixOperator(u=2 * u, s=s, v=v)
    with pytest.raises(ValueError, match="either matrix, or all three"):
        MatrixOperator(op.matrix, u=u, s=s, v=v)
    with pytest.raises(ValueError, match="s must hold min"):
        MatrixOperator(u=u, s=torch.tensor([1.0, -1.0], dtype=torch.float64), v=v)
    with pytest.raises(ValueError, match="shape"):
        MatrixOperator(op.matrix, shape=(3,))
    with pytest.raises(ValueError, match="4 entries per item"):
        op(torch.zeros(2, 5))


def test_matrix_operator_is_registered():
    assert "matrix" in load_registry().names("operator")


# -- shared steps -------------------------------------------------------------------------------

def test_forward_noise_adds_the_variance_difference():
    x = torch.zeros(20000, 2, dtype=torch.float64)
    out = forward_noise(x, 0.5, 1.3, torch.Generator().manual_seed(0))
    assert abs(float(out.var()) - (1.3**2 - 0.5**2)) < 0.05
    with pytest.raises(ValueError, match="sigma_to"):
        forward_noise(x, 1.0, 0.5)


def test_ddnm_plus_scales_follow_eq_19():
    """lambda = 1, gamma = c^2 - (sigma_y/s)^2 where c >= sigma_y/s; else lambda = c s / sigma_y, gamma = 0."""
    gen = torch.Generator().manual_seed(0)
    op = random_operator(4, torch.tensor([1.0, 0.2], dtype=torch.float64), gen)
    y = torch.zeros(1, 2, dtype=torch.float64)
    spec = Spectrum(problem_for(gaussian(torch.zeros(4), 1.0), op, y), torch.zeros(1, 4, dtype=torch.float64))
    lam, gamma = DDNMPlus().scales(spec, c=0.3)  # sigma_y / s = 0.1 (<= c) and 0.5 (> c), then unobserved
    assert torch.allclose(lam[:2], torch.tensor([1.0, 0.3 * 0.2 / 0.1], dtype=torch.float64))
    assert torch.allclose(gamma, torch.tensor([0.09 - 0.01, 0.0, 0.09, 0.09], dtype=torch.float64))
    lam0, gamma0 = DDNM().scales(spec, c=0.3)
    assert torch.all(lam0 == 1) and torch.allclose(gamma0, torch.full((4,), 0.09, dtype=torch.float64))


# -- exactness ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gaussian_problem():
    gen = torch.Generator().manual_seed(0)
    prior = gaussian(torch.full((8,), 0.5), 1.0)
    op = random_operator(8, torch.tensor([1.0, 0.3], dtype=torch.float64), gen)
    y = op.measure(prior.sample(1, generator=gen) + 3.0, generator=gen)  # an atypical x: the posterior moves far
    exact = prior.posterior(op.matrix, y[0], SIGMA_Y).sample(N, generator=gen)
    return problem_for(prior, op, y.expand(N, 2).clone()), exact, sw(prior.sample(N, generator=gen), exact)


def mixture_problem(seed: int):
    """Problem ``seed`` of benchmarks/bench_posterior.py for d = 8, d_y = 2, sigma_y = 0.1."""
    gen = torch.Generator().manual_seed(seed)
    prior = reference_mixture(8, seed=seed)
    s = torch.rand(2, generator=gen, dtype=torch.float64).sort(descending=True).values
    op = MatrixOperator(u=haar(2, gen), s=s, v=haar(8, gen), noise=GaussianNoise(SIGMA_Y))
    y = op.measure(prior.sample(1, generator=gen), generator=gen)
    exact = prior.posterior(op.matrix, y[0], SIGMA_Y).sample(N, generator=torch.Generator().manual_seed(1))
    reference = sw(prior.sample(N, generator=torch.Generator().manual_seed(1)), exact)
    return problem_for(prior, op, y.expand(N, 2).clone()), exact, reference


@pytest.fixture(scope="module")
def mixture_problems():
    return [mixture_problem(seed) for seed in (1, 3)]


#: SW(strategy) / SW(prior) measured on the Gaussian problem (exact vs exact: 0.050), and the
#: asserted bound (about 1.5 x measured).
MEASURED_GAUSSIAN = {"pigdm": 0.054, "ddrm": 0.109, "ddnm": 0.090, "ddnm+": 0.090, "diffpir": 0.088, "daps": 0.092}
RATIO_GAUSSIAN = {"pigdm": 0.08, "ddrm": 0.16, "ddnm": 0.14, "ddnm+": 0.14, "diffpir": 0.13, "daps": 0.14}
#: The same on the two mixture problems, the larger of the two ratios (exact vs exact: 0.018).
#: Mode weighting dominates here: only PiGDM lands far closer than the prior; the others land
#: 2 to 3 times closer (they put too much mass on the wrong modes).
MEASURED_MIXTURE = {"pigdm": 0.185, "ddrm": 0.407, "ddnm": 0.343, "ddnm+": 0.339, "diffpir": 0.450, "daps": 0.504}
RATIO_MIXTURE = {"pigdm": 0.28, "ddrm": 0.6, "ddnm": 0.5, "ddnm+": 0.5, "diffpir": 0.65, "daps": 0.7}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_is_close_to_a_gaussian_posterior(name, gaussian_problem):
    problem, exact, prior_sw = gaussian_problem
    assert sw(run(name, problem), exact) / prior_sw <= RATIO_GAUSSIAN[name]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_is_closer_than_the_prior_on_the_mixture(name, mixture_problems):
    ratios = [sw(run(name, problem), exact) / prior_sw for problem, exact, prior_sw in mixture_problems]
    assert max(ratios) <= RATIO_MIXTURE[name]


def test_the_exactness_check_can_fail(gaussian_problem):
    """Samples that ignore y (DDRM on a measurement of zero gain) score like the prior."""
    problem, exact, prior_sw = gaussian_problem
    op = problem.operator
    blind = MatrixOperator(u=op.tensors()["u"], s=torch.zeros(2, dtype=torch.float64), v=op.tensors()["v"],
                           noise=op.noise)
    samples = run("ddrm", Problem(problem.prior, blind, problem.y))
    assert sw(samples, exact) / prior_sw > 0.8


# -- noise calibration ----------------------------------------------------------------------------

#: mean ||y - A x'||^2 / (d_y sigma_y^2) over 400 independent problems (exact posterior: 1 +- 0.05):
#: measured, and the asserted band.  PiGDM and DAPS over-fit little (1.5); DDRM at its 20 steps
#: and DiffPIR (lambda = 7 trusts the prior) leave residuals 2 and 4 times the noise; DDNM+ ends
#: almost on y (its last steps keep y's noise, lambda -> 0 only as c -> 0), plain DDNM exactly on y.
MEASURED_CALIBRATION = {"pigdm": 1.54, "ddrm": 3.93, "ddnm": 0.0, "ddnm+": 0.005, "diffpir": 15.2, "daps": 1.45}
CALIBRATION = {"pigdm": (1.0, 2.3), "ddrm": (2.5, 6.0), "ddnm": (0.0, 1e-12), "ddnm+": (0.0, 0.05),
               "diffpir": (10.0, 23.0), "daps": (1.0, 2.2)}


@pytest.fixture(scope="module")
def calibration_problem():
    """One operator, 400 measurements of 400 prior draws (one posterior sample each)."""
    gen = torch.Generator().manual_seed(5)
    prior = reference_mixture(8, seed=5)
    op = random_operator(8, torch.tensor([0.9, 0.4], dtype=torch.float64), gen)
    y = op.measure(prior.sample(N, generator=gen), generator=gen)
    return problem_for(prior, op, y)


def calibration(problem: Problem, samples: torch.Tensor) -> float:
    residual = problem.y - problem.operator(samples)
    return float((residual**2).sum(1).mean()) / (residual.shape[1] * problem.sigma_y**2)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_residuals_match_the_noise_level(name, calibration_problem):
    low, high = CALIBRATION[name]
    assert low <= calibration(calibration_problem, run(name, calibration_problem)) <= high


@pytest.mark.parametrize("name", ["ddrm", "ddnm", "ddnm+", "diffpir"])
def test_noiseless_measurements_are_reproduced(name):
    gen = torch.Generator().manual_seed(6)
    prior = reference_mixture(8, seed=6)
    op = random_operator(8, torch.tensor([0.9, 0.4], dtype=torch.float64), gen, sigma_y=0.0)
    y = op(prior.sample(50, generator=gen))
    samples = run(name, problem_for(prior, op, y))
    assert float((op(samples) - y).abs().max()) <= 1e-9


def test_daps_needs_a_likelihood_width_for_noiseless_measurements():
    gen = torch.Generator().manual_seed(6)
    prior = reference_mixture(8)
    op = random_operator(8, torch.tensor([0.9, 0.4], dtype=torch.float64), gen, sigma_y=0.0)
    with pytest.raises(StrategyNotApplicable, match="beta_y"):  # the benchmark's screen skips it, with the reason
        solve(problem_for(prior, op, torch.zeros(1, 2, dtype=torch.float64)), DAPS(), steps=2)
    solve(problem_for(prior, op, torch.zeros(1, 2, dtype=torch.float64)), DAPS(beta_y=0.01), steps=2)


# -- contract: refusal, events, seeding, hyperparameters -----------------------------------------

class Squash(Operator):
    """A nonlinear operator on vectors: y = 8 tanh(A x / 8) (gain at most ||A||)."""

    def __init__(self, matrix: torch.Tensor, sigma: float) -> None:
        super().__init__(GaussianNoise(sigma))
        self.matrix = matrix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 8 * torch.tanh(x.flatten(1) @ self.matrix.to(x).T / 8)


class Dense(LinearOperator):
    """A linear operator without an SVD."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__(GaussianNoise(0.1))
        self.matrix = matrix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.matrix.to(x).T

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.matrix.to(y)


@pytest.mark.parametrize("name", SVD_ONLY)
@pytest.mark.parametrize("operator, missing",
                         [(Squash(torch.eye(2, 8), 0.1), "linear"), (Dense(torch.eye(2, 8)), "has_svd")])
def test_svd_strategies_refuse_other_operators(name, operator, missing):
    problem = problem_for(reference_mixture(8), operator, torch.zeros(1, 2, dtype=torch.float64))
    with pytest.raises(StrategyNotApplicable, match=missing):
        solve(problem, STRATEGIES[name][0](), steps=2)


def test_diffpir_serves_a_linear_operator_without_an_svd_as_with_one():
    """DiffPIR's data step is prox_l2: conjugate gradients on an operator without an SVD (exact in
    rank(A) = 2 iterations here), the SVD closed form on the same matrix as a MatrixOperator."""
    gen = torch.Generator().manual_seed(5)
    svd = random_operator(8, torch.tensor([1.0, 0.3], dtype=torch.float64), gen)
    dense = Dense(svd.matrix)
    prior = gaussian(torch.full((8,), 0.5), 1.0)
    y = svd.measure(prior.sample(4, generator=gen), generator=gen)
    with_svd, without = (solve(problem_for(prior, op, y), DiffPIR(), steps=20,
                               generator=torch.Generator().manual_seed(6))
                         for op in (svd, dense))
    assert not dense.has_svd and with_svd.nfe == without.nfe == 20
    assert torch.allclose(with_svd.sample, without.sample, atol=1e-8)


def test_daps_serves_a_nonlinear_operator():
    """DAPS needs only a differentiable forward: on y = 8 tanh(A x / 8) (A: two orthonormal rows times
    0.9, sigma_y = 0.1) its residuals are near the noise level (measured 2.5 x sigma_y^2 per entry,
    prior samples 8300 x)."""
    gen = torch.Generator().manual_seed(9)
    prior = reference_mixture(8, seed=9)
    op = Squash(haar(8, gen)[:2] * 0.9, 0.1)
    y = op.measure(prior.sample(100, generator=gen), generator=gen)
    problem = problem_for(prior, op, y)
    assert calibration(problem, solve(problem, DAPS(), steps=20, generator=gen).sample) < 4.0
    assert calibration(problem, prior.sample(100, generator=gen)) > 1000


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategies_emit_one_event_per_step_and_are_seeded(name, gaussian_problem):
    problem, _, _ = gaussian_problem
    small = Problem(problem.prior, problem.operator, problem.y[:3])
    events = []
    first = solve(small, STRATEGIES[name][0](), steps=5, generator=torch.Generator().manual_seed(1),
                  callback=events.append)
    again = solve(small, STRATEGIES[name][0](), steps=5, generator=torch.Generator().manual_seed(1))
    assert [e.step for e in events] == list(range(5)) and events[-1].sigma == 0.0
    assert torch.equal(first.sample, again.sample)
    assert first.sample.shape == (3, 8)


def test_ddnm_time_travel_revisits_levels(gaussian_problem):
    problem, _, _ = gaussian_problem
    small = Problem(problem.prior, problem.operator, problem.y[:3])
    events = []
    result = solve(small, DDNM(travel_length=2, travel_repeat=3), steps=6, callback=events.append)
    sigmas = [e.sigma for e in events]
    assert result.nfe == sum(1 for a, b in zip([float("inf")] + sigmas, sigmas) if b < a)
    assert result.nfe > 6 and any(b > a for a, b in zip(sigmas, sigmas[1:]))


@pytest.mark.parametrize("factory, params, bad", [
    (DDRM, {"eta": 1.5}, "eta"), (DDRM, {"eta_b": -0.1}, "eta_b"), (PiGDM, {"eta": 2}, "eta"),
    (DDNM, {"travel_length": 0}, "travel_length"), (DiffPIR, {"zeta": 1.2}, "zeta"),
    (DiffPIR, {"lambda_": 0}, "lambda_"), (DAPS, {"lr": -1}, "lr"), (DAPS, {"ode_steps": 0}, "ode_steps"),
])
def test_bad_hyperparameters_are_named(factory, params, bad):
    with pytest.raises(ValueError, match=bad):
        factory(**params)


def test_strategies_are_registered():
    names = load_registry().names("strategy")
    assert set(STRATEGIES) <= set(names)


def test_numerically_null_singular_values_are_not_observed():
    """A 61x61 std-3 Gaussian blur has singular values down to ~1e-30; dividing float32 rounding
    error by them turned noiseless deblurring into noise (3.9 dB on a photo crop before the
    cutoff, 21.9 after).  Below the pseudo-inverse cutoff a coordinate counts as unobserved."""
    from restore.operators.kernels import gaussian_kernel
    from restore.plugins import default_registry
    from restore.priors.spec import load_prior
    from restore.strategies.base import Problem
    from restore.strategies.engine import solve
    from restore.strategies.spectral import Spectrum

    registry = default_registry()
    prior = load_prior("gaussian:3x32x32:0.3", registry=registry)
    op = registry.get("operator", "blur")(kernel=gaussian_kernel(size=31, std=3.0),
                                          boundary="circular").bound_to((3, 32, 32))
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    x = torch.stack([xx, yy, xx * yy])[None] * 0.5 + 0.25
    y = op.measure(x)
    spec = Spectrum(Problem(prior, op, y), x)
    s = spec.singulars
    cutoff = 32 * torch.finfo(torch.float32).eps * s.max()
    assert (s <= cutoff).any() and torch.equal(spec.observed, s > cutoff)
    assert torch.isfinite(spec.y_bar).all() and spec.y_bar.abs().max() < 1e3
    result = solve(Problem(prior, op, y), registry.get("strategy", "ddnm")(), steps=10,
                   generator=torch.Generator().manual_seed(0))
    assert ((result.image - x) ** 2).mean() < 0.05  # before the cutoff: values of order 1e3


def _weakly_observed_errors(op_name: str, options: dict) -> tuple[dict[tuple[str, int], float], float]:
    """Mean squared error to x of DDRM and DDNM+ samples at 20 and 100 steps, divided by the
    error of exact posterior samples (2 x the mean posterior variance), on an N(0, 0.5^2 I)
    prior of 3 x 64 x 64 pixels and y = A x + 0.05 n; and the share of coordinates observed
    more weakly than DDNM+'s fresh noise c = 0.85 sigma' at sigma' = 1."""
    from restore import api
    from restore.strategies.spectral import Spectrum

    registry = load_registry()
    std, sigma_y, n = 0.5, 0.05, 3 * 64 * 64
    prior = api.load("gaussian:3x64x64:0.5", registry, torch.device("cpu"), torch.float64)
    op = api.with_noise(api.build_operator(op_name, registry, {**options, "shape": [3, 64, 64]}), sigma_y)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * std
    y = op.measure(x, generator=torch.Generator().manual_seed(1))
    s = op.singulars().double()
    posterior_var = (torch.sum(1 / (s**2 / sigma_y**2 + 1 / std**2)) + (n - s.numel()) * std**2) / n
    errors = {}
    for strategy in (DDRM(), DDNMPlus()):
        for steps in (20, 100):
            sample = solve(Problem(prior, op, y), strategy, steps=steps, generator=torch.Generator().manual_seed(2))
            errors[strategy.name, steps] = float(((sample.image.double() - x) ** 2).mean() / (2 * posterior_var))
    spec = Spectrum(Problem(prior, op, y), x)
    return errors, float((spec.observed & (spec.y_noise > 0.85)).double().mean())


def test_ddnm_plus_overtrusts_weakly_observed_coordinates():
    """Why DDNM+ breaks down on deblurring (docs/STRATEGIES.md): on a coordinate with
    sigma_y / s_i > c it lets c n_i of the *same* measurement noise into x0_hat at every step,
    counts it as that step's fresh noise (Eq. 19: gamma = 0) and carries the previous copy
    forward in its DDIM term, so the copies add coherently.  A circular Gaussian blur has
    such coordinates at every noise level, SR x4 almost none (at sigma' = 1, float64: 51 % and 0 %
    of all coordinates): with the exact prior DDNM+ is as good as DDRM on SR and far worse on blur, more so
    with more steps.  (Measured ratios: blur ddrm 0.81 / 1.10, ddnm+ 1.57 / 3.44 at 20 / 100
    steps; SR all 0.79-0.84.)"""
    blur, blur_weak = _weakly_observed_errors("blur", {"kernel": "gaussian", "size": 61, "boundary": "circular"})
    sr, sr_weak = _weakly_observed_errors("sr", {"scale": 4})
    assert blur_weak > 0.4 and sr_weak < 0.01
    for steps in (20, 100):
        assert sr["ddnm+", steps] == pytest.approx(sr["ddrm", steps], rel=0.1)
        assert blur["ddnm+", steps] > 1.4 * blur["ddrm", steps]
    assert blur["ddnm+", 100] > 2 and blur["ddnm+", 100] > 1.5 * blur["ddnm+", 20]
