"""Built-in prior formats, registered through ``restore_prior_formats`` like any plugin.

Schemes (syntax in :mod:`restore.priors.spec`): ``default``, ``unet``, ``adm``, ``diffusers``,
defined here, and those of the ``PRIOR_FORMATS`` mappings of :data:`MODULES` (the analytic
``gmm`` / ``gaussian``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import torch

from restore.diffusion.denoiser import VPNetworkDenoiser
from restore.diffusion.schedules import VPDiscrete
from restore.hookspecs import hookimpl
from restore.plugins import gather
from restore.priors.base import Prior
from restore.priors.native import native_prior
from restore.priors.sizing import TiledNetwork
from restore.priors.spec import conditioned, parse_spec

#: Modules of this package with a ``PRIOR_FORMATS`` mapping (scheme -> loader).
MODULES = ("analytic",)

#: The embedded priors shipped inside the package: spec name (and folder under priors/weights/,
#: each a native ``unet:DIR`` folder with its MODEL_CARD.md) -> what it is, as ``restore list`` says.
EMBEDDED = {
    "default": "the natural-image prior shipped in the package (colour, any size; see its MODEL_CARD.md).",
    "default-sr3x4": "the SR3-style x4 super-resolution network shipped in the package, for bicubic x4 "
                     "measurements with Gaussian noise sigma 0.025 (strategy conditional; see its MODEL_CARD.md).",
}
WEIGHTS_DIR = Path(__file__).parent / "weights"


def embedded_dir(name: str) -> Path:
    """The folder of the embedded prior ``name`` (a native ``unet:DIR`` folder with its MODEL_CARD.md)."""
    folder = WEIGHTS_DIR / name
    if name not in EMBEDDED or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"the embedded prior {name!r} is missing from this installation ({folder}); "
                                "reinstall the package, or name a prior: unet:DIR, adm:PATH[:PRESET], diffusers:DIR")
    return folder


def load_embedded(spec: str, *, device=None, dtype: Optional[torch.dtype] = None) -> Prior:
    """An embedded prior (:data:`EMBEDDED`) by name, with its model card in ``info``."""
    parsed = parse_spec(spec)
    parsed.check_options(())
    if parsed.body:
        raise ValueError(f"prior spec {spec!r}: {parsed.scheme!r} takes no argument")
    folder = embedded_dir(parsed.scheme)
    prior = native_prior(folder, device=device, dtype=dtype, name=parsed.scheme)
    prior.info["model_card"] = str(folder / "MODEL_CARD.md")
    return prior


def embedded_loader(name: str) -> Callable[..., Prior]:
    """The loader of the embedded prior ``name``, its docstring the line ``restore list`` shows."""
    def load(spec: str, *, device=None, dtype: Optional[torch.dtype] = None) -> Prior:
        return load_embedded(spec, device=device, dtype=dtype)

    load.__doc__ = f"{name}: {EMBEDDED[name]}"
    return load


def load_unet(spec: str, *, device=None, dtype: Optional[torch.dtype] = None) -> Prior:
    """``unet:DIR``: the project's compact UNet (model.safetensors + config.json)."""
    parsed = parse_spec(spec)
    parsed.check_options(())
    return native_prior(parsed.require_body("DIR"), device=device, dtype=dtype, name=spec)


def load_adm_prior(spec: str, *, device=None, dtype: Optional[torch.dtype] = None) -> Prior:
    """``adm:PATH[:PRESET][?class=N&overlap=N]``: a guided-diffusion UNet checkpoint.

    PRESET: a preset name (``restore.priors.adm.PRESETS``) or a ``create_model`` config
    ``.json``, which may also give guided-diffusion's ``noise_schedule`` / ``diffusion_steps``;
    otherwise the schedule is linear with 1000 steps (every preset: DPS FFHQ, OpenAI
    ImageNet 256, RePaint).  Denoiser: epsilon prediction, learned-range variance when
    ``learn_sigma``, x0 clipped to [-1, 1]; images in [-1, 1].  Sizes other than the
    trained ``image_size`` go through :class:`restore.priors.sizing.TiledNetwork`.
    """
    from restore.priors.adm import load_adm

    parsed = parse_spec(spec)
    parsed.check_options(("class", "overlap"))
    path, _, preset_text = parsed.require_body("PATH[:PRESET]").partition(":")
    preset: Optional[str | dict] = preset_text or None
    schedule = {"noise_schedule": "linear", "diffusion_steps": 1000}
    if preset_text.endswith(".json"):
        config_path = Path(preset_text)
        if not config_path.is_file():
            raise FileNotFoundError(f"ADM config not found: {config_path}")
        preset = json.loads(config_path.read_text())
        schedule.update({k: preset[k] for k in schedule if k in preset})
    network = load_adm(path, preset, device=device or "cpu", dtype=dtype or torch.float32)
    config = network.config
    size = int(config["image_size"])
    info = {"format": "adm", "path": path, "preset": preset_text or None, "channels": 3, "size_policy": "tile",
            "config": config, **schedule}
    labelled = conditioned(network, bool(config["class_cond"]), parsed, info)
    overlap = parsed.float_option("overlap")
    sized = TiledNetwork(labelled, (size, size), None if overlap is None else int(overlap))
    denoiser = VPNetworkDenoiser(sized, VPDiscrete.named(schedule["noise_schedule"], int(schedule["diffusion_steps"])),
                                 parametrization="epsilon", learned_sigma=bool(config["learn_sigma"]), clip=(-1.0, 1.0))
    return Prior(denoiser, name=spec, shape=(3, size, size), data_range=(-1.0, 1.0), info=info)


def load_diffusers(spec: str, *, device=None, dtype: Optional[torch.dtype] = None) -> Prior:
    """``diffusers:DIR[?class=N&scaling_factor=X&overlap=N]``: a local diffusers folder (pixel or latent)."""
    from restore.priors.diffusers_format import diffusers_prior

    return diffusers_prior(parse_spec(spec), device=device, dtype=dtype)


@hookimpl
def restore_prior_formats():
    return {**{name: embedded_loader(name) for name in EMBEDDED}, "unet": load_unet, "adm": load_adm_prior,
            "diffusers": load_diffusers,
            **gather("restore.priors", MODULES, "PRIOR_FORMATS")}
