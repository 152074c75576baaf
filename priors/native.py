"""The project's own prior format: a directory with ``model.safetensors`` and ``config.json``.

Only safetensors is read (no pickle, so loading a file never runs code).
``config.json``::

    {"format": "restore-unet", "format_version": 1,
     "architecture": {"channels": 3, "base_channels": 32, "channel_mult": [1, 2, 2],
                      "num_res_blocks": 1, "groups": 8},
     "channels": 3,                       # image channels, = architecture.channels
     "data_range": [-1.0, 1.0],           # prior values of intensities 0 and 1
     "parametrization": "edm",            # or "epsilon" / "x0" / "v" (VP schedules)
     "schedule": {"type": "ve", "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0},
              # or {"type": "vp", "beta_schedule": "linear" | "cosine", "num_timesteps": 1000}
     "sigma_data": 0.5,                   # EDM only
     "learned_sigma": false,
     "condition": "upsample",             # optional: a conditional (SR3 / Palette) network, see below
     "residual": true,                    # optional (default false): it models x - c(y) (SRDiff)
     "measurement_sigma": 0.025,          # optional (default 0): the Gaussian noise std (on [0, 1])
                                          # of the measurements a conditional network was trained on
     "measurement_operator": {"name": "sr", "scale": 4, "method": "bicubic"},
                                          # optional: the operator (registry name and attributes)
                                          # a conditional network was trained for
     "symmetry": "dihedral"}              # optional (default "none"): the augmentation group it was
                                          # trained with (restore.diffusion.symmetry)

Denoiser views (:func:`native_denoiser`):

* ``"edm"`` with a VE schedule: :class:`restore.diffusion.denoiser.EDMDenoiser`, the
  network conditioned on c_noise = ln(sigma) / 4 (Karras et al. 2022, Table 1).  This
  is the recommended choice for new training: continuous sigma, unit-variance inputs
  and targets at every noise level.
* epsilon / x0 / v with a VP schedule: :class:`restore.diffusion.denoiser.VPNetworkDenoiser`,
  the network conditioned on the fractional timestep t.

Either way the network is wrapped in :class:`restore.priors.sizing.PaddedNetwork`, so the
prior runs at any image size (``Prior.shape`` is None).

With ``"condition"`` (``"upsample"`` or ``"pinv"``; VP, epsilon or x0) the network is
conditional: it takes ``in_channels`` = 2 x ``channels`` (the noisy image, then the
condition image c(y)) and the prior's denoiser is a
:class:`restore.diffusion.conditional.ConditionalNetwork`, sampled by the
``conditional`` strategy.  With ``"residual": true`` as well, the diffusion runs on the
residual x - c(y) and samples are c(y) plus the sampled residual (SRDiff, Li et al. 2022;
the view's docstring); a config without the key (every conditional network written
before it existed) models x itself.  ``"measurement_sigma"`` is the noise level of the
measurements y it was trained with (``restore train sr3 --noise-sigma``; absent: noiseless);
the ``conditional`` strategy refuses problems whose noise differs from it (a conditional
network is only trained for its own noise level).  ``"measurement_operator"`` names the
operator it was trained for (``restore train sr3`` writes it; absent: not recorded, as in
networks written before it existed), and the strategy refuses any other.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors.torch import load_file, save_file

from restore.diffusion.conditional import CONDITIONAL_PARAMETRIZATIONS, ConditionalNetwork
from restore.diffusion.denoiser import Denoiser, EDMDenoiser, VPNetworkDenoiser
from restore.diffusion.parametrization import PARAMETRIZATIONS
from restore.diffusion.schedules import VEContinuous, VPDiscrete
from restore.diffusion.symmetry import check_group
from restore.priors.base import Prior
from restore.priors.sizing import PaddedNetwork
from restore.priors.unet import CompactUNet, UNetConfig

FORMAT = "restore-unet"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
VP_PARAMETRIZATIONS = tuple(p for p in PARAMETRIZATIONS if p != "score")
#: schedule type -> (required keys, optional keys)
SCHEDULE_KEYS = {"vp": (("beta_schedule", "num_timesteps"), ()), "ve": (("sigma_min", "sigma_max"), ("rho",))}


@dataclass(frozen=True)
class NativeConfig:
    """Everything in ``config.json`` besides the format tag (see the module docstring)."""

    architecture: UNetConfig = field(default_factory=UNetConfig)
    parametrization: str = "edm"
    schedule: dict = field(default_factory=lambda: {"type": "ve", "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0})
    data_range: tuple[float, float] = (-1.0, 1.0)
    sigma_data: float = 0.5
    condition: Optional[str] = None
    symmetry: str = "none"
    residual: bool = False
    measurement_sigma: float = 0.0
    measurement_operator: Optional[dict] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_range", tuple(float(v) for v in self.data_range))
        check_group(self.symmetry)
        if self.condition is None and self.architecture.in_channels != self.architecture.channels:
            raise ValueError(f"an unconditional network maps {self.architecture.channels} channels to as many; "
                             f"the architecture takes {self.architecture.in_channels} (set 'condition')")
        if not isinstance(self.residual, bool):
            raise ValueError(f"'residual' must be true or false, got {self.residual!r}")
        if self.residual and self.condition is None:
            raise ValueError("'residual' models x - c(y): it needs a conditional network (set 'condition')")
        if not (isinstance(self.measurement_sigma, (int, float)) and self.measurement_sigma >= 0):
            raise ValueError(f"'measurement_sigma' must be a number >= 0, got {self.measurement_sigma!r}")
        if self.measurement_sigma and self.condition is None:
            raise ValueError("'measurement_sigma' is the noise of a conditional network's measurements: "
                             "it needs a conditional network (set 'condition')")
        if self.measurement_operator is not None:
            if not (isinstance(self.measurement_operator, dict)
                    and isinstance(self.measurement_operator.get("name"), str)):
                raise ValueError("'measurement_operator' must be an object with the operator's registry 'name', "
                                 f"got {self.measurement_operator!r}")
            if self.condition is None:
                raise ValueError("'measurement_operator' is the operator a conditional network was trained for: "
                                 "it needs a conditional network (set 'condition')")
        if self.condition is not None:
            if self.parametrization not in CONDITIONAL_PARAMETRIZATIONS or self.schedule.get("type") != "vp":
                raise ValueError(f"a conditional network ('condition') must predict "
                                 f"{' or '.join(CONDITIONAL_PARAMETRIZATIONS)} on a VP schedule")
            if self.architecture.in_channels != 2 * self.architecture.channels:
                raise ValueError(f"a conditional network takes 2 x {self.architecture.channels} input channels, "
                                 f"the architecture has {self.architecture.in_channels}")
        kind = self.schedule.get("type")
        if kind == "ve" and self.parametrization != "edm":
            raise ValueError(f"parametrization {self.parametrization!r} with a VE schedule: VE networks use 'edm'")
        if kind == "vp" and self.parametrization not in VP_PARAMETRIZATIONS:
            raise ValueError(f"parametrization {self.parametrization!r} with a VP schedule; "
                             f"known: {', '.join(VP_PARAMETRIZATIONS)}")
        self.make_schedule()  # validates the schedule fields

    def make_schedule(self) -> Union[VPDiscrete, VEContinuous]:
        kind = self.schedule.get("type")
        if kind not in SCHEDULE_KEYS:
            raise ValueError(f"schedule type must be 'vp' or 've', got {kind!r}")
        required, optional = SCHEDULE_KEYS[kind]
        missing = [k for k in required if k not in self.schedule]
        unknown = sorted(set(self.schedule) - {"type", *required, *optional})
        if missing or unknown:
            raise ValueError(f"schedule {self.schedule}: missing keys {missing}, unknown keys {unknown}")
        s = self.schedule
        if kind == "vp":
            return VPDiscrete.named(s["beta_schedule"], int(s["num_timesteps"]))
        return VEContinuous(float(s["sigma_min"]), float(s["sigma_max"]), s.get("rho", 7.0))

    def to_json(self) -> dict:
        data = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": self.architecture.to_dict(),
                "channels": self.architecture.channels, "data_range": list(self.data_range),
                "parametrization": self.parametrization, "schedule": dict(self.schedule), "learned_sigma": False}
        if self.parametrization == "edm":
            data["sigma_data"] = self.sigma_data
        if self.condition is not None:
            data["condition"] = self.condition
        if self.residual:
            data["residual"] = True
        if self.measurement_sigma:
            data["measurement_sigma"] = float(self.measurement_sigma)
        if self.measurement_operator is not None:
            data["measurement_operator"] = dict(self.measurement_operator)
        if self.symmetry != "none":
            data["symmetry"] = self.symmetry
        return data

    @classmethod
    def from_json(cls, data: dict, source: str = CONFIG) -> "NativeConfig":
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{source}: not a {FORMAT} v{FORMAT_VERSION} config "
                             f"(format={data.get('format')!r}, format_version={data.get('format_version')!r})")
        if data.get("learned_sigma", False):
            raise ValueError(f"{source}: learned_sigma is true, but the compact UNet has no learned variance")
        architecture = UNetConfig.from_dict(data["architecture"])
        if data.get("channels", architecture.channels) != architecture.channels:
            raise ValueError(f"{source}: channels={data['channels']} but the architecture has "
                             f"{architecture.channels} channels")
        return cls(architecture, data["parametrization"], dict(data["schedule"]), tuple(data["data_range"]),
                   float(data.get("sigma_data", 0.5)), data.get("condition"), data.get("symmetry", "none"),
                   data.get("residual", False), data.get("measurement_sigma", 0.0),
                   data.get("measurement_operator"))

    def conditional_view(self, network) -> ConditionalNetwork:
        """The :class:`ConditionalNetwork` of a conditional config around ``network``, x0
        clipped to the data range as ADM samples (clip_denoised): an epsilon network's
        x0 = (x - sigma eps) / 1 at sigma ~ 157 turns small errors of eps into large ones."""
        return ConditionalNetwork(network, self.make_schedule(), condition=self.condition, clip=self.data_range,
                                  parametrization=self.parametrization, residual=self.residual,
                                  measurement_sigma=self.measurement_sigma,
                                  measurement_operator=self.measurement_operator)


def save_native(directory: Union[str, Path], network: CompactUNet, config: NativeConfig) -> Path:
    """Write ``network``'s weights and ``config`` into ``directory`` (created if needed)."""
    if network.config != config.architecture:
        raise ValueError(f"network architecture {network.config} differs from "
                         f"config.architecture {config.architecture}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    save_file(state, str(directory / WEIGHTS), metadata={"format": "pt"})
    (directory / CONFIG).write_text(json.dumps(config.to_json(), indent=2) + "\n")
    return directory


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        others = sorted(p.name for p in path.parent.glob("*") if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl"))
        hint = f" (found {', '.join(others)}: only safetensors is read, pickles are never loaded)" if others else ""
        raise FileNotFoundError(f"{what} not found: {path}{hint}")
    return path


def load_native(directory: Union[str, Path], *, device=None, dtype: Optional[torch.dtype] = None,
                ) -> tuple[CompactUNet, NativeConfig]:
    """The network (eval mode, frozen, on ``device`` in ``dtype``) and its config from a native directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"native UNet directory not found: {directory}")
    config_path = _require(directory / CONFIG, "native UNet config")
    config = NativeConfig.from_json(json.loads(config_path.read_text()), str(config_path))
    state = load_file(str(_require(directory / WEIGHTS, "native UNet weights")))
    in_channels = state["conv_in.weight"].shape[1] if "conv_in.weight" in state else None
    if in_channels != config.architecture.in_channels:
        raise ValueError(f"{directory / WEIGHTS}: weights take {in_channels} input channels, "
                         f"config says {config.architecture.in_channels}")
    network = CompactUNet(config.architecture)
    network.load_state_dict(state, strict=True)
    # A loaded prior is for sampling: frozen, so no autograd graph ever reaches its weights.
    return network.to(device=device, dtype=dtype).eval().requires_grad_(False), config


def native_denoiser(network: CompactUNet, config: NativeConfig) -> Denoiser:
    """The VE denoiser view of a compact UNet, padded to run at any size (conditional networks:
    the :class:`ConditionalNetwork` that the ``conditional`` strategy binds to c(y))."""
    padded = PaddedNetwork(network, network.multiple)
    schedule = config.make_schedule()
    if config.condition is not None:
        return config.conditional_view(padded)
    if config.parametrization == "edm":
        return EDMDenoiser(padded, schedule, sigma_data=config.sigma_data)
    return VPNetworkDenoiser(padded, schedule, parametrization=config.parametrization)


def native_prior(directory: Union[str, Path], *, device=None, dtype: Optional[torch.dtype] = None,
                 name: Optional[str] = None) -> Prior:
    """A :class:`Prior` from a native directory; fully convolutional, so ``shape`` is None."""
    network, config = load_native(directory, device=device, dtype=dtype)
    info = {"format": FORMAT, "path": str(directory), "channels": config.architecture.channels,
            "parametrization": config.parametrization, "schedule": dict(config.schedule), "size_policy": "pad",
            "condition": config.condition, "residual": config.residual}
    if config.measurement_sigma:
        info["measurement_sigma"] = config.measurement_sigma
    if config.measurement_operator is not None:
        info["measurement_operator"] = dict(config.measurement_operator)
    return Prior(native_denoiser(network, config), name=name or f"unet:{directory}", shape=None,
                 data_range=config.data_range, info=info, symmetry=config.symmetry)
