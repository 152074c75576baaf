"""What every conditioning strategy shares: the problem in prior space, the capability
check, and the strategy contract.

Operators act on images in [0, 1]; priors work in their own range (``Prior.data_range``)
and, for latent priors, in latent space.  :class:`Problem` hides that: ``forward(x)``
decodes x, maps it to [0, 1] and applies the operator.  For linear operators it also
gives the measurement in prior pixel space: with u = (x - lo) / (hi - lo),
A u = y  <=>  A x = (hi - lo) y + lo A(1), with noise level (hi - lo) sigma_y.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.events import StepCallback
from restore.operators.base import Operator
from restore.priors.base import Prior


class StrategyNotApplicable(ValueError):
    """The strategy cannot serve this operator or prior; the message says what is missing."""


def check_hyperparameter(strategy: str, name: str, value: Any, *, low: float, high: float = math.inf,
                         low_inclusive: bool = True) -> float:
    """``value`` as a float in [low, high] (or (low, high] when not ``low_inclusive``), else a
    ValueError naming the strategy and the hyperparameter."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if low_inclusive else value > low) and value <= high
    if not ok:
        bounds = f"{'[' if low_inclusive else '('}{low}, {high}]" if math.isfinite(high) else \
            f"{'>=' if low_inclusive else '>'} {low}"
        raise ValueError(f"{strategy}: {name} must be a finite number {'in ' if math.isfinite(high) else ''}{bounds}, "
                         f"got {value!r}")
    return float(value)


class DivergenceError(FloatingPointError):
    """The iterate stopped being finite; carries the step number."""

    def __init__(self, step: int, total: int, hint: str) -> None:
        super().__init__(f"sampling diverged at step {step} of {total} (non-finite values). {hint}")
        self.step = step


@dataclass
class Problem:
    """Prior, operator and measurement ``y`` (image space, as the operator produced it)."""

    prior: Prior
    operator: Operator
    y: Tensor

    @property
    def scale(self) -> float:
        lo, hi = self.prior.data_range
        return hi - lo

    def forward(self, x: Tensor) -> Tensor:
        """A(image(decode(x))): the noiseless measurement of a denoiser-space point."""
        return self.operator(self.prior.to_image(self.prior.decode(x)))

    @property
    def sigma_y(self) -> float:
        """The measurement noise level in prior pixel units (Gaussian or its Poisson proxy)."""
        return self.scale * float(getattr(self.operator.noise, "sigma", 0.0))

    def y_prior(self) -> Tensor:
        """For linear operators: the measurement of prior-space pixels, (hi - lo) y + lo A(1)."""
        lo, _ = self.prior.data_range
        if not self.operator.linear:
            raise StrategyNotApplicable("the operator is not linear")
        if lo == 0:
            return self.scale * self.y
        ones = torch.ones((self.y.shape[0], *self._pixel_shape()), device=self.y.device, dtype=self.y.dtype)
        return self.scale * self.y + lo * self.operator(ones)

    def _pixel_shape(self) -> tuple[int, ...]:
        if self.prior.shape is None:
            raise StrategyNotApplicable("the prior has no fixed shape; pass the image shape")
        return self.prior.shape


class Strategy:
    """A conditioning strategy: ``sample`` turns a starting draw into a sample of p(x | y).

    Subclasses declare the operator capabilities they need in ``requires``
    (``linear``, ``has_svd``, ``is_mask``) and whether they need a pixel prior.
    """

    name: ClassVar[str] = "strategy"
    requires: ClassVar[tuple[str, ...]] = ()
    needs_pixel_prior: ClassVar[bool] = False
    #: Number of noise levels the strategy's paper samples with; ``solve`` uses it when given
    #: no ``steps`` (None: the caller must choose).
    default_steps: ClassVar[Optional[int]] = None

    def check(self, problem: Problem) -> None:
        """Refuse, naming what is missing, when the problem is outside this strategy's reach."""
        caps = problem.operator.capabilities()
        missing = [c for c in self.requires if not caps.get(c, False)]
        if missing:
            raise StrategyNotApplicable(
                f"strategy {self.name!r} needs an operator that is {' and '.join(missing)}; "
                f"{type(problem.operator).__name__} is not"
            )
        if self.needs_pixel_prior and problem.prior.latent:
            raise StrategyNotApplicable(f"strategy {self.name!r} needs a pixel-space prior, not a latent one")

    def sampling_sigmas(self, denoiser: Denoiser, steps: int) -> Tensor:
        """The descending grid of ``steps`` noise levels, then 0, that ``solve`` samples on when
        given no grid: the denoiser's default, unless the strategy's paper fixes its own (DAPS's
        annealing schedule)."""
        return denoiser.sampling_sigmas(steps)

    def denoiser(self, problem: Problem, shape: tuple[int, ...]) -> Denoiser:
        """The denoiser to sample with (the engine counts its evaluations): the prior's, unless
        the strategy wraps it (classifier guidance) or brings its own (a conditional network
        bound to y, SR3 / Palette).  ``shape`` is the denoiser-space shape of one sample."""
        return problem.prior.denoiser

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        """The sample in denoiser space, from the starting draw ``x`` at ``sigmas[0]``."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
