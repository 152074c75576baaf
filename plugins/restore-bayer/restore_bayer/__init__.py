r"""A restore plugin: the Bayer colour-filter array (CFA) of a single-sensor camera.

A Bayer sensor records one colour per pixel, after a 2 x 2 pattern tiled over the image
(Bayer 1976, US patent 3,971,065); ``RGGB`` means R at (0, 0), G at (0, 1) and (1, 0), B
at (1, 1) of every tile.  As an operator on RGB images x (B, 3, H, W):

    y = m * x,   m[c, i, j] = 1 if the pattern puts colour c at pixel (i mod 2, j mod 2), else 0,

the **full-size masked colour planes** (zeros where a colour was not recorded), which is
the form restoration strategies and image files take.  :meth:`Bayer.mosaic` turns it into
the one-channel raw mosaic (B, 1, H, W) a camera stores, :meth:`Bayer.planes` back.

As a matrix A = diag(m) on the 3 H W entries of x:  A^T = A, A^+ = A (m is binary), and
the SVD has U = V = the permutation that lists the recorded entries first (raster order
within each group) with singular values 1 for the H W recorded entries and 0 for the
2 H W others.  Demosaicing is restoring x from y: an inpainting problem on the colour
planes (``is_mask``), so mask strategies (RePaint, DDRM, DDNM) apply.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from restore import SVDOperator, hookimpl
from restore.operators.linalg import LeadingFirst

#: The four Bayer patterns: the colours of a 2 x 2 tile in raster order.
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
CHANNELS = "RGB"


def cfa_mask(pattern: str, height: int, width: int) -> Tensor:
    """The (3, H, W) float64 mask of ``pattern``: 1 where the sensor records that colour."""
    rows = torch.arange(height)[:, None] % 2
    cols = torch.arange(width)[None, :] % 2
    colour = torch.tensor([CHANNELS.index(c) for c in pattern])[2 * rows + cols]
    return (colour[None] == torch.arange(3)[:, None, None]).to(torch.float64)


class Bayer(SVDOperator):
    """Bayer colour-filter array: each pixel keeps one of R, G, B after a 2 x 2 pattern (RGGB, BGGR, GRBG or GBRG).

    The measurement is the masked colour planes (same shape as x); ``mosaic`` gives the raw
    one-channel image.  RGB input only; any height and width (odd sizes cut the last tile).
    """

    name = "bayer"
    is_mask = True
    task = "inpaint"  # demosaicing is inpainting of the colour planes
    example = {"pattern": "RGGB"}

    def __init__(self, pattern: str = "RGGB", noise: Any = None, shape: Optional[Sequence[int]] = None) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"bayer: pattern must be one of {', '.join(PATTERNS)}; got {pattern!r}")
        super().__init__(noise, shape)
        self.pattern = pattern
        if self.shape is not None:
            self.check_shape(self.shape)

    def check_shape(self, shape: tuple[int, int, int]) -> None:
        if shape[0] != 3:
            raise ValueError(f"bayer: a colour-filter array measures RGB images (3 channels), got {shape[0]}")

    def mask_like(self, x: Tensor) -> Tensor:
        """The (3, H, W) mask on x's device and dtype."""
        self.check_input(x)
        self.check_shape(tuple(x.shape[1:]))
        height, width = x.shape[-2:]
        return self.memo(("mask", height, width, x.device, x.dtype),
                          lambda: cfa_mask(self.pattern, height, width).to(x.device, x.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask_like(x)

    adjoint = forward
    pinv = forward

    def mosaic(self, y: Tensor) -> Tensor:
        """The raw mosaic (B, 1, H, W) of a measurement: at each pixel the one recorded colour."""
        return (y * self.mask_like(y)).sum(1, keepdim=True)

    def planes(self, raw: Tensor) -> Tensor:
        """A raw mosaic (B, 1, H, W) as the measurement (B, 3, H, W); the inverse of :meth:`mosaic`."""
        if raw.dim() != 4 or raw.shape[1] != 1:
            raise ValueError(f"bayer: a raw mosaic is (B, 1, H, W), got {tuple(raw.shape)}")
        full = raw.expand(-1, 3, -1, -1)
        return full * self.mask_like(full)

    # SVD: U = V = recorded entries first.
    def _layout(self) -> LeadingFirst:
        shape = self.bound_shape()
        return self.memo(("layout",), lambda: LeadingFirst(cfa_mask(self.pattern, *shape[1:]) > 0.5))

    def singulars(self) -> Tensor:
        return torch.ones(self._layout().count, dtype=torch.float64)

    def vt(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self._layout().flatten(x)

    def v(self, c: Tensor) -> Tensor:
        return self._layout().unflatten(c)

    ut = vt
    u = v

    def params(self) -> dict[str, Any]:
        return {"pattern": self.pattern, **super().params()}


@hookimpl
def restore_operators():
    return {"bayer": Bayer}
