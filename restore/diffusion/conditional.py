r"""The model view of a conditional denoising network: SR3 (Saharia et al. 2021, "Image
Super-Resolution via Iterative Refinement") and Palette (Saharia et al. 2022, "Palette:
Image-to-Image Diffusion Models").

Such a network is trained for one task and sees the measurement directly: its input is the
noisy image concatenated along channels with a condition image c(y) of the same size, made
in one of the ways :data:`CONDITIONS` names (``restore.strategies.conditional`` makes it
from a problem).  It predicts epsilon on a discrete VP schedule, so bound to one c(y) it is
an ordinary VE-view denoiser (:class:`restore.diffusion.denoiser.VPNetworkDenoiser`) and
samples with the shared samplers.  Unbound it is no denoiser at all
(:class:`ConditionalNetwork` has no ``predict``): a prior holding one can only be sampled
by the ``conditional`` strategy, and any other strategy refuses it.  Prior loaders return
this view (``priors/native.py``); it depends on nothing above ``restore.diffusion``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from restore.diffusion.denoiser import VPNetworkDenoiser
from restore.diffusion.schedules import VPDiscrete
from restore.operators.validation import check_choice

#: How c(y) is made: ``"upsample"`` (SR3) y upsampled to the target size by bicubic
#: interpolation; ``"pinv"`` (Palette-style, any linear operator) the pseudo-inverse A^+ y;
#: both mapped to the prior's range; ``"auto"`` takes ``"upsample"`` when y is a smaller image
#: with the same channels and ``"pinv"`` otherwise.
CONDITIONS = ("auto", "upsample", "pinv")


class ConditionalNetwork:
    """An epsilon-predicting network ``network(cat[x_vp, c], t)`` trained on ``schedule``
    with condition ``condition`` (see :data:`CONDITIONS`).  It needs a condition before it
    can denoise, so it is not a :class:`restore.diffusion.denoiser.Denoiser`: :meth:`bind`
    gives the denoiser for one c(y)."""

    def __init__(self, network: Callable[[Tensor, Tensor], Tensor], schedule: VPDiscrete, *,
                 condition: str = "auto", clip: Optional[tuple[float, float]] = None) -> None:
        check_choice("conditional", "condition", condition, CONDITIONS)
        self.network = network
        self.schedule = schedule
        self.condition = condition
        self.clip = clip

    def bind(self, cond: Tensor) -> VPNetworkDenoiser:
        """The denoiser D(x, sigma | c) for the condition image ``cond`` (B, C', H, W)."""
        return VPNetworkDenoiser(lambda x_vp, t: self.network(torch.cat([x_vp, cond.to(x_vp.dtype)], dim=1), t),
                                 self.schedule, parametrization="epsilon", clip=self.clip)


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
