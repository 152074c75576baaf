r"""Posterior samples for Gaussian denoising: the prior's reverse process started at the noise
level from the noisy image itself.

For y = x + sigma_y n (the ``denoise`` operator with white Gaussian noise), y is a draw of the VE
forward process at sigma_y from the unknown image, x_{sigma_y} = x_0 + sigma_y n, so

    p(x_0 | y) = p(x_0 | x_{sigma_y} = y),

and the prior's reverse-time SDE run from sigma_y with x = y transports exactly that law
(Anderson 1982; Song et al. 2021, "Score-Based Generative Modeling through Stochastic
Differential Equations", ICLR, Eq. 6: the reverse SDE from any time t).  Li et al. 2023
("Stimulating Diffusion Model for Image Denoising via Adaptive Embedding and Ensembling",
arXiv:2307.03992) embed the noisy image in a pretrained unconditional model at the matching
noise level so; Xie et al. 2023 (arXiv:2302.02398) sample the denoising posterior as a reverse
process from the noisy image with a diffusion defined for it.  No data term follows the
start: all of y is in x_{sigma_y}, and pulling the iterate toward y again (as DDRM does below
sigma_y) counts the measurement twice.  A probability-flow ODE would map y to one point, not
sample, so the sampler is a stochastic one of :mod:`restore.diffusion.samplers`: DDPM's
ancestral step (``ddpm``, the default) or Euler-Maruyama (``euler-maruyama``; both approach the
exact posterior on the Gaussian problem of ``tests/test_reverse_from_y.py``, but on photos at 20
steps Euler-Maruyama scored far worse: LPIPS 0.1669 against 0.1112 on Kodak24, docs/STRATEGIES.md).

Every one of the ``steps`` levels lies below sigma_y (Karras et al.'s rho-7 grid from sigma_y
down to the denoiser's sigma_min), where a cold-started sampler spends most of its grid above it
(15 of the 20 levels of ``default``'s grid at sigma 25 / 255).  ``tweedie`` is this posterior's
mean in one evaluation, D(y, sigma_y); this strategy draws from it.  Exact as the steps grow,
given the exact denoiser (``tests/test_reverse_from_y.py``).

An integer file's clipped samples are not a draw of the forward process
(:mod:`restore.strategies.censored`).  ``clipped_passes`` = K > 1 first takes Tweedie's estimate
with K EM passes over them (K NFE, on one copy of the measurements, shared by their samples),
then draws each clipped sample from the normal around that estimate truncated beyond its edge
(the data-augmentation step), and samples from that start; where nothing is clipped (float
data), y itself, as with K = 1.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.samplers import sample_ddpm, sample_euler_maruyama
from restore.diffusion.schedules import karras_sigmas
from restore.events import StepCallback
from restore.operators.validation import check_int
from restore.strategies.base import Problem, Strategy, StrategyNotApplicable
from restore.strategies.censored import draw_unclipped, em_estimate, has_clipped
from restore.strategies.tweedie import require_gaussian_noise

#: The stochastic samplers that can run from y (an ODE would not sample the posterior).
SDE_SAMPLERS = {"ddpm": sample_ddpm, "euler-maruyama": sample_euler_maruyama}


class ReverseFromY(Strategy):
    """Posterior samples of Gaussian denoising: ``sampler`` (``ddpm`` or ``euler-maruyama``) run
    from y at sigma_y down to 0 with the unconditional prior; ``clipped_passes``: the EM passes
    of the estimate whose truncated normals replace the clipped samples of integer data (module
    docstring; default 1: y as it is)."""

    name = "reverse-from-y"
    only_task = "denoise"
    needs_pixel_prior = True
    default_steps = 20

    def __init__(self, sampler: str = "ddpm", clipped_passes: int = 1) -> None:
        if sampler not in SDE_SAMPLERS:
            raise ValueError(f"strategy {self.name!r}: sampler must be one of {', '.join(SDE_SAMPLERS)} (a "
                             f"stochastic one: an ODE maps y to one point), got {sampler!r}")
        self.sampler = sampler
        self.clipped_passes = check_int(self.name, "clipped_passes", clipped_passes, low=1)

    def check(self, problem: Problem) -> None:
        super().check(problem)
        require_gaussian_noise(self.name, problem)
        if self.warm_start != "none":
            raise StrategyNotApplicable(f"strategy {self.name!r} starts from y itself at sigma_y: "
                                        f"warm_start={self.warm_start} does not apply")

    def grid(self, problem: Problem, denoiser: Denoiser, steps: int) -> Tensor:
        """``steps`` Karras levels (rho 7) from sigma_y down to the denoiser's sigma_min, then 0."""
        return karras_sigmas(steps, min(denoiser.sigma_min, problem.sigma_y), problem.sigma_y)

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        """The sampler from y at sigmas[0] (the engine's start draw ``x`` gives only the shape)."""
        start = self.start(problem, denoiser, x, generator)
        return SDE_SAMPLERS[self.sampler](denoiser, start, sigmas, generator=generator, callback=callback)

    def start(self, problem: Problem, denoiser: Denoiser, x: Tensor,
              generator: Optional[torch.Generator] = None) -> Tensor:
        """y in prior space, its clipped samples drawn anew around the EM estimate when
        ``clipped_passes`` > 1 (module docstring)."""
        if self.clipped_passes > 1 and has_clipped(problem):
            estimate = em_estimate(problem.one_copy(), denoiser, self.clipped_passes, x.dtype)
            estimate = problem.prior.to_image(estimate).clamp(0, 1).repeat(problem.copies, 1, 1, 1)
            drawn = draw_unclipped(problem.y, estimate, problem.operator.noise.proxy_sigma, problem.clip_step,
                                   generator)
            problem = dataclasses.replace(problem, y=drawn)
        return problem.y_prior(tuple(x.shape[1:])).to(x)


STRATEGIES = {ReverseFromY.name: ReverseFromY}
