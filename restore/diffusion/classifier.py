r"""The classifier view: noisy classifiers and the classifier-guided denoiser (Dhariwal &
Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis", Sec. 4, Alg. 1 and 2).

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

:class:`GuidedDenoiser` is the shifted denoiser; it composes with every sampler and strategy
(the ``classifier-guidance`` strategy, :mod:`restore.strategies.guidance`, wraps another
strategy's denoiser with it).  Classifier loaders (``priors/classifier.py``) return these
views; this module depends on nothing above ``restore.diffusion``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from restore.diffusion.denoiser import DelegatingDenoiser, Denoiser, Prediction
from restore.diffusion.parametrization import broadcast_sigma
from restore.diffusion.schedules import VPDiscrete


def _pick(log_probs: Tensor, labels: Tensor) -> Tensor:
    """log_probs[b, labels[b]], (B,)."""
    return log_probs.gather(1, labels.to(log_probs.device, torch.long).reshape(-1, 1))[:, 0]


class NoisyClassifier:
    """A noise-aware classifier: log p_sigma(labels | x) per batch item, x in the VE view."""

    def log_prob(self, x: Tensor, sigma: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError


class MixtureClassifier(NoisyClassifier):
    """The exact noisy classifier of a Gaussian mixture (a
    :class:`restore.priors.analytic.GaussianMixture`): class k is component k,
    p_sigma(k | x) = w_k N(x; mu_k, Sigma_k + sigma^2 I) / p_sigma(x)."""

    def __init__(self, mixture: Any) -> None:
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

    def log_prob(self, x: Tensor, sigma: Tensor, labels: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).to(torch.float64).expand(x.shape[0])
        t = self.schedule.sigma_to_t(sigma).to(x.dtype)
        logits = self.network(x * (1 + broadcast_sigma(sigma, x) ** 2).rsqrt(), t)
        return _pick(logits.log_softmax(dim=1), labels)


class GuidedDenoiser(DelegatingDenoiser):
    """D(x, sigma) + scale sigma^2 grad_x log p_sigma(labels | x) (see the module docstring).

    ``labels``: one class index for the whole batch or one per batch item.  When x itself
    requires grad (DPS differentiates the denoiser) the shift is kept in the graph, so the
    caller's gradient includes the guidance term's dependence on x.  ``classifier_items``
    counts the batch items the classifier evaluated (each a forward and a backward pass); the
    engine reports them per measured image as ``evaluations["classifier"]`` next to the NFE.
    """

    def __init__(self, inner: Denoiser, classifier: NoisyClassifier, labels: Union[int, Sequence[int], Tensor],
                 scale: float = 1.0) -> None:
        super().__init__(inner)
        self.classifier = classifier
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.scale = scale
        self.classifier_items = 0

    def evaluations(self) -> dict[str, int]:
        counts = self.inner.evaluations()
        return {**counts, "classifier": counts.get("classifier", 0) + self.classifier_items}

    def class_score(self, x: Tensor, sigma: Tensor) -> Tensor:
        """grad_x log p_sigma(labels | x)."""
        self.classifier_items += x.shape[0]
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
