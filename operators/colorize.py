r"""Colorization: y = w^T x per pixel, the grey image (B, 1, H, W) of an RGB image.

``weights="mean"`` (default) is the plain mean w = (1/3, 1/3, 1/3), the colorization
operator of DDRM (Kawar et al. 2022) and DDNM (Wang et al. 2023);
``weights="bt601"`` is the ITU-R BT.601 luma w = (0.299, 0.587, 0.114) (PIL's
``convert("L")``).  Per pixel A is the 1 x 3 matrix w^T, so

* A^T y = w y (y copied onto the channels with weights w);
* A^+ = w / |w|^2, since A A^T = |w|^2;
* SVD: U = 1, one singular value |w| per pixel, V the Householder reflection
  I - 2 d d^T / |d|^2, d = e_1 - w / |w|, whose first column is w / |w| (V = I when
  w / |w| = e_1).  V^T x is (B, 3, H, W) flattened channel-major, so its first H * W
  coordinates (channel 0) pair with the singular values; U^T y = y flattened.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from restore.operators.base import NoiseSpec, SVDOperator
from restore.operators.validation import check_choice

#: Channel weights by name.
WEIGHTS = {"mean": (1 / 3, 1 / 3, 1 / 3), "bt601": (0.299, 0.587, 0.114)}


class Colorize(SVDOperator):
    """Colorization: the grey image of an RGB image, by the channel mean or BT.601 luma."""

    name = "colorize"
    example = {"weights": "mean"}

    def __init__(self, weights: str = "mean", *, noise: NoiseSpec = None,
                 shape: Optional[Sequence[int]] = None) -> None:
        super().__init__(noise, shape)
        self.weights = check_choice(self.name, "weights", weights, tuple(WEIGHTS))
        if self.shape is not None:
            self.check_shape(self.shape)
        w = torch.tensor(WEIGHTS[weights], dtype=torch.float64)
        norm = w.norm()
        d = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64) - w / norm
        reflection = torch.eye(3, dtype=torch.float64)
        if d.norm() > 0:
            reflection = reflection - 2 * torch.outer(d, d) / d.dot(d)
        self._constants = {"w": w, "pinv": w / norm**2, "v": reflection}
        self._norm = norm.item()

    def check_shape(self, shape: tuple[int, int, int]) -> None:
        self._check_channels(shape[0])

    def _check_channels(self, channels: int) -> None:
        if channels != 3:
            raise ValueError(f"colorize: needs RGB images with 3 channels, got {channels}")

    def _constant(self, key: str, like: Tensor) -> Tensor:
        return self.memo((key, like.device, like.dtype), lambda: self._constants[key].to(like.device, like.dtype))

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        self._check_channels(x.shape[1])
        return torch.einsum("c,bchw->bhw", self._constant("w", x), x)[:, None]

    def _grey(self, y: Tensor) -> None:
        if y.dim() != 4 or y.shape[1] != 1:
            raise ValueError(f"colorize: expected grey measurements (B, 1, H, W), got shape {tuple(y.shape)}")
        self.check_input((y.shape[0], 3, *y.shape[2:]))

    def adjoint(self, y: Tensor) -> Tensor:
        self._grey(y)
        return self._constant("w", y)[None, :, None, None] * y

    def pinv(self, y: Tensor) -> Tensor:
        self._grey(y)
        return self._constant("pinv", y)[None, :, None, None] * y

    def singulars(self) -> Tensor:
        height, width = self.bound_shape()[1:]
        return torch.full((height * width,), self._norm, dtype=torch.float64)

    def vt(self, x: Tensor) -> Tensor:
        self.check_input(x)
        self._check_channels(x.shape[1])
        return torch.einsum("ck,bchw->bkhw", self._constant("v", x), x).flatten(1)

    def v(self, c: Tensor) -> Tensor:
        channels, height, width = self.bound_shape()
        return torch.einsum("ck,bkhw->bchw", self._constant("v", c), c.reshape(c.shape[0], channels, height, width))

    def ut(self, y: Tensor) -> Tensor:
        self._grey(y)
        return y.flatten(1)

    def u(self, c: Tensor) -> Tensor:
        height, width = self.bound_shape()[1:]
        return c.reshape(c.shape[0], 1, height, width)

    def params(self) -> dict[str, Any]:
        return {"weights": self.weights, **super().params()}


OPERATORS = {Colorize.name: Colorize}
