"""Latent priors (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models"): the denoiser works on latents z of an autoencoder, operators on
the decoded pixels.

    encode(x) = s (E(x) - b),    decode(z) = G(z / s + b)

with E, G the autoencoder's encoder and decoder, s its scaling factor (Sec. 4.3.2 and
Appendix D.1 of the paper: latents rescaled to about unit variance) and b an optional
shift.  Pixels are in the prior's range (``data_range``, [-1, 1] for the autoencoders
of LDM and diffusers).  ``decode`` is differentiable, so a guidance gradient taken on
pixels flows back to z (DPS in latent space, Rout et al. 2023 "PSLD", Song et al. 2024
"ReSample").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import Tensor

from restore.priors.base import Prior


@dataclass
class LatentPrior(Prior):
    """A :class:`Prior` whose ``shape`` is the latent shape (C_z, h, w).

    ``encoder`` / ``decoder`` implement encode / decode above (scaling included);
    ``factor``: pixels per latent pixel along each axis; ``pixel_channels``: image channels.
    """

    encoder: Optional[Callable[[Tensor], Tensor]] = None
    decoder: Optional[Callable[[Tensor], Tensor]] = None
    factor: int = 1
    pixel_channels: int = 3

    latent = True

    def __post_init__(self) -> None:
        if self.encoder is None or self.decoder is None:
            raise ValueError("a LatentPrior needs both an encoder and a decoder")

    @property
    def pixel_shape(self) -> Optional[tuple[int, int, int]]:
        """Shape of one decoded sample at the latent size ``shape``."""
        if self.shape is None:
            return None
        return (self.pixel_channels, self.shape[1] * self.factor, self.shape[2] * self.factor)

    def encode(self, pixels: Tensor) -> Tensor:
        h, w = pixels.shape[-2:]
        if pixels.shape[-3] != self.pixel_channels or h % self.factor or w % self.factor:
            raise ValueError(f"latent prior {self.name!r} encodes {self.pixel_channels}-channel images with height "
                             f"and width divisible by {self.factor}; got shape {tuple(pixels.shape)}")
        return self.encoder(pixels)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)
