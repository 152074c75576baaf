"""Running a strategy: capability check, start draw (cold or warm), NFE count, symmetry average,
divergence guard, observers.

This is the one place that turns (prior, operator, y, strategy) into an image; the
Python API and the CLI's restoration commands call :func:`solve`.

The denoiser a strategy samples with is counted first, then averaged over the strategy's
``symmetry`` group (:meth:`Strategy.symmetrized`), so each evaluation of the average counts;
a warm start (:mod:`restore.strategies.warm`) shortens the grid and counts its estimate's NFE.

Sampling runs under ``torch.no_grad``: no autograd graph is kept across steps.  A
strategy that needs a gradient (DPS, PiGDM, DAPS, classifier guidance) takes it
locally with ``torch.enable_grad`` on a detached copy of the iterate.

Observers.  The registry's plugins that implement the observer hooks of
:mod:`restore.hookspecs` (every run) and the run's own ``listeners`` (this run only)
receive ``restore_run_start(info)`` (prior, strategy, steps, shape, batch), one
``restore_step(event)`` per step (a :class:`restore.events.StepEvent` with the NFE so far)
and ``restore_run_end(info)`` (nfe, evaluations, seconds).  When no
plugin or listener implements ``restore_step`` no per-step hook is called at all.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import DelegatingDenoiser, Denoiser, Prediction
from restore.events import StepCallback, StepEvent
from restore.plugins import Registry, RunObservers, default_registry
from restore.strategies.base import DivergenceError, Problem, Strategy
from restore.strategies.warm import warm_start


class CountingDenoiser(DelegatingDenoiser):
    """Counts the evaluations of the denoiser it wraps per measured image.

    A run on ``images`` measured images draws ``copies`` samples of each as one batch
    (:class:`restore.strategies.base.Problem`): a call on the whole batch evaluates the
    network ``copies`` times per image, a call on the first copy alone (a warm start's
    estimate) once.  ``nfe`` is therefore the batch items evaluated over ``images`` (the mean
    of 8 samples of 20 steps: 160, as the catalog prices it), ``calls`` the calls themselves
    (20), and :meth:`evaluations` the other networks' item counts over ``images`` likewise.
    ``images`` 1 (the default) counts the whole batch as draws of one image."""

    def __init__(self, inner: Denoiser, images: int = 1) -> None:
        super().__init__(inner)
        self.images = images
        self.calls = 0
        self.items = 0

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        self.calls += 1
        self.items += x.shape[0]
        return self.inner.predict(x, sigma)

    @property
    def nfe(self) -> int:
        return self._per_image(self.items)

    def evaluations(self) -> dict[str, int]:
        return {name: self._per_image(items) for name, items in self.inner.evaluations().items()}

    def _per_image(self, items: int) -> int:
        return -(-items // self.images)


@dataclass
class Result:
    """The restored image in [0, 1] (not clipped), the denoiser-space sample, the NFE used per
    measured image (every sample of it counted: :class:`CountingDenoiser`), every evaluation
    counted so (``evaluations``: ``nfe`` plus, e.g., ``classifier``), the wall time of sampling
    in seconds and ``calls``, the denoiser calls on the run's batch."""

    image: Tensor
    sample: Tensor
    nfe: int
    evaluations: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    calls: int = 0


def _observed(callback: StepCallback, counter: CountingDenoiser, observers: RunObservers) -> StepCallback:
    """The step callback of a run: stops on non-finite iterates, stamps the NFE so far on the
    event, then passes it to ``callback`` and to the run's ``restore_step`` observers."""
    listening = observers.listens("restore_step")

    def observe(event: StepEvent) -> None:
        if not torch.isfinite(event.x).all():
            raise DivergenceError(event.step, event.total,
                                  "Try a smaller guidance step, more steps, or float32/float64 instead of half "
                                  "precision.")
        if callback is None and not listening:
            return
        event = dataclasses.replace(event, nfe=counter.nfe)
        if callback is not None:
            callback(event)
        if listening:
            observers.call("restore_step", event=event)

    return observe


def sample_shape(problem: Problem, shape: Optional[tuple[int, ...]]) -> tuple[int, ...]:
    """The denoiser-space shape of one sample: the given one, else the image shape (C, H, W) the
    operator is bound to (pixel priors: the image's size, not the prior's), else the prior's."""
    bound = problem.operator.shape
    if shape is None and not problem.prior.latent and bound is not None and len(bound) == 3:
        shape = bound
    shape = shape or problem.prior.shape
    if shape is None:
        raise ValueError("the prior runs at any size and the operator is not bound to one: pass the sample shape")
    return tuple(shape)


def solve(problem: Problem, strategy: Strategy, *, steps: Optional[int] = None,
          shape: Optional[tuple[int, ...]] = None, generator: Optional[torch.Generator] = None,
          callback: StepCallback = None, sigmas: Optional[Tensor] = None,
          registry: Optional[Registry] = None, listeners: Iterable[Any] = ()) -> Result:
    """Sample x ~ p(x | y) with ``strategy`` on ``steps`` noise levels of its grid
    (``strategy.sampling_sigmas``: by default the grid of the denoiser it samples with;
    ``strategy.default_steps`` levels when ``steps`` is None), or on the given ``sigmas``.

    ``shape`` is the denoiser-space shape of one sample (default: see :func:`sample_shape`);
    the batch size is y's.  ``callback``, the observer plugins of ``registry`` (default:
    :func:`restore.plugins.default_registry`; they observe every run) and ``listeners`` (objects
    with ``@hookimpl`` observer methods; they observe this run only, whatever other runs the
    process makes at the same time: :class:`restore.plugins.RunObservers`) receive the events.
    Warns (:class:`restore.strategies.base.OutsideAssumptionsWarning`) when the problem is outside
    the strategy's assumptions.
    """
    observers = RunObservers(registry or default_registry(), listeners)
    shape = sample_shape(problem, shape)
    if problem.operator.shape is None and not problem.prior.latent and len(shape) == 3:
        # Bind the operator to the image size: its SVD depends on it, and binding checks that
        # the operator can take such images at all (kernel size, scale) before sampling starts.
        problem = dataclasses.replace(problem, operator=problem.operator.bound_to(shape))
    strategy.check(problem)
    strategy.warn_outside_assumptions(problem)
    start = time.perf_counter()
    with torch.no_grad():
        counter = CountingDenoiser(strategy.denoiser(problem, shape), problem.y.shape[0] // problem.copies)
        denoiser = strategy.symmetrized(counter, problem)
        if sigmas is None:
            steps = strategy.default_steps if steps is None else steps
            if steps is None:
                raise ValueError(f"strategy {strategy.name!r} has no default number of steps: pass steps")
            sigmas = strategy.grid(problem, denoiser, steps)
        y = problem.y
        x = denoiser.init_noise((y.shape[0], *shape), float(sigmas[0]), generator=generator,
                                device=y.device, dtype=y.dtype)
        x, sigmas = warm_start(strategy, problem, denoiser, x, sigmas, generator)
        observers.call("restore_run_start", info={
            "prior": problem.prior.name, "strategy": strategy.name, "params": strategy.params(),
            "steps": len(sigmas) - 1, "shape": shape, "batch": y.shape[0]})
        sample = strategy.sample(problem, denoiser, x, sigmas, generator=generator,
                                 callback=_observed(callback, counter, observers))
        image = problem.prior.to_image(problem.prior.decode(sample))
    seconds = time.perf_counter() - start
    evaluations = {"nfe": counter.nfe, **counter.evaluations()}
    observers.call("restore_run_end", info={"nfe": counter.nfe, "evaluations": evaluations, "seconds": seconds})
    return Result(image=image, sample=sample, nfe=counter.nfe, evaluations=evaluations, seconds=seconds,
                  calls=counter.calls)
