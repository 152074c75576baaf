"""Noise models n in y = A(x) + n.

All noise levels are stated on the [0, 1] image range.  Papers that work on
[-1, 1] (DPS, DDRM, DDNM, DiffPIR) quote sigma_[-1,1] = 2 * sigma_[0,1]; e.g.
DPS's sigma_y = 0.05 on [-1, 1] is ``GaussianNoise(0.025)`` here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor


class NoiseModel:
    """A measurement noise distribution around the clean measurement A(x)."""

    kind: str = "noise"

    def sample(self, clean: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def from_json(data: Optional[dict[str, Any]]) -> "NoiseModel":
        if not data:
            return GaussianNoise(0.0)
        data = dict(data)
        kind = data.pop("kind")
        models = {"gaussian": GaussianNoise, "poisson": PoissonNoise}
        if kind not in models:
            raise ValueError(f"noise: unknown kind {kind!r}; known: {', '.join(models)}")
        return models[kind](**data)


@dataclass(frozen=True)
class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise n ~ N(0, sigma^2 I), sigma on the [0, 1] range."""

    sigma: float = 0.0
    kind = "gaussian"

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ValueError(f"noise sigma must be >= 0, got {self.sigma}")

    def sample(self, clean: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        if self.sigma == 0:
            return clean
        n = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        return clean + self.sigma * n

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "sigma": self.sigma}


@dataclass(frozen=True)
class PoissonNoise(NoiseModel):
    """Shot noise y = Poisson(rate * A(x)) / rate (photon count ``rate`` at intensity 1).

    The variance at intensity a is a / rate; larger ``rate`` means less noise.
    """

    rate: float = 255.0
    kind = "poisson"

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"noise rate must be > 0, got {self.rate}")

    @property
    def sigma(self) -> float:
        """Standard deviation at intensity 1 (for strategies that need a Gaussian proxy)."""
        return float(self.rate) ** -0.5

    def sample(self, clean: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        lam = (clean.clamp_min(0) * self.rate).to(torch.float64 if clean.dtype == torch.float64 else torch.float32)
        return (torch.poisson(lam, generator=generator) / self.rate).to(clean.dtype)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "rate": self.rate}
