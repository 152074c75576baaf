"""The project's noise-aware classifier format: ``model.safetensors`` + ``config.json``.

A guided-diffusion encoder classifier (:class:`restore.priors.adm.ADMClassifier`, global
average-pooling head, so it runs at any image size) trained on x_t = sqrt(abar_t) x0 +
sqrt(1 - abar_t) eps of a discrete VP schedule, as Dhariwal & Nichol 2021 train theirs
(Sec. 4).  ``config.json``::

    {"format": "restore-classifier", "format_version": 1,
     "architecture": {ADMClassifier keywords},
     "classes": ["cats", "dogs"],            # label k is classes[k]
     "schedule": {"type": "vp", "beta_schedule": "linear", "num_timesteps": 1000},
     "data_range": [-1.0, 1.0]}

:func:`load_classifier` gives the :class:`restore.diffusion.classifier.ADMClassifierGuide`
that classifier guidance uses.  Only safetensors is read.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors.torch import load_file, save_file

from restore.diffusion.classifier import ADMClassifierGuide
from restore.diffusion.schedules import VPDiscrete
from restore.priors.adm.classifier import ADMClassifier

FORMAT = "restore-classifier"
FORMAT_VERSION = 1


def classifier_network(architecture: dict) -> ADMClassifier:
    return ADMClassifier(**architecture)


def save_classifier(directory: Union[str, Path], network: ADMClassifier, architecture: dict, classes: list[str],
                    schedule: dict, data_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()},
              str(directory / "model.safetensors"), metadata={"format": "pt"})
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": architecture,
              "classes": list(classes), "schedule": dict(schedule), "data_range": list(data_range)}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


def read_classifier(directory: Union[str, Path], *, device=None, dtype: Optional[torch.dtype] = None
                    ) -> tuple[ADMClassifier, dict]:
    """The frozen network and its config from a classifier folder."""
    directory = Path(directory)
    config_path, weights = directory / "config.json", directory / "model.safetensors"
    for path in (config_path, weights):
        if not path.is_file():
            raise FileNotFoundError(f"classifier file not found: {path}")
    config = json.loads(config_path.read_text())
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{config_path}: not a {FORMAT} v{FORMAT_VERSION} config")
    network = classifier_network(config["architecture"])
    network.load_state_dict(load_file(str(weights)), strict=True)
    network.requires_grad_(False)
    return network.to(device=device, dtype=dtype).eval(), config


def load_classifier(directory: Union[str, Path], *, device=None, dtype: Optional[torch.dtype] = None):
    """The classifier of ``directory`` as the noisy classifier classifier guidance uses."""
    network, config = read_classifier(directory, device=device, dtype=dtype)
    s = config["schedule"]
    guide = ADMClassifierGuide(network, VPDiscrete.named(s["beta_schedule"], int(s["num_timesteps"])))
    guide.classes = list(config["classes"])
    return guide
