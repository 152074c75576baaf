r"""PiGDM (Song, Vahdat, Mardani & Kautz 2023, "Pseudoinverse-Guided Diffusion Models for
Inverse Problems", ICLR, Eq. 7-8 and Alg. 1).

PiGDM approximates p(x0 | x_t) by N(x0_hat, r_t^2 I) around the denoised estimate
x0_hat = D(x_t, sigma_t), so that p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T + sigma_y^2 I) and
(Eq. 7, noisy case; Eq. 8 is its sigma_y = 0 limit, where the inverse becomes A^+)

    g = grad_{x_t} log p(y | x_t) ~ (d x0_hat / d x_t)^T A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat),

a vector-Jacobian product through the denoiser (one backward pass per step).  In the SVD
basis (:mod:`restore.strategies.spectral`) the bracket is diagonal:
A^T (r^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat) = V diag(s_i^2 / (r^2 s_i^2 + sigma_y^2)) (y_bar - V^T x0_hat).
r_t^2 = sigma_t^2 / (1 + sigma_t^2), the paper's choice: the variance of x0 given x_t
when the data are N(0, I) (sigma_t the VE noise level; in the paper's VP notation 1 - abar_t).

VE translation.  The guided score grad log p(x_t) + g turns, by Tweedie's formula
D = x + sigma^2 grad log p, into the guided estimate x0_y = x0_hat + sigma_t^2 g, and each
step is a DDIM step (Song et al. 2021, Eq. 12; ``eta``) from x_t with x0_y in place of
x0_hat (:func:`restore.diffusion.samplers.ddim_step`).  On the VP iterate this is the DDIM
update of Alg. 1 with the guidance weight implied by the score.  The authors' released code
(NVlabs/RED-diff ``algos/pgdm.py``) also offers an empirical weight sqrt(abar_{t-1} abar_t)
on the VP gradient (``awd``, its default), which is not implemented here.  With the score
weight PiGDM samples the posterior of a Gaussian N(mu, I) prior exactly in the limit of small
steps, since r_t is then exact.

Defaults: 100 steps (the paper's experiments) and eta = 0, as in the authors' released
configuration (``_configs/algo/pgdm.yaml``; on the Gaussian-mixture benchmark at 100 NFE,
4 problems of 500 samples, eta = 0 and eta = 1 give SW 2.61 and 2.65 at d = 8, 5.69 and
8.79 at d = 80, d_y = 2).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.samplers import ddim_step, emit, predict_at, sigma_pairs
from restore.events import StepCallback
from restore.operators.validation import check_number
from restore.strategies.base import Problem, Strategy
from restore.strategies.spectral import Spectrum


class PiGDM(Strategy):
    """Pseudoinverse guidance with DDIM steps of stochasticity ``eta`` in [0, 1]."""

    name = "pigdm"
    requires = ("linear", "has_svd")
    needs_pixel_prior = True
    assumes = ("gaussian-noise",)
    default_steps = 100

    def __init__(self, eta: float = 0.0) -> None:
        self.eta = check_number(self.name, "eta", eta, low=0.0, high=1.0)

    @staticmethod
    def guided_estimate(spec: Spectrum, denoiser: Denoiser, x: Tensor, sigma: float) -> Tensor:
        """x0_hat + sigma^2 g with g the PiGDM likelihood score (Eq. 7), one denoiser evaluation."""
        r2 = sigma**2 / (1 + sigma**2)
        weight = spec.singulars**2 / (r2 * spec.singulars**2 + spec.sigma_y**2).clamp_min(torch.finfo(x.dtype).tiny)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0 = predict_at(denoiser, x_in, sigma).x0
            g, = torch.autograd.grad(x0, x_in, spec.pull(x0.detach(), weight))
        return x0.detach() + sigma**2 * g

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        spec = Spectrum(problem, x)
        for i, s, s_next in sigma_pairs(sigmas):
            x0 = self.guided_estimate(spec, denoiser, x, s)
            x = ddim_step(x, x0, s, s_next, self.eta, generator)
            emit(callback, i, sigmas, x, x0)
        return x


STRATEGIES = {PiGDM.name: PiGDM}
