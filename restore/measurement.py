"""What a run restores: the :class:`Measurement` and the readers that make one from a user's input.

* :func:`read_file`: an image file and an operator;
* :func:`read_sidecar`: a ``restore degrade`` sidecar, with its exact operator;
* :func:`from_array`: a tensor, numpy array or PIL image and an operator;
* :func:`read`: a file of either kind.

Each ends in :func:`measured`: y (B, C, H', W') on [0, 1] (float measurements may lie outside:
noise), the operator with its noise (given, recorded, or estimated from y: :func:`estimate_sigma`),
the bit depth of the data (8 / 16 for integer samples, 32 for floats), the alpha channel set aside,
the input's SHA-256 and the quantization noise added for its bit depth
(:func:`with_quantization_noise`).  An operator whose measurement does not tell the image size
(phase retrieval) is bound to the shape a sidecar records (:func:`image_shape`).  The run itself
is :mod:`restore.pipeline`'s.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch
from torch import Tensor

from restore.api import ImageKind, RestoreError, build_operator, to_tensor, with_noise
from restore.operators import io as rio
from restore.operators.noise import GaussianNoise, NoiseModel

#: A measurement's noise: a Gaussian sigma on [0, 1], a noise dict or model, ``"estimate"``
#: (a Gaussian sigma estimated from y: :func:`estimate_sigma`) or None (the operator's own).
Noise = Union[float, Mapping[str, Any], NoiseModel, str, None]


@dataclass(frozen=True)
class Measurement:
    """What a run restores (module docstring).  ``y`` (B, C, H', W') float32 on the CPU;
    ``operator`` with its noise, quantization noise included (bound to the image shape where y
    does not tell it); ``bits`` of the data (8, 16, or 32 for floats); ``alpha`` (B, 1, H, W) at the
    image's size or None; ``sha256`` of the input (a file's bytes, an array's float32 values);
    ``quantization_sigma``: q / sqrt(12) added for integer data (0 otherwise); ``path`` of the
    measurement file and ``sidecar`` of the degrade sidecar (with its SHA-256), where they came
    from files; ``sigma_estimated``: the noise level estimated from y, when it was."""

    y: Tensor
    operator: Any
    bits: int
    alpha: Optional[Tensor]
    sha256: str
    quantization_sigma: float = 0.0
    path: Optional[Path] = None
    sidecar: Optional[Path] = None
    sidecar_sha256: Optional[str] = None
    sigma_estimated: Optional[float] = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the image behind ``y`` (:func:`image_shape`)."""
        return image_shape(self.operator, self.y)

    def describe(self) -> dict[str, Any]:
        """The run record's ``input`` entry."""
        return {"path": None if self.path is None else str(self.path),
                "sidecar": None if self.sidecar is None else str(self.sidecar),
                "sha256": self.sha256, "sidecar_sha256": self.sidecar_sha256, "bits": self.bits,
                "shape": list(self.y.shape), "alpha": self.alpha is not None}


def measured(y: Tensor, operator: Any, bits: int, alpha: Optional[Tensor], sha256: str, *, where: str,
             noise: Noise = None, **origin: Any) -> Measurement:
    """The :class:`Measurement` of ``y`` under ``operator`` (what every reader ends with):
    a grey image in three equal channels taken as one for colorization, a user mask checked
    against it, the noise set (``noise``, :data:`Noise`), the quantization noise of
    ``bits``-bit data added, the image shape found (:func:`image_shape`: a RestoreError when y
    does not tell it) and the alpha channel checked against it (an opaque one follows a
    change of size; a translucent one cannot)."""
    if y.numel() == 0:
        raise RestoreError(f"{where}: the measurement is empty (shape {tuple(y.shape)})")
    y = one_grey_channel(y, operator, where)
    check_user_mask(operator, y)
    estimated = None
    if isinstance(noise, str):
        if noise != "estimate":
            raise RestoreError(f"noise must be a sigma, a noise model or 'estimate', got {noise!r}")
        noise = estimated = estimate_sigma(y)
    operator, quantization = with_quantization_noise(with_noise(operator, noise), bits)
    shape = image_shape(operator, y)
    if alpha is not None and tuple(alpha.shape[-2:]) != shape[1:]:
        if not bool((alpha == 1).all()):
            raise RestoreError(f"{where}: has an alpha channel, which cannot be put back on the {shape[1]}x{shape[2]} "
                               f"result of operator {operator.name!r}; flatten its transparency first")
        alpha = torch.ones((alpha.shape[0], 1, *shape[1:]))
    return Measurement(y, operator, bits, alpha, sha256, quantization, sigma_estimated=estimated, **origin)


def check_user_mask(operator: Any, y: Tensor) -> None:
    """Refuse a user mask (an operator's ``user_mask``, 1 = known) of another size than the
    image, one that marks nothing to fill, or one that fills everything."""
    mask = getattr(operator, "user_mask", None)
    if mask is None:
        return
    h, w = y.shape[-2:]
    if tuple(mask.shape[-2:]) != (h, w):
        raise RestoreError(f"the mask is {mask.shape[-2]}x{mask.shape[-1]} pixels but the image is {h}x{w}; "
                           "give a mask of the image's size")
    known = float(mask.mean())
    if known in (0.0, 1.0):
        what = ("the mask is empty: it marks no pixel to fill (1 / white = fill), so there is nothing to restore"
                if known == 1 else "the mask covers the whole image: no pixel is known, so this is not inpainting")
        raise RestoreError(f"{what}; pass --mask-white-known (mask_white_known=True) if white marks the known pixels")


def one_grey_channel(y: Tensor, operator: Any, where: str) -> Tensor:
    """A grey image stored with three equal channels, given to an operator that measures colour
    images in one channel (colorization: A maps (B, 3, H, W) to (B, 1, H, W)), as its one
    channel; three channels that differ are a :class:`RestoreError`.  Other cases: ``y``."""
    if y.shape[1] != 3 or operator.shape is not None:
        return y
    try:
        with torch.no_grad():
            grey_of_colour = operator(torch.zeros_like(y[:1])).shape[1] == 1
    except (ValueError, RuntimeError, IndexError, TypeError):  # an operator that cannot take y's shape
        return y
    if not grey_of_colour:
        return y
    if not bool((y == y[:, :1]).all()):
        raise RestoreError(f"{where}: {operator.name} takes a grey image (1 channel, or 3 equal ones); this one has "
                           "3 channels that differ")
    return y[:, :1].contiguous()


def read_file(path: Union[str, Path], operator: Any, *, options: Optional[Mapping[str, Any]] = None,
              noise: Noise = None, registry: Any = None) -> Measurement:
    """An image file (:func:`restore.operators.io.load_image`) measured by ``operator`` (a
    registered name with ``options``, or an operator)."""
    from restore.plugins import default_registry

    loaded = rio.load_image(path)
    op = build_operator(operator, registry or default_registry(), options)
    return measured(loaded.image, op, loaded.bits, loaded.alpha, rio.sha256_file(path), where=str(path),
                    noise=noise, path=Path(path))


def read_sidecar(path: Union[str, Path], registry: Any = None) -> Measurement:
    """A ``restore degrade`` sidecar: the measurement file it names with the exact operator
    (:func:`restore.operators.io.load_measurement`), bound to the clean image's shape the
    sidecar records where y does not tell it (phase retrieval: :func:`image_shape`).  Bits:
    a PNG's own depth; a ``.npy`` file holds exact floats (32: no rounding noise)."""
    from restore.plugins import default_registry

    path = Path(path)
    loaded = rio.load_measurement(path, registry or default_registry())
    entry = loaded.sidecar["measurement"]
    bits = int(entry.get("bits", 8)) if entry.get("storage") == "png" else 32
    operator, recorded = loaded.operator, loaded.sidecar.get("input_shape")
    if recorded is not None and operator.shape is None:
        try:
            found: Optional[tuple[int, ...]] = image_shape(operator, loaded.y)
        except RestoreError:
            found = None
        if found != tuple(recorded[1:]):  # y does not tell the image size: bind the operator to it
            operator = operator.bound_to(recorded[1:])
    file = path.parent / entry["file"]
    return measured(loaded.y.float(), operator, bits, None, rio.sha256_file(file), where=str(path), path=file,
                    sidecar=path, sidecar_sha256=rio.sha256_file(path))


def from_array(image: Any, operator: Any, *, options: Optional[Mapping[str, Any]] = None, noise: Noise = None,
               registry: Any = None) -> tuple[Measurement, ImageKind]:
    """A tensor, numpy array or PIL image (:func:`restore.api.to_tensor`) measured by
    ``operator``; also the :class:`~restore.api.ImageKind` to give the result back in.  Its
    SHA-256 is that of the float32 values (B, C, H, W) as read."""
    from restore.plugins import default_registry

    y, alpha, kind = to_tensor(image)
    op = build_operator(operator, registry or default_registry(), options)
    digest = hashlib.sha256(y.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
    return measured(y, op, kind.bits, alpha, digest, where="the image", noise=noise), kind


def read(source: Union[str, Path], operator: Any = None, **options: Any) -> Measurement:
    """A file: a ``.json`` degrade sidecar (:func:`read_sidecar`; no operator) or an image
    file with ``operator`` (:func:`read_file`)."""
    if Path(source).suffix.lower() == ".json":
        if operator is not None:
            raise RestoreError(f"{source}: a measurement sidecar brings its operator; give no operator")
        return read_sidecar(source, options.get("registry"))
    if operator is None:
        raise RestoreError(f"{source}: give the operator that made this measurement")
    return read_file(source, operator, **options)


def clip_step(bits: int) -> Optional[float]:
    """The rounding step q = 1 / (2^bits - 1) of integer data (8 or 16 bits), which holds the
    measurement clipped to [0, 1] (:attr:`restore.strategies.base.Problem.clip_step`); None for
    float data (32 bits), which is neither rounded nor clipped."""
    return 1.0 / (2**bits - 1) if bits in (8, 16) else None


def with_quantization_noise(operator: Any, bits: int) -> tuple[Any, float]:
    """The operator with the rounding error of a ``bits``-bit input file added to its Gaussian
    noise: an integer file holds y rounded to steps of q = 1 / (2^bits - 1), an error uniform on
    [-q/2, q/2] with standard deviation q / sqrt(12) (0.00113 for 8 bits), so the measurement's
    noise is sqrt(sigma^2 + q^2 / 12).  Without it a "noiseless" blurred PNG is trusted to the
    last digit and the SVD strategies divide its rounding error by singular values near zero
    (5.5 dB on a deblurred photo, 24.5 with it).  Every :class:`Measurement` has it applied.
    Left alone: float data (32 bits), non-Gaussian noise, and the operators whose singular
    values are all 1 (masks and denoising), which do not amplify rounding: inpainting keeps the
    known pixels exactly as the file has them, and a denoising sigma estimated from the image
    already contains the rounding."""
    unit_gain = operator.capabilities().get("is_mask") or getattr(operator, "task", None) == "denoise"
    if clip_step(bits) is None or not isinstance(operator.noise, GaussianNoise) or unit_gain:
        return operator, 0.0
    q = 1.0 / ((2**bits - 1) * math.sqrt(12.0))
    return with_noise(operator, math.hypot(operator.noise.sigma, q)), q


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


#: The smallest side :func:`estimate_sigma` accepts: 8 pixels give 16 finest diagonal coefficients.
MIN_SIGMA_SIDE = 8


def estimate_sigma(x: Tensor) -> float:
    """The Gaussian noise level of images ``x`` (B, C, H, W) on [0, 1]: scikit-image's
    wavelet estimator (Donoho & Johnstone 1994: median absolute deviation of the finest
    diagonal wavelet coefficients / 0.6745), averaged over channels and batch items.  Images
    smaller than :data:`MIN_SIGMA_SIDE` pixels a side are refused: too few coefficients."""
    if min(x.shape[-2:]) < MIN_SIGMA_SIDE:
        raise RestoreError(f"an image of {x.shape[-2]}x{x.shape[-1]} pixels is too small to estimate its noise level "
                           f"(at least {MIN_SIGMA_SIDE}x{MIN_SIGMA_SIDE}); give the noise level "
                           "(--sigma; sigma= in the API)")
    from skimage.restoration import estimate_sigma as skimage_sigma

    values = [skimage_sigma(item.permute(1, 2, 0).double().numpy(), channel_axis=-1, average_sigmas=True)
              for item in x]
    return float(np.mean(values))
