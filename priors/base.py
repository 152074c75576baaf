"""What a prior is to the engine: a denoiser plus the facts about the space it lives in.

A :class:`Prior` pairs a :class:`restore.diffusion.denoiser.Denoiser` with

* ``shape``: the shape of one sample in prior space, or None for fully
  convolutional priors that run at any image size;
* ``data_range``: the prior-space values of image intensities 0 and 1
  (ADM models work on [-1, 1]); images cross the API boundary in [0, 1];
* ``symmetry``: the group of image maps the prior's distribution is invariant under, as
  far as its training made it so (``none``, ``hflip``, ``dihedral``: see
  :mod:`restore.diffusion.symmetry`); ``none`` unless the format records it;
* for latent priors, ``encode`` / ``decode`` between pixels (in prior range) and
  the latent space the denoiser works in; pixel priors are their own latent.
  Operators always act on decoded pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from torch import Tensor

from restore.diffusion.denoiser import Denoiser


@dataclass
class Prior:
    denoiser: Denoiser
    name: str
    shape: Optional[tuple[int, ...]] = None
    data_range: tuple[float, float] = (-1.0, 1.0)
    info: dict[str, Any] = field(default_factory=dict)
    symmetry: str = "none"

    latent = False

    def to_prior(self, image: Tensor) -> Tensor:
        """Image intensities in [0, 1] to prior-space values."""
        lo, hi = self.data_range
        return lo + (hi - lo) * image

    def to_image(self, x: Tensor) -> Tensor:
        """Prior-space values to image intensities (not clipped)."""
        lo, hi = self.data_range
        return (x - lo) / (hi - lo)

    def encode(self, pixels: Tensor) -> Tensor:
        """Pixels (prior range) to the space the denoiser works in."""
        return pixels

    def decode(self, z: Tensor) -> Tensor:
        """The denoiser's space back to pixels (prior range); differentiable."""
        return z
