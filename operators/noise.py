"""Noise models n in y = A(x) + n, and the likelihood facts strategies read from them.

All noise levels are stated on the [0, 1] image range.  Papers that work on
[-1, 1] (DPS, DDRM, DDNM, DiffPIR) quote sigma_[-1,1] = 2 * sigma_[0,1]; e.g.
DPS's sigma_y = 0.05 on [-1, 1] is ``GaussianNoise(0.025)`` here.

Strategies never name a concrete noise model.  They ask the model for

* :attr:`NoiseModel.proxy_sigma`: the standard deviation of the Gaussian that stands
  in for it (exact for white Gaussian noise), for strategies whose update is derived
  for Gaussian noise (DDRM, DDNM+, PiGDM, DiffPIR, DAPS);
* :attr:`NoiseModel.is_gaussian`: whether that proxy is exact;
* :meth:`NoiseModel.residual_weights`: the weights w of the Gaussian approximation
  of the log-likelihood, -log p(y | A x) ~ ||w (y - A x)||^2 / 2 + const up to one
  constant factor, which DPS takes its residual norm in (Chung et al. 2023, Alg. 2).

A noise model from a plugin implements these three; one that does not state its
Gaussian proxy raises a clear error in the strategies that need it, instead of
passing for noiseless.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import Tensor


class NoiseModel:
    """A measurement noise distribution around the clean measurement A(x)."""

    kind: str = "noise"

    def sample(self, clean: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def proxy_sigma(self) -> float:
        """Standard deviation (on [0, 1]) of the Gaussian noise that approximates this model."""
        raise NotImplementedError(f"noise model {type(self).__name__} does not state its Gaussian proxy "
                                  "(proxy_sigma), which this strategy needs")

    @property
    def is_gaussian(self) -> bool:
        """Whether the noise is exactly white Gaussian with standard deviation :attr:`proxy_sigma`."""
        return False

    @property
    def noiseless(self) -> bool:
        """Whether the measurement carries no noise at all."""
        return self.proxy_sigma == 0

    def residual_weights(self, y: Tensor) -> Union[Tensor, float]:
        """Weights w (a number or a tensor shaped like ``y``) with -log p(y | A x) ~
        c ||w (y - A x)||^2 / 2 for some constant c: 1 for white noise."""
        return 1.0

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

    @property
    def proxy_sigma(self) -> float:
        return float(self.sigma)

    @property
    def is_gaussian(self) -> bool:
        return True

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
    def proxy_sigma(self) -> float:
        """The standard deviation at intensity 1, rate^(-1/2)."""
        return float(self.rate) ** -0.5

    def residual_weights(self, y: Tensor) -> Tensor:
        """1 / sqrt(2 y): the Gaussian approximation of shot noise, Lambda_jj = 1 / (2 y_j)
        (Chung et al. 2023, Alg. 2), with y floored at one photon (1 / rate) so that dark
        pixels do not divide by zero."""
        return (2 * y.clamp_min(1.0 / self.rate)).rsqrt()

    def sample(self, clean: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        lam = (clean.clamp_min(0) * self.rate).to(torch.float64 if clean.dtype == torch.float64 else torch.float32)
        return (torch.poisson(lam, generator=generator) / self.rate).to(clean.dtype)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "rate": self.rate}
