r"""The model view of a conditional denoising network: SR3 (Saharia et al. 2021, "Image
Super-Resolution via Iterative Refinement") and Palette (Saharia et al. 2022, "Palette:
Image-to-Image Diffusion Models").

Such a network is trained for one task and sees the measurement directly: its input is the
noisy image concatenated along channels with a condition image c(y) of the same size, made
in one of the ways :data:`CONDITIONS` names (``restore.strategies.conditional`` makes it
from a problem).  It predicts epsilon (SR3, Palette) or x0 on a discrete VP schedule, so
bound to one c(y) it is an ordinary VE-view denoiser
(:class:`restore.diffusion.denoiser.VPNetworkDenoiser`) and samples with the shared samplers.
Unbound it is no denoiser at all (:class:`ConditionalNetwork` has no ``predict``): a prior
holding one can only be sampled by the ``conditional`` strategy, and any other strategy
refuses it.  Prior loaders return this view (``priors/native.py``); it depends on nothing
above ``restore.diffusion``.

A *residual* network (SRDiff: Li et al. 2022, "SRDiff: Single Image Super-Resolution with
Diffusion Probabilistic Models", Neurocomputing 479) diffuses r = x - c(y), the image minus
its condition image, instead of x.  In the VE view the noisy residual at level sigma is
x_sigma - c, so the bound denoiser is

    D(x, sigma | c) = clip(c + D_r(x - c, sigma | c)),

D_r the network's estimate of r0 (read as ``parametrization``), clipped to the data range
after adding c.  With ``parametrization="x0"`` the network outputs r0 itself, so a network
whose output layer is zero (the compact UNet is initialised so) gives D = clip(c) at every
level, and every sampler returns exactly the condition image: an undertrained residual
network starts from bicubic upsampling, not from noise.  :meth:`ConditionalNetwork.diffused`
is the one place the training objective takes r0 from.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from restore.diffusion.denoiser import DelegatingDenoiser, Denoiser, Prediction, VPNetworkDenoiser
from restore.diffusion.schedules import VPDiscrete
from restore.operators.validation import check_choice

#: How c(y) is made: ``"upsample"`` (SR3) y upsampled to the target size by bicubic
#: interpolation; ``"pinv"`` (Palette-style, any linear operator) the pseudo-inverse A^+ y;
#: both mapped to the prior's range; ``"auto"`` takes ``"upsample"`` when y is a smaller image
#: with the same channels and ``"pinv"`` otherwise.
CONDITIONS = ("auto", "upsample", "pinv")
#: What a conditional network may predict: the noise (SR3, Palette) or the clean image (residual).
CONDITIONAL_PARAMETRIZATIONS = ("epsilon", "x0")


class ConditionalNetwork:
    """A network ``network(cat[x_vp, c], t)`` trained on ``schedule`` with condition
    ``condition`` (see :data:`CONDITIONS`), predicting ``parametrization`` (epsilon or x0) of
    the image or, with ``residual``, of the residual x - c (module docstring), on measurements
    with Gaussian noise of standard deviation ``measurement_sigma`` (on [0, 1]) from the operator
    ``measurement_operator`` (its registry name and attributes; None: not recorded).  It needs a
    condition before it can denoise, so it is not a :class:`restore.diffusion.denoiser.Denoiser`:
    :meth:`bind` gives the denoiser for one c(y)."""

    def __init__(self, network: Callable[[Tensor, Tensor], Tensor], schedule: VPDiscrete, *,
                 condition: str = "auto", clip: Optional[tuple[float, float]] = None,
                 parametrization: str = "epsilon", residual: bool = False,
                 measurement_sigma: float = 0.0, measurement_operator: Optional[dict] = None) -> None:
        check_choice("conditional", "condition", condition, CONDITIONS)
        check_choice("conditional", "parametrization", parametrization, CONDITIONAL_PARAMETRIZATIONS)
        self.network = network
        self.schedule = schedule
        self.condition = condition
        self.clip = clip
        self.parametrization = parametrization
        self.residual = residual
        self.measurement_sigma = float(measurement_sigma)
        self.measurement_operator = None if measurement_operator is None else dict(measurement_operator)

    def diffused(self, x0: Tensor, cond: Tensor) -> Tensor:
        """The clean variable the diffusion runs on for image ``x0`` (prior range) and
        condition ``cond``: the residual x0 - c for a residual network, else x0."""
        return x0 - cond.to(x0.dtype) if self.residual else x0

    def bind(self, cond: Tensor) -> Denoiser:
        """The denoiser D(x, sigma | c) for the condition image ``cond`` (B, C', H, W)."""
        inner = VPNetworkDenoiser(lambda x_vp, t: self.network(torch.cat([x_vp, cond.to(x_vp.dtype)], dim=1), t),
                                  self.schedule, parametrization=self.parametrization,
                                  clip=None if self.residual else self.clip)
        return ResidualDenoiser(inner, cond, self.clip) if self.residual else inner


class ResidualDenoiser(DelegatingDenoiser):
    """D(x, sigma) = clip(base + inner(x - base, sigma)): ``inner`` denoises the residual
    x - base (module docstring); ``clip`` bounds the image, not the residual."""

    def __init__(self, inner: Denoiser, base: Tensor, clip: Optional[tuple[float, float]] = None) -> None:
        super().__init__(inner)
        self.base = base
        self.clip = clip

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        base = self.base.to(x.dtype)
        x0 = base + self.inner.predict(x - base, sigma).x0
        return Prediction(x0 if self.clip is None else x0.clamp(*self.clip))


class LeadingChannels(nn.Module):
    """A network with equal input and output channels (the compact UNet) used as a
    conditional one: it receives cat[x_vp, c] and only its first ``channels`` outputs are
    read, so the extra input channels carry the condition."""

    def __init__(self, network: nn.Module, channels: int) -> None:
        super().__init__()
        self.network = network
        self.channels = channels

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.network(x, t)[:, :self.channels]
