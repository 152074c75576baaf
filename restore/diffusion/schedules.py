"""Noise schedules, all expressed as noise levels sigma of the variance-exploding view.

A variance-preserving (VP) process x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps is the
variance-exploding (VE) process x_sigma = x0 + sigma eps scaled by sqrt(abar_t), with

    sigma_t = sqrt((1 - abar_t) / abar_t),   abar_t = 1 / (1 + sigma_t^2)

(Karras et al. 2022, "Elucidating the Design Space...", Table 1; Song et al. 2021).
Samplers run on a descending grid of sigmas ending in 0, whatever the schedule.

* :class:`VPDiscrete`: T discrete timesteps with betas (linear of Ho et al. 2020,
  cosine of Nichol & Dhariwal 2021), and timestep respacing with the semantics of
  guided-diffusion's ``space_timesteps`` ("250", "ddim50", "10,10,10").
* :class:`VEContinuous`: sigma in [sigma_min, sigma_max], geometric (Song & Ermon
  2019) or Karras-rho grids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor


def linear_betas(num_timesteps: int = 1000) -> Tensor:
    """Ho et al. 2020: betas linear from 1e-4 to 0.02, scaled by 1000 / T so any T keeps the same ends of abar."""
    scale = 1000.0 / num_timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021, Eq. 17: abar(t) = cos^2(((t/T + s) / (1 + s)) pi/2),
    beta_t = min(1 - abar((t+1)/T) / abar(t/T), max_beta)."""

    def abar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - abar((i + 1) / num_timesteps) / abar(i / num_timesteps), max_beta) for i in range(num_timesteps)]
    return torch.tensor(betas, dtype=torch.float64)


def space_timesteps(num_timesteps: int, spec: Union[str, Sequence[int]]) -> list[int]:
    """The kept timesteps of a respacing spec, ascending.

    ``"ddimN"``: the stride-k grid range(0, T, k) with exactly N entries (DDIM, Song et
    al. 2021).  Otherwise a comma-separated list of counts: the T steps are cut into
    that many equal sections (the first T mod n one longer) and each section is
    sampled evenly, including both of its ends, rounding half to even.
    """
    if isinstance(spec, str) and spec.startswith("ddim"):
        count = int(spec[len("ddim"):])
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == count:
                return list(range(0, num_timesteps, stride))
        raise ValueError(f"respacing {spec!r}: no integer stride gives exactly {count} of {num_timesteps} steps")
    counts = [int(c) for c in spec.split(",")] if isinstance(spec, str) else [int(c) for c in spec]
    base, extra = divmod(num_timesteps, len(counts))
    kept: list[int] = []
    start = 0
    for i, count in enumerate(counts):
        size = base + (1 if i < extra else 0)
        if not 1 <= count <= size:
            raise ValueError(f"respacing {spec!r}: section {i} has {size} steps, cannot take {count}")
        stride = (size - 1) / (count - 1) if count > 1 else 1.0
        kept += [start + round(j * stride) for j in range(count)]
        start += size
    return kept


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, Eq. 5: n levels from sigma_max down to sigma_min, uniform in sigma^(1/rho); then 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)])


def geometric_sigmas(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Song & Ermon 2019: n levels geometric from sigma_max down to sigma_min; then 0."""
    levels = torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64)
    return torch.cat([levels, torch.zeros(1, dtype=torch.float64)])


@dataclass(frozen=True)
class VPDiscrete:
    """A discrete VP schedule given by its betas (float64), timesteps 0..T-1."""

    betas: Tensor

    @classmethod
    def linear(cls, num_timesteps: int = 1000) -> "VPDiscrete":
        return cls(linear_betas(num_timesteps))

    @classmethod
    def cosine(cls, num_timesteps: int = 1000) -> "VPDiscrete":
        return cls(cosine_betas(num_timesteps))

    @classmethod
    def named(cls, name: str, num_timesteps: int = 1000) -> "VPDiscrete":
        makers = {"linear": cls.linear, "cosine": cls.cosine}
        if name not in makers:
            raise ValueError(f"unknown beta schedule {name!r}; known: {', '.join(makers)}")
        return makers[name](num_timesteps)

    @property
    def num_timesteps(self) -> int:
        return self.betas.numel()

    @property
    def alphas_cumprod(self) -> Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)

    @property
    def sigmas(self) -> Tensor:
        """sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..T-1, ascending."""
        abar = self.alphas_cumprod
        return ((1 - abar) / abar).sqrt()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def respace(self, spec: Union[str, Sequence[int]]) -> tuple[list[int], Tensor]:
        """Kept timesteps and the respaced betas 1 - abar_{t_i} / abar_{t_{i-1}} (abar_{t_-1} = 1)."""
        kept = space_timesteps(self.num_timesteps, spec)
        abar = self.alphas_cumprod[kept]
        previous = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
        return kept, 1 - abar / previous

    def sampling_sigmas(self, spec: Union[str, int, Sequence[int]]) -> Tensor:
        """Descending sigmas of the kept timesteps, then 0: the grid samplers run on.

        An int n means ``str(n)`` (n evenly spaced steps)."""
        kept = space_timesteps(self.num_timesteps, str(spec) if isinstance(spec, int) else spec)
        return torch.cat([self.sigmas[kept].flip(0), torch.zeros(1, dtype=torch.float64)])

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """Fractional timestep of a noise level, linear in log sigma between the schedule's
        levels (as k-diffusion does) and clamped to [0, T-1]."""
        log_sigmas = self.sigmas.log().to(sigma.device)
        log_sigma = sigma.to(torch.float64).clamp_min(torch.finfo(torch.float64).tiny).log()
        hi = torch.searchsorted(log_sigmas, log_sigma).clamp(1, self.num_timesteps - 1)
        lo = hi - 1
        frac = (log_sigma - log_sigmas[lo]) / (log_sigmas[hi] - log_sigmas[lo])
        return (lo + frac.clamp(0, 1)).to(torch.float64)


@dataclass(frozen=True)
class VEContinuous:
    """A continuous VE schedule: x_sigma = x0 + sigma eps, sigma in [sigma_min, sigma_max]."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: Optional[float] = 7.0

    def sampling_sigmas(self, steps: int) -> Tensor:
        """Karras-rho grid when ``rho`` is set, geometric otherwise; then 0."""
        if self.rho is None:
            return geometric_sigmas(steps, self.sigma_min, self.sigma_max)
        return karras_sigmas(steps, self.sigma_min, self.sigma_max, self.rho)
