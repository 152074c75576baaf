"""An example third-party plugin: a vignetting operator, registered through restore's hooks.

Install with ``pip install plugins/restore-vignette``; ``restore list`` then shows
``vignette [vignette]`` and ``restore check-operator vignette`` checks its contract.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from restore import LinearOperator, hookimpl


class Vignette(LinearOperator):
    """Radial fall-off y = w * x with w(r) = 1 - strength * r^2 / 2, r the distance from the
    centre with r^2 = 2 at the corners (coordinates on [-1, 1]).

    Diagonal, so it is its own adjoint, and its pseudo-inverse divides by w > 0."""

    name = "vignette"
    example = {"strength": 0.5}

    def __init__(self, strength: float = 0.5, noise: Any = None, shape: Optional[Sequence[int]] = None) -> None:
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength < 1:
            raise ValueError(f"vignette: strength must be a number in [0, 1), got {strength!r}")
        super().__init__(noise, shape)
        self.strength = float(strength)

    def _weights(self, x: Tensor) -> Tensor:
        self.check_input(x)
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

    def params(self) -> dict[str, Any]:
        return {"strength": self.strength, **super().params()}


@hookimpl
def restore_operators():
    return {"vignette": Vignette}
