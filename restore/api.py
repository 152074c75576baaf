"""The high-level Python API: restore an image in one call.

    import restore
    result = restore.inpaint(image, mask, prior="unet:DIR", seed=0)
    result.image                      # same kind as ``image``: tensor, numpy array or PIL image

:func:`restore` runs x ~ p(x | y) for a measurement ``y`` (the image the user has) and an
operator (a registered name or an :class:`~restore.operators.base.Operator`), through
the one engine entry point :func:`restore.strategies.engine.solve`.  The per-task
helpers (:func:`inpaint`, :func:`sr`, :func:`deblur`, :func:`denoise`, :func:`colorize`)
build the operator and call it.  It is a thin front door over :mod:`restore.pipeline`
(the same :class:`~restore.measurement.Measurement`, run and run record as the commands and
``restore batch``).

* Images: torch tensors (B, C, H, W) or (C, H, W) on [0, 1]; numpy arrays (H, W),
  (H, W, C) or (B, H, W, C), uint8 (/255), uint16 (/65535) or float on [0, 1]; PIL
  images (L, LA, I;16, RGB, RGBA; other modes converted to RGB(A)).  Float measurements
  may lie outside [0, 1] (noise puts them there); NaN and infinity are refused.  A file
  path is read as the commands read it (an image file with an operator, or a ``restore
  degrade`` sidecar ``y.json`` alone), and the result comes back as (1, C, H, W) float32
  tensors.  The alpha channel
  of numpy arrays with 2 or 4 channels and of PIL images is kept aside and put back
  (super-resolution: only when opaque).  The result comes back in the kind, layout,
  dtype and (for tensors) device it came in.
* Batched: several images of one size are restored in one run; ``samples = N`` draws N
  posterior samples of each and reports their mean (``image``, with ``target="fidelity"``;
  the first sample with ``"perceptual"``), each sample (``samples``) and the per-pixel
  standard deviation (``std``).  A deterministic estimator of the posterior mean (``tweedie``,
  ``dpir``) takes ``samples = 1`` and the fidelity target only: N copies of one result would
  give a std of 0, and an estimate is not a sample.
* Seeded without global state: batch item k (sample-major: item s * B + b is sample s
  of image b) draws from its own ``torch.Generator`` seeded with ``seed + k``
  (:class:`restore.diffusion.randomness.ItemGenerators`), so an item's result does not
  depend on the batch it ran in.  ``seed=None`` picks a random seed, recorded in
  ``provenance`` (the run record, docs/RUN_RECORD.md).
* Masks: 1 (white) = fill, as on the command line (:func:`user_mask`).
* A grey image with a colour prior: when the operator acts on each channel alike
  (checked: A(x replicated) = A(x) replicated), the grey measurement is used in all three
  channels with its noise variance tripled (three copies of one measurement carry the
  information of one), and the colour result is averaged back to grey.  Other channel
  mismatches are refused.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import numpy as np
import torch
from torch import Tensor

from restore.operators.noise import GaussianNoise, NoiseModel
from restore.priors.base import Prior

#: Images the API accepts (see the module docstring).
ImageLike = Union[Tensor, np.ndarray, Any]


class RestoreError(ValueError):
    """A request the API cannot serve; the message names the problem and what to do."""


# ----------------------------------------------------------------------------- image kinds


@dataclass(frozen=True)
class ImageKind:
    """How an input image came, to give the result back the same way."""

    kind: str  # "tensor", "numpy" or "pil"
    batched: bool
    dtype: Any = None
    device: Any = None
    channels_last: bool = False
    pil_mode: Optional[str] = None

    @property
    def bits(self) -> int:
        """Bits per sample of the input: 8 or 16 for integer images, 32 for float ones."""
        if self.kind == "pil":
            return 16 if self.pil_mode == "I;16" else 8
        if self.kind == "tensor":
            return 32 if self.dtype.is_floating_point else 8
        return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(np.dtype(self.dtype), 32)


def to_tensor(image: ImageLike) -> tuple[Tensor, Optional[Tensor], ImageKind]:
    """(B, C, H, W) float32 on [0, 1] (CPU unless a tensor came on a device), the alpha
    channel set aside (or None) and the :class:`ImageKind` to convert back with."""
    if isinstance(image, Tensor):
        if image.ndim not in (3, 4):
            raise RestoreError(f"a tensor image must be (B, C, H, W) or (C, H, W), got shape {tuple(image.shape)}")
        kind = ImageKind("tensor", image.ndim == 4, image.dtype, image.device)
        x = image if image.ndim == 4 else image[None]
        return _checked(x.float() if image.is_floating_point() else x.float() / 255), None, kind
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3, 4):
            raise RestoreError(f"a numpy image must be (H, W), (H, W, C) or (B, H, W, C), got shape {image.shape}")
        kind = ImageKind("numpy", image.ndim == 4, image.dtype, channels_last=image.ndim >= 3)
        top = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype)
        if top is None and not np.issubdtype(image.dtype, np.floating):
            raise RestoreError(f"numpy images must be uint8, uint16 or float, got {image.dtype}")
        values = torch.from_numpy(np.ascontiguousarray(image).astype(np.float32) / (top or 1.0))
        x = values[None, None] if image.ndim == 2 else values.permute(2, 0, 1)[None] if image.ndim == 3 \
            else values.permute(0, 3, 1, 2)
        x = _checked(x.contiguous())
        if image.ndim >= 3 and image.shape[-1] in (2, 4):  # grey + alpha, RGBA
            return x[:, :-1].contiguous(), x[:, -1:].contiguous(), kind
        return x, None, kind
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        mode = image.mode
        keep = mode in ("L", "LA", "I;16", "RGB", "RGBA")
        converted = image if keep else image.convert("RGBA" if "A" in mode else "RGB")
        x, alpha, _ = to_tensor(np.asarray(converted))
        return x, alpha, ImageKind("pil", False, pil_mode=converted.mode)
    raise RestoreError(f"unsupported image type {type(image).__name__}: give a torch tensor, a numpy array "
                       "or a PIL image")


def _checked(x: Tensor) -> Tensor:
    """Finite values (a noisy float measurement may leave [0, 1]; integers cannot)."""
    if not torch.isfinite(x).all():
        raise RestoreError("image values must be finite: NaN or infinity found")
    return x


def from_tensor(x: Tensor, kind: ImageKind, alpha: Optional[Tensor] = None) -> ImageLike:
    """``x`` (B, C, H, W) back in the kind an image came in, ``alpha`` (B, 1, H, W) put back
    as the last channel of numpy and PIL images; clipped to [0, 1] and rounded for integer
    kinds, as computed (not clipped) for float ones."""
    if alpha is not None:
        x = torch.cat([x, alpha.to(x)], dim=1)
    if kind.kind == "tensor":
        out = x if kind.batched else x[0]
        if kind.dtype is not None and not kind.dtype.is_floating_point:
            return torch.round(out.clamp(0, 1) * 255).to(kind.dtype, device=kind.device)
        return out.to(device=kind.device, dtype=kind.dtype)
    from restore.operators.io import to_pixels

    if kind.kind == "pil":
        from PIL import Image

        pixels = to_pixels(x[0], 16 if kind.pil_mode == "I;16" else 8)
        return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)  # mode told by shape, dtype
    dtype = np.dtype(kind.dtype)
    if dtype in (np.uint8, np.uint16):
        arrays = [to_pixels(item, 8 * dtype.itemsize) for item in x]
    else:
        arrays = [item.detach().cpu().permute(1, 2, 0).numpy().astype(dtype) for item in x]
    out = np.stack(arrays) if kind.batched else arrays[0]
    return out if kind.channels_last or out.shape[-1] != 1 else out[..., 0]  # (H, W) in, colour out: (H, W, C)


def float_kind(kind: ImageKind) -> ImageKind:
    """The float32 counterpart of ``kind`` (PIL images: a channels-last numpy array), for
    values such as standard deviations that integer pixels would round away."""
    if kind.kind == "pil":
        return ImageKind("numpy", False, np.float32, channels_last=True)
    return dataclasses.replace(kind, dtype=torch.float32 if kind.kind == "tensor" else np.float32)


# ----------------------------------------------------------------------------- results


@dataclass
class Result:
    """A restoration: ``image`` (the estimate of the target, in the input's kind: the mean of
    the samples for ``fidelity``, the first sample for ``perceptual``),
    ``samples`` (each sample, a list in the input's kind), ``std`` (per-pixel standard
    deviation over the samples on the [0, 1] scale, in the input's layout as float32; zeros
    for one sample), ``nfe``
    (network evaluations per image, each sample counted), ``seconds`` (wall time), ``provenance`` (everything needed to
    reproduce it) and ``tensors`` (the same as float tensors: ``mean`` (B, C, H, W),
    ``samples`` (S, B, C, H, W), ``std`` (B, C, H, W), ``alpha`` or None)."""

    image: ImageLike
    samples: list
    std: ImageLike
    nfe: int
    seconds: float
    provenance: dict[str, Any]
    tensors: dict[str, Optional[Tensor]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- the run


def pick_device(device: Union[str, torch.device, None]) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise RestoreError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None


DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def deprecated_dtype(dtype: Union[str, torch.dtype]) -> str:
    """The precision the old ``dtype=`` argument names (float32 / bfloat16 / float16, as a string
    or a torch dtype), with a DeprecationWarning; a :class:`RestoreError` for others."""
    name = str(dtype).removeprefix("torch.")
    precision = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(name)
    if precision is None:
        raise RestoreError(f"unknown dtype {name!r}; dtype= is deprecated: use precision= (auto, fp32, bf16, fp16)")
    warnings.warn(f"dtype= is deprecated: use precision={precision!r} (the network's precision; the sampler "
                  "state is always float32)", DeprecationWarning, stacklevel=3)
    return precision


def pick_dtype(dtype: Union[str, torch.dtype, None]) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise RestoreError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


MASK_RULE = ("a mask marks the pixels to fill with 1 (white in an image file) and the known ones with 0 (black); "
             "give only those two values (--mask-white-known / mask_white_known=True: the other way round)")


def user_mask(source: Any, *, white_known: bool = False) -> Tensor:
    """A mask as users give it, in the one convention of the commands, ``restore batch`` and
    the API (the CLI's, IOPaint's and diffusers'): 1, or white in an image file, marks the
    pixels to fill, 0 (black) the known ones; ``white_known`` reads it the other way round.
    Tensors, arrays, ``.npy`` and image files alike (:func:`restore.operators.validation.load_array`);
    values other than 0 and 1 (black and white) are a :class:`RestoreError` stating the rule.
    Returns the engine's mask: float64, 1 = known."""
    from restore.operators.validation import load_array

    values, _ = load_array(source, "mask")
    if values.numel() == 0 or not bool(((values == 0) | (values == 1)).all()):
        found = "no values" if values.numel() == 0 else \
            f"values such as {values[(values != 0) & (values != 1)].flatten()[0].item():g}"
        raise RestoreError(f"mask: {MASK_RULE}; this one has {found}")
    return (values == (1.0 if white_known else 0.0)).to(torch.float64)


def user_options(factory: Any, options: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Operator options as users give them, in one vocabulary for the commands, ``restore
    batch`` and the API: a mask operator's (``is_mask``) ``mask`` that is not a generator name
    is read by :func:`user_mask` (``invert``: white = known) into the engine's mask; a
    ``kernel`` string is read in the kernel grammar
    (:func:`restore.operators.kernels.kernel_params`).  Everything else is passed on."""
    from restore.operators.kernels import kernel_params
    from restore.operators.masks import GENERATORS

    options = dict(options or {})
    if isinstance(options.get("kernel"), str):
        try:
            options.update(kernel_params(options["kernel"]))
        except ValueError as exc:
            raise RestoreError(str(exc)) from None
    mask = options.get("mask")
    if not getattr(factory, "is_mask", False) or mask is None or (isinstance(mask, str) and mask in GENERATORS):
        return options
    white_known = bool(options.pop("invert", False))
    return {**options, "mask": user_mask(mask, white_known=white_known)}


def build_operator(operator: Any, registry: Any, options: Optional[Mapping[str, Any]] = None) -> Any:
    """An operator from its registered name and ``options`` as users give them
    (:func:`user_options`), or the operator given."""
    if not isinstance(operator, str):
        if options:
            raise RestoreError("operator options go with an operator name, not an operator object")
        return operator
    factory = registry.get("operator", operator)
    try:
        return factory(**user_options(factory, options))
    except TypeError as exc:
        raise RestoreError(f"operator {operator!r}: {exc}") from None


def with_noise(operator: Any, noise: Union[float, Mapping[str, Any], NoiseModel, None]) -> Any:
    """A copy of ``operator`` with the noise model ``noise`` (a Gaussian sigma on [0, 1], a
    noise JSON dict or a model); the operator itself when ``noise`` is None."""
    if noise is None:
        return operator
    if isinstance(noise, (int, float)):
        if not (math.isfinite(noise) and noise >= 0):
            raise RestoreError(f"noise sigma must be a finite number >= 0, got {noise}")
        noise = GaussianNoise(float(noise))
    model = noise if isinstance(noise, NoiseModel) else NoiseModel.from_json(dict(noise))
    changed = copy.copy(operator)
    changed.noise = model
    return changed


def load(prior: Union[str, Prior], registry: Any, device: torch.device, dtype: torch.dtype) -> Prior:
    if isinstance(prior, Prior):
        return prior
    from restore.priors.spec import load_prior

    return load_prior(prior, device=device, dtype=dtype, registry=registry)


def restore(
    image: ImageLike,
    operator: Any = None,
    prior: Union[str, Prior] = "default",
    method: Optional[str] = None,
    steps: Optional[int] = None,
    seed: Optional[int] = None,
    samples: Optional[int] = None,
    device: Union[str, torch.device, None] = None,
    dtype: Union[str, torch.dtype, None] = None,
    params: Optional[Mapping[str, Any]] = None,
    *,
    quality: str = "fast",
    target: str = "fidelity",
    noise: Union[float, Mapping[str, Any], NoiseModel, None] = None,
    operator_options: Optional[Mapping[str, Any]] = None,
    listeners: Iterable[Any] = (),
    registry: Any = None,
    crop_to_mask: Optional[bool] = None,
    precision: str = "auto",
    channels_last: Optional[bool] = None,
    compile: bool = False,
    threads: Optional[int] = None,
    antithetic: Optional[bool] = None,
) -> Result:
    """Restore ``image``, the measurement y = A(x) + n of operator ``operator`` (none for a
    ``restore degrade`` sidecar path, which brings its own).

    ``prior``: a prior spec (``default``, ``unet:DIR``, ``gaussian:3x32x32``, ...) or a
    loaded :class:`~restore.priors.base.Prior`.  ``target``: ``"fidelity"`` (best PSNR / SSIM:
    ``image`` is a posterior-mean estimate, the mean of the samples) or ``"perceptual"`` (best
    LPIPS: ``image`` is the first posterior sample); docs/STRATEGIES.md.  ``method``: a
    strategy name; by default :func:`restore.strategies.catalog.default_run` for the operator,
    ``target``, ``quality`` (``"fast"`` or ``"high"``) and the prior (a conditional network,
    such as ``default-sr3x4``, runs the ``conditional`` strategy), which also gives the default
    ``steps`` and ``samples`` (None: the default run's, else 1) and whether they are drawn in
    antithetic pairs (``antithetic``, None: as the default run draws them, else independently;
    sample 2j + 1 the negation of sample 2j's noise, which averages to a better mean at the same
    cost: docs/STRATEGIES.md).  ``params``: the
    strategy's hyperparameters.  ``noise``: the measurement's noise (a Gaussian sigma on
    [0, 1] or a noise dict), replacing the operator's.  ``listeners``: observer plugins
    (objects with ``restore_run_start`` / ``restore_step`` / ``restore_run_end`` hook
    implementations) told about the run.  ``crop_to_mask``: inpainting with a user mask
    restores only a padded box around each hole (:mod:`restore.cropping`; None: when the
    image has more than :data:`restore.cropping.AUTO_PIXELS` pixels).  See the module
    docstring for image kinds, batching, seeding and channels.

    The fast path (:mod:`restore.accel`, docs/PERFORMANCE.md): ``precision`` of the network
    (``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``; the sampler state stays float32),
    ``channels_last`` (None: on for networks), ``compile`` (torch.compile, kept for later calls
    with the same prior spec), ``threads`` (CPU threads for this call; None: the process's).  A
    loaded prior runs as it is unless one of these asks otherwise (then on a copy).
    ``dtype`` is a deprecated spelling of ``precision`` (float32, bfloat16, float16).
    """
    from restore import measurement as measurements, pipeline
    from restore.accel import FastPath

    if isinstance(image, (str, os.PathLike)):
        if noise is not None and Path(image).suffix.lower() == ".json":
            raise RestoreError(f"{image}: a measurement sidecar brings its noise; give no noise")
        from restore.operators.io import ImageFileError

        try:
            measurement = measurements.read(image, operator, options=operator_options, noise=noise, registry=registry)
        except (ImageFileError, FileNotFoundError) as exc:
            raise RestoreError(str(exc)) from None
        kind = ImageKind("tensor", True, torch.float32, torch.device("cpu"))
    else:
        if operator is None:
            raise RestoreError("give the operator that made this measurement (a registered name or an operator)")
        measurement, kind = measurements.from_array(image, operator, options=operator_options, noise=noise,
                                                    registry=registry)
    done = pipeline.run(measurement, prior, method=method, steps=steps, params=params, quality=quality, seed=seed,
                        samples=samples, device=device, listeners=listeners, registry=registry,
                        crop_to_mask=crop_to_mask, target=target, threads=threads, antithetic=antithetic,
                        fast=FastPath(precision if dtype is None else deprecated_dtype(dtype), channels_last, compile))
    for note in done.warnings:
        warnings.warn(note, stacklevel=2)
    record = {**done.records[0], "invocation": {"interface": "api"}}
    mean, draws, std, alpha = done.mean, done.samples, done.std, measurement.alpha
    return Result(image=from_tensor(mean, kind, alpha), samples=[from_tensor(s, kind, alpha) for s in draws],
                  std=from_tensor(std, float_kind(kind)), nfe=done.nfe, seconds=done.seconds, provenance=record,
                  tensors={"mean": mean, "samples": draws, "std": std, "alpha": alpha})


# ----------------------------------------------------------------------------- per-task helpers


def inpaint(image: ImageLike, mask: Any, *, mask_white_known: bool = False, **kwargs: Any) -> Result:
    """Fill the masked region of ``image``.  ``mask``: a tensor, array, ``.npy`` or image file
    where 1 (white) marks the pixels to fill and 0 (black) the known ones, as the commands read
    it (:func:`user_mask`; ``mask_white_known=True`` reads it the other way round), or a
    generator name (box, random, strokes, outpaint).
    ``crop_to_mask=True`` restores only a padded box around each hole (:mod:`restore.cropping`;
    by default above :data:`restore.cropping.AUTO_PIXELS` pixels)."""
    return restore(image, "inpaint", operator_options={"mask": mask, "invert": mask_white_known}, **kwargs)


def sr(image: ImageLike, scale: int, *, kernel: str = "bicubic", **kwargs: Any) -> Result:
    """Super-resolve ``image`` by the integer factor ``scale`` (the result is scale times larger)."""
    return restore(image, "sr", operator_options={"scale": scale, "method": kernel}, **kwargs)


def deblur(image: ImageLike, kernel: Any, *, boundary: str = "circular", **kwargs: Any) -> Result:
    """Deblur ``image`` blurred by ``kernel``, named as on the command line
    (:func:`restore.operators.kernels.kernel_params`: ``gaussian[:STD[:SIZE]]``,
    ``motion[:SEED[:SIZE]]``, a kernel file) or given as a tensor / array; further generator
    options in ``kernel_options``."""
    options = {"kernel": kernel, "boundary": boundary, **kwargs.pop("kernel_options", {})}
    return restore(image, "blur", operator_options=options, **kwargs)


def denoise(image: ImageLike, sigma: Optional[float] = None, **kwargs: Any) -> Result:
    """Denoise ``image`` with Gaussian noise of level ``sigma`` on [0, 1] (None: estimated
    from the image, :func:`restore.measurement.estimate_sigma`, and recorded as
    ``sigma_estimated``)."""
    return restore(image, "denoise", noise="estimate" if sigma is None else sigma, **kwargs)


def colorize(image: ImageLike, **kwargs: Any) -> Result:
    """Colour a grey ``image`` (1 channel, or 3 equal ones); the result has 3 channels (a 2-D
    array gives an (H, W, 3) one)."""
    return restore(image, "colorize", **kwargs)
