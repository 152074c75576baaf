r"""Inpainting: y = m * x, the image with its unknown pixels set to zero.

The measurement is the **full-size masked image** (same shape as x, zeros where
m = 0), which is what files and the CLI hold.  As a matrix A = diag(m) on the
C * H * W entries of x (m broadcast over channels when it has one channel), so

* A^T = A (symmetric), and A^+ = A (m is binary, so diag(m)^+ = diag(m));
* SVD: U = V = the permutation that lists the known entries first (raster order
  within each group), singular values = ones for the known entries; the remaining
  coordinates of V^T x and U^T y pair with zero singular values (DDRM, Kawar et al.
  2022, App. "Inpainting", uses the same structure with y the vector of known pixels).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from restore.operators.base import NoiseSpec, SVDOperator
from restore.operators.linalg import LeadingFirst
from restore.operators.validation import ArraySource, bind_options, check_number
from restore.operators.masks import GENERATORS, load_mask


class Inpaint(SVDOperator):
    """Inpainting with a user mask or a seeded generated one (box, random, strokes, outpaint).

    ``mask`` is a generator name from :data:`restore.operators.masks.GENERATORS`
    (``**options`` go to it, e.g. ``seed``, ``size``, ``ratio``), or a user mask: a
    tensor / array / ``.npy`` file in the engine convention (1 = known) or an image
    file where **white marks the region to fill** (see
    :func:`restore.operators.masks.load_mask`; values are thresholded at 0.5).
    ``invert`` flips the mask.  A generated mask depends on the image size and is made
    for each input size on first use; a user mask fixes H and W, and its channel count
    must be 1 (shared by all channels) or C.
    """

    name = "inpaint"
    is_mask = True
    task = "inpaint"
    example = {"mask": "box"}

    def __init__(
        self,
        mask: Union[str, ArraySource],
        *,
        invert: bool = False,
        noise: NoiseSpec = None,
        shape: Optional[Sequence[int]] = None,
        **options: Any,
    ) -> None:
        super().__init__(noise, shape)
        if not isinstance(invert, bool):
            raise ValueError(f"inpaint: invert must be true or false, got {invert!r}")
        self.invert = invert
        if isinstance(mask, str) and mask in GENERATORS:
            self.generator: Optional[str] = mask
            self.options = bind_options(self.name, "mask", mask, GENERATORS[mask], options)
            self.user_mask: Optional[Tensor] = None
        else:
            if isinstance(mask, str) and not Path(mask).is_file():
                raise ValueError(f"inpaint: mask {mask!r} is neither a generator ({', '.join(GENERATORS)}) nor a file")
            if options:
                raise ValueError(
                    f"inpaint: options {', '.join(sorted(options))} only apply to generated masks "
                    f"(mask = {', '.join(GENERATORS)}), not to a user mask"
                )
            self.generator, self.options = None, {}
            self.user_mask = load_mask(mask, invert=invert)
        if self.shape is not None:
            self.check_shape(self.shape)

    def mask_for(self, height: int, width: int) -> Tensor:
        """The (1 or C, H, W) float64 mask (1 = known) for images of size H x W."""
        if self.user_mask is not None:
            return self.user_mask
        return self.memo(("mask", height, width), lambda: self._generate(height, width))

    def _generate(self, height: int, width: int) -> Tensor:
        known = GENERATORS[self.generator](height, width, **self.options)
        return (known ^ self.invert).to(torch.float64)[None]

    def check_shape(self, shape: tuple[int, int, int]) -> None:
        self._check_mask(self.mask_for(*shape[1:]), shape)

    def _check_mask(self, mask: Tensor, shape: Sequence[int]) -> None:
        channels, height, width = shape
        if tuple(mask.shape[1:]) != (height, width):
            raise ValueError(
                f"inpaint: mask is {mask.shape[1]}x{mask.shape[2]} but the image is {height}x{width}"
            )
        if mask.shape[0] not in (1, channels):
            raise ValueError(
                f"inpaint: mask has {mask.shape[0]} channels; the image has {channels} (a mask needs 1 or {channels})"
            )

    def mask_like(self, x: Tensor) -> Tensor:
        """The mask on x's device and dtype, shaped (1 or C, H, W) to broadcast against x."""
        self.check_input(x)
        height, width = x.shape[-2:]
        mask = self.mask_for(height, width)
        self._check_mask(mask, x.shape[1:])
        return self.memo(("mask_on", height, width, x.device, x.dtype), lambda: mask.to(x.device, x.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask_like(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self.mask_like(y)

    def pinv(self, y: Tensor) -> Tensor:
        return y * self.mask_like(y)

    def prox_l2(self, z: Tensor, y: Tensor, rho: float) -> Tensor:
        """argmin_x ||m x - y||^2 + rho ||x - z||^2 elementwise (m binary, so m^2 = m):
        (y + rho z) / (1 + rho) where m = 1 and z where m = 0; rho = 0 puts y in the known
        pixels (:meth:`LinearOperator.prox_l2`)."""
        rho = check_number(self.name, "rho", rho, low=0.0)
        known = self.mask_like(z).expand_as(z) > 0.5
        return torch.where(known, (y.to(z) + rho * z) / (1 + rho), z)

    # SVD: U = V = known entries first.
    def _layout(self) -> LeadingFirst:
        shape = self.bound_shape()
        return self.memo(("layout",), lambda: LeadingFirst(self.mask_for(*shape[1:]).expand(shape) > 0.5))

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
        if self.generator is None:
            return super().params()
        return {"mask": self.generator, "invert": self.invert, **self.options, **super().params()}

    def tensors(self) -> dict[str, Tensor]:
        return {} if self.user_mask is None else {"mask": self.user_mask}


OPERATORS = {Inpaint.name: Inpaint}
