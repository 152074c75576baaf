"""Priors from local diffusers folders (optional: needs ``pip install diffusers``).

Layouts read (never the Hub: the path must exist and is loaded with ``local_files_only``):

* pixel, flat:      DIR/config.json (UNet2DModel) + weights, DIR/scheduler_config.json
* pipeline folders: DIR/unet/, DIR/scheduler/scheduler_config.json, and for a latent
  prior DIR/vqvae/ (VQModel, the CompVis/ldm-celebahq-256 layout) or DIR/vae/
  (AutoencoderKL).  The autoencoder is recognised by ``_class_name`` in its config.json.

Weights: ``.safetensors``, or ``.bin`` which diffusers reads with
``torch.load(weights_only=True)`` (a pickle holding code is refused).

The scheduler config gives the denoiser view (:class:`VPNetworkDenoiser`): betas
(``beta_schedule`` linear: linspace(beta_start, beta_end, T); scaled_linear:
linspace(sqrt(beta_start), sqrt(beta_end), T)^2; squaredcos_cap_v2: the cosine schedule
of Nichol & Dhariwal 2021, Eq. 17, max_beta 0.999; or ``trained_betas``),
``prediction_type`` (epsilon, v_prediction -> v, sample -> x0), ``variance_type``
(learned_range: 2C output channels, the second half v in [-1, 1], Nichol & Dhariwal 2021
Eq. 15; fixed_* variances are a sampler choice and leave the denoiser unchanged), and
``clip_sample`` / ``clip_sample_range`` (x0 clipped, as diffusers' DDPM/DDIM steps do).

Latent scaling (see :mod:`restore.priors.latent`): AutoencoderKL uses its config's
``scaling_factor`` and ``shift_factor``.  VQModel uses 1.0: the CompVis LDM VQ models
(celebahq, ffhq, lsun) were trained without a scale_factor (LatentDiffusion's default 1.0),
while diffusers' VQModel config carries the Stable Diffusion default 0.18215, which
garbles their samples (huggingface/diffusers issue 6725).  ``?scaling_factor=X`` overrides
either.  KL encoding takes the posterior mode.

Image size: a UNet with self-attention (any ``Attn*`` block, or the mid-block attention)
runs only at its ``sample_size`` and is tiled / padded by
:class:`restore.priors.sizing.TiledNetwork`; one without attention is fully convolutional
and padded to its multiple.  Latent priors apply this in latent space.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import VPNetworkDenoiser
from restore.diffusion.schedules import VPDiscrete, cosine_betas
from restore.priors.base import Prior
from restore.priors.latent import LatentPrior
from restore.priors.sizing import PaddedNetwork, TiledNetwork
from restore.priors.spec import PriorSpec, conditioned

#: Beta-schedule schedulers whose config fields mean the same for the trained model.
SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler",
              "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler",
              "HeunDiscreteScheduler", "UniPCMultistepScheduler")
PREDICTION_TYPES = {"epsilon": "epsilon", "v_prediction": "v", "sample": "x0"}
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned_range")
AUTOENCODERS = ("VQModel", "AutoencoderKL")
OPTIONS = ("class", "scaling_factor", "overlap")


def require_diffusers() -> Any:
    try:
        import diffusers
    except ImportError as err:
        raise ImportError("diffusers:DIR priors need the optional package diffusers: "
                          "pip install 'diffusion-restore[diffusers]'") from err
    return diffusers


@dataclass(frozen=True)
class SchedulerView:
    """What a scheduler config says about the trained network."""

    schedule: VPDiscrete
    parametrization: str
    learned_sigma: bool
    clip: Optional[tuple[float, float]]
    variance_type: str


def scheduler_betas(config: dict) -> Tensor:
    """Training betas (float64) of a diffusers scheduler config (diffusers' defaults for absent keys)."""
    steps = int(config.get("num_train_timesteps", 1000))
    if config.get("trained_betas") is not None:
        return torch.tensor(config["trained_betas"], dtype=torch.float64)
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if kind == "linear":
        return torch.linspace(start, end, steps, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    if kind == "squaredcos_cap_v2":
        return cosine_betas(steps)
    raise ValueError(f"beta_schedule {kind!r} is not supported; known: linear, scaled_linear, squaredcos_cap_v2")


def read_scheduler(config: dict, source: str) -> SchedulerView:
    """The denoiser facts of a scheduler config (see the module docstring); ``source`` names the file in errors."""
    name = config.get("_class_name")
    if name not in SCHEDULERS:
        raise ValueError(f"{source}: scheduler {name!r} is not supported; known: {', '.join(SCHEDULERS)}")
    for flag in ("thresholding", "rescale_betas_zero_snr"):
        if config.get(flag):
            raise ValueError(f"{source}: {flag}=true is not supported")
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"{source}: prediction_type {prediction!r} is not supported; "
                         f"known: {', '.join(PREDICTION_TYPES)}")
    variance = config.get("variance_type") or "fixed_small"
    if variance not in VARIANCE_TYPES:
        raise ValueError(f"{source}: variance_type {variance!r} is not supported; known: {', '.join(VARIANCE_TYPES)}")
    clip = None
    if config.get("clip_sample", name in ("DDPMScheduler", "DDIMScheduler")):
        bound = float(config.get("clip_sample_range", 1.0))
        clip = (-bound, bound)
    return SchedulerView(VPDiscrete(scheduler_betas(config)), PREDICTION_TYPES[prediction],
                         variance == "learned_range", clip, variance)


class DiffusersUNet(torch.nn.Module):
    """A UNet2DModel as a network module: (x, t, y=None) -> ``unet(x, t, class_labels=y).sample``,
    computed in the UNet's dtype and returned in ``x``'s (as the ADM models do), so samplers
    may run in float64 on a float32 model.  A module returning a tensor, so the fast path
    (:func:`restore.accel.accelerate`) wraps it rather than the UNet's output object."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: Tensor, t: Tensor, y: Optional[Tensor] = None) -> Tensor:
        dtype = self.unet.dtype
        t = t.to(torch.promote_types(dtype, torch.float32))
        return self.unet(x.to(dtype), t, class_labels=y).sample.to(x.dtype)


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return json.loads(path.read_text())


def _load_model(folder: Path, expected: tuple[str, ...], device, dtype) -> torch.nn.Module:
    class_name = _read_json(folder / "config.json", "diffusers model config").get("_class_name")
    if class_name not in expected:
        raise ValueError(f"{folder / 'config.json'}: _class_name {class_name!r}, expected {' or '.join(expected)}")
    dtype_kwarg = {} if dtype is None else {"torch_dtype": dtype}
    model = getattr(require_diffusers(), class_name).from_pretrained(
        str(folder), local_files_only=True, low_cpu_mem_usage=False, **dtype_kwarg)
    return model.to(device=device).eval().requires_grad_(False)


def _has_attention(config: Any) -> bool:
    blocks = list(config.down_block_types) + list(config.up_block_types)
    return any("Attn" in b for b in blocks) or (config.mid_block_type is not None and config.add_attention)


def _sized(network: Callable[[Tensor, Tensor], Tensor], unet: torch.nn.Module, spec: PriorSpec, info: dict):
    """``network`` with the size policy of the module docstring; returns it and the fixed latent/pixel size or None."""
    config = unet.config
    if not _has_attention(config):
        info["size_policy"] = "pad"
        return PaddedNetwork(network, 2 ** (len(config.down_block_types) - 1)), None
    size = config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    overlap = spec.float_option("overlap")
    info["size_policy"] = "tile"
    return TiledNetwork(network, size, None if overlap is None else int(overlap)), size


def _autoencoder(folder: Path, spec: PriorSpec, device, dtype) -> dict:
    """Encoder / decoder callables with the latent scaling, and the autoencoder's channel facts."""
    ae = _load_model(folder, AUTOENCODERS, device, dtype)
    config = ae.config
    override = spec.float_option("scaling_factor")
    if type(ae).__name__ == "VQModel":
        scale, shift = 1.0 if override is None else override, 0.0
        latent_channels = config.vq_embed_dim or config.latent_channels

        def encode(x: Tensor) -> Tensor:
            return scale * ae.encode(x.to(ae.dtype)).latents.to(x.dtype)

    else:
        scale = config.scaling_factor if override is None else override
        shift = getattr(config, "shift_factor", None) or 0.0
        latent_channels = config.latent_channels

        def encode(x: Tensor) -> Tensor:
            return scale * (ae.encode(x.to(ae.dtype)).latent_dist.mode().to(x.dtype) - shift)

    def decode(z: Tensor) -> Tensor:  # computed in the autoencoder's dtype, returned in z's
        return ae.decode((z / scale + shift).to(ae.dtype)).sample.to(z.dtype)

    return dict(encoder=encode, decoder=decode, factor=2 ** (len(config.block_out_channels) - 1),
                pixel_channels=config.in_channels, latent_channels=latent_channels,
                scaling_factor=scale, shift_factor=shift, autoencoder=type(ae).__name__)


def diffusers_prior(spec: PriorSpec, *, device=None, dtype: Optional[torch.dtype] = None) -> Prior:
    """The prior of ``diffusers:DIR`` (pixel :class:`Prior` or :class:`LatentPrior`)."""
    spec.check_options(OPTIONS)
    directory = Path(spec.require_body("DIR"))
    if not directory.is_dir():
        raise FileNotFoundError(f"diffusers folder not found: {directory}")
    unet_dir = directory / "unet" if (directory / "unet").is_dir() else directory
    scheduler_path = directory / "scheduler" / "scheduler_config.json"
    if not scheduler_path.is_file():
        scheduler_path = directory / "scheduler_config.json"
    view = read_scheduler(_read_json(scheduler_path, "scheduler config (scheduler/scheduler_config.json or "
                                                     "scheduler_config.json)"), str(scheduler_path))
    ae_dir = next((directory / name for name in ("vqvae", "vae") if (directory / name).is_dir()), None)

    unet = _load_model(unet_dir, ("UNet2DModel",), device, dtype)
    if unet.config.time_embedding_type == "fourier":
        raise ValueError(f"{unet_dir}: time_embedding_type 'fourier' (score-SDE VE models) is not supported")
    ae = _autoencoder(ae_dir, spec, device, dtype) if ae_dir is not None else None
    in_channels = unet.config.in_channels
    expected_in = ae["latent_channels"] if ae else in_channels
    expected_out = expected_in * (2 if view.learned_sigma else 1)
    if in_channels != expected_in or unet.config.out_channels != expected_out:
        raise ValueError(f"wrong channel count in {unet_dir}: UNet maps {in_channels} -> {unet.config.out_channels} "
                         f"channels; expected {expected_in} -> {expected_out} (autoencoder latents: "
                         f"{ae['latent_channels'] if ae else 'none'}, variance_type {view.variance_type})")

    info: dict[str, Any] = {"format": "diffusers", "path": str(directory), "parametrization": view.parametrization,
                            "variance_type": view.variance_type,
                            "channels": ae["pixel_channels"] if ae else in_channels}
    is_conditional = unet.config.num_class_embeds is not None or unet.config.class_embed_type is not None
    network = conditioned(DiffusersUNet(unet), is_conditional, spec, info)
    network, size = _sized(network, unet, spec, info)
    denoiser = VPNetworkDenoiser(network, view.schedule, parametrization=view.parametrization,
                                 learned_sigma=view.learned_sigma, clip=view.clip)
    shape = None if size is None else (in_channels, *size)
    if ae is None:
        return Prior(denoiser, name=spec.text, shape=shape, data_range=(-1.0, 1.0), info=info)
    info.update({k: ae[k] for k in ("autoencoder", "scaling_factor", "shift_factor")})
    return LatentPrior(denoiser, name=spec.text, shape=shape, data_range=(-1.0, 1.0), info=info,
                       encoder=ae["encoder"], decoder=ae["decoder"], factor=ae["factor"],
                       pixel_channels=ae["pixel_channels"])
