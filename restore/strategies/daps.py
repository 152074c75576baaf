r"""DAPS: decoupled annealing posterior sampling (Zhang, Chu, Berner, Meng, Anandkumar & Song
2024, "Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing", Alg. 1).

For each annealing level sigma_t (the paper's t_i, i = N_A .. 1; by default the released
Karras (rho = 7) schedule of N_A levels from ``sigma_max`` = 100 down to ``sigma_min`` = 0.1,
:meth:`DAPS.sampling_sigmas`, then 0):

1. x0_hat = x0(x_t): the probability-flow ODE solved from x_t at sigma_t down to 0 with
   ``ode_steps`` Euler steps on a Karras (rho = 7) sub-grid ending at ``ode_sigma_min``
   (:func:`restore.diffusion.samplers.sample_euler`);
2. ``langevin_steps`` Langevin steps on p(x0 | x_t, y), with p(x0 | x_t) ~ N(x0_hat, r_t^2 I)
   and p(y | x0) = N(A(x0), beta_y^2 I):

       x0 <- x0 + eta_t [ (x0_hat - x0) / r_t^2 - grad_x0 ||y - A(x0)||^2 / (2 beta_y^2) ] + sqrt(2 eta_t) eps,

   the gradient of the data term by autograd through ``Problem.forward`` (any differentiable
   operator, linear or not; for latent priors through the decoder);
3. x_{t-1} = x0 + sigma_{t-1} eps: the next level's noise, drawn fresh around x0
   (:func:`restore.diffusion.samplers.forward_noise`); at the last level the sample is x0.

The paper works in the VE (EDM) view already.  r_t = sigma_t and the step size decays
linearly over the levels, as in the authors' released code (``cores/mcmc.py``, prior solver
"gaussian").  Network evaluations are N_A * ode_steps; Langevin steps cost operator gradients only.

Step size.  The released code uses an absolute step lr = 1e-4 tuned together with its
likelihood width tau = 0.01 (on [-1, 1] images).  Here the step is relative to the stiffness
of the Langevin target, whose Hessian is bounded by 1 / r_t^2 + 1 / b^2 for an operator of
gain at most 1 (b = beta_y in prior units):

    eta_i = lr (1 + (i / (N_A - 1)) (lr_min_ratio - 1)) / (1 / r_t^2 + 1 / b^2),   i = 0 .. N_A - 1.

With the released tau = 0.01 and r_t >= 0.1 this is 0.99 lr * 1e-4, so lr = 1 reproduces the
released step, while any other beta_y or grid keeps the same dynamics and stays stable
(lr < 2 for gains <= 1; larger gains need a smaller lr).  Directions of small gain s relax
slowly (the data curvature there is s^2 / b^2, the step is sized for 1 / b^2): an operator
of gain 0.05 barely moves the sample within 100 Langevin steps.

Defaults from the released pixel-space configurations (``configs/sampler/edm_daps.yaml``,
``configs/task/*.yaml``, DAPS-1K): N_A = 200 annealing levels from 100 to 0.1, ode_steps = 5
down to sigma = 0.01, 100 Langevin steps, lr = 1 (see above), lr_min_ratio = 0.01.  Those
configs fix the likelihood width tau = 0.01 whatever the noise; here beta_y defaults to the
measurement's own noise level (image units, the noise model's Gaussian proxy ``proxy_sigma``), the likelihood of the
actual problem, and must be given for noiseless measurements.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.samplers import emit, forward_noise, noise_like, sample_euler, sigma_pairs
from restore.diffusion.schedules import karras_sigmas
from restore.events import StepCallback
from restore.operators.validation import check_int, check_number
from restore.strategies.base import Problem, Strategy, StrategyNotApplicable


class DAPS(Strategy):
    """Annealed posterior sampling with an inner ODE solve and Langevin corrector per level."""

    name = "daps"
    default_steps = 200
    assumes = ("gaussian-noise",)

    def __init__(self, sigma_max: float = 100.0, sigma_min: float = 0.1, ode_steps: int = 5,
                 ode_sigma_min: float = 0.01, langevin_steps: int = 100, lr: float = 1.0,
                 lr_min_ratio: float = 0.01, beta_y: Optional[float] = None) -> None:
        self.ode_steps = check_int(self.name, "ode_steps", ode_steps, low=1)
        self.langevin_steps = check_int(self.name, "langevin_steps", langevin_steps, low=0)
        self.sigma_min = check_number(self.name, "sigma_min", sigma_min, low=0.0, low_inclusive=False)
        self.sigma_max = check_number(self.name, "sigma_max", sigma_max, low=self.sigma_min)
        self.ode_sigma_min = check_number(self.name, "ode_sigma_min", ode_sigma_min, low=0.0, low_inclusive=False)
        self.lr = check_number(self.name, "lr", lr, low=0.0, low_inclusive=False)
        self.lr_min_ratio = check_number(self.name, "lr_min_ratio", lr_min_ratio, low=0.0, low_inclusive=False)
        self.beta_y = None if beta_y is None else check_number(self.name, "beta_y", beta_y, low=0.0,
                                                                        low_inclusive=False)

    def sampling_sigmas(self, denoiser: Denoiser, steps: int) -> Tensor:
        """The annealing schedule: ``steps`` Karras (rho = 7) levels from sigma_max to sigma_min, then 0."""
        return karras_sigmas(steps, self.sigma_min, self.sigma_max)

    def likelihood_width(self, problem: Problem) -> float:
        """beta_y in image units: the given one, else the measurement's noise level."""
        if self.beta_y is not None:
            return self.beta_y
        sigma = float(problem.operator.noise.proxy_sigma)
        if not sigma > 0:
            raise StrategyNotApplicable(f"{self.name}: the measurement is noiseless, so the likelihood width is "
                                        "undefined; pass beta_y > 0 (the released configs use 0.01)")
        return sigma

    def check(self, problem: Problem) -> None:
        super().check(problem)
        self.likelihood_width(problem)

    def langevin(self, problem: Problem, x0_hat: Tensor, r: float, beta: float, lr: float,
                 generator: Optional[torch.Generator]) -> Tensor:
        """Langevin dynamics with step ``lr`` on log N(x0; x0_hat, r^2 I) + log N(y; A(x0), beta^2 I)
        (beta in image units), started at x0_hat."""
        x0 = x0_hat
        for _ in range(self.langevin_steps):
            with torch.enable_grad():
                x_in = x0.detach().requires_grad_(True)
                misfit = ((problem.y - problem.forward(x_in)) ** 2).sum() / (2 * beta**2)
                data_grad, = torch.autograd.grad(misfit, x_in)
            grad = (x0_hat - x0) / r**2 - data_grad
            x0 = x0 + lr * grad + math.sqrt(2 * lr) * noise_like(x0, generator)
        return x0

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        beta = self.likelihood_width(problem)
        levels = len(sigmas) - 1
        for i, s, s_next in sigma_pairs(sigmas):
            ode_grid = karras_sigmas(self.ode_steps, min(self.ode_sigma_min, s), s)
            x0_hat = sample_euler(denoiser, x, ode_grid)
            stiffness = 1 / s**2 + 1 / (problem.scale * beta) ** 2
            lr = self.lr * (1 + (i / max(levels - 1, 1)) * (self.lr_min_ratio - 1)) / stiffness
            x0 = self.langevin(problem, x0_hat, s, beta, lr, generator)
            x = forward_noise(x0, 0.0, s_next, generator)
            emit(callback, i, sigmas, x, x0)
        return x


STRATEGIES = {DAPS.name: DAPS}
