r"""The posterior mean of a Gaussian denoising problem in one network evaluation.

For y = x + sigma_y n (the ``denoise`` operator with white Gaussian noise), Tweedie's
formula (Robbins 1956; Miyasawa 1961; Efron 2011, Eq. 2.8) gives

    E[x | y] = y + sigma_y^2 grad log p_{sigma_y}(y) = D(y, sigma_y),

exactly the denoiser of the prior at noise level sigma_y (in prior pixel units:
(hi - lo) sigma_y on a [lo, hi] prior).  It is the minimum-mean-squared-error estimate,
so it maximises expected PSNR; it is not a sample, so the commands and the API refuse it more
than one sample (copies of one result) and the perceptual target
(:func:`restore.pipeline.refuse_an_estimate_as_samples`).  Cost: one NFE, no gradient; by
default averaged over the symmetry group the prior records (the common ``symmetry`` parameter
of :mod:`restore.strategies.base`: |G| NFE, 8 on ``default``).

An integer file holds y clipped to [0, 1], and its clipped samples are not y = x + n
(:mod:`restore.strategies.censored`).  ``clipped_passes`` = K > 1 runs the EM fixed point for
censored data: estimate, replace each clipped sample by its expected unclipped value under the
estimate, estimate again, K passes in all (K times the NFE; one pass where nothing is clipped,
as on float data).  The fixed point is not the exact posterior mean under the censored
likelihood (the E-step takes the estimate for x, not x's posterior), so it is measured on
photos against the single pass (docs/STRATEGIES.md).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.events import StepCallback
from restore.operators.validation import check_int
from restore.strategies.base import Problem, Strategy, StrategyNotApplicable
from restore.strategies.censored import em_estimate


def require_gaussian_noise(name: str, problem: Problem) -> None:
    """Refuse, saying why, a problem whose noise is not white Gaussian of a known sigma > 0 (the
    denoise task itself is the strategy's ``only_task``, refused by ``Strategy.check``)."""
    noise = problem.operator.noise
    if not noise.is_gaussian or noise.noiseless:
        raise StrategyNotApplicable(f"strategy {name!r} needs white Gaussian measurement noise with a known "
                                    "sigma > 0 (give --noise / --sigma)")


class Tweedie(Strategy):
    """E[x | y] = D(y, sigma_y) for Gaussian denoising, averaged over ``symmetry`` (a group
    of :mod:`restore.diffusion.symmetry`, or ``prior``, the default: the one the prior records);
    ``clipped_passes``: passes of the EM fixed point over the clipped samples of integer data
    (module docstring; default 1, Tweedie alone)."""

    name = "tweedie"
    only_task = "denoise"
    needs_pixel_prior = True
    default_steps = 1
    posterior_mean = True
    takes_steps = False
    symmetry = "prior"

    def __init__(self, clipped_passes: int = 1) -> None:
        self.clipped_passes = check_int(self.name, "clipped_passes", clipped_passes, low=1)

    def check(self, problem: Problem) -> None:
        super().check(problem)
        require_gaussian_noise(self.name, problem)

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        return em_estimate(problem, denoiser, self.clipped_passes, x.dtype, callback)

STRATEGIES = {Tweedie.name: Tweedie}
