"""Configs of the public ADM checkpoints and their translation into constructor keywords.

UNet configs use the argument vocabulary of guided-diffusion's ``create_model``
(``image_size``, ``num_channels``, ``num_res_blocks``, ``channel_mult`` ("" = default for
the image size), ``attention_resolutions`` (resolutions, e.g. "32,16,8"), ``num_heads``,
``num_head_channels``, ``learn_sigma``, ``class_cond``, ...); the classifier config
uses ``create_classifier``'s (``classifier_width``, ``classifier_depth``, ...).

What the presets rely on:

- ``ffhq256-dps`` (``ffhq_10m.pt``): ``configs/model_config.yaml`` of DPS (Chung et al.
  2023), checked against the key/shape manifest in ``shared/reference/adm``.
- ``imagenet256-uncond`` / ``imagenet256-cond`` / ``imagenet256-classifier``
  (``256x256_diffusion_uncond.pt``, ``256x256_diffusion.pt``, ``256x256_classifier.pt``):
  the model flags of the openai/guided-diffusion README, checked against the manifests.
- ``celebahq256-repaint`` / ``places256-repaint`` (``celeba256_250000.pt``,
  ``places256_300000.pt``): RePaint (Lugmayr et al. 2022) ``confs/test_c256_*.yml`` and
  ``confs/test_p256_*.yml``, which give the same architecture as ImageNet-256
  unconditional (256 channels, 2 ResBlocks, attention at 32,16,8, 64-channel heads,
  learn_sigma, resblock_updown, scale-shift norm).  No manifest was available for these.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Mapping

NUM_CLASSES = 1000  # create_model / create_classifier hard-code ImageNet's class count

#: ``create_model``'s keyword defaults; a config may omit any of these.
UNET_DEFAULTS = dict(
    channel_mult="", learn_sigma=False, class_cond=False, use_checkpoint=False,
    attention_resolutions="16", num_heads=1, num_head_channels=-1, num_heads_upsample=-1,
    use_scale_shift_norm=False, dropout=0.0, resblock_updown=False, use_fp16=False,
    use_new_attention_order=False,
)
UNET_REQUIRED = ("image_size", "num_channels", "num_res_blocks")

#: guided-diffusion's ``classifier_defaults()``.
CLASSIFIER_DEFAULTS = dict(
    classifier_use_fp16=False, classifier_width=128, classifier_depth=2,
    classifier_attention_resolutions="32,16,8", classifier_use_scale_shift_norm=True,
    classifier_resblock_updown=True, classifier_pool="attention",
)

# Fields that a state dict cannot reveal (shapes are the same whatever their value).
_UNDETERMINED = ("num_heads", "num_head_channels", "num_heads_upsample", "use_new_attention_order")

_ADM256 = dict(
    UNET_DEFAULTS, image_size=256, num_channels=256, num_res_blocks=2, learn_sigma=True,
    attention_resolutions="32,16,8", num_heads=4, num_head_channels=64,
    use_scale_shift_norm=True, resblock_updown=True,
)

PRESETS: dict[str, dict] = {
    "ffhq256-dps": dict(_ADM256, num_channels=128, num_res_blocks=1, attention_resolutions="16"),
    "imagenet256-uncond": dict(_ADM256),
    "imagenet256-cond": dict(_ADM256, class_cond=True),
    "imagenet256-classifier": dict(CLASSIFIER_DEFAULTS, image_size=256),
    "celebahq256-repaint": dict(_ADM256),
    "places256-repaint": dict(_ADM256),
}

#: The checkpoint file each preset describes.
CHECKPOINTS = {
    "ffhq256-dps": "ffhq_10m.pt",
    "imagenet256-uncond": "256x256_diffusion_uncond.pt",
    "imagenet256-cond": "256x256_diffusion.pt",
    "imagenet256-classifier": "256x256_classifier.pt",
    "celebahq256-repaint": "celeba256_250000.pt",
    "places256-repaint": "places256_300000.pt",
}


def get_preset(name: str) -> dict:
    """A copy of the named preset's config."""
    if name not in PRESETS:
        raise ValueError(f"unknown ADM preset {name!r}; known presets: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def is_classifier_config(config: Mapping) -> bool:
    return any(key.startswith("classifier_") for key in config)


def default_channel_mult(image_size: int) -> tuple[float, ...]:
    """guided-diffusion's channel multipliers for an image size."""
    table = {64: (1, 2, 3, 4), 128: (1, 1, 2, 3, 4), 256: (1, 1, 2, 2, 4, 4), 512: (0.5, 1, 1, 2, 2, 4, 4)}
    if image_size not in table:
        raise ValueError(f"no default channel_mult for image_size {image_size}; give channel_mult explicitly")
    return table[image_size]


def _number(value: str | float) -> float:
    """ "2" or 2.0 -> 2, "0.5" -> 0.5."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _attention_factors(resolutions: str, image_size: int) -> tuple[int, ...]:
    return tuple(image_size // int(res) for res in resolutions.split(",") if res.strip())


def _as_text(value) -> str:
    """YAML may give ``attention_resolutions: 16`` or ``channel_mult: [1, 2]``: make them "16", "1,2"."""
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def normalize_config(config: Mapping) -> dict:
    """A UNet config with ``create_model``'s defaults filled in and foreign keys dropped."""
    missing = [key for key in UNET_REQUIRED if key not in config]
    if missing:
        raise ValueError(f"ADM config lacks {', '.join(missing)}")
    c = {key: config.get(key, UNET_DEFAULTS.get(key)) for key in (*UNET_REQUIRED, *UNET_DEFAULTS)}
    return dict(c, channel_mult=_as_text(c["channel_mult"]), attention_resolutions=_as_text(c["attention_resolutions"]))


def unet_kwargs(config: Mapping) -> dict:
    """``create_model`` config -> :class:`ADMUNet` keywords (``use_fp16`` is left to the loader)."""
    c = normalize_config(config)
    size = c["image_size"]
    mult = c["channel_mult"]
    return dict(
        image_size=size,
        in_channels=3,
        model_channels=c["num_channels"],
        out_channels=6 if c["learn_sigma"] else 3,
        num_res_blocks=c["num_res_blocks"],
        attention_resolutions=_attention_factors(c["attention_resolutions"], size),
        dropout=c["dropout"],
        channel_mult=tuple(_number(m) for m in mult.split(",")) if mult else default_channel_mult(size),
        num_classes=NUM_CLASSES if c["class_cond"] else None,
        use_checkpoint=c["use_checkpoint"],
        num_heads=c["num_heads"],
        num_head_channels=c["num_head_channels"],
        num_heads_upsample=c["num_heads_upsample"],
        use_scale_shift_norm=c["use_scale_shift_norm"],
        resblock_updown=c["resblock_updown"],
        use_new_attention_order=c["use_new_attention_order"],
    )


def normalize_classifier_config(config: Mapping) -> dict:
    """A classifier config with ``classifier_defaults()`` filled in and foreign keys dropped."""
    if "image_size" not in config:
        raise ValueError("classifier config lacks image_size")
    c = {key: config.get(key, CLASSIFIER_DEFAULTS.get(key)) for key in ("image_size", *CLASSIFIER_DEFAULTS)}
    return dict(c, classifier_attention_resolutions=_as_text(c["classifier_attention_resolutions"]))


def classifier_kwargs(config: Mapping) -> dict:
    """``create_classifier`` config -> :class:`ADMClassifier` keywords (64-channel heads, 1000 classes)."""
    c = normalize_classifier_config(config)
    size = c["image_size"]
    return dict(
        image_size=size,
        in_channels=3,
        model_channels=c["classifier_width"],
        out_channels=NUM_CLASSES,
        num_res_blocks=c["classifier_depth"],
        attention_resolutions=_attention_factors(c["classifier_attention_resolutions"], size),
        channel_mult=default_channel_mult(size),
        num_head_channels=64,
        use_scale_shift_norm=c["classifier_use_scale_shift_norm"],
        resblock_updown=c["classifier_resblock_updown"],
        pool=c["classifier_pool"],
    )


# --------------------------------------------------------------------------- inference


def _block_layers(shapes: Mapping, prefix: str) -> dict[int, dict[int, set]]:
    """{block index: {layer index: set of parameter names}} for keys ``prefix.i.j.name``."""
    blocks: dict[int, dict[int, set]] = {}
    for key in shapes:
        m = re.match(rf"{prefix}\.(\d+)\.(\d+)\.(.+)$", key)
        if m:
            blocks.setdefault(int(m[1]), {}).setdefault(int(m[2]), set()).add(m[3])
    return blocks


def _is_resblock(names: set) -> bool:
    return "in_layers.0.weight" in names


def _res_width(shapes: Mapping, key: str) -> int:
    return shapes[f"{key}.out_layers.3.weight"][0]


def _format_mult(mult: list) -> str:
    return ",".join(str(m) for m in mult)


def _check_io(shapes: Mapping, classes: int | None) -> None:
    in_ch = shapes["input_blocks.0.0.weight"][1]
    if in_ch != 3:
        raise ValueError(f"checkpoint takes {in_ch} input channels; ADM configs describe 3-channel images")
    if classes not in (None, NUM_CLASSES):
        raise ValueError(f"checkpoint has {classes} classes; ADM configs describe {NUM_CLASSES} (ImageNet)")


def infer_config(state_dict: Mapping, image_size: int | None = None) -> dict:
    """Infer a ``create_model`` (or, for an encoder-only state dict, ``create_classifier``)
    config from the keys and shapes of a state dict.

    Read from shapes: ``num_channels`` (time-embedding input width), ``channel_mult`` and
    ``num_res_blocks`` (decoder layout: the upsampling blocks sit every
    ``num_res_blocks + 1`` blocks), attention levels, ``resblock_updown`` (resampling
    ResBlock vs. conv), ``use_scale_shift_norm`` (``emb_layers`` outputs twice the
    width), ``learn_sigma`` (6 output channels), ``class_cond`` (``label_emb``).
    ``image_size`` is not stored in a UNet: it is taken from the argument, else from a
    default ``channel_mult`` (e.g. six levels (1,1,2,2,4,4) -> 256).  Head counts are not
    stored either: they are copied from a preset whose every other field matches, else
    ``num_heads=4, num_head_channels=64`` (all public 256/512 models) with a warning.
    """
    shapes = {key: tuple(value.shape) for key, value in state_dict.items()}
    if "time_embed.0.weight" not in shapes or "input_blocks.0.0.weight" not in shapes:
        raise ValueError("not an ADM state dict: no time_embed.0.weight / input_blocks.0.0.weight")
    if not any(key.startswith("output_blocks.") for key in shapes):
        return _infer_classifier(shapes, image_size)
    return _infer_unet(shapes, image_size)


def _infer_unet(shapes: Mapping, image_size: int | None) -> dict:
    mc = shapes["time_embed.0.weight"][1]
    label = shapes.get("label_emb.weight")
    _check_io(shapes, None if label is None else label[0])
    out_ch = shapes["out.2.weight"][0]
    if out_ch not in (3, 6):
        raise ValueError(f"checkpoint outputs {out_ch} channels; ADM configs give 3 (or 6 with learn_sigma)")
    blocks = _block_layers(shapes, "output_blocks")
    n_out = len(blocks)
    ups = [i for i in sorted(blocks) if sum(map(_is_resblock, blocks[i].values())) == 2
           or any("conv.weight" in names for names in blocks[i].values())]
    per_level = ups[0] + 1 if ups else n_out
    levels = n_out // per_level
    if n_out % per_level or ups != [per_level * k - 1 for k in range(1, levels)]:
        raise ValueError("cannot read the decoder layout of this state dict")
    # decoder level k (from the bottom) holds encoder level levels-1-k
    first = [f"output_blocks.{(levels - 1 - lvl) * per_level}" for lvl in range(levels)]
    mult = [_number(_res_width(shapes, f"{key}.0") / mc) for key in first]
    attention_ds = [2**lvl for lvl, key in enumerate(first) if f"{key}.1.qkv.weight" in shapes]
    scale_shift = shapes[f"{first[0]}.0.emb_layers.1.weight"][0] == 2 * _res_width(shapes, f"{first[0]}.0")
    updown = bool(ups) and _is_resblock(blocks[ups[0]][max(blocks[ups[0]])])

    if image_size is None:
        sizes = [s for s in (64, 128, 256, 512) if tuple(mult) == default_channel_mult(s)]
        if not sizes:
            raise ValueError(f"cannot infer image_size for channel_mult {_format_mult(mult)}; pass image_size=")
        image_size = sizes[0]
    default = image_size in (64, 128, 256, 512) and tuple(mult) == default_channel_mult(image_size)
    config = dict(
        UNET_DEFAULTS,
        image_size=image_size,
        num_channels=mc,
        num_res_blocks=per_level - 1,
        channel_mult="" if default else _format_mult(mult),
        learn_sigma=out_ch == 6,
        class_cond=label is not None,
        attention_resolutions=",".join(str(image_size // ds) for ds in attention_ds),
        use_scale_shift_norm=scale_shift,
        resblock_updown=updown,
    )
    return _heads_from_presets(config)


def _heads_from_presets(config: dict) -> dict:
    def known(c: Mapping) -> dict:
        return {k: v for k, v in c.items() if k not in _UNDETERMINED}

    for preset in PRESETS.values():
        if not is_classifier_config(preset) and known(preset) == known(config):
            return dict(config, **{k: preset[k] for k in _UNDETERMINED})
    warnings.warn(
        "ADM state dict matches no preset; assuming num_heads=4, num_head_channels=64 "
        "(head counts are not stored in a checkpoint)",
        stacklevel=4,
    )
    return dict(config, num_heads=4, num_head_channels=64)


def _infer_classifier(shapes: Mapping, image_size: int | None) -> dict:
    width = shapes["time_embed.0.weight"][1]
    if "out.2.positional_embedding" in shapes:
        pool, classes = "attention", shapes["out.2.c_proj.weight"][0]
        spatial = round((shapes["out.2.positional_embedding"][1] - 1) ** 0.5)
    elif "out.3.weight" in shapes:
        pool, classes, spatial = "adaptive", shapes["out.3.weight"][0], None
    else:
        raise ValueError("classifier head is neither attention nor adaptive pooling")
    _check_io(shapes, classes)
    blocks = _block_layers(shapes, "input_blocks")
    for size in [image_size] if image_size else (64, 128, 256, 512):
        mult = default_channel_mult(size)
        per_level, rem = divmod(len(blocks), len(mult))
        if rem or per_level < 2 or (spatial and spatial * 2 ** (len(mult) - 1) != size):
            continue
        first = [f"input_blocks.{1 + lvl * per_level}" for lvl in range(len(mult))]
        if all(_res_width(shapes, f"{key}.0") == int(m * width) for key, m in zip(first, mult)):
            attention_ds = [2**lvl for lvl, key in enumerate(first) if f"{key}.1.qkv.weight" in shapes]
            return dict(
                image_size=size,
                classifier_use_fp16=False,
                classifier_width=width,
                classifier_depth=per_level - 1,
                classifier_attention_resolutions=",".join(str(size // ds) for ds in attention_ds),
                classifier_use_scale_shift_norm=(
                    shapes[f"{first[0]}.0.emb_layers.1.weight"][0] == 2 * _res_width(shapes, f"{first[0]}.0")
                ),
                classifier_resblock_updown=not any(".op.weight" in key for key in shapes),
                classifier_pool=pool,
            )
    raise ValueError("classifier state dict fits no create_classifier config (default channel_mult per image size)")
