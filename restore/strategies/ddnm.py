r"""DDNM and DDNM+ (Wang, Yu & Zhang 2023, "Zero-Shot Image Restoration Using Denoising
Diffusion Null-Space Model", ICLR).

DDNM (Eq. 11-13) keeps the null-space part of the denoised estimate x0|t = D(x_t, sigma_t)
and replaces its range-space part by the measurement's:

    x0_hat = A^+ y + (I - A^+ A) x0|t = x0|t - A^+ (A x0|t - y),

i.e. in the SVD basis (:mod:`restore.strategies.spectral`) every observed coordinate of
x0|t is set to y_bar.  DDNM+ (Eq. 17-19) handles noisy y by a partial correction
x0_hat = x0|t - Sigma_t A^+ (A x0|t - y), Sigma_t = V diag(lambda_t) V^T, and counts the
measurement noise it lets into x0_hat, lambda_ti sigma_y / s_i per observed coordinate, as
part of the step's fresh noise, which it tops up to the step's level with
Phi_t = V diag(gamma_t) V^T (Eq. 19, here per singular value):

    c >= a_t sigma_y / s_i:  lambda_ti = 1,                        gamma_ti = c^2 - (a_t sigma_y / s_i)^2
    c <  a_t sigma_y / s_i:  lambda_ti = c s_i / (a_t sigma_y),    gamma_ti = 0

(unobserved coordinates: gamma = c^2), with a_t the coefficient of x0_hat in the step and c
its fresh-noise level.

The step.  The authors' code samples x_{t-1} = sqrt(abar_{t-1}) x0_hat + c1 z + c2 eps_t with
c1 = eta sqrt(1 - abar_{t-1}), c2 = sqrt(1 - eta^2) sqrt(1 - abar_{t-1}) and eps_t the network's
noise estimate (eta = 0.85 in all released commands).  Divided by sqrt(abar_{t-1}) this is the
VE step x_next = x0_hat + sqrt(1 - eta^2) sigma' eps + eta sigma' z with eps = (x_t - x0|t) / sigma:
:func:`restore.diffusion.samplers.ddim_mean` with c = eta sigma', and a_t = 1 (sqrt(abar_{t-1})
in the VP view, as in the code).  eta = 1 gives the paper's simplified step x0_hat + sigma' z.

Time travel (Sec. 3.3): after every ``travel_length``-th level (the paper's l) the iterate is
noised back up l levels by the forward process and denoised again, ``travel_repeat`` - 1 times
(the paper's r) — the schedule of RePaint (:func:`restore.strategies.repaint.repaint_schedule`),
which the authors reuse.  Released default l = r = 1 (off), 100 steps.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.samplers import ddim_mean, emit, forward_noise, noise_like, predict_at, sigma_pairs
from restore.events import StepCallback
from restore.operators.validation import check_int, check_number
from restore.strategies.base import Problem, Strategy
from restore.strategies.repaint import repaint_schedule
from restore.strategies.spectral import Spectrum


class DDNM(Strategy):
    """Null-space projection (Eq. 13) with DDIM-type steps of fresh-noise share ``eta`` and
    optional time travel (``travel_length`` l, ``travel_repeat`` r).  For noisy y use DDNM+."""

    name = "ddnm"
    requires = ("linear", "has_svd")
    needs_pixel_prior = True
    assumes = ("noiseless",)
    default_steps = 100

    def __init__(self, eta: float = 0.85, travel_length: int = 1, travel_repeat: int = 1) -> None:
        self.eta = check_number(self.name, "eta", eta, low=0.0, high=1.0)
        self.travel_length = check_int(self.name, "travel_length", travel_length, low=1)
        self.travel_repeat = check_int(self.name, "travel_repeat", travel_repeat, low=1)

    def scales(self, spec: Spectrum, c: float) -> tuple[Tensor, Tensor]:
        """(lambda, gamma) per spectral coordinate: DDNM's full projection, gamma = c^2."""
        return torch.ones_like(spec.singulars), torch.full_like(spec.singulars, c**2)

    def step(self, spec: Spectrum, x: Tensor, x0: Tensor, sigma: float, sigma_next: float,
             generator: Optional[torch.Generator]) -> Tensor:
        c = self.eta * sigma_next
        lam, gamma = self.scales(spec, c)
        x0_hat = x0 + spec.pull(x0, lam)
        fresh = spec.v(gamma.sqrt() * noise_like(x.flatten(1), generator))
        return ddim_mean(x0_hat, (x - x0) / sigma, sigma_next, c) + fresh

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        spec = Spectrum(problem, x)
        visited = sigmas[repaint_schedule(len(sigmas) - 1, self.travel_length, self.travel_repeat)]
        x0 = x
        for k, s, s_next in sigma_pairs(visited):
            if s_next < s:
                x0 = predict_at(denoiser, x, s).x0
                x = self.step(spec, x, x0, s, s_next, generator)
            else:
                x = forward_noise(x, s, s_next, generator)
            emit(callback, k, visited, x, x0)
        return x


class DDNMPlus(DDNM):
    """DDNM+ for noisy measurements: the noise-aware scales of Eq. 19 (equal to DDNM's when
    sigma_y = 0)."""

    name = "ddnm+"
    assumes = ("gaussian-noise",)

    def scales(self, spec: Spectrum, c: float) -> tuple[Tensor, Tensor]:
        lam = torch.where(spec.y_noise <= c, torch.ones_like(spec.y_noise), c / spec.y_noise)
        gamma = torch.where(spec.observed, c**2 - (lam * spec.y_noise.nan_to_num(posinf=0.0)) ** 2,
                            torch.full_like(lam, c**2))
        return lam, gamma.clamp_min(0)


STRATEGIES = {DDNM.name: DDNM, DDNMPlus.name: DDNMPlus}
