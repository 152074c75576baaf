"""An example third-party plugin: a vignetting operator, registered through restore's hooks.

Install with ``pip install plugins/restore-vignette``; ``restore list`` then shows
``vignette [vignette]``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from restore.hookspecs import hookimpl
from restore.operators.base import LinearOperator
from restore.operators.noise import NoiseModel


class Vignette(LinearOperator):
    """Radial fall-off y = w * x with w(r) = 1 - strength * r^2, r the distance from the centre
    normalised to 1 at the corners.  Diagonal, so it is its own adjoint."""

    name = "vignette"

    def __init__(self, strength: float = 0.5, noise=None) -> None:
        if not 0 <= strength < 1:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        super().__init__(noise if noise is None or isinstance(noise, NoiseModel) else NoiseModel.from_json(noise))
        self.strength = strength

    def _weights(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)[:, None]
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)[None, :]
        return 1 - self.strength * (ys**2 + xs**2) / 2

    def forward(self, x: Tensor) -> Tensor:
        return x * self._weights(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self._weights(y)

    def pinv(self, y: Tensor) -> Tensor:
        return y / self._weights(y)

    def params(self):
        return {**super().params(), "strength": self.strength}


@hookimpl
def restore_operators():
    return {"vignette": Vignette}
