r"""Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image
Synthesis", Sec. 4) as a strategy: another strategy (the one that brings y in: DPS, RePaint,
...) sampling with its denoiser replaced by the classifier-guided one,

    D(x, sigma | c) = D(x, sigma) + s sigma^2 grad_x log p_sigma(c | x),

whose derivation, noisy classifiers and guided denoiser are the classifier view of
:mod:`restore.diffusion.classifier`.  :class:`ClassifierGuidance` is built from objects
(Python) or from JSON-able parameters, as the registry's ``factory(**params)`` is called: a
strategy name and its parameters, a classifier spec (:func:`load_classifier`) and the
label(s).  Guidance costs one classifier forward and backward per denoiser evaluation; the
engine reports them as ``evaluations["classifier"]`` next to the NFE.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from restore.diffusion.classifier import ADMClassifierGuide, GuidedDenoiser, MixtureClassifier, NoisyClassifier
from restore.diffusion.denoiser import Denoiser
from restore.events import StepCallback
from restore.operators.validation import check_number
from restore.priors.analytic import GaussianMixture
from restore.strategies.base import Problem, Strategy, StrategyNotApplicable


#: Classifier specs that need no file: ``mixture`` is the exact classifier of a Gaussian-mixture prior.
MIXTURE_SPEC = "mixture"


def load_classifier(spec: str, prior: Any = None, *, device=None,
                    dtype: torch.dtype = torch.float32) -> NoisyClassifier:
    """A noisy classifier from its spec: ``mixture`` (the exact classifier of ``prior``, a
    Gaussian-mixture prior) or ``adm:PATH[:PRESET]`` (a guided-diffusion classifier
    checkpoint, preset default ``imagenet256-classifier``)."""
    if spec == MIXTURE_SPEC:
        mixture = getattr(prior, "denoiser", prior)
        if not isinstance(mixture, GaussianMixture):
            raise StrategyNotApplicable(f"classifier {spec!r} needs a Gaussian-mixture prior; got "
                                        f"{type(mixture).__name__}")
        return MixtureClassifier(mixture)
    scheme, _, rest = spec.partition(":")
    if scheme == "adm" and rest:
        from restore.priors.adm import load_adm_classifier

        path, _, preset = rest.partition(":")
        return ADMClassifierGuide(load_adm_classifier(path, preset or "imagenet256-classifier",
                                                      device=device or "cpu", dtype=dtype))
    raise ValueError(f"classifier-guidance: unknown classifier spec {spec!r}; "
                     f"use {MIXTURE_SPEC!r} or adm:PATH[:PRESET]")


class ClassifierGuidance(Strategy):
    """Classifier guidance on top of ``strategy`` (the strategy that brings y in: DPS, RePaint,
    ...): it samples with that strategy, its denoiser replaced by the :class:`GuidedDenoiser`.

    ``strategy``: a :class:`Strategy`, or a registered strategy name built with
    ``strategy_params``; ``classifier``: a :class:`NoisyClassifier` or a spec for
    :func:`load_classifier` (resolved against the problem's prior when sampling starts);
    ``labels``: the target class (one int) or one per batch item; ``scale``: D&N's s (their
    ImageNet 256x256 samples use s = 1 with the conditional model and s = 10 with the
    unconditional one).  So ``factory(strategy="dps", classifier="mixture", labels=3)`` works
    from JSON.

    The common parameters (``symmetry``, ``warm_start``, ``t0``:
    :data:`restore.strategies.base.COMMON_PARAMS`) and the grid are the inner strategy's: given
    here they are set on it, read here they are its values, so the engine averages, warm-starts
    and grids as the inner strategy would (its parameters in ``params()['strategy_params']``).
    """

    name = "classifier-guidance"

    def __init__(self, strategy: Union[Strategy, str], classifier: Union[NoisyClassifier, str],
                 labels: Union[int, Sequence[int], Tensor], scale: float = 1.0,
                 strategy_params: Optional[dict[str, Any]] = None) -> None:
        if isinstance(strategy, str):
            from restore.plugins import default_registry

            strategy = default_registry().get("strategy", strategy)(**dict(strategy_params or {}))
        elif strategy_params:
            raise ValueError("classifier-guidance: strategy_params apply to a strategy given by name only")
        if not isinstance(strategy, Strategy):
            raise TypeError(f"classifier-guidance: strategy must be a Strategy or a strategy name, "
                            f"got {type(strategy).__name__}")
        if not isinstance(classifier, (NoisyClassifier, str)):
            raise TypeError(f"classifier-guidance: classifier must be a NoisyClassifier or a classifier spec, "
                            f"got {type(classifier).__name__}")
        self.strategy = strategy
        self.classifier = classifier
        self.labels = labels
        self.scale = check_number(self.name, "scale", scale, low=0.0)

    def params(self) -> dict[str, Any]:
        """JSON-able when built from names: the inner strategy by name with its parameters."""
        labels = self.labels.tolist() if isinstance(self.labels, Tensor) else self.labels
        return {"strategy": self.strategy.name, "strategy_params": self.strategy.params(),
                "classifier": self.classifier if isinstance(self.classifier, str) else type(self.classifier).__name__,
                "labels": labels, "scale": self.scale}

    @property
    def default_steps(self) -> Optional[int]:  # type: ignore[override]
        return self.strategy.default_steps

    def set_common(self, **common: Any) -> None:
        """Set the common parameters given on the inner strategy (class docstring)."""
        self.strategy.set_common(**common)

    @property
    def symmetry(self) -> str:  # type: ignore[override]
        return self.strategy.symmetry

    @property
    def warm_start(self) -> str:  # type: ignore[override]
        return self.strategy.warm_start

    @property
    def t0(self) -> float:  # type: ignore[override]
        return self.strategy.t0

    def check(self, problem: Problem) -> None:
        self.strategy.check(problem)

    def warn_outside_assumptions(self, problem: Problem) -> None:
        self.strategy.warn_outside_assumptions(problem)

    def sampling_sigmas(self, denoiser: Denoiser, steps: int) -> Tensor:
        return self.strategy.sampling_sigmas(denoiser, steps)

    def grid(self, problem: Problem, denoiser: Denoiser, steps: int) -> Tensor:
        return self.strategy.grid(problem, denoiser, steps)

    def denoiser(self, problem: Problem, shape: tuple[int, ...]) -> Denoiser:
        classifier = self.classifier
        if isinstance(classifier, str):
            classifier = load_classifier(classifier, problem.prior, device=problem.y.device)
        return GuidedDenoiser(self.strategy.denoiser(problem, shape), classifier, self.labels, self.scale)

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        return self.strategy.sample(problem, denoiser, x, sigmas, generator=generator, callback=callback)


STRATEGIES = {ClassifierGuidance.name: ClassifierGuidance}
