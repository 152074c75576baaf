"""LPIPS (Zhang et al. 2018, "The unreasonable effectiveness of deep features as a
perceptual metric"), computed by the ``lpips`` package: v0.1 linear layers on an AlexNet
or VGG16 backbone, inputs mapped from [0, 1] to [-1, 1].

The package's own constructor would download the backbone from torchvision's server; here
the network is built with an uninitialised backbone, its linear layers are loaded from the
package's v0.1 files, and the backbone from the file :func:`find_backbone` finds (see
:mod:`restore.metrics.lpips_weights`).  Missing weights are an error, never random ones.
``lpips`` and torchvision are imported on first use.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from restore.metrics.lpips_weights import PathLike, find_backbone, lpips_linear_layers, read_backbone

_MODELS: dict[tuple[str, str, str], Any] = {}


def load_into_slices(trunk: torch.nn.Module, features: dict[str, Tensor], source: Path) -> None:
    """Copy torchvision ``features.<i>.*`` tensors into the lpips package's backbone, whose
    ``slice<k>`` blocks hold torchvision's ``features[i]`` under the name ``str(i)``."""
    state = {}
    for slice_name, block in trunk.named_children():
        for index, layer in block.named_children():
            for param, _ in layer.named_parameters(recurse=False):
                key = f"features.{index}.{param}"
                if key not in features:
                    raise ValueError(f"{source}: {key} is missing (not the expected backbone)")
                state[f"{slice_name}.{index}.{param}"] = features[key]
    try:
        trunk.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{source}: does not fit the LPIPS backbone: {str(exc).splitlines()[-1].strip()}") from None


def lpips_model(net: str = "alex", weights: Optional[PathLike] = None, device: Any = "cpu") -> torch.nn.Module:
    """The LPIPS network ``net`` with the found backbone weights, in eval mode on ``device``
    (built once per (net, weights file, device))."""
    path = find_backbone(net, weights)
    key = (net, str(path.resolve()), str(device))
    if key not in _MODELS:
        import lpips

        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net=net, version="0.1", pretrained=False, pnet_rand=True, verbose=False)
        linear = lpips_linear_layers(net)
        result = model.load_state_dict(linear, strict=False)
        if result.unexpected_keys:
            raise ValueError(f"lpips {net} v0.1 linear layers: unexpected keys {result.unexpected_keys}")
        load_into_slices(model.net, read_backbone(path), path)
        _MODELS[key] = model.eval().requires_grad_(False).to(device)
    return _MODELS[key]


def lpips_distance(x: Tensor, reference: Tensor, *, net: str = "alex", weights: Optional[PathLike] = None) -> Tensor:
    """LPIPS between images on [0, 1] (B, 3, H, W), one value per batch item (float64)."""
    if x.shape != reference.shape or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"LPIPS needs equal-shape RGB images (B, 3, H, W), got {tuple(x.shape)} and "
                         f"{tuple(reference.shape)}")
    model = lpips_model(net, weights, x.device)
    with torch.no_grad():
        out = model(x.float(), reference.to(x.device).float(), normalize=True)
    return out.flatten().to(torch.float64)


def lpips_alex(x: Tensor, reference: Tensor, *, weights: Optional[PathLike] = None) -> Tensor:
    """LPIPS v0.1, AlexNet backbone (lower is better; the lpips package)."""
    return lpips_distance(x, reference, net="alex", weights=weights)


def lpips_vgg(x: Tensor, reference: Tensor, *, weights: Optional[PathLike] = None) -> Tensor:
    """LPIPS v0.1, VGG16 backbone (lower is better; the lpips package)."""
    return lpips_distance(x, reference, net="vgg", weights=weights)


METRICS = {"lpips-alex": lpips_alex, "lpips-vgg": lpips_vgg}
