r"""Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image
Synthesis", Sec. 4, Alg. 1 and 2) as a denoiser shift, so that it composes with every
sampler and strategy.

Bayes' rule gives the class-conditional score grad log p_sigma(x | c) = grad log p_sigma(x)
+ grad log p_sigma(c | x), and Tweedie's formula D(x, sigma) = x + sigma^2 grad log p_sigma(x)
turns a score into a denoiser.  Hence the class-conditional denoiser is

    D(x, sigma | c) = D(x, sigma) + s sigma^2 grad_x log p_sigma(c | x)

with guidance scale s (s = 1 is the exact conditional; D&N use s > 1 to sharpen).  In the
VP view this is D&N's Alg. 2 exactly: with x_vp = sqrt(abar) x and sigma^2 = (1 - abar) / abar,
eps = (x - D) / sigma becomes eps - s sqrt(1 - abar) grad_{x_vp} log p(c | x_vp).  Under an
ancestral step the shift moves the DDPM mean by s (sigma^2 - sigma'^2) grad log p(c | x);
Alg. 1 moves it by s Sigma grad log p(c | x_vp) with the posterior variance Sigma, which in
the VE view is s (sigma'^2 / sigma^2) sqrt((1 + sigma^2) / (1 + sigma'^2)) (sigma^2 - sigma'^2)
grad log p(c | x): the same to first order in the step.

Classifiers implement ``log_prob(x, sigma, labels)`` in the VE view of the prior's space:

* :class:`MixtureClassifier`: the exact noisy class posterior of a Gaussian mixture.
* :class:`ADMClassifierGuide`: a guided-diffusion noisy classifier, fed x_vp = x / sqrt(1 + sigma^2)
  and the timestep of sigma on its training schedule.

:class:`GuidedDenoiser` is the shifted denoiser (use it with any sampler);
:class:`ClassifierGuidance` is the strategy that wraps another strategy's denoiser with it
(DPS, RePaint, ...).  It is built from objects (Python) or from JSON-able parameters, as the
registry's ``factory(**params)`` is called: a strategy name and its parameters, a classifier
spec (:func:`load_classifier`) and the label(s).  Guidance costs one classifier forward and
backward per denoiser evaluation; the engine reports them as ``evaluations["classifier"]``
next to the NFE (:meth:`GuidedDenoiser.evaluations`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from restore.diffusion.denoiser import DelegatingDenoiser, Denoiser, Prediction
from restore.diffusion.parametrization import broadcast_sigma
from restore.diffusion.schedules import VPDiscrete
from restore.events import StepCallback
from restore.operators.validation import check_number
from restore.priors.analytic import GaussianMixture
from restore.strategies.base import Problem, Strategy, StrategyNotApplicable


def _pick(log_probs: Tensor, labels: Tensor) -> Tensor:
    """log_probs[b, labels[b]], (B,)."""
    return log_probs.gather(1, labels.to(log_probs.device, torch.long).reshape(-1, 1))[:, 0]


class NoisyClassifier:
    """A noise-aware classifier: log p_sigma(labels | x) per batch item, x in the VE view."""

    def log_prob(self, x: Tensor, sigma: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError


class MixtureClassifier(NoisyClassifier):
    """The exact noisy classifier of a Gaussian mixture: class k is component k,
    p_sigma(k | x) = w_k N(x; mu_k, Sigma_k + sigma^2 I) / p_sigma(x)."""

    def __init__(self, mixture: GaussianMixture) -> None:
        self.mixture = mixture

    def log_prob(self, x: Tensor, sigma: Tensor, labels: Tensor) -> Tensor:
        return _pick(self.mixture.class_log_posterior(x, sigma), labels)


class ADMClassifierGuide(NoisyClassifier):
    """A guided-diffusion noisy classifier ``network(x_vp, t) -> logits`` (e.g.
    :class:`restore.priors.adm.ADMClassifier`) trained on the VP ``schedule`` (ADM: linear,
    1000 steps).  It sees x_vp = x / sqrt(1 + sigma^2), x in the prior's range ([-1, 1] for
    ADM), and the fractional timestep of sigma on that schedule."""

    def __init__(self, network: Callable[[Tensor, Tensor], Tensor], schedule: Optional[VPDiscrete] = None) -> None:
        self.network = network
        self.schedule = schedule or VPDiscrete.linear(1000)

    @classmethod
    def from_checkpoint(cls, path: str, preset: Optional[str] = "imagenet256-classifier", *,
                        device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32) -> "ADMClassifierGuide":
        """Load a released classifier (e.g. ``256x256_classifier.pt``) with the ADM loader."""
        from restore.priors.adm import load_adm_classifier

        return cls(load_adm_classifier(path, preset, device=device, dtype=dtype))

    def log_prob(self, x: Tensor, sigma: Tensor, labels: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).to(torch.float64).expand(x.shape[0])
        t = self.schedule.sigma_to_t(sigma).to(x.dtype)
        logits = self.network(x * (1 + broadcast_sigma(sigma, x) ** 2).rsqrt(), t)
        return _pick(logits.log_softmax(dim=1), labels)


#: Classifier specs that need no file: ``mixture`` is the exact classifier of a Gaussian-mixture prior.
MIXTURE_SPEC = "mixture"


def load_classifier(spec: str, prior: Any = None, *, device=None, dtype: torch.dtype = torch.float32) -> NoisyClassifier:
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
        path, _, preset = rest.partition(":")
        return ADMClassifierGuide.from_checkpoint(path, preset or "imagenet256-classifier",
                                                  device=device or "cpu", dtype=dtype)
    raise ValueError(f"classifier-guidance: unknown classifier spec {spec!r}; "
                     f"use {MIXTURE_SPEC!r} or adm:PATH[:PRESET]")


class GuidedDenoiser(DelegatingDenoiser):
    """D(x, sigma) + scale sigma^2 grad_x log p_sigma(labels | x) (see the module docstring).

    ``labels``: one class index for the whole batch or one per batch item.  When x itself
    requires grad (DPS differentiates the denoiser) the shift is kept in the graph, so the
    caller's gradient includes the guidance term's dependence on x.  ``classifier_calls``
    counts the classifier's evaluations (each a forward and a backward pass).
    """

    def __init__(self, inner: Denoiser, classifier: NoisyClassifier, labels: Union[int, Sequence[int], Tensor],
                 scale: float = 1.0) -> None:
        super().__init__(inner)
        self.classifier = classifier
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.scale = scale
        self.classifier_calls = 0

    def evaluations(self) -> dict[str, int]:
        counts = self.inner.evaluations()
        return {**counts, "classifier": counts.get("classifier", 0) + self.classifier_calls}

    def class_score(self, x: Tensor, sigma: Tensor) -> Tensor:
        """grad_x log p_sigma(labels | x)."""
        self.classifier_calls += 1
        labels = self.labels.to(x.device).expand(x.shape[0])
        if x.requires_grad:
            log_prob = self.classifier.log_prob(x, sigma, labels).sum()
            return torch.autograd.grad(log_prob, x, create_graph=True)[0]
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            return torch.autograd.grad(self.classifier.log_prob(x_in, sigma, labels).sum(), x_in)[0]

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        pred = self.inner.predict(x, sigma)
        if self.scale == 0:
            return pred
        shift = self.scale * broadcast_sigma(torch.as_tensor(sigma), x) ** 2 * self.class_score(x, sigma)
        return Prediction(pred.x0 + shift, pred.var_frac)


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

    def check(self, problem: Problem) -> None:
        self.strategy.check(problem)

    def warn_outside_assumptions(self, problem: Problem) -> None:
        self.strategy.warn_outside_assumptions(problem)

    def sampling_sigmas(self, denoiser: Denoiser, steps: int) -> Tensor:
        return self.strategy.sampling_sigmas(denoiser, steps)

    def denoiser(self, problem: Problem, shape: tuple[int, ...]) -> Denoiser:
        classifier = self.classifier
        if isinstance(classifier, str):
            classifier = load_classifier(classifier, problem.prior, device=problem.y.device)
        return GuidedDenoiser(self.strategy.denoiser(problem, shape), classifier, self.labels, self.scale)

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        return self.strategy.sample(problem, denoiser, x, sigmas, generator=generator, callback=callback)


STRATEGIES = {ClassifierGuidance.name: ClassifierGuidance}
