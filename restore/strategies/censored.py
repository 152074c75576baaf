r"""The clipped samples of an integer measurement, and their expected value under an estimate.

An 8- or 16-bit file holds y = clip(round((A x + n) / q) q, 0, 1), q = 1 / (2^bits - 1): a
sample at 0 says only that v = A x + n < q / 2, one at 1 that v >= 1 - q / 2 (a censored
observation, as in Tobin's 1958 model).  Read as the Gaussian measurement y = A x + n, such
samples pull an estimate toward the inside of [0, 1]: where A x = 1, E[min(v, 1)] = 1 - sigma /
sqrt(2 pi), about 0.4 sigma low (noisy skies and highlights; docs/STRATEGIES.md measures what it
costs on photos).

For v ~ N(m, s^2), m = A x-hat the measurement of a current estimate, the truncated normal's
means are (phi, Phi: the standard normal density and distribution function)

    E[v | v >= t] = m + s phi(a) / (1 - Phi(a)),   E[v | v < t] = m - s phi(a) / Phi(a),
    a = (t - m) / s,

computed through log Phi, stable far in the tails.  Replacing the clipped samples by them and
estimating again is the E-step of the EM algorithm for censored data (Dempster, Laird & Rubin
1977), with Tweedie's estimate D(y, sigma_y) in place of the M-step (:func:`em_estimate`:
``tweedie``'s ``clipped_passes``).  A sampler that starts from y as a draw of the forward process
(``reverse-from-y``) needs a draw, not a mean: :func:`draw_unclipped` draws each clipped sample
from that truncated normal (by the inverse distribution function), the data-augmentation step of
Tanner & Wong (1987), around the EM estimate.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.randomness import Generator, randn
from restore.diffusion.samplers import emit, predict_at
from restore.events import StepCallback
from restore.strategies.base import Problem


def clipped(y: Tensor, step: float) -> tuple[Tensor, Tensor]:
    """Masks of the samples of ``y`` (on [0, 1]) clipped at 0 and at 1, for rounding ``step``."""
    return y <= step / 2, y >= 1 - step / 2


def has_clipped(problem: Problem) -> bool:
    """Whether ``problem``'s measurement is integer data (``Problem.clip_step``) with a clipped sample."""
    return problem.clip_step is not None and any(mask.any() for mask in clipped(problem.y, problem.clip_step))


def _phi_over_ndtr(a: Tensor) -> Tensor:
    """phi(a) / Phi(a), from logarithms."""
    return torch.exp(-0.5 * a * a - 0.5 * math.log(2 * math.pi) - torch.special.log_ndtr(a))


def expected_unclipped(y: Tensor, measured: Tensor, sigma: float, step: float) -> Tensor:
    """``y`` with each clipped sample replaced by E[v | v beyond its clipping edge] for
    v ~ N(``measured``, ``sigma``^2) (module docstring); other samples unchanged.  All on [0, 1]."""
    low, high = clipped(y, step)
    above = measured + sigma * _phi_over_ndtr((measured - (1 - step / 2)) / sigma)
    below = measured - sigma * _phi_over_ndtr((step / 2 - measured) / sigma)
    return torch.where(high, above, torch.where(low, below, y))


def _below_quantile(u: Tensor, a: Tensor) -> Tensor:
    """The u-quantile of the standard normal conditioned below ``a``: Phi^-1(u Phi(a))."""
    return torch.special.ndtri((u * torch.special.ndtr(a)).clamp_min(1e-300))


def draw_unclipped(y: Tensor, measured: Tensor, sigma: float, step: float, generator: Generator = None) -> Tensor:
    """``y`` with each clipped sample replaced by a draw of v ~ N(``measured``, ``sigma``^2)
    conditioned beyond its clipping edge: v = m - s Phi^-1(u Phi((m - t) / s)) above t,
    m + s Phi^-1(u Phi((t - m) / s)) below it, u uniform (from a normal draw of ``generator``,
    u = Phi(z)); other samples unchanged.  All on [0, 1]."""
    low, high = clipped(y, step)
    u = torch.special.ndtr(randn(y.shape, generator, device=y.device, dtype=torch.float64))
    m = measured.double()
    top, bottom = 1 - step / 2, step / 2  # the edges bound the draws where Phi underflows (m beyond 37 s)
    above = (m - sigma * _below_quantile(u, (m - top) / sigma)).clamp_min(top)
    below = (m + sigma * _below_quantile(u, (bottom - m) / sigma)).clamp_max(bottom)
    return torch.where(high, above, torch.where(low, below, y.double())).to(y.dtype)


def em_passes(y: Tensor, estimate: Callable[[Tensor], Tensor], image: Callable[[Tensor], Tensor], sigma: float,
              step: float, passes: int, on_pass: Optional[Callable[[int, Tensor], None]] = None) -> Tensor:
    """``estimate(y)``, then ``passes`` - 1 EM passes over the clipped samples of ``y``: each
    replaced by its expected unclipped value (:func:`expected_unclipped`, noise ``sigma``) under
    the last estimate (``image`` maps an estimate to [0, 1]), and estimated again; ``on_pass(k,
    estimate)`` after each.  Any estimator of a Gaussian measurement (Tweedie's, a classical
    denoiser's: ``benchmarks/restoration.py``'s ``--baselines ffdnet:clipped_passes=K``) takes the passes."""
    x = estimate(y)
    for k in range(passes):
        if k:
            x = estimate(expected_unclipped(y, image(x).clamp(0, 1), sigma, step))
        if on_pass is not None:
            on_pass(k, x)
    return x


def em_estimate(problem: Problem, denoiser: Denoiser, passes: int, dtype: torch.dtype,
                callback: StepCallback = None) -> Tensor:
    """Tweedie's estimate D(y, sigma_y) of the denoising ``problem`` (prior space) with
    :func:`em_passes`: ``passes`` evaluations of ``denoiser``, one where ``problem.clip_step`` is
    None or no sample is clipped; each pass told to ``callback`` as a step."""
    prior = problem.prior
    passes = passes if has_clipped(problem) else 1
    levels = torch.tensor([problem.sigma_y] * passes + [0.0])
    return em_passes(problem.y, lambda y: predict_at(denoiser, prior.to_prior(y).to(dtype), problem.sigma_y).x0,
                     prior.to_image, problem.operator.noise.proxy_sigma, problem.clip_step, passes,
                     lambda k, x0: emit(callback, k, levels, x0, x0))
