r"""DiffPIR (Zhu, Zhang, Liang, Cao, Wen, Timofte & Van Gool 2023, "Denoising Diffusion Models
for Plug-and-Play Image Restoration", CVPR Workshops, Alg. 1).

Each step splits, half-quadratic style, into a prior step and a data step:

    x0     = D(x_t, sigma_t)                                          (denoiser)
    x0_hat = argmin_x ||y - A x||^2 + rho_t ||x - x0||^2,  rho_t = lambda sigma_y^2 / sigma_t^2
    eps    = (x_t - x0_hat) / sigma_t                                 (effective noise)
    x_next = x0_hat + sigma'(sqrt(1 - zeta) eps + sqrt(zeta) z)

The paper's sigma_bar_t = sqrt(1 - abar_t) / sqrt(abar_t) is the VE noise level sigma_t, and
its last line x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1}) (...) divided by
sqrt(abar_{t-1}) is the VE step above: a DDIM-type step with fresh noise c = sqrt(zeta) sigma'
(:func:`restore.diffusion.samplers.ddim_mean`).

The data subproblem x0_hat = (A^T A + rho I)^{-1} (A^T y + rho x0) is the operator's proximal
map (:meth:`restore.operators.base.LinearOperator.prox_l2`, in prior units through
:meth:`Problem.prox_l2`): in closed form through the SVD where the operator has one (each
observed spectral coordinate moves the fraction s_i^2 / (s_i^2 + rho_t) of the way to the
measurement), by conjugate gradients on the normal equations otherwise, so any linear
operator serves; for sigma_y = 0 (rho = 0) it is the projection onto {A x = y}.  A nonlinear
operator would need a few gradient steps on the objective (the released code's
``sub_1_analytic = False`` branch), which is not implemented here.

Defaults: 100 steps, lambda = 7 and zeta = 0.3: the values the authors' released deblurring
script runs (``main_ddpir_deblur.py``: its experiment loop takes 7 x lambda_ and 3 x zeta of
the listed lambda_ = 1, zeta = 0.1, the values of ``configs/deblur.yaml``); the released
inpainting config uses zeta = 1.0 and 20 steps.  Units: sigma_y and sigma_t are both in
prior units here; the released code measures sigma_y on [0, 1] and sigma_t on [-1, 1], so
its lambda is 4 times this module's lambda for [-1, 1] priors (lambda = 7 there is 1.75 here).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.samplers import ddim_mean, emit, noise_like, predict_at, sigma_pairs
from restore.events import StepCallback
from restore.operators.validation import check_number
from restore.strategies.base import Problem, Strategy


class DiffPIR(Strategy):
    """Plug-and-play diffusion: ``lambda_`` (the paper's lambda, weight of the prior in the
    data step) and ``zeta`` in [0, 1] (share of fresh noise in each step)."""

    name = "diffpir"
    requires = ("linear",)
    needs_pixel_prior = True
    assumes = ("gaussian-noise",)
    default_steps = 100

    def __init__(self, lambda_: float = 7.0, zeta: float = 0.3) -> None:
        self.lambda_ = check_number(self.name, "lambda_", lambda_, low=0.0, low_inclusive=False)
        self.zeta = check_number(self.name, "zeta", zeta, low=0.0, high=1.0)

    def data_step(self, problem: Problem, x0: Tensor, sigma: float) -> Tensor:
        """argmin_x ||y - A x||^2 + rho ||x - x0||^2, rho = lambda sigma_y^2 / sigma^2."""
        return problem.prox_l2(x0, self.lambda_ * problem.sigma_y**2 / sigma**2)

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        for i, s, s_next in sigma_pairs(sigmas):
            x0 = self.data_step(problem, predict_at(denoiser, x, s).x0, s)
            c = math.sqrt(self.zeta) * s_next
            x = ddim_mean(x0, (x - x0) / s, s_next, c) + c * noise_like(x, generator)
            emit(callback, i, sigmas, x, x0)
        return x


STRATEGIES = {DiffPIR.name: DiffPIR}
