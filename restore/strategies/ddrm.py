r"""DDRM (Kawar, Elad, Ermon & Song 2022, "Denoising Diffusion Restoration Models", NeurIPS,
Eq. 7-8 and Alg. 1 of the appendix).

DDRM samples in the spectral coordinates of A = U diag(s) V^T (:mod:`restore.strategies.spectral`):
x_bar = V^T x, and on observed coordinates y_bar_i = x_bar_i + (sigma_y / s_i) n_i.  The
paper writes the diffusion as x_t = x_0 + sigma_t eps (variance exploding) and runs VP
networks on x_t / sqrt(1 + sigma_t^2), which is exactly this project's VE view, so its
equations carry over unchanged.  With x0_bar = V^T D(x, sigma) the denoised estimate and a
step from level sigma to sigma' (the paper's sigma_{t+1} -> sigma_t), each coordinate is
drawn from (Eq. 8):

* s_i = 0:                  N(x0_bar + sqrt(1 - eta^2) sigma' (x_bar - x0_bar) / sigma,  eta^2 sigma'^2)
* sigma' < sigma_y / s_i:   N(x0_bar + sqrt(1 - eta^2) sigma' (y_bar - x0_bar) / (sigma_y / s_i),  eta^2 sigma'^2)
* sigma' >= sigma_y / s_i:  N((1 - eta_b) x0_bar + eta_b y_bar,  sigma'^2 - eta_b^2 sigma_y^2 / s_i^2)

The first two are DDIM-type steps with fresh noise c = eta sigma' along the direction of
the current iterate, resp. of the measurement (:func:`restore.diffusion.samplers.ddim_mean`).
The start (Eq. 7): x_bar_i ~ N(y_bar_i, sigma_T^2 - sigma_y^2 / s_i^2) where
s_i sigma_T > sigma_y, and the engine's prior draw elsewhere.  At sigma' = 0 the sample is
x0_bar on unobserved coordinates and, for noisy y, also on observed ones (case 2); for
noiseless y it is (1 - eta_b) x0_bar + eta_b y_bar.

Defaults: eta = 0.85, eta_b = 1.0 and 20 steps, the paper's setting (Sec. 5).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.samplers import ddim_mean, emit, noise_like, predict_at, sigma_pairs
from restore.events import StepCallback
from restore.operators.validation import check_number
from restore.strategies.base import Problem, Strategy
from restore.strategies.spectral import Spectrum


class DDRM(Strategy):
    """Denoising diffusion restoration: ``eta`` (noise of unobserved and weakly observed
    coordinates) and ``eta_b`` (pull of well observed coordinates toward y), both in [0, 1]."""

    name = "ddrm"
    requires = ("linear", "has_svd")
    needs_pixel_prior = True
    assumes = ("gaussian-noise",)
    default_steps = 20

    def __init__(self, eta: float = 0.85, eta_b: float = 1.0) -> None:
        self.eta = check_number(self.name, "eta", eta, low=0.0, high=1.0)
        self.eta_b = check_number(self.name, "eta_b", eta_b, low=0.0, high=1.0)

    @staticmethod
    def initial(spec: Spectrum, x_bar: Tensor, sigma: float, generator: Optional[torch.Generator]) -> Tensor:
        """Eq. 7: coordinates the measurement already pins at level ``sigma`` start around y_bar."""
        pinned = spec.observed & (spec.y_noise < sigma)
        spread = (sigma**2 - torch.where(pinned, spec.y_noise, torch.zeros_like(spec.y_noise)) ** 2).sqrt()
        return torch.where(pinned, spec.y_bar + spread * noise_like(x_bar, generator), x_bar)

    def step(self, spec: Spectrum, x_bar: Tensor, x0_bar: Tensor, sigma: float, sigma_next: float,
             generator: Optional[torch.Generator]) -> Tensor:
        """Eq. 8 for every spectral coordinate at once."""
        z = noise_like(x_bar, generator)
        y_noise = torch.where(spec.observed, spec.y_noise, torch.ones_like(spec.y_noise))
        strong = spec.observed & (sigma_next >= spec.y_noise)
        weak = spec.observed & ~strong  # implies sigma_y > 0
        direction = torch.where(weak, (spec.y_bar - x0_bar) / y_noise.clamp_min(torch.finfo(x_bar.dtype).tiny),
                                (x_bar - x0_bar) / sigma)
        c = self.eta * sigma_next
        soft = ddim_mean(x0_bar, direction, sigma_next, c) + c * z
        spread = (sigma_next**2 - self.eta_b**2 * torch.where(strong, y_noise, torch.zeros_like(y_noise)) ** 2)
        hard = x0_bar + self.eta_b * (spec.y_bar - x0_bar) + spread.clamp_min(0).sqrt() * z
        return torch.where(strong, hard, soft)

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        spec = Spectrum(problem, x)
        x_bar = self.initial(spec, spec.vt(x), float(sigmas[0]), generator)
        x = spec.v(x_bar)
        for i, s, s_next in sigma_pairs(sigmas):
            x0 = predict_at(denoiser, x, s).x0
            x_bar = self.step(spec, x_bar, spec.vt(x0), s, s_next, generator)
            x = spec.v(x_bar)
            emit(callback, i, sigmas, x, x0)
        return x


STRATEGIES = {DDRM.name: DDRM}
