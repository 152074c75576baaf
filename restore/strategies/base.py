"""What every conditioning strategy shares: the problem in prior space, the capability
check, and the strategy contract.

Operators act on images in [0, 1]; priors work in their own range (``Prior.data_range``)
and, for latent priors, in latent space.  :class:`Problem` hides that: ``forward(x)``
decodes x, maps it to [0, 1] and applies the operator.  For linear operators it also
gives the measurement in prior pixel space: with u = (x - lo) / (hi - lo),
A u = y  <=>  A x = (hi - lo) y + lo A(1), with noise level (hi - lo) sigma_y.
Every strategy measures residuals and noise in these prior pixel units, so that one
prior-space problem posed on [0, 1] or on [-1, 1] gives the same samples
(``tests/test_strategy_invariance.py``).

The shape of a problem is the image's, not the prior's: fully convolutional priors
run at any size and fixed-size ones are tiled (:mod:`restore.priors.sizing`), so
nothing here reads the prior's shape when the operator is bound to the image size.

Assumptions.  A strategy lists in ``assumes`` the conditions its derivation needs
(:data:`ASSUMPTIONS`); the engine warns, once per run, when a problem breaks one
(:meth:`Strategy.warn_outside_assumptions`), e.g. a noiseless method on noisy data.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.events import StepCallback
from restore.operators.base import Operator
from restore.priors.base import Prior


class StrategyNotApplicable(ValueError):
    """The strategy cannot serve this operator or prior; the message says what is missing."""


class OutsideAssumptionsWarning(UserWarning):
    """A strategy runs on a problem outside the assumptions of its derivation."""


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
        """The measurement noise level in prior pixel units: (hi - lo) times the noise
        model's Gaussian proxy (:attr:`restore.operators.noise.NoiseModel.proxy_sigma`)."""
        return self.scale * float(self.operator.noise.proxy_sigma)

    def residual(self, x: Tensor) -> Tensor:
        """The weighted residual (hi - lo) w (y - A(image(decode(x)))) in prior pixel units,
        w the noise model's residual weights (1 for white noise; Poisson: 1 / sqrt(2 y))."""
        weights = self.operator.noise.residual_weights(self.y)
        return self.scale * weights * (self.y - self.forward(x))

    def y_prior(self, shape: Optional[tuple[int, ...]] = None) -> Tensor:
        """For linear operators: the measurement of prior-space pixels, (hi - lo) y + lo A(1).

        ``shape`` is the (C, H, W) of one image; default: the operator's bound shape, else
        the prior's."""
        lo, _ = self.prior.data_range
        if not self.operator.linear:
            raise StrategyNotApplicable("the operator is not linear")
        if lo == 0:
            return self.scale * self.y
        shape = shape or self.operator.shape or self.prior.shape
        if shape is None:
            raise StrategyNotApplicable("neither the operator nor the prior has a fixed image shape; "
                                        "bind the operator to the image shape")
        ones = torch.ones((self.y.shape[0], *shape), device=self.y.device, dtype=self.y.dtype)
        return self.scale * self.y + lo * self.operator(ones)


def _noisy(problem: Problem) -> bool:
    return not problem.operator.noise.noiseless


def _non_gaussian(problem: Problem) -> bool:
    return not problem.operator.noise.is_gaussian and not problem.operator.noise.noiseless


#: Assumptions a strategy may list in ``Strategy.assumes``: name -> (broken by the problem?, why it matters).
ASSUMPTIONS: dict[str, tuple[Callable[[Problem], bool], str]] = {
    "noiseless": (_noisy, "assumes a noiseless measurement, but the operator's noise model is {noise}: "
                          "the noise is copied into the result; use a noise-aware strategy (ddnm+, ddrm, pigdm, dps)"),
    "gaussian-noise": (_non_gaussian, "is derived for white Gaussian noise; the operator's noise model {noise} "
                                      "enters through its Gaussian proxy only (dps weights its residual by the noise model)"),
}


class Strategy:
    """A conditioning strategy: ``sample`` turns a starting draw into a sample of p(x | y).

    Subclasses declare the operator capabilities they need in ``requires``
    (``linear``, ``has_svd``, ``is_mask``) and whether they need a pixel prior.
    """

    name: ClassVar[str] = "strategy"
    requires: ClassVar[tuple[str, ...]] = ()
    needs_pixel_prior: ClassVar[bool] = False
    #: Names of :data:`ASSUMPTIONS` the strategy's derivation needs (warned about, not refused).
    assumes: ClassVar[tuple[str, ...]] = ()
    #: Number of noise levels the strategy's paper samples with; ``solve`` uses it when given
    #: no ``steps`` (None: the caller must choose).
    default_steps: ClassVar[Optional[int]] = None
    #: True for estimators of the posterior mean E[x | y] (deterministic: ``tweedie``), False for
    #: samplers of p(x | y).  The ``fidelity`` target runs an estimator once and averages N
    #: samples of a sampler; the ``perceptual`` target takes one sample (docs/STRATEGIES.md).
    posterior_mean: ClassVar[bool] = False

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

    def warn_outside_assumptions(self, problem: Problem) -> None:
        """A warning (:class:`OutsideAssumptionsWarning`) for each assumption in ``assumes``
        that ``problem`` breaks."""
        for name in self.assumes:
            broken, why = ASSUMPTIONS[name]
            if broken(problem):
                noise = problem.operator.noise
                described = noise.to_json() if hasattr(noise, "to_json") else type(noise).__name__
                warnings.warn(f"strategy {self.name!r} " + why.format(noise=described),
                              OutsideAssumptionsWarning, stacklevel=3)

    def sampling_sigmas(self, denoiser: Denoiser, steps: int) -> Tensor:
        """The descending grid of ``steps`` noise levels, then 0, that ``solve`` samples on when
        given no grid: the denoiser's default, unless the strategy's paper fixes its own (DAPS's
        annealing schedule)."""
        return denoiser.sampling_sigmas(steps)

    def denoiser(self, problem: Problem, shape: tuple[int, ...]) -> Denoiser:
        """The denoiser to sample with (the engine counts its evaluations): the prior's, unless
        the strategy wraps it (classifier guidance) or brings its own (a conditional network
        bound to y, SR3 / Palette).  ``shape`` is the denoiser-space shape of one sample."""
        denoiser = problem.prior.denoiser
        if not isinstance(denoiser, Denoiser):
            raise StrategyNotApplicable(
                f"strategy {self.name!r} needs a prior that denoises; prior {problem.prior.name!r} holds a "
                f"{type(denoiser).__name__} (a conditional network needs the measurement: use strategy 'conditional')")
        return denoiser

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        """The sample in denoiser space, from the starting draw ``x`` at ``sigmas[0]``."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
