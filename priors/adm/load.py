"""Load ADM checkpoints (guided-diffusion state dicts, ``.pt`` or ``.safetensors``).

``.pt`` files are read with ``torch.load(..., weights_only=True)``: a pickle that holds
code or arbitrary objects is refused.  Tensors may be float32 or float16 (guided-diffusion
saves float32 master weights; converted copies are often float16); the network is
materialised from the checkpoint's own tensors (built on the ``meta`` device, then
``load_state_dict(strict=True, assign=True)``), put in float32 on ``device``, and its
torso converted to ``dtype`` (see :mod:`.unet`).  The result is in eval mode with
``requires_grad`` off and carries the config it was built from as ``.config``.
"""
from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Mapping

import torch

from .classifier import ADMClassifier
from .presets import PRESETS, get_preset, infer_config, is_classifier_config
from .unet import ADMTrunk, ADMUNet

TORSO_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_SHOWN = 5  # keys named in a mismatch message


class ADMCheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pt``/``.pth``/``.bin`` (plain state dict) or ``.safetensors`` file, on CPU."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ADM checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for a damaged or foreign file
        if not (isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower()):
            raise ADMCheckpointError(f"{path} is not a readable torch checkpoint "
                                     f"({type(err).__name__}: {err})") from err
        raise ADMCheckpointError(
            f"{path} holds pickled code or objects, not a plain state dict of tensors, so it was "
            "refused (torch.load with weights_only=True). Re-save only the weights from a trusted "
            "environment: torch.save(model.state_dict(), ...) or safetensors."
        ) from err
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ADMCheckpointError(f"{path} is not a plain state dict (a mapping of names to tensors)")
    return dict(state)


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    return {key: tuple(value.shape) for key, value in state.items()}


def _build(config: Mapping, classifier: bool) -> ADMTrunk:
    """The network for ``config`` on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return (ADMClassifier if classifier else ADMUNet).from_config(config)


@functools.lru_cache(maxsize=None)
def _preset_shapes(name: str) -> frozenset:
    config = PRESETS[name]
    return frozenset(_shapes(_build(config, is_classifier_config(config)).state_dict()).items())


def closest_preset(state: Mapping[str, torch.Tensor]) -> tuple[str, float]:
    """The preset sharing most (key, shape) pairs with ``state`` and that share (Jaccard index)."""
    pairs = frozenset(_shapes(state).items())
    scores = {name: len(pairs & _preset_shapes(name)) / len(pairs | _preset_shapes(name)) for name in PRESETS}
    best = max(scores, key=scores.get)
    return best, scores[best]


def _listing(title: str, items: list[str]) -> str:
    more = f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return f"{title} ({len(items)}): {', '.join(items[:_SHOWN])}{more}"


def _check_channels(state: Mapping, model: ADMTrunk, what: str) -> None:
    """Compare the checkpoint's input/output channel counts with the model's."""
    shapes = _shapes(state)
    got_in = shapes.get("input_blocks.0.0.weight", (None, None))[1]
    if got_in is not None and got_in != model.in_channels:
        raise ADMCheckpointError(
            f"wrong channel count: the checkpoint takes {got_in} input channels "
            f"(input_blocks.0.0.weight) but {what} builds a {model.in_channels}-channel network"
        )
    head = [k for k in model.state_dict() if k.startswith("out.") and k.endswith("weight")][-1]
    if head in shapes and shapes[head][0] != model.out_channels:
        hint = " (learn_sigma doubles the output channels)" if isinstance(model, ADMUNet) else ""
        raise ADMCheckpointError(
            f"wrong channel count: the checkpoint has {shapes[head][0]} outputs ({head}) "
            f"but {what} builds a network with {model.out_channels}{hint}"
        )


def _check_keys(state: Mapping, model: ADMTrunk, what: str) -> None:
    """Raise naming the missing, unexpected and mis-shaped keys and the closest preset."""
    expected, got = _shapes(model.state_dict()), _shapes(state)
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [f"{k} {list(got[k])} != {list(expected[k])}" for k in expected if k in got and got[k] != expected[k]]
    if not (missing or unexpected or wrong):
        return
    parts = [_listing(title, items) for title, items in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)) if items]
    name, share = closest_preset(state)
    raise ADMCheckpointError(
        f"checkpoint does not match {what}: {'; '.join(parts)}. "
        f"Closest preset by key overlap: {name!r} ({share:.0%} of keys/shapes shared)."
    )


def _load(path, preset, device, dtype, channels_last: bool, classifier: bool) -> ADMTrunk:
    if dtype not in TORSO_DTYPES:
        raise ValueError(f"dtype must be one of {TORSO_DTYPES}, got {dtype}")
    state = read_state_dict(path)
    if preset is None:
        try:
            config = infer_config(state)
        except ValueError as err:
            raise ADMCheckpointError(
                f"cannot infer an ADM config from {path}: {err}. Pass preset= (a name or a config dict)"
            ) from err
        what = "the inferred config"
    elif isinstance(preset, str):
        config, what = get_preset(preset), f"preset {preset!r}"
    else:
        config, what = dict(preset), "the given config"
    if is_classifier_config(config) != classifier:
        kind, loader = ("a classifier", "load_adm_classifier") if not classifier else ("a UNet", "load_adm")
        raise ADMCheckpointError(f"{what} describes {kind}; load it with {loader}")
    model = _build(config, classifier)
    _check_channels(state, model, what)
    _check_keys(state, model, what)
    model.load_state_dict(state, strict=True, assign=True)
    model.to(device=device, dtype=torch.float32).set_torso_dtype(dtype)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model.eval().requires_grad_(False)


def load_adm(
    path: str | os.PathLike,
    preset: str | Mapping | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> ADMUNet:
    """Load an ADM UNet checkpoint.

    ``preset``: a preset name (:data:`.presets.PRESETS`), a ``create_model`` config dict,
    or None to infer the config from the state dict.  ``dtype`` is the torso's compute
    dtype (float32, float16 or bfloat16).  ``channels_last`` stores the conv weights in
    NHWC order, so convolutions run NHWC: meant for fp16/bf16 on GPUs (tensor cores); on
    CPU it was no faster here (attention reshapes back to NCHW).  The returned module maps
    ``(x in [-1, 1], t (B,), y=None) -> (B, out_channels, H, W)`` in ``x``'s dtype.
    """
    return _load(path, preset, device, dtype, channels_last, classifier=False)


def load_adm_classifier(
    path: str | os.PathLike,
    preset: str | Mapping | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> ADMClassifier:
    """Load an ADM noisy classifier; like :func:`load_adm` with ``create_classifier`` configs.

    The module maps ``(x in [-1, 1], t (B,)) -> logits (B, classes)``.
    """
    return _load(path, preset, device, dtype, channels_last, classifier=True)
