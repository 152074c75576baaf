"""Hook specifications of the ``restore`` plugin system (pluggy project ``restore``).

A plugin is a module (or any object) with functions marked ``@restore.hookimpl`` whose
names are the hooks below; restore finds third-party plugins through the entry-point
group ``restore`` and registers the built-ins (:data:`restore.plugins.BUILTIN_PLUGINS`)
the same way.  An implementation may accept a subset of a hook's arguments (pluggy
passes them by name).  ``docs/PLUGINS.md`` is the guide.

Registration hooks take no arguments and return a mapping ``name -> factory``; the
registry (:mod:`restore.plugins`) calls each plugin's implementation once, checks that
every value is callable and keys it by kind and name (``restore list``).  A name another
plugin registered first is kept with that plugin and the clash is reported as a failure
of the later one.  The factory types are the protocols below (:class:`OperatorFactory`,
:class:`PriorLoader`, :class:`StrategyFactory`, :class:`Sampler`, :class:`Metric`).

Observer hooks (``restore_run_start``, ``restore_step``, ``restore_run_end``) are told
about each sampling run of :func:`restore.strategies.engine.solve`; they return nothing and
must not change the tensors they see.  Any registered plugin may implement them (it observes
every run); an application passes listener objects to one run, ``solve(..., listeners=[...])``
(:class:`restore.plugins.RunObservers`; the CLI's progress bar and previews do).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Protocol, TypedDict, Union

import pluggy

if TYPE_CHECKING:  # annotations only: importing this module stays free of torch
    import torch
    from torch import Tensor

    from restore.diffusion.denoiser import Denoiser
    from restore.events import StepCallback, StepEvent
    from restore.operators.base import Operator
    from restore.priors.base import Prior
    from restore.strategies.base import Strategy

hookspec = pluggy.HookspecMarker("restore")
hookimpl = pluggy.HookimplMarker("restore")


class OperatorFactory(Protocol):
    """Builds an operator from JSON-able keyword parameters (a class is a factory)."""

    def __call__(self, **params: Any) -> "Operator": ...


class PriorLoader(Protocol):
    """Loads the prior named by a whole spec string ``scheme:body?key=value``."""

    def __call__(self, spec: str, *, device: Optional[Union["torch.device", str]] = None,
                 dtype: Optional["torch.dtype"] = None) -> "Prior": ...


class StrategyFactory(Protocol):
    """Builds a conditioning strategy from JSON-able keyword hyperparameters."""

    def __call__(self, **params: Any) -> "Strategy": ...


class Sampler(Protocol):
    """Runs an unconditional sampler from ``x`` at ``sigmas[0]`` down the grid to 0."""

    def __call__(self, denoiser: "Denoiser", x: "Tensor", sigmas: "Tensor", *,
                 generator: Optional["torch.Generator"] = None, callback: "StepCallback" = None,
                 **options: Any) -> "Tensor": ...


class Metric(Protocol):
    """Compares two tensors (sample sets or image batches)."""

    def __call__(self, a: "Tensor", b: "Tensor", **options: Any) -> Union[float, "Tensor"]: ...


@hookspec
def restore_operators() -> Mapping[str, OperatorFactory]:
    """Register degradation operators y = A(x) + n.

    :returns: ``{name: factory}``.  ``factory(**params)`` receives JSON-able keyword
        parameters (what ``restore degrade --param KEY=VALUE`` and a measurement's sidecar
        hold; tensor-valued ones may also be a tensor, an array or a file path) and returns
        an :class:`restore.Operator`.  The operator's ``params()`` and ``tensors()`` must
        rebuild it: ``factory(**op.params(), **op.tensors())``.  It accepts ``noise`` (a
        noise model or its JSON dict) and ``shape`` (bind to inputs (C, H, W)) and declares
        its capabilities (``linear``, ``has_svd``, ``is_mask``) by subclassing
        :class:`restore.LinearOperator` or :class:`restore.SVDOperator` and setting
        ``is_mask``.  ``restore check-operator NAME`` checks the whole contract.
    """


@hookspec
def restore_prior_formats() -> Mapping[str, PriorLoader]:
    """Register prior formats by the scheme of a prior spec string.

    :returns: ``{scheme: loader}``.  For a spec ``scheme[:body][?key=value&...]``
        (:func:`restore.priors.spec.parse_spec` splits it) the loader receives the whole
        string and the keywords ``device`` and ``dtype`` (None: the loader's default) and
        returns a :class:`restore.priors.base.Prior`: a denoiser
        D(x, sigma) = E[x0 | x0 + sigma eps = x] (:class:`restore.diffusion.denoiser.Denoiser`,
        with ``sigma_min`` / ``sigma_max`` and its sampling grid) plus the sample ``shape``
        (None: any size) and the ``data_range`` of image intensities 0 and 1.  Errors in
        the spec are a ValueError naming the spec; a missing file a FileNotFoundError.
    """


@hookspec
def restore_strategies() -> Mapping[str, StrategyFactory]:
    """Register conditioning strategies, the ways a measurement enters a sampler.

    :returns: ``{name: factory}``.  ``factory(**params)`` receives JSON-able keyword
        hyperparameters (a bad value is a ValueError naming it) and returns a
        :class:`restore.strategies.base.Strategy`: it declares the operator capabilities it
        ``requires``, refuses a problem it cannot serve in ``check(problem)`` and turns a
        starting draw into a posterior sample in ``sample(problem, denoiser, x, sigmas, *,
        generator, callback)``.
    """


@hookspec
def restore_samplers() -> Mapping[str, Sampler]:
    """Register unconditional samplers.

    :returns: ``{name: sampler}``.  ``sampler(denoiser, x, sigmas, *, generator=None,
        callback=None, **options)`` receives a :class:`restore.diffusion.denoiser.Denoiser`,
        the starting draw ``x`` at noise level ``sigmas[0]`` (``denoiser.init_noise``) and a
        descending float64 grid of VE noise levels ending in 0; it returns the final sample
        (same shape as ``x``), draws all its randomness from ``generator`` and hands a
        :class:`restore.events.StepEvent` to ``callback`` after each step.  No I/O.
    """


@hookspec
def restore_metrics() -> Mapping[str, Metric]:
    """Register metrics.

    :returns: ``{name: metric}``.  ``metric(a, b, **options)`` compares two tensors and
        returns a float (a distance between sample sets, such as ``sliced-wasserstein``)
        or a tensor with one value per batch item (an image-quality score against a
        reference).
    """


class RunStartInfo(TypedDict):
    """What ``restore_run_start`` receives."""

    prior: str  # the prior's spec (its name)
    strategy: str  # the strategy's registered name
    params: dict[str, Any]  # the strategy's hyperparameters (JSON-able)
    steps: int  # number of noise levels sampled (len(sigmas) - 1)
    shape: tuple[int, ...]  # denoiser-space shape of one sample
    batch: int  # number of samples (the measurement's batch size)


class RunEndInfo(TypedDict):
    """What ``restore_run_end`` receives."""

    nfe: int  # network (denoiser) evaluations of the run
    evaluations: dict[str, int]  # ``nfe`` and the other evaluation counts (classifier, ...)
    seconds: float  # wall-clock time of the run


@hookspec
def restore_run_start(info: RunStartInfo) -> None:
    """A sampling run of :func:`restore.strategies.engine.solve` starts.

    :param info: the prior, strategy, its hyperparameters, step count, sample shape and
        batch size (:class:`RunStartInfo`).
    """


@hookspec
def restore_step(event: "StepEvent") -> None:
    """One step of a sampling run finished (called only when some plugin implements it, so
    runs nobody watches pay nothing).

    :param event: a :class:`restore.events.StepEvent`: ``step`` of ``total``, the noise level
        ``sigma`` reached, the current iterate ``x``, the denoised estimate ``x0`` and ``nfe``,
        the network evaluations so far.  The tensors belong to the run: read or copy them,
        never change them in place.  An exception raised here stops the run.
    """


@hookspec
def restore_run_end(info: RunEndInfo) -> None:
    """A sampling run finished.

    :param info: the network evaluations, all evaluation counts and the wall-clock
        seconds of the run (:class:`RunEndInfo`).
    """
