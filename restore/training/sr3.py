"""Training the SR3-style conditional network for x``scale`` super-resolution (``restore train sr3``).

SR3 (Saharia et al. 2021): the network sees the noisy high-resolution image concatenated
with the bicubic-upsampled low-resolution image U(y) (PyTorch bicubic interpolation, the
``"upsample"`` condition).  New runs are *residual* (SRDiff, Li et al. 2022): the diffusion
runs on r = x - U(y) and the network predicts r0 (x0 parametrization), so its zero-initialised
output layer makes an untrained network return U(y) exactly, and training improves on bicubic
instead of starting from noise.  ``residual=False`` trains SR3's own network (the image,
epsilon-predicting), as every run before the option did.  The objective is
:func:`restore.strategies.conditional.conditional_loss` (Ho et al. 2020, Alg. 1 with the
condition), on a discrete VP schedule, with the low-resolution image made by the project's
``sr`` operator (MATLAB-style antialiased bicubic, no noise), so training and restoration
share the forward model.  The compact UNet takes 2 x channels in and gives channels out.

U(y) is bicubic interpolation rather than the operator's pseudo-inverse A^+ y: A^+ y is
consistent (A A^+ y = y), but on the benchmark's noisy x4 task (sigma_y 0.025) it is 0.4 dB
worse than bicubic on CBSD68 (23.15 vs 23.53 dB,
``benchmarks/results/restoration_baselines_cbsd68_cpu.md``): it amplifies the noise along the
operator's small singular values.

Validation: PSNR (dB, 0..255) of the SR restoration (``conditional`` strategy with its
ancestral DDPM steps as SR3 samples, ``val_steps`` levels, x0 clipped to [-1, 1]) next to
bicubic upsampling of the same low-resolution input, on centre crops of a held-out folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from restore.files import atomic_write
from restore.operators.base import Operator
from restore.priors.base import Prior
from restore.priors.native import NativeConfig, native_denoiser, save_native
from restore.priors.unet import CompactUNet, UNetConfig
from restore.training.data import CropSampler
from restore.training.export import describe, model_card, seeded_network
from restore.training.prior import DATA_RANGE, psnr255

SCHEDULE = {"type": "vp", "beta_schedule": "linear", "num_timesteps": 1000}


def sr_operator(scale: int, noise_sigma: float = 0.0):
    """The project's ``sr`` operator at ``scale`` with Gaussian noise ``noise_sigma`` (on [0, 1])."""
    from restore.plugins import default_registry

    return default_registry().get("operator", "sr")(scale=scale, noise={"kind": "gaussian", "sigma": noise_sigma})


def conditional_config(architecture: UNetConfig, residual: bool = True, measurement_sigma: float = 0.0,
                       operator: Optional[Operator] = None) -> NativeConfig:
    """The saved config: residual x0-predicting (SRDiff), or SR3's epsilon network on the image,
    trained on measurements of the ``sr`` ``operator`` (its name, scale and method are recorded;
    None: not recorded) with noise ``measurement_sigma``."""
    if operator is not None:
        operator = {"name": operator.name, "scale": operator.scale, "method": operator.method}
    return NativeConfig(architecture, "x0" if residual else "epsilon", dict(SCHEDULE), DATA_RANGE,
                        condition="upsample", residual=residual, measurement_sigma=measurement_sigma,
                        measurement_operator=operator)


class SR3Task:
    """The SR3 network as a :class:`restore.training.loop.Task`."""

    def __init__(self, architecture: UNetConfig, data: CropSampler, data_name: str, scale: int,
                 validation: Sequence[Tensor] = (), validation_name: str = "", val_steps: int = 50,
                 card: dict | None = None, seed: int = 0, residual: bool = True, noise_sigma: float = 0.0) -> None:
        if architecture.in_channels != 2 * architecture.channels:
            raise ValueError("an SR3 network takes 2 x channels input channels")
        if data.size % scale:
            raise ValueError(f"the crop size {data.size} must be a multiple of the scale {scale}")
        self.network = seeded_network(architecture, seed)
        self.architecture = architecture
        if not noise_sigma >= 0:
            raise ValueError(f"the measurement noise sigma must be >= 0, got {noise_sigma}")
        self.operator = sr_operator(scale, noise_sigma)
        self.config = conditional_config(architecture, residual, noise_sigma, self.operator)
        self.data, self.data_name, self.scale = data, data_name, scale
        self.validation = [x[..., :x.shape[-2] // scale * scale, :x.shape[-1] // scale * scale] for x in validation]
        self.validation_name, self.val_steps = validation_name, val_steps
        self.card = card or {}

    def identity(self) -> dict:
        # "residual" and "noise_sigma" only when set, so checkpoints of earlier runs still resume
        residual = {"residual": True} if self.config.residual else {}
        noise = {"noise_sigma": self.config.measurement_sigma} if self.config.measurement_sigma else {}
        return {"task": "sr3", "scale": self.scale, "architecture": self.architecture.to_dict(),
                "data": self.data_name, "crop": self.data.size, **residual, **noise}

    def batch(self, size: int, generator: torch.Generator) -> Tensor:
        return self.data.sample(size, generator)

    def loss(self, network: Callable, batch: Tensor, generator: torch.Generator) -> Tensor:
        from restore.strategies.conditional import conditional_loss

        return conditional_loss(_training_prior(network, self.config), self.operator, batch, generator=generator)

    def validate(self, network: CompactUNet) -> dict[str, float]:
        from restore.strategies.base import Problem
        from restore.strategies.conditional import Conditional
        from restore.strategies.engine import solve

        if not self.validation:
            return {}
        prior = Prior(native_denoiser(network, self.config), name="sr3 (validation)", data_range=DATA_RANGE)
        ours, bicubic = 0.0, 0.0
        for i, x in enumerate(self.validation):
            x = x.to(next(network.parameters()).device)
            y = self.operator.measure(x, generator=torch.Generator(x.device).manual_seed(i))
            result = solve(Problem(prior, self.operator, y), Conditional(), steps=self.val_steps,
                           shape=tuple(x.shape[1:]), generator=torch.Generator(x.device).manual_seed(i))
            ours += psnr255(result.image, x)
            bicubic += psnr255(F.interpolate(y, size=x.shape[-2:], mode="bicubic", align_corners=False), x)
        n = len(self.validation)
        return {f"sr{self.scale}_psnr": ours / n, "bicubic_psnr": bicubic / n}

    def export(self, out: Path, state: dict[str, Tensor], record: dict) -> None:
        network = CompactUNet(self.architecture)
        network.load_state_dict(state)
        save_native(out, network, self.config)
        residual = self.config.residual
        extra = {"title": f"restore SR3-style x{self.scale} super-resolution network",
                 "summary": "A conditional diffusion network (SR3, Saharia et al. 2021): noisy image and "
                            "bicubic-upsampled low-resolution image U(y) in, "
                            + ("the residual x - U(y) out (SRDiff, Li et al. 2022: it diffuses the residual; "
                               "samples are U(y) plus the sampled residual)" if residual else "noise out")
                            + "; sampled by the `conditional` strategy.",
                 "objective": ("x0 loss on the residual" if residual else "epsilon loss")
                              + " (Ho et al. 2020) with the condition concatenated, VP linear 1000",
                 "measurement": f"y = bicubic x{self.scale} downsampling of x"
                                + (f" + Gaussian noise, sigma {self.config.measurement_sigma:g} on [0, 1] "
                                   "(config.json: measurement_sigma; the `conditional` strategy refuses other levels)"
                                   if self.config.measurement_sigma else ", noiseless"),
                 "validation_title": f"SR x{self.scale} PSNR, dB on 0..255, DDPM {self.val_steps} steps vs bicubic",
                 **self.card}
        text = model_card(describe(self.architecture), network, self.data_name, self.validation_name, record, extra)
        atomic_write(Path(out) / "MODEL_CARD.md", lambda tmp: tmp.write_text(text))


def _training_prior(network: Callable, config: NativeConfig) -> Prior:
    """The conditional prior around ``network`` as trained: crops are multiples of the network's
    size multiple, so no padding wrapper (DDP modules are used as they are)."""
    return Prior(config.conditional_view(network), name="sr3 (training)", data_range=DATA_RANGE)
