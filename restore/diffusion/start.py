"""Where unconditional sampling starts: the draw x at the top level sigma_max = sigmas[0].

The ideal start is the noisy marginal p_sigma = p_data * N(0, sigma^2 I).  Two choices:

* ``"prior-default"``: the prior's own Gaussian approximation, :meth:`Denoiser.init_noise`:
  N(0, (1 + sigma^2) I) for VP-trained networks (x_T ~ N(0, I) in their own scale, as
  guided-diffusion samples them), N(0, sigma^2 I) for VE ones (Song & Ermon 2019; Karras et
  al. 2022, Alg. 1).  This is the choice for networks, and the only one: p_data is unknown,
  and each network is then started as it was trained and published.  Both Gaussians miss
  p_sigma by the data's second moments relative to sigma^2: the VP one assumes
  E[x0 x0^T] = I, the VE one x0 = 0.  Image data in [-1, 1] have E[x0^2] <= 1 per pixel, so
  with sigma_max = 80 (EDM) or 157 (ADM's linear schedule) the variance is off by less than
  1 / sigma_max^2 < 2e-4 relative, and the mean by less than 1 / sigma_max of the noise.
* ``"exact"``: x = x0 + sigma n with x0 from the prior's exact sampler
  (``denoiser.sample(n, generator=...)``; the analytic priors of :mod:`restore.priors.analytic`)
  and n ~ N(0, I): an exact draw from p_sigma.  The analytic reference mixture needs it: its
  modes sit at up to +-16 in every coordinate and its mean is off zero, so along the two
  directions that carry the modes the default start misses about 2% (d = 8) and 17% (d = 80)
  of the variance at sigma_max = 157 and is off in mean by 0.03-0.05 (d = 8) and 0.10-0.15
  (d = 80) noise standard deviations; the deterministic samplers (DDIM with eta 0, Euler,
  Heun, DPM-Solver, RK4) carry that error to the end, the stochastic ones forget it.

With :class:`~restore.diffusion.randomness.ItemGenerators` item i takes its x0 and then its
noise from its own generator, so the start still does not depend on the batch.
"""
from __future__ import annotations

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.randomness import Generator, ItemGenerators, randn

#: The start choices, by the name ``restore sample --start`` takes.
START_CHOICES = ("prior-default", "exact")


def exact_prior_draw(denoiser: Denoiser, shape: tuple[int, ...], generator: Generator = None) -> Tensor:
    """``shape[0]`` exact draws x0 ~ p_data from the denoiser's exact sampler (float64, CPU)."""
    sampler = getattr(denoiser, "sample", None)
    if not callable(sampler):
        raise ValueError(f"the exact start needs a prior with an exact sampler (the analytic priors); "
                         f"{type(denoiser).__name__} has none: use the prior-default start")
    if isinstance(generator, ItemGenerators):
        x0 = torch.cat([sampler(1, generator=g) for g in generator.generators])
    else:
        x0 = sampler(shape[0], generator=generator)
    if tuple(x0.shape) != tuple(shape):
        raise ValueError(f"the prior's exact samples have shape {tuple(x0.shape[1:])}, "
                         f"not the requested {tuple(shape[1:])}")
    return x0


def start_draw(denoiser: Denoiser, shape: tuple[int, ...], sigma: float, *, start: str = "prior-default",
               generator: Generator = None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> Tensor:
    """The draw of ``shape`` at noise level ``sigma`` that sampling starts from, by ``start``
    (one of :data:`START_CHOICES`, see the module docstring)."""
    if start == "prior-default":
        return denoiser.init_noise(shape, sigma, generator=generator, device=device, dtype=dtype)
    if start == "exact":
        x0 = exact_prior_draw(denoiser, shape, generator).to(device=device, dtype=dtype)
        return x0 + sigma * randn(shape, generator, device=device, dtype=dtype)
    raise ValueError(f"unknown start {start!r}; choose one of: {', '.join(START_CHOICES)}")
