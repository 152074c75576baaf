"""Running a strategy: capability check, start draw, NFE count, divergence guard, observers.

This is the one place that turns (prior, operator, y, strategy) into an image; the
CLI and the Python API both call :func:`solve`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser, Prediction
from restore.events import StepCallback, StepEvent
from restore.strategies.base import DivergenceError, Problem, Strategy


class CountingDenoiser(Denoiser):
    """Wraps a denoiser and counts its evaluations (NFE: one per call, whatever the batch)."""

    def __init__(self, inner: Denoiser) -> None:
        self.inner = inner
        self.nfe = 0
        self.sigma_min, self.sigma_max, self.vp = inner.sigma_min, inner.sigma_max, inner.vp

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        self.nfe += 1
        return self.inner.predict(x, sigma)

    def sampling_sigmas(self, steps: int) -> Tensor:
        return self.inner.sampling_sigmas(steps)


@dataclass
class Result:
    """The restored image in [0, 1] (not clipped), the denoiser-space sample and the NFE used."""

    image: Tensor
    sample: Tensor
    nfe: int


def _guarded(callback: StepCallback) -> StepCallback:
    """A step callback that stops on non-finite iterates before passing the event on."""

    def guard(event: StepEvent) -> None:
        if not torch.isfinite(event.x).all():
            raise DivergenceError(event.step, event.total,
                                  "Try a smaller guidance step, more steps, or float32/float64 instead of half precision.")
        if callback is not None:
            callback(event)

    return guard


def solve(problem: Problem, strategy: Strategy, *, steps: Optional[int] = None,
          shape: Optional[tuple[int, ...]] = None, generator: Optional[torch.Generator] = None,
          callback: StepCallback = None, sigmas: Optional[Tensor] = None) -> Result:
    """Sample x ~ p(x | y) with ``strategy`` on ``steps`` noise levels of its grid
    (``strategy.sampling_sigmas``: by default the grid of the denoiser it samples with;
    ``strategy.default_steps`` levels when ``steps`` is None), or on the given ``sigmas``.

    ``shape`` is the denoiser-space shape of one sample (default: the prior's); the batch
    size is y's.
    """
    shape = shape or problem.prior.shape
    if shape is None:
        raise ValueError("the prior runs at any size: pass the sample shape")
    if problem.operator.shape is None and not problem.prior.latent and len(shape) == 3:
        # Bind the operator to the image size: its SVD depends on it, and binding checks that
        # the operator can take such images at all (kernel size, scale) before sampling starts.
        problem = dataclasses.replace(problem, operator=problem.operator.bound_to(shape))
    strategy.check(problem)
    denoiser = CountingDenoiser(strategy.denoiser(problem, tuple(shape)))
    if sigmas is None:
        steps = strategy.default_steps if steps is None else steps
        if steps is None:
            raise ValueError(f"strategy {strategy.name!r} has no default number of steps: pass steps")
        sigmas = strategy.sampling_sigmas(denoiser, steps)
    y = problem.y
    x = denoiser.init_noise((y.shape[0], *shape), float(sigmas[0]), generator=generator, device=y.device, dtype=y.dtype)
    sample = strategy.sample(problem, denoiser, x, sigmas, generator=generator, callback=_guarded(callback))
    image = problem.prior.to_image(problem.prior.decode(sample))
    return Result(image=image, sample=sample, nfe=denoiser.nfe)
