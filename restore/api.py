"""The high-level Python API: restore an image in one call.

    import restore
    result = restore.inpaint(image, mask, prior="unet:DIR", seed=0)
    result.image                      # same kind as ``image``: tensor, numpy array or PIL image

:func:`restore` runs x ~ p(x | y) for a measurement ``y`` (the image the user has) and an
operator (a registered name or an :class:`~restore.operators.base.Operator`), through
the one engine entry point :func:`restore.strategies.engine.solve`.  The per-task
helpers (:func:`inpaint`, :func:`sr`, :func:`deblur`, :func:`denoise`, :func:`colorize`)
build the operator and call it.

* Images: torch tensors (B, C, H, W) or (C, H, W) on [0, 1]; numpy arrays (H, W),
  (H, W, C) or (B, H, W, C), uint8 (/255), uint16 (/65535) or float on [0, 1]; PIL
  images (L, LA, I;16, RGB, RGBA; other modes converted to RGB(A)).  The alpha channel
  of numpy arrays with 2 or 4 channels and of PIL images is kept aside and put back
  (super-resolution: only when opaque).  The result comes back in the kind, layout,
  dtype and (for tensors) device it came in.
* Batched: several images of one size are restored in one run; ``samples = N`` draws N
  posterior samples of each and reports their mean (``image``), each sample
  (``samples``) and the per-pixel standard deviation (``std``).
* Seeded without global state: batch item k (sample-major: item s * B + b is sample s
  of image b) draws from its own ``torch.Generator`` seeded with ``seed + k``
  (:class:`restore.diffusion.randomness.ItemGenerators`), so an item's result does not
  depend on the batch it ran in.  ``seed=None`` picks a random seed, recorded in
  ``provenance``.
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
import platform
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import numpy as np
import torch
from torch import Tensor

import restore as _package
from restore.operators.noise import GaussianNoise, NoiseModel, PoissonNoise
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
        converted = image if mode in ("L", "LA", "I;16", "RGB", "RGBA") else image.convert("RGBA" if "A" in mode else "RGB")
        x, alpha, _ = to_tensor(np.asarray(converted))
        return x, alpha, ImageKind("pil", False, pil_mode=converted.mode)
    raise RestoreError(f"unsupported image type {type(image).__name__}: give a torch tensor, a numpy array or a PIL image")


def _checked(x: Tensor) -> Tensor:
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise RestoreError("image values must be finite and on [0, 1] (floats) or integers of the dtype's range")
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
    return out if kind.channels_last else out[..., 0]


def float_kind(kind: ImageKind) -> ImageKind:
    """The float32 counterpart of ``kind`` (PIL images: a channels-last numpy array), for
    values such as standard deviations that integer pixels would round away."""
    if kind.kind == "pil":
        return ImageKind("numpy", False, np.float32, channels_last=True)
    return dataclasses.replace(kind, dtype=torch.float32 if kind.kind == "tensor" else np.float32)


# ----------------------------------------------------------------------------- results


@dataclass
class Result:
    """A restoration: ``image`` (the posterior mean of the samples, in the input's kind),
    ``samples`` (each sample, a list in the input's kind), ``std`` (per-pixel standard
    deviation over the samples on the [0, 1] scale, in the input's layout as float32; zeros
    for one sample), ``nfe``
    (network evaluations), ``seconds`` (wall time), ``provenance`` (everything needed to
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


def pick_dtype(dtype: Union[str, torch.dtype, None]) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise RestoreError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def build_operator(operator: Any, registry: Any, options: Optional[Mapping[str, Any]] = None) -> Any:
    """An operator from its registered name and ``options``, or the operator given."""
    if not isinstance(operator, str):
        if options:
            raise RestoreError("operator options go with an operator name, not an operator object")
        return operator
    factory = registry.get("operator", operator)
    try:
        return factory(**dict(options or {}))
    except TypeError as exc:
        raise RestoreError(f"operator {operator!r}: {exc}") from None


def with_quantization_noise(operator: Any, bits: int) -> tuple[Any, float]:
    """The operator with the rounding error of a ``bits``-bit input file added to its Gaussian
    noise: an integer file holds y rounded to steps of q = 1 / (2^bits - 1), an error uniform on
    [-q/2, q/2] with standard deviation q / sqrt(12) (0.00113 for 8 bits), so the measurement's
    noise is sqrt(sigma^2 + q^2 / 12).  Without it a "noiseless" blurred PNG is trusted to the
    last digit and the SVD strategies divide its rounding error by singular values near zero
    (5.5 dB on a deblurred photo, 24.5 with it).  The commands, ``restore batch`` and
    :func:`restore` all apply it (``bits`` of an array or PIL image: :attr:`ImageKind.bits`).
    Left alone: float files (32 bits), non-Gaussian noise, and the operators whose singular values are all 1 (masks and denoising),
    which do not amplify rounding: inpainting keeps the known pixels exactly as the file has
    them, and a denoising sigma estimated from the image already contains the rounding."""
    unit_gain = operator.capabilities().get("is_mask") or getattr(operator, "task", None) == "denoise"
    if bits not in (8, 16) or not isinstance(operator.noise, GaussianNoise) or unit_gain:
        return operator, 0.0
    q = 1.0 / ((2**bits - 1) * math.sqrt(12.0))
    return with_noise(operator, math.hypot(operator.noise.sigma, q)), q


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


def image_shape(operator: Any, y: Tensor) -> tuple[int, int, int]:
    """(C, H, W) of the image behind measurement ``y``: the operator's bound shape if it
    has one; for linear operators the pseudo-inverse's (super-resolution enlarges,
    colorization adds channels); else y's, when the operator maps images of y's shape to
    y's shape (a :class:`RestoreError` otherwise: such operators must be bound)."""
    if operator.shape is not None:
        return tuple(operator.shape)
    with torch.no_grad():
        if operator.capabilities().get("linear"):
            return tuple(operator.pinv(y[:1]).shape[1:])
        try:
            same = operator(torch.zeros_like(y[:1])).shape == y[:1].shape
        except (ValueError, RuntimeError):
            same = False
    if not same:
        raise RestoreError(f"operator {operator.name!r} does not map images of the measurement's shape "
                           f"{tuple(y.shape[1:])} to it, so the image size is unknown: bind the operator to the "
                           "image shape (parameter shape=[C, H, W])")
    return tuple(y.shape[1:])


def spread_channels(operator: Any, y: Tensor, channels: int, have: int) -> tuple[Any, Tensor]:
    """The grey-with-a-colour-prior case of the module docstring: the operator with its
    noise variance scaled by ``have`` and y replicated to ``have`` channels."""
    if channels != 1:
        raise RestoreError(f"wrong channel count: the prior models {have}-channel images, the image has {channels}; "
                           f"use a {channels}-channel prior")
    size = image_shape(operator, y)[1:]
    probe = torch.rand((1, 1, *size), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        try:
            alike = torch.allclose(operator(probe.expand(1, have, *size)), operator(probe).expand(1, have, -1, -1))
        except (ValueError, RuntimeError):
            alike = False
    if not alike:
        raise RestoreError(f"wrong channel count: the prior models {have}-channel images, the image is grey, and "
                           f"operator {operator.name!r} does not act on each channel alike; use a 1-channel prior")
    noise = operator.noise
    if isinstance(noise, PoissonNoise):
        scaled: NoiseModel = PoissonNoise(noise.rate / have)
    elif isinstance(noise, GaussianNoise):
        scaled = GaussianNoise(noise.sigma * math.sqrt(have))
    else:
        raise RestoreError(f"a grey image with a {have}-channel prior needs Gaussian or Poisson noise, "
                           f"not {type(noise).__name__}; use a 1-channel prior")
    return with_noise(operator, scaled), y.expand(-1, have, -1, -1)


def restore(
    image: ImageLike,
    operator: Any,
    prior: Union[str, Prior] = "default",
    method: Optional[str] = None,
    steps: Optional[int] = None,
    seed: Optional[int] = None,
    samples: int = 1,
    device: Union[str, torch.device, None] = None,
    dtype: Union[str, torch.dtype, None] = None,
    params: Optional[Mapping[str, Any]] = None,
    *,
    quality: str = "fast",
    noise: Union[float, Mapping[str, Any], NoiseModel, None] = None,
    operator_options: Optional[Mapping[str, Any]] = None,
    listeners: Iterable[Any] = (),
    registry: Any = None,
    crop_to_mask: Optional[bool] = None,
) -> Result:
    """Restore ``image``, the measurement y = A(x) + n of operator ``operator``.

    ``prior``: a prior spec (``default``, ``unet:DIR``, ``gaussian:3x32x32``, ...) or a
    loaded :class:`~restore.priors.base.Prior`.  ``method``: a strategy name; by default
    :func:`restore.strategies.catalog.default_method` for the operator and ``quality``
    (``"fast"`` or ``"high"``), which also gives the default ``steps``.  ``params``: the
    strategy's hyperparameters.  ``noise``: the measurement's noise (a Gaussian sigma on
    [0, 1] or a noise dict), replacing the operator's.  ``listeners``: observer plugins
    (objects with ``restore_run_start`` / ``restore_step`` / ``restore_run_end`` hook
    implementations) told about the run.  ``crop_to_mask``: inpainting with a user mask
    restores only a padded box around each hole (:mod:`restore.cropping`; None: when the
    image has more than :data:`restore.cropping.AUTO_PIXELS` pixels).  See the module
    docstring for image kinds, batching, seeding and channels.
    """
    from restore.cropping import restore_around_mask
    from restore.plugins import default_registry

    registry = registry or default_registry()
    if not isinstance(samples, int) or samples < 1:
        raise RestoreError(f"samples must be an integer >= 1, got {samples!r}")
    y_in, alpha, kind = to_tensor(image)
    device, dtype = pick_device(device), pick_dtype(dtype)
    op, _ = with_quantization_noise(with_noise(build_operator(operator, registry, operator_options), noise),
                                    kind.bits)
    if alpha is not None and image_shape(op, y_in)[1:] != tuple(y_in.shape[-2:]):
        if not bool((alpha == 1).all()):
            raise RestoreError("the image has transparency, and this operator changes its size; flatten it first")
        alpha = torch.ones((alpha.shape[0], 1, *image_shape(op, y_in)[1:]))
    loaded = load(prior, registry, device, dtype)

    def run(y: Tensor, run_op: Any, run_seed: Optional[int]) -> dict[str, Any]:
        return restore_tensor(y, run_op, loaded, method=method, steps=steps, seed=run_seed, samples=samples,
                              device=device, dtype=dtype, params=params, quality=quality, listeners=listeners,
                              registry=registry, prior_spec=prior if isinstance(prior, str) else prior.name)

    out = restore_around_mask(y_in, op, run, seed, crop_to_mask)
    mean, draws, std = out["mean"], out["samples"], out["std"]
    return Result(image=from_tensor(mean, kind, alpha), samples=[from_tensor(s, kind, alpha) for s in draws],
                  std=from_tensor(std, float_kind(kind)), nfe=out["nfe"], seconds=out["seconds"], provenance=out["provenance"],
                  tensors={"mean": mean, "samples": draws, "std": std, "alpha": alpha})


@dataclass(frozen=True)
class Plan:
    """How one run is set up: the operator and measurement as run (channels spread or not),
    the image shape of a sample, the strategy with its name and steps."""

    operator: Any
    y: Tensor
    shape: tuple[int, int, int]
    strategy: Any
    method: str
    steps: Optional[int]
    spread: bool

    def gather(self, images: Tensor) -> Tensor:
        """Samples of the run back in the input's channels (averaged back when spread)."""
        return images.mean(dim=-3, keepdim=True) if self.spread else images


def plan_run(operator: Any, y: Tensor, prior: Prior, *, method: Optional[str], steps: Optional[int],
             params: Optional[Mapping[str, Any]], quality: str, registry: Any) -> Plan:
    """The image shape behind ``y`` (:func:`image_shape`), channel spreading for a grey
    image with a colour prior (:func:`spread_channels`), and the strategy: ``method`` or
    :func:`restore.strategies.catalog.default_method`, whose steps apply when neither
    ``method`` nor ``steps`` is given (else the strategy's own default)."""
    from restore.priors.spec import prior_channels
    from restore.strategies.catalog import default_method

    shape = image_shape(operator, y)
    run_op, run_y = operator, y
    have = prior_channels(prior)
    if have is not None and have != shape[0]:
        run_op, run_y = spread_channels(operator, y, shape[0], have)
        shape = (have, *shape[1:])
    default_name, default_steps = default_method(run_op, quality)
    if steps is None and method is None:
        steps = default_steps
    strategy = make_strategy(registry, method or default_name, params)
    steps = strategy.default_steps if steps is None else steps
    return Plan(run_op, run_y, shape, strategy, method or default_name, steps, run_op is not operator)


def restore_tensor(y: Tensor, operator: Any, prior: Prior, *, method: Optional[str], steps: Optional[int],
                   seed: Optional[int], samples: int, device: torch.device, dtype: torch.dtype,
                   params: Optional[Mapping[str, Any]], quality: str, listeners: Iterable[Any], registry: Any,
                   prior_spec: str) -> dict[str, Any]:
    """The run behind :func:`restore` on a (B, C, H, W) measurement: a dict with ``mean``,
    ``samples`` (S, B, C, H, W), ``std``, ``nfe``, ``seconds`` and ``provenance``, tensors
    on the CPU in float32.  The CLI calls it directly."""
    from restore.diffusion.randomness import ItemGenerators
    from restore.strategies.base import Problem
    from restore.strategies.engine import solve

    batch = y.shape[0]
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    plan = plan_run(operator, y, prior, method=method, steps=steps, params=params, quality=quality, registry=registry)
    problem = Problem(prior, plan.operator, plan.y.to(device=device, dtype=dtype).repeat(samples, 1, 1, 1))
    generators = ItemGenerators.from_seeds([seed + k for k in range(samples * batch)])
    started = time.perf_counter()
    result = solve(problem, plan.strategy, steps=plan.steps, shape=None if prior.latent else plan.shape,
                   generator=generators, registry=registry, listeners=listeners)
    seconds = time.perf_counter() - started
    images = plan.gather(result.image.detach().to("cpu", torch.float32))
    draws = images.reshape(samples, batch, *images.shape[1:])
    mean = draws.mean(dim=0)
    std = draws.std(dim=0, correction=0) if samples > 1 else torch.zeros_like(mean)
    provenance = {
        "restore_version": _package.__version__, "torch_version": torch.__version__,
        "python_version": platform.python_version(), "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "prior": {"spec": prior_spec, "weights_sha256": weights_sha256(prior)},
        "operator": {"name": operator.name, "params": operator.params(), "tensors": sorted(operator.tensors())},
        "strategy": {"name": plan.method, "params": jsonable(plan.strategy.params())},
        "steps": plan.steps, "nfe": result.nfe,
        "seed": seed, "item_seeds": f"seed + k for batch item k = sample * {batch} + image",
        "samples": samples, "batch": batch, "quality": quality, "seconds": round(seconds, 3),
        "channels_spread": plan.spread,
    }
    return {"mean": mean, "samples": draws, "std": std, "nfe": result.nfe, "seconds": seconds,
            "provenance": provenance}


def jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every value JSON can not hold (a network, a tensor) as its repr."""
    import json

    def one(value: Any) -> Any:
        try:
            json.dumps(value)
            return value
        except (TypeError, ValueError):
            return repr(value)

    return {key: one(value) for key, value in params.items()}


def make_strategy(registry: Any, name: str, params: Optional[Mapping[str, Any]]) -> Any:
    factory = registry.get("strategy", name)
    try:
        return factory(**dict(params or {}))
    except TypeError as exc:
        raise RestoreError(f"strategy {name!r}: {exc}") from None


def weights_sha256(prior: Prior) -> Optional[str]:
    """SHA-256 of the prior's weight file (``info['path']``: a file, or a directory's
    ``*.safetensors`` / ``*.pt`` files hashed in name order), None for analytic priors."""
    from restore.operators.io import sha256_file
    import hashlib

    path = prior.info.get("path")
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    files = sorted(p for p in path.glob("*") if p.suffix in (".safetensors", ".pt", ".pth", ".bin", ".ckpt"))
    if not files:
        return None
    if len(files) == 1:
        return sha256_file(files[0])
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}:{sha256_file(f)}\n".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- per-task helpers


def inpaint(image: ImageLike, mask: Any, *, mask_white_known: bool = False, **kwargs: Any) -> Result:
    """Fill the masked region of ``image``.  ``mask``: a tensor / array in the engine
    convention (1 = known, 0 = fill), an image file where white marks the region to fill
    (``mask_white_known`` reads it the other way), or a generator name (box, random, ...).
    ``crop_to_mask=True`` restores only a padded box around each hole (:mod:`restore.cropping`;
    by default above :data:`restore.cropping.AUTO_PIXELS` pixels)."""
    return restore(image, "inpaint", operator_options={"mask": mask, "invert": mask_white_known}, **kwargs)


def sr(image: ImageLike, scale: int, *, kernel: str = "bicubic", **kwargs: Any) -> Result:
    """Super-resolve ``image`` by the integer factor ``scale`` (the result is scale times larger)."""
    return restore(image, "sr", operator_options={"scale": scale, "method": kernel}, **kwargs)


def deblur(image: ImageLike, kernel: Any, *, boundary: str = "circular", **kwargs: Any) -> Result:
    """Deblur ``image`` blurred by ``kernel``: a tensor / array / file, or a generator name
    (``gaussian``, ``motion``) with its options in ``kernel_options``."""
    options = dict(kwargs.pop("kernel_options", {}))
    return restore(image, "blur", operator_options={"kernel": kernel, "boundary": boundary, **options}, **kwargs)


def denoise(image: ImageLike, sigma: Optional[float] = None, **kwargs: Any) -> Result:
    """Denoise ``image`` with Gaussian noise of level ``sigma`` on [0, 1] (None: estimated
    with :func:`estimate_sigma`)."""
    if sigma is None:
        x, _, _ = to_tensor(image)
        sigma = estimate_sigma(x)
    return restore(image, "denoise", noise=sigma, **kwargs)


def colorize(image: ImageLike, **kwargs: Any) -> Result:
    """Colour a grey ``image`` (1 channel; the result has 3)."""
    return restore(image, "colorize", **kwargs)


def estimate_sigma(x: Tensor) -> float:
    """The Gaussian noise level of images ``x`` (B, C, H, W) on [0, 1]: scikit-image's
    wavelet estimator (Donoho & Johnstone 1994: median absolute deviation of the finest
    diagonal wavelet coefficients / 0.6745), averaged over channels and batch items."""
    from skimage.restoration import estimate_sigma as skimage_sigma

    values = [skimage_sigma(item.permute(1, 2, 0).double().numpy(), channel_axis=-1, average_sigmas=True)
              for item in x]
    return float(np.mean(values))
