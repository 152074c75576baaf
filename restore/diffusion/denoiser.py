"""The one view of a prior that samplers and strategies are written against.

A :class:`Denoiser` is D(x, sigma) = E[x0 | x0 + sigma eps = x] in the
variance-exploding scale (Karras et al. 2022, Sec. 2), whatever the network
predicts (epsilon, x0, v, score) and whatever schedule it was trained with.
Networks with learned-range variance (Nichol & Dhariwal 2021, Eq. 15; ADM's
6-channel output) also report the interpolation fraction f = (v + 1) / 2 in
:class:`Prediction`, which the DDPM sampler uses.

A denoiser built on another one (counting its calls, shifting it by classifier
guidance) derives from :class:`DelegatingDenoiser`, which forwards everything but
what the wrapper changes: the noise range, ``vp``, the sampling grid and the start
draw.  (Padding and tiling to any image size wrap the *network*, not the denoiser:
:mod:`restore.priors.sizing`.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from restore.diffusion import parametrization as param
from restore.diffusion.parametrization import PARAMETRIZATIONS
from restore.diffusion.randomness import randn
from restore.diffusion.schedules import VEContinuous, VPDiscrete


@dataclass(frozen=True)
class Prediction:
    """A denoiser's output: the estimate ``x0`` and, for learned-range variance
    models, ``var_frac`` = f in log var = f log beta_t + (1 - f) log beta~_t."""

    x0: Tensor
    var_frac: Optional[Tensor] = None


class Denoiser:
    """D(x, sigma) in the VE view.

    ``vp`` says how the prior's marginal at sigma_max is approximated when
    sampling starts: N(0, (1 + sigma^2) I) for VP-trained networks (x_T ~ N(0, I)
    in their own scale), N(0, sigma^2 I) for VE ones.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    vp: bool = False

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        raise NotImplementedError

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self.predict(x, sigma).x0

    def sampling_sigmas(self, steps: int) -> Tensor:
        """The default descending grid of ``steps`` noise levels, ending in 0."""
        raise NotImplementedError

    def init_noise(self, shape: tuple[int, ...], sigma: float, *, generator: Optional[torch.Generator] = None,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        """A draw from the approximate marginal at noise level ``sigma`` (see ``vp``)."""
        scale = (1 + sigma**2) ** 0.5 if self.vp else sigma
        return scale * randn(shape, generator, device=device, dtype=dtype)

    def evaluations(self) -> dict[str, int]:
        """Batch items evaluated by other networks on the way (a guiding classifier's
        ``"classifier"``), which the engine reports per measured image next to the NFE; none by
        default."""
        return {}


class DelegatingDenoiser(Denoiser):
    """A denoiser defined in terms of ``inner``: every attribute and method it does not
    override (``predict``, ``sigma_min``, ``sigma_max``, ``vp``, ``sampling_sigmas``,
    ``init_noise``, ``evaluations``) is the inner denoiser's."""

    def __init__(self, inner: Denoiser) -> None:
        self.inner = inner

    @property
    def sigma_min(self) -> float:  # type: ignore[override]
        return self.inner.sigma_min

    @property
    def sigma_max(self) -> float:  # type: ignore[override]
        return self.inner.sigma_max

    @property
    def vp(self) -> bool:  # type: ignore[override]
        return self.inner.vp

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        return self.inner.predict(x, sigma)

    def sampling_sigmas(self, steps: int) -> Tensor:
        return self.inner.sampling_sigmas(steps)

    def init_noise(self, shape: tuple[int, ...], sigma: float, *, generator: Optional[torch.Generator] = None,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        return self.inner.init_noise(shape, sigma, generator=generator, device=device, dtype=dtype)

    def evaluations(self) -> dict[str, int]:
        return self.inner.evaluations()


class NetworkDenoiser(Denoiser):
    """What denoisers wrapping a trained network share: the network, the schedule it was
    trained on (which also gives the sampling grids), and optional clipping of x0."""

    def __init__(self, network: Callable[[Tensor, Tensor], Tensor], schedule: Union[VPDiscrete, VEContinuous], *,
                 clip: Optional[tuple[float, float]] = None) -> None:
        self.network = network
        self.schedule = schedule
        self.clip = clip
        self.sigma_min = schedule.sigma_min
        self.sigma_max = schedule.sigma_max

    @staticmethod
    def batch_sigma(sigma: Tensor, x: Tensor) -> Tensor:
        """sigma as a float64 vector of x's batch size."""
        return torch.as_tensor(sigma, device=x.device).to(torch.float64).expand(x.shape[0])

    def clipped(self, x0: Tensor) -> Tensor:
        return x0 if self.clip is None else x0.clamp(*self.clip)

    def sampling_sigmas(self, steps: int) -> Tensor:
        return self.schedule.sampling_sigmas(steps)


class VPNetworkDenoiser(NetworkDenoiser):
    """A network trained on a discrete VP schedule, seen as a VE denoiser.

    ``network(x_vp, t)`` receives x_vp = x / sqrt(1 + sigma^2) and the (fractional)
    timestep of sigma; its output is read as ``parametrization``.  With
    ``learned_sigma`` the output has twice the channels: the prediction, then
    v in [-1, 1] for the learned-range variance.  ``clip`` bounds x0 (ADM samples
    with x0 clipped to [-1, 1]).
    """

    vp = True

    def __init__(self, network: Callable[[Tensor, Tensor], Tensor], schedule: VPDiscrete, *,
                 parametrization: str = "epsilon", learned_sigma: bool = False,
                 clip: Optional[tuple[float, float]] = None) -> None:
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"unknown parametrization {parametrization!r}; known: {', '.join(PARAMETRIZATIONS)}")
        super().__init__(network, schedule, clip=clip)
        self.kind = parametrization
        self.learned_sigma = learned_sigma

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        sigma = self.batch_sigma(sigma, x)
        t = self.schedule.sigma_to_t(sigma)
        s = param.broadcast_sigma(sigma, x)
        # timesteps stay at least float32: bf16 cannot even hold 900 exactly
        out = self.network(x * (1 + s**2).rsqrt(), t.to(torch.promote_types(x.dtype, torch.float32)))
        var_frac = None
        if self.learned_sigma:
            out, v = out.chunk(2, dim=1)
            var_frac = (v + 1) / 2
        x0 = param.to_x0(self.kind, out, x, sigma)
        return Prediction(self.clipped(x0), var_frac)


class EDMDenoiser(NetworkDenoiser):
    """A network F trained with the preconditioning of Karras et al. 2022 (Table 1, "EDM"):

        D(x, sigma) = c_skip x + c_out F(c_in x, c_noise),
        c_skip = sigma_d^2 / (sigma^2 + sigma_d^2),  c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2),
        c_in = 1 / sqrt(sigma^2 + sigma_d^2),         c_noise = ln(sigma) / 4,

    sigma_d = ``sigma_data``.  Sampling grids come from the VE ``schedule``.
    """

    vp = False

    def __init__(self, network: Callable[[Tensor, Tensor], Tensor], schedule: VEContinuous, *,
                 sigma_data: float = 0.5, clip: Optional[tuple[float, float]] = None) -> None:
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        super().__init__(network, schedule, clip=clip)
        self.sigma_data = sigma_data

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        sigma = self.batch_sigma(sigma, x)
        s, sd = param.broadcast_sigma(sigma, x), self.sigma_data
        norm = (s**2 + sd**2).rsqrt()
        c_noise = sigma.clamp_min(torch.finfo(torch.float64).tiny).log() / 4
        out = self.network(norm * x, c_noise.to(torch.promote_types(x.dtype, torch.float32)))
        x0 = sd**2 * norm**2 * x + s * sd * norm * out
        return Prediction(self.clipped(x0))
