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

Common parameters.  Every strategy, built in or a plugin's, takes the keywords of
:data:`COMMON_PARAMS` besides its own, handled here once (:meth:`Strategy.__init_subclass__`
wraps each subclass's ``__init__``) and applied by the engine:

* ``symmetry``: the denoiser averaged over a symmetry group (``none``, ``hflip``, ``dihedral``
  of :mod:`restore.diffusion.symmetry`, or ``prior``: the group the prior records); each
  call then costs |G| NFE, counted.  Default ``none`` (``tweedie``: ``prior``).
* ``warm_start`` (``none``, ``pinv``, ``dpir``) and ``t0`` in (0, 1]: for samplers, start the
  reverse process part way down from a forward-noised initial estimate
  (:mod:`restore.strategies.warm`, Chung, Sim & Ye 2022).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.symmetry import GROUPS, SymmetrizedDenoiser
from restore.events import StepCallback
from restore.operators.base import Operator
from restore.operators.validation import check_number
from restore.priors.base import Prior

#: Keyword parameters every strategy takes besides its own (module docstring).
COMMON_PARAMS = ("symmetry", "warm_start", "t0")

#: Initial estimates a warm start noises (:mod:`restore.strategies.warm`); ``none``: a cold start.
WARM_STARTS = ("none", "pinv", "dpir")


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
    """Prior, operator and measurement ``y`` (image space, as the operator produced it).

    ``copies``: ``y`` is that many copies of one batch of measurements, ``y.repeat(copies, 1,
    1, 1)``, to draw several posterior samples of each in one run (:mod:`restore.pipeline`);
    a deterministic step, such as a warm start's estimate (:mod:`restore.strategies.warm`),
    may then run on the first copy alone (:meth:`one_copy`) and be repeated.

    ``clip_step``: for integer data (an 8- or 16-bit file), which holds A(x) + n clipped to
    [0, 1] and rounded, the rounding step q = 1 / (2^bits - 1), so that a sample at 0 or 1
    says only that A(x) + n lay below q / 2 or above 1 - q / 2 (:mod:`restore.strategies.censored`);
    None for float data, which is not clipped."""

    prior: Prior
    operator: Operator
    y: Tensor
    copies: int = 1
    clip_step: Optional[float] = None

    def __post_init__(self) -> None:
        if self.copies < 1 or self.y.shape[0] % self.copies:
            raise ValueError(f"a problem of {self.y.shape[0]} measurements cannot hold {self.copies} copies")

    def one_copy(self) -> "Problem":
        """The problem of the first copy of the batch (the whole problem when ``copies`` is 1)."""
        if self.copies == 1:
            return self
        return dataclasses.replace(self, y=self.y[:self.y.shape[0] // self.copies], copies=1)

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

    def grey(self, like: Tensor) -> Tensor:
        """The constant image (lo + hi) / 2 in the middle of the prior's range, shaped like
        ``like``: the neutral start of the data-step estimates (DPIR, the ``pinv`` warm start),
        the same image on every prior range."""
        lo, hi = self.prior.data_range
        return torch.full_like(like, (lo + hi) / 2)

    def filled(self, like: Tensor) -> Tensor:
        """For a mask operator (``is_mask``): the known pixels of :meth:`y_prior` with the holes
        filled by biharmonic interpolation (Damelin & Hoang 2018, "On Surface Completion and Image
        Inpainting by Biharmonic Functions", through scikit-image's ``inpaint_biharmonic`` on the
        CPU; the mask is A(1)); for any other operator :meth:`grey`.  Shaped like ``like``.

        The channels of an image that share a mask share one linear system: they are filled in one
        call, which factorizes it once (the same solution as one call per channel, to the bit, at
        a third of the time on three channels)."""
        if not self.operator.capabilities().get("is_mask"):
            return self.grey(like)
        from skimage.restoration import inpaint_biharmonic

        y = self.y_prior(tuple(like.shape[1:])).to(like).expand_as(like)
        holes = (self.operator.forward(torch.ones_like(like)) < 0.5).cpu().numpy()
        out = y.detach().double().cpu().numpy().copy()
        lo, hi = self.prior.data_range
        for b in range(out.shape[0]):
            for channels in channels_by_mask(holes[b]):
                hole = holes[b, channels[0]]
                if hole.all():
                    out[b, channels] = (lo + hi) / 2
                elif hole.any():
                    out[b, channels] = np.moveaxis(inpaint_biharmonic(
                        np.moveaxis(out[b, channels], 0, -1), hole, channel_axis=-1), -1, 0)
        return torch.from_numpy(out).to(like)

    def prox_l2(self, z: Tensor, rho: float) -> Tensor:
        """The data step in prior pixel units: argmin_x ||A x - y_p||^2 + rho ||x - z||^2 with
        y_p = :meth:`y_prior` (:meth:`restore.operators.base.LinearOperator.prox_l2`: closed form
        where the operator has one, conjugate gradients otherwise; rho = 0: the least-squares
        solution nearest z)."""
        return self.operator.prox_l2(z, self.y_prior(tuple(z.shape[1:])).to(z), rho)


def channels_by_mask(holes: np.ndarray) -> list[list[int]]:
    """The channels of ``holes`` (C, H, W) grouped by equal masks, in order of first appearance."""
    groups: list[list[int]] = []
    for c in range(holes.shape[0]):
        group = next((g for g in groups if np.array_equal(holes[g[0]], holes[c])), None)
        if group is None:
            groups.append([c])
        else:
            group.append(c)
    return groups


def _noisy(problem: Problem) -> bool:
    return not problem.operator.noise.noiseless


def _non_gaussian(problem: Problem) -> bool:
    return not problem.operator.noise.is_gaussian and not problem.operator.noise.noiseless


#: Assumptions a strategy may list in ``Strategy.assumes``: name -> (broken by the problem?, why it matters).
ASSUMPTIONS: dict[str, tuple[Callable[[Problem], bool], str]] = {
    "noiseless": (_noisy, "assumes a noiseless measurement, but the operator's noise model is {noise}: "
                          "the noise is copied into the result; use a noise-aware strategy (ddnm+, ddrm, pigdm, dps)"),
    "gaussian-noise": (_non_gaussian, "is derived for white Gaussian noise; the operator's noise model {noise} "
                                      "enters through its Gaussian proxy only (dps weights its residual by the noise "
                                      "model)"),
}


def _taking_common(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` that also takes the :data:`COMMON_PARAMS` keywords and sets them on the strategy
    (only those given: the others keep the class defaults)."""

    @functools.wraps(init)
    def __init__(self: "Strategy", *args: Any, **kwargs: Any) -> None:
        common = {key: kwargs.pop(key) for key in COMMON_PARAMS if key in kwargs}
        init(self, *args, **kwargs)
        self.set_common(**common)

    __init__.takes_common = True  # type: ignore[attr-defined]
    # the signature callers inspect (the commands check --param keys against it) names them too
    signature = inspect.signature(init)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    common = [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None)
              for key in COMMON_PARAMS if key not in signature.parameters]
    rest = [p for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD]
    __init__.__signature__ = signature.replace(parameters=own + common + rest)  # type: ignore[attr-defined]
    return __init__


class Strategy:
    """A conditioning strategy: ``sample`` turns a starting draw into a sample of p(x | y).

    Subclasses declare the operator capabilities they need in ``requires``
    (``linear``, ``has_svd``, ``is_mask``) and whether they need a pixel prior.
    """

    #: Defaults of the common parameters (module docstring); a subclass may change them.
    symmetry: str = "none"
    warm_start: str = "none"
    t0: float = 0.3

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
    #: False for a strategy that is one evaluation at the measurement's noise level, whatever the
    #: grid (``tweedie``): the front doors run other ``steps`` as 1, say so and record 1 (:mod:`restore.pipeline`).
    takes_steps: ClassVar[bool] = True
    #: The one operator task (``Operator.task``) the strategy serves, where its derivation holds for
    #: no other (``tweedie``, ``reverse-from-y``: denoise); None: any operator ``requires`` allows.
    #: :meth:`check` refuses another.
    only_task: ClassVar[Optional[str]] = None

    def __init__(self, *, symmetry: Optional[str] = None, warm_start: Optional[str] = None,
                 t0: Optional[float] = None) -> None:
        self.set_common(symmetry=symmetry, warm_start=warm_start, t0=t0)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "takes_common", False):
            cls.__init__ = _taking_common(init)  # type: ignore[method-assign]

    def set_common(self, *, symmetry: Optional[str] = None, warm_start: Optional[str] = None,
                   t0: Optional[float] = None) -> None:
        """Check and set the common parameters given (module docstring)."""
        if symmetry is not None:
            if symmetry != "prior" and symmetry not in GROUPS:
                raise ValueError(f"strategy {self.name!r}: symmetry must be 'prior' or one of {', '.join(GROUPS)}, "
                                 f"got {symmetry!r}")
            self.symmetry = symmetry
        if warm_start is not None:
            if warm_start not in WARM_STARTS:
                raise ValueError(f"strategy {self.name!r}: warm_start must be one of {', '.join(WARM_STARTS)}, "
                                 f"got {warm_start!r}")
            if warm_start != "none" and self.posterior_mean:
                raise ValueError(f"strategy {self.name!r} returns an estimate, not a sample: a warm start "
                                 "applies to samplers only")
            self.warm_start = warm_start
        if t0 is not None:
            self.t0 = check_number(self.name, "t0", t0, low=0.0, high=1.0, low_inclusive=False)

    def check(self, problem: Problem) -> None:
        """Refuse, naming what is missing, when the problem is outside this strategy's reach."""
        caps = problem.operator.capabilities()
        if self.only_task is not None and problem.operator.task != self.only_task:
            raise StrategyNotApplicable(f"strategy {self.name!r} needs the {self.only_task} operator; "
                                        f"{type(problem.operator).__name__} poses "
                                        f"{problem.operator.task or 'another'} task")
        missing = [c for c in self.requires if not caps.get(c, False)]
        if missing:
            raise StrategyNotApplicable(
                f"strategy {self.name!r} needs an operator that is {' and '.join(missing)}; "
                f"{type(problem.operator).__name__} is not"
            )
        if self.needs_pixel_prior and problem.prior.latent:
            raise StrategyNotApplicable(f"strategy {self.name!r} needs a pixel-space prior, not a latent one")
        if self.warm_start != "none" and (not caps.get("linear", False) or problem.prior.latent):
            raise StrategyNotApplicable(f"strategy {self.name!r}: warm_start={self.warm_start} needs a linear "
                                        "operator and a pixel-space prior (its estimate is a data step)")
        group, shape = self.symmetry_group(problem), problem.prior.shape
        if any(k % 2 for k, _ in GROUPS[group]) and shape is not None and shape[-1] != shape[-2]:
            raise StrategyNotApplicable(f"strategy {self.name!r}: symmetry {group!r} turns images by 90 "
                                        f"degrees, but prior {problem.prior.name!r} has the fixed non-square shape "
                                        f"{tuple(shape)} (use symmetry=hflip or none)")

    def symmetry_group(self, problem: Problem) -> str:
        """The symmetry group the denoiser is averaged over on ``problem``."""
        return problem.prior.symmetry if self.symmetry == "prior" else self.symmetry

    def symmetrized(self, denoiser: Denoiser, problem: Problem) -> Denoiser:
        """``denoiser`` averaged over :meth:`symmetry_group` (itself for ``none``); the engine
        wraps its counting denoiser, so every evaluation of the average is counted."""
        group = self.symmetry_group(problem)
        return denoiser if group == "none" else SymmetrizedDenoiser(denoiser, group)

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

    def nfe(self, steps: int) -> Optional[int]:
        """The network evaluations of one sample at ``steps`` levels, where the strategy knows
        them exactly and they are not a multiple of ``steps`` (RePaint's resampling); None
        otherwise: then ``steps`` times the catalog's ``nfe_per_step``
        (:mod:`restore.strategies.catalog`) is the cost.  Symmetry averages and warm-start
        estimates add to either (the engine counts what ran)."""
        return None

    def sampling_sigmas(self, denoiser: Denoiser, steps: int) -> Tensor:
        """The descending grid of ``steps`` noise levels, then 0, that ``solve`` samples on when
        given no grid: the denoiser's default, unless the strategy's paper fixes its own (DAPS's
        annealing schedule)."""
        return denoiser.sampling_sigmas(steps)

    def grid(self, problem: Problem, denoiser: Denoiser, steps: int) -> Tensor:
        """The grid ``solve`` samples on when given none: :meth:`sampling_sigmas`, unless the
        levels depend on the measurement (DPIR ends at the noise level sigma_y)."""
        return self.sampling_sigmas(denoiser, steps)

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
