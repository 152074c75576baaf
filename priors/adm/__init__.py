"""ADM / guided-diffusion networks (Dhariwal & Nichol 2021; Nichol & Dhariwal 2021).

The UNet and noisy classifier of openai/guided-diffusion, re-implemented with state-dict
names identical to the released checkpoints (DPS ``ffhq_10m.pt``, OpenAI ImageNet 256
models and classifier, RePaint CelebA-HQ / Places), named presets for them, config
inference from a state dict, and safe loaders.
"""
from .classifier import ADMClassifier
from .load import ADMCheckpointError, closest_preset, load_adm, load_adm_classifier, read_state_dict
from .presets import CHECKPOINTS, PRESETS, get_preset, infer_config, classifier_kwargs, unet_kwargs
from .unet import ADMUNet

__all__ = [
    "ADMCheckpointError",
    "ADMClassifier",
    "ADMUNet",
    "CHECKPOINTS",
    "PRESETS",
    "classifier_kwargs",
    "closest_preset",
    "get_preset",
    "infer_config",
    "load_adm",
    "load_adm_classifier",
    "read_state_dict",
    "unet_kwargs",
]
