"""EDM training of the compact UNet as an unconditional image prior (``restore train prior``).

Karras et al. 2022 ("Elucidating the design space...", Sec. 5 and Table 1):

    ln sigma ~ N(P_mean, P_std^2),  P_mean = -1.2, P_std = 1.2
    n ~ N(0, sigma^2 I),  loss = lambda(sigma) || D(x + n, sigma) - x ||^2,
    lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2,  sigma_d = 0.5,

with D the preconditioned network of :class:`restore.diffusion.denoiser.EDMDenoiser`
(the same object the exported prior uses, so training and sampling cannot disagree).
Images are mapped to [-1, 1].  Validation is the Tweedie denoising PSNR of D: for
noise sigma on the 0..255 scale, y = x + (sigma / 255) n on [0, 1] (not clipped), the
estimate D(y) clipped to [0, 1], PSNR on 0..255.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from restore.diffusion.denoiser import EDMDenoiser
from restore.diffusion.schedules import VEContinuous
from restore.files import atomic_write
from restore.priors.native import WEIGHTS, NativeConfig, load_native, save_native
from restore.priors.sizing import PaddedNetwork
from restore.priors.unet import CompactUNet, UNetConfig, deepen, deeper_or_same
from restore.training.data import AUGMENTATION, CropSampler
from restore.training.export import describe, model_card, seeded_network

DATA_RANGE = (-1.0, 1.0)
SCHEDULE = {"type": "ve", "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}
VALIDATION_SIGMAS = (15.0, 25.0, 50.0)


@dataclass(frozen=True)
class EDMLoss:
    """The EDM loss over log-normal noise levels (module docstring)."""

    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 0.5

    def __call__(self, network: Callable, x: Tensor, generator: torch.Generator) -> Tensor:
        b = x.shape[0]
        ln_sigma = self.p_mean + self.p_std * torch.randn(b, generator=generator, device=generator.device)
        sigma = ln_sigma.exp().to(x.device)
        noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)
        s = sigma.reshape(-1, 1, 1, 1)
        denoised = edm_denoiser(network, self.sigma_data)(x + s * noise, sigma)
        weight = (s**2 + self.sigma_data**2) / (s * self.sigma_data) ** 2
        return (weight * (denoised.float() - x) ** 2).mean()


def edm_denoiser(network: Callable, sigma_data: float) -> EDMDenoiser:
    return EDMDenoiser(network, VEContinuous(SCHEDULE["sigma_min"], SCHEDULE["sigma_max"], SCHEDULE["rho"]),
                       sigma_data=sigma_data)


def to_prior(x01: Tensor) -> Tensor:
    lo, hi = DATA_RANGE
    return x01 * (hi - lo) + lo


def to_image(xp: Tensor) -> Tensor:
    lo, hi = DATA_RANGE
    return (xp - lo) / (hi - lo)


def psnr255(estimate01: Tensor, truth01: Tensor) -> float:
    mse = ((estimate01.clamp(0, 1) - truth01) * 255.0).pow(2).mean().item()
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


def tweedie_psnr(denoiser: Callable[[Tensor, Tensor], Tensor], images: Sequence[Tensor], sigma255: float,
                 seed: int = 0) -> float:
    """Mean PSNR (dB, 0..255) of D(x + sigma n) over ``images`` ((1, C, H, W) in [0, 1]); the
    noise is seeded per image, so every call sees the same noisy images."""
    scale = (DATA_RANGE[1] - DATA_RANGE[0])
    total = 0.0
    for i, x in enumerate(images):
        gen = torch.Generator().manual_seed(seed * 7919 + i)
        noisy = x + (sigma255 / 255.0) * torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        sigma = torch.tensor([scale * sigma255 / 255.0], device=x.device)
        estimate = to_image(denoiser(to_prior(noisy), sigma))
        total += psnr255(estimate, x)
    return total / len(images)


@dataclass(frozen=True)
class InitialWeights:
    """Trained weights a run starts from instead of seeded ones (fine-tuning, ``--init``):
    the prior ``source`` named, its weights ``state``, the sha256 of its weights file and its
    ``architecture`` (the run's, or one with fewer residual blocks per level: :func:`deepen`)."""

    source: str
    state: dict[str, Tensor]
    sha256: str
    architecture: UNetConfig

    def identity(self) -> dict:
        return {"source": self.source, "sha256": self.sha256}


def init_folder(spec: str) -> Path:
    """The native folder of ``spec``: an embedded prior's name (``default``) or ``unet:DIR``."""
    from restore.priors.plugin import EMBEDDED, embedded_dir
    from restore.priors.spec import parse_spec

    parsed = parse_spec(spec)
    if parsed.scheme in EMBEDDED and not parsed.body:
        return embedded_dir(parsed.scheme)
    if parsed.scheme == "unet":
        return Path(parsed.require_body("DIR"))
    raise ValueError(f"--init {spec!r}: training starts only from the compact UNet it trains, an embedded "
                     f"prior ({', '.join(EMBEDDED)}) or unet:DIR")


def initial_weights(spec: str, architecture: UNetConfig, loss: EDMLoss = EDMLoss()) -> InitialWeights:
    """The weights of the prior ``spec`` (:func:`init_folder`), checked to be what :class:`PriorTask`
    trains: an unconditional network of ``architecture``, or of ``architecture`` with fewer residual
    blocks per level (the run deepens it), with the EDM parametrization, schedule, data range and
    sigma_data of ``loss``."""
    folder = init_folder(spec)
    network, config = load_native(folder)
    if config.condition is not None:
        raise ValueError(f"--init {spec}: a conditional network ({config.condition}); `restore train prior` "
                         "trains unconditional priors")
    trained = (config.parametrization, dict(config.schedule), config.data_range, config.sigma_data)
    here = ("edm", SCHEDULE, DATA_RANGE, loss.sigma_data)
    if trained != here:
        raise ValueError(f"--init {spec}: trained as (parametrization, schedule, data range, sigma_data) {trained}, "
                         f"this command trains {here}")
    a = config.architecture
    if not deeper_or_same(architecture, a):
        raise ValueError(f"--init {spec} is a {describe(a)}, the options ask for a {describe(architecture)}: pass "
                         f"its architecture, --channels {a.channels} --base-channels {a.base_channels} --channel-mult "
                         f"{','.join(map(str, a.channel_mult))} --num-res-blocks {a.num_res_blocks} (or more "
                         "residual blocks, to deepen it)")
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    return InitialWeights(spec, {k: v.detach().clone() for k, v in network.state_dict().items()}, digest, a)


class PriorTask:
    """The EDM prior as a :class:`restore.training.loop.Task`; from ``init``'s weights when given
    (fine-tuning; an ``init`` with fewer residual blocks per level is deepened, its added blocks
    seeded by ``seed``: :func:`restore.priors.unet.deepen`), else from weights seeded by ``seed``."""

    def __init__(self, architecture: UNetConfig, data: CropSampler, data_name: str,
                 validation: Sequence[Tensor] = (), validation_name: str = "", loss: EDMLoss = EDMLoss(),
                 card: Optional[dict] = None, seed: int = 0, init: Optional[InitialWeights] = None) -> None:
        if architecture.channels != data.channels:
            raise ValueError(f"architecture has {architecture.channels} channels, the data {data.channels}")
        self.network = seeded_network(architecture, seed)
        if init is not None and init.architecture == architecture:
            self.network.load_state_dict(init.state)
        elif init is not None:
            trained = CompactUNet(init.architecture)
            trained.load_state_dict(init.state)
            deepen(self.network, trained)
        self.init = init
        self.architecture = architecture
        self.data = data
        self.data_name = data_name
        self.validation = list(validation)
        self.validation_name = validation_name
        self.loss_fn = loss
        self.card = card or {}

    def identity(self) -> dict:
        identity = {"task": "prior", "architecture": self.architecture.to_dict(), "data": self.data_name,
                    "crop": self.data.size, "loss": asdict(self.loss_fn)}
        return {**identity, "init": self.init.identity()} if self.init is not None else identity

    def batch(self, size: int, generator: torch.Generator) -> Tensor:
        return to_prior(self.data.sample(size, generator))

    def loss(self, network: Callable, batch: Tensor, generator: torch.Generator) -> Tensor:
        return self.loss_fn(network, batch, generator)

    def validate(self, network) -> dict[str, float]:
        if not self.validation:
            return {}
        denoiser = edm_denoiser(PaddedNetwork(network, network.multiple), self.loss_fn.sigma_data)
        device = next(network.parameters()).device
        images = [x.to(device) for x in self.validation]
        return {f"psnr{int(s)}": tweedie_psnr(denoiser, images, s) for s in VALIDATION_SIGMAS}

    def export(self, out: Path, state: dict[str, Tensor], record: dict) -> None:
        network = CompactUNet(self.architecture)
        network.load_state_dict(state)
        config = NativeConfig(self.architecture, "edm", dict(SCHEDULE), DATA_RANGE, self.loss_fn.sigma_data,
                              symmetry=AUGMENTATION)
        save_native(out, network, config)
        card = self.card if self.init is None else {
            **self.card, "init": f"`{self.init.source}` ({WEIGHTS} sha256 {self.init.sha256[:16]}...): "
                                 + ("this run fine-tunes it" if self.init.architecture == self.architecture else
                                    f"this run deepens it from {self.init.architecture.num_res_blocks} to "
                                    f"{self.architecture.num_res_blocks} residual blocks a level (the added blocks "
                                    "start as identities: the same function) and trains it")
                                 + "; its own training is in its model card"}
        text = model_card(describe(self.architecture), network, self.data_name, self.validation_name, record, card)
        atomic_write(Path(out) / "MODEL_CARD.md", lambda tmp: tmp.write_text(text))
