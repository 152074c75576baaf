"""Hook specifications of the ``restore`` plugin system (pluggy project ``restore``).

Every operator, prior format, conditioning strategy, sampler and metric enters
through the registration hooks below: the built-ins in ``restore.operators``,
``restore.priors``, ``restore.diffusion.samplers`` and ``restore.metrics`` are
plugins like any third-party package found through the entry-point group
``restore``.

A registration hook returns a mapping ``name -> factory``:

* ``restore_operators``: ``factory(**params) -> Operator``
  (see :mod:`restore.operators.base`).
* ``restore_prior_formats``: ``factory(spec: str, *, device, dtype) -> Prior``; the key is
  the scheme of a prior spec string ``scheme:rest`` (``adm:PATH``, ``gmm:...``).
* ``restore_strategies``: ``factory(**params) -> Strategy``.
* ``restore_samplers``: an unconditional sampler function
  ``sampler(denoiser, x, sigmas, *, generator=None, callback=None, **options) -> x0``.
* ``restore_metrics``: ``metric(x, reference) -> Tensor`` (one value per batch item).

Observer hooks (``restore_run_start``, ``restore_step``, ``restore_run_end``) receive
events from the sampler loops.  The engine only builds a step callback when at
least one plugin implements ``restore_step``, so listening costs nothing when
nobody listens, and the numerical loops never do I/O themselves.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import pluggy

hookspec = pluggy.HookspecMarker("restore")
hookimpl = pluggy.HookimplMarker("restore")


@hookspec
def restore_operators() -> Mapping[str, Callable[..., Any]]:
    """Return degradation operators by name."""


@hookspec
def restore_prior_formats() -> Mapping[str, Callable[..., Any]]:
    """Return prior loaders by spec scheme (the part of a prior spec before the first ``:``)."""


@hookspec
def restore_strategies() -> Mapping[str, Callable[..., Any]]:
    """Return conditioning strategies by name."""


@hookspec
def restore_samplers() -> Mapping[str, Callable[..., Any]]:
    """Return unconditional samplers by name."""


@hookspec
def restore_metrics() -> Mapping[str, Callable[..., Any]]:
    """Return image-quality metrics by name."""


@hookspec
def restore_run_start(info: Mapping[str, Any]) -> None:
    """A sampling run starts; ``info`` holds the sampler name, step count and shape."""


@hookspec
def restore_step(event: Any) -> None:
    """One sampler step finished; ``event`` is a :class:`restore.events.StepEvent`."""


@hookspec
def restore_run_end(info: Mapping[str, Any]) -> None:
    """A sampling run ended; ``info`` holds the number of network evaluations."""
