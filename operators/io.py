"""Image and measurement files.

* Images are read and written through maintained libraries: PNG (8 and 16 bits, grey,
  grey + alpha, RGB, RGBA, palette) by OpenCV after Pillow has checked the file's
  integrity (chunk CRCs through IEND), JPEG by Pillow with its EXIF orientation
  applied, TIFF (8 / 16-bit integers, float32) by tifffile, and channel-first ``.npy``
  arrays, (H, W), (C, H, W) or (1, C, H, W), by numpy (an (H, W, C) array, C = 1 or 3
  last and H not 1, 3 or 4, is read channel-last).  Float samples may lie outside
  [0, 1] (a noisy measurement does); NaN and infinity are refused.  The format is told by the
  file's first bytes, not its name.  :func:`load_image` gives the image as a float32
  tensor (1, C, H, W) on [0, 1] with its bit depth (8, 16, or 32 for float) and its
  alpha channel kept aside; :func:`write_image` writes one back with any bit depth the
  format holds, alpha put back.
* Every file is written atomically (:func:`restore.files.atomic_write`), so readers
  never see a partial file; a command groups its outputs with
  :func:`restore.files.all_or_nothing`.
* Measurement sidecars: ``y.json`` next to the measurement ``y.png`` / ``y.npy`` holds
  the operator's registry name, its parameters, its noise model, the seed of the noise
  draw, the input path and its SHA-256, and the names of ``.npy`` files holding the
  operator's tensors (masks, kernels), so :func:`load_operator_from_sidecar` rebuilds
  the exact operator: ``factory(**params, noise=noise, **tensors)``, each tensor passed
  as its file path (factories accept a path for every tensor-valued keyword:
  :func:`restore.operators.validation.load_array`).  The mask or kernel in use, generated
  or given, is also written for inspection (:func:`write_inspection_files`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from restore.files import all_or_nothing, atomic_write

PathLike = Union[str, os.PathLike]

SIDECAR_FORMAT = "restore-measurement"
SIDECAR_VERSION = 1
#: How the noise of a measurement is drawn from its recorded seed.
NOISE_RNG = "operator.measure(x.float32 on cpu, generator=torch.Generator('cpu').manual_seed(seed))"

#: Leading bytes of each image format read here.
SIGNATURES = {"png": (b"\x89PNG\r\n\x1a\n",), "jpeg": (b"\xff\xd8\xff",), "tiff": (b"II*\x00", b"MM\x00*")}
READABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")
#: Image suffix -> format and the bit depths it holds (32: float32).
WRITABLE = {".png": ("png", (8, 16)), ".jpg": ("jpeg", (8,)), ".jpeg": ("jpeg", (8,)),
            ".tif": ("tiff", (8, 16, 32)), ".tiff": ("tiff", (8, 16, 32))}
JPEG_QUALITY = 95


class ImageFileError(ValueError):
    """A file that is not a readable image, or an image that cannot be written as asked."""


@dataclass(frozen=True)
class ImageFile:
    """An image read from a file: ``image`` (1, C, H, W) float32 on [0, 1] without alpha,
    ``bits`` per sample of the file (8, 16, or 32 for float) and ``alpha`` (1, 1, H, W)
    on [0, 1] or None."""

    image: Tensor
    bits: int
    alpha: Optional[Tensor]
    path: Path

    @property
    def channels(self) -> int:
        return int(self.image.shape[1])


# ----------------------------------------------------------------------------- writing


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`restore.files.atomic_write`)."""
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))
    return Path(path)


def array_bytes(x: Union[Tensor, np.ndarray]) -> bytes:
    """The bytes of an ``.npy`` file holding ``x`` exactly (no pickles)."""
    array = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_array(path: PathLike, x: Union[Tensor, np.ndarray]) -> Path:
    """Save an array exactly as ``.npy`` (atomically)."""
    return atomic_write_bytes(path, array_bytes(x))


def write_json(path: PathLike, data: dict[str, Any]) -> Path:
    return atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def to_pixels(x: Tensor, bits: int = 8) -> np.ndarray:
    """(H, W, C) samples of an image (1, C, H, W), (C, H, W) or (H, W), C in 1..4:
    round(clip(x, 0, 1) * (2^bits - 1)) as unsigned integers for 8 and 16 bits,
    clip(x, 0, 1) as float32 for 32."""
    if bits not in (8, 16, 32):
        raise ValueError(f"bits must be 8, 16 or 32 (float), got {bits!r}")
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    elif x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or not 1 <= x.shape[0] <= 4:
        raise ValueError(f"an image to write must be (1, C, H, W), (C, H, W) or (H, W) with C <= 4, "
                         f"got {tuple(x.shape)}")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("an image to write has NaN or infinite values")
    x = x.clamp(0, 1).permute(1, 2, 0)
    if bits == 32:
        return x.numpy().astype(np.float32)
    pixels = torch.round(x * (2**bits - 1)).numpy()
    return pixels.astype(np.uint8 if bits == 8 else np.uint16)


def write_image(path: PathLike, x: Tensor, bits: int = 8, alpha: Optional[Tensor] = None) -> Path:
    """Write an image on [0, 1] (values clipped and rounded: :func:`to_pixels`) as PNG
    (8 / 16 bits), JPEG (8 bits, quality 95) or TIFF (8 / 16 bits, 32 = float32), told by
    the suffix; ``alpha`` (1, 1, H, W) is put back as the last channel.  Atomic."""
    return atomic_write_bytes(path, image_bytes(path, x, bits, alpha))


def image_bytes(path: PathLike, x: Tensor, bits: int = 8, alpha: Optional[Tensor] = None) -> bytes:
    """The bytes :func:`write_image` writes to ``path`` (its format told by the suffix)."""
    path = Path(path)
    kind, depths = WRITABLE.get(path.suffix.lower(), (None, ()))
    if kind is None:
        raise ImageFileError(f"{path}: images are written as {', '.join(WRITABLE)} (use write_array for .npy)")
    if bits not in depths:
        raise ImageFileError(f"{path}: {kind.upper()} holds {' or '.join(map(str, depths))} bits per sample, "
                             f"not {bits}; write 16 bits as .png or .tif and float32 as .tif")
    if alpha is not None:
        x = torch.cat([x.reshape(1, -1, *x.shape[-2:]), alpha.reshape(1, 1, *x.shape[-2:]).to(x)], dim=1)
    pixels = to_pixels(x, bits)
    if kind == "jpeg" and pixels.shape[-1] not in (1, 3):
        raise ImageFileError(f"{path}: JPEG holds grey or RGB images, not {pixels.shape[-1]} channels; "
                             "write .png or .tif")
    try:
        return encode_pixels(pixels, kind)
    except ImageFileError as exc:
        raise ImageFileError(f"{path}: {exc}") from None


def encode_pixels(pixels: np.ndarray, kind: str) -> bytes:
    """Samples (H, W, C) (:func:`to_pixels`) as the bytes of a ``png``, ``jpeg`` or ``tiff`` file."""
    out = io.BytesIO()
    ENCODERS[kind](out, pixels)
    return out.getvalue()


def _encode_png(out: io.BytesIO, pixels: np.ndarray) -> None:
    """OpenCV, except grey + alpha (which it cannot write): Pillow's LA, 8 bits only."""
    import cv2

    if pixels.shape[-1] == 2:
        if pixels.dtype != np.uint8:
            raise ImageFileError("a 16-bit grey + alpha PNG cannot be written here; write it as .tif")
        from PIL import Image

        Image.fromarray(pixels).save(out, format="PNG")  # (H, W, 2) uint8: mode LA
        return
    ok, data = cv2.imencode(".png", _swap_rb(pixels))
    if not ok:
        raise ImageFileError("OpenCV could not encode the PNG")
    out.write(data.tobytes())


def _encode_jpeg(out: io.BytesIO, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(out, format="JPEG", quality=JPEG_QUALITY)


def _encode_tiff(out: io.BytesIO, pixels: np.ndarray) -> None:
    import tifffile

    grey = pixels.shape[-1] in (1, 2)
    extra = ["unassalpha"] if pixels.shape[-1] in (2, 4) else None
    tifffile.imwrite(out, pixels[..., 0] if pixels.shape[-1] == 1 else pixels,
                     photometric="minisblack" if grey else "rgb", extrasamples=extra, planarconfig="contig")


ENCODERS = {"png": _encode_png, "jpeg": _encode_jpeg, "tiff": _encode_tiff}


def _swap_rb(pixels: np.ndarray) -> np.ndarray:
    """RGB(A) <-> OpenCV's BGR(A) channel order (grey and grey + alpha unchanged)."""
    return pixels[..., [2, 1, 0, 3][: pixels.shape[-1]]] if pixels.shape[-1] >= 3 else pixels


# ----------------------------------------------------------------------------- reading


def read_image(path: PathLike) -> Tensor:
    """An image file as a float32 tensor (1, C, H, W) on [0, 1]; an alpha channel is
    dropped when fully opaque and refused otherwise (the image would change)."""
    loaded = load_image(path)
    if loaded.alpha is not None and not torch.all(loaded.alpha == 1):
        raise ImageFileError(f"{path}: the alpha channel is not fully opaque; flatten the image first")
    return loaded.image


def load_image(path: PathLike) -> ImageFile:
    """Read an image file (module docstring); :class:`ImageFileError` for anything that is
    not a complete image of a supported kind, naming the file."""
    path = Path(path)
    if path.suffix.lower() not in READABLE_SUFFIXES:
        raise ImageFileError(f"{path}: unsupported image type {path.suffix.lower()!r}; "
                             f"use one of {', '.join(READABLE_SUFFIXES)}")
    if path.is_dir():
        raise ImageFileError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        return ImageFile(_image_from_array(path, read_array(path)), 32, None, path)
    return _split(path, *decode_pixels(path.read_bytes(), path))


def image_format(data: bytes) -> Optional[str]:
    """``png``, ``jpeg`` or ``tiff`` by the leading bytes (:data:`SIGNATURES`), else None."""
    return next((k for k, heads in SIGNATURES.items() if data.startswith(heads)), None)


def decode_pixels(data: bytes, name: PathLike) -> tuple[np.ndarray, bool]:
    """The samples (H, W, C) of an image file's bytes as stored (uint8, uint16 or float) and
    whether it is grey; :class:`ImageFileError` naming ``name`` for anything else."""
    kind = image_format(data)
    if kind is None:
        what = "an empty file" if not data else "not a PNG, JPEG or TIFF image"
        raise ImageFileError(f"{name}: {what}; give an image file")
    try:
        return DECODERS[kind](data)
    except ImageFileError as exc:
        raise ImageFileError(f"{name}: {exc}") from None
    except Exception as exc:  # decoders raise many types for damaged files
        raise ImageFileError(f"{name}: damaged, truncated or unsupported {kind.upper()} file "
                             f"({type(exc).__name__}: {exc})") from None


def _decode_png(data: bytes) -> tuple[np.ndarray, bool]:
    """Pillow checks the chunks (CRCs, completeness) and says whether it is grey; OpenCV
    decodes every bit depth (Pillow keeps only 8 bits of 16-bit colour)."""
    import cv2
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        grey = im.mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B")
        im.verify()
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageFileError("OpenCV could not decode this PNG")
    pixels = pixels[..., None] if pixels.ndim == 2 else _swap_rb(pixels)
    if grey and pixels.shape[-1] == 4:  # OpenCV expands grey + alpha to BGRA
        pixels = pixels[..., [0, 3]]
    return pixels, grey


def _decode_jpeg(data: bytes) -> tuple[np.ndarray, bool]:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        upright = ImageOps.exif_transpose(im)
        if upright.mode not in ("L", "RGB"):
            upright = upright.convert("RGB")
        pixels = np.asarray(upright)
    return (pixels[..., None], True) if pixels.ndim == 2 else (pixels, False)


def _decode_tiff(data: bytes) -> tuple[np.ndarray, bool]:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if len(tif.pages) != 1:
            raise ImageFileError(f"a TIFF with {len(tif.pages)} pages; give a single-page image")
        page = tif.pages[0]
        if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            raise ImageFileError("a min-is-white TIFF; save it as min-is-black")
        grey = page.photometric == tifffile.PHOTOMETRIC.MINISBLACK
        pixels = page.asarray()
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and pixels.ndim == 3:
            pixels = np.moveaxis(pixels, 0, -1)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    if pixels.ndim != 3 or not 1 <= pixels.shape[-1] <= 4:
        raise ImageFileError(f"TIFF samples of shape {pixels.shape}; expected (H, W) or (H, W, C) with C <= 4")
    return pixels, grey or pixels.shape[-1] <= 2


DECODERS = {"png": _decode_png, "jpeg": _decode_jpeg, "tiff": _decode_tiff}


def _split(path: Path, pixels: np.ndarray, grey: bool) -> ImageFile:
    """Scale samples to [0, 1] and set aside an alpha channel (grey + 1 or colour + 1)."""
    if pixels.dtype == np.uint8 or pixels.dtype == np.uint16:
        bits = 8 * pixels.dtype.itemsize
        values = pixels.astype(np.float32) / (2**bits - 1)
    elif pixels.dtype in (np.float32, np.float64):
        bits, values = 32, pixels.astype(np.float32)
        if not np.isfinite(values).all():
            raise ImageFileError(f"{path}: float image values must be finite (NaN or infinity found)")
    else:
        raise ImageFileError(f"{path}: samples of type {pixels.dtype} are not supported; use 8 / 16-bit or float32")
    x = torch.from_numpy(np.ascontiguousarray(values)).permute(2, 0, 1)[None].contiguous()
    has_alpha = x.shape[1] == 4 or (x.shape[1] == 2 and grey)
    if not has_alpha:
        return ImageFile(x, bits, None, path)
    return ImageFile(x[:, :-1].contiguous(), bits, x[:, -1:].contiguous(), path)


def read_array(path: PathLike) -> Tensor:
    """A ``.npy`` file as a tensor, values and dtype as stored (no pickles)."""
    try:
        return torch.from_numpy(np.load(Path(path), allow_pickle=False))
    except (ValueError, OSError, EOFError) as exc:
        raise ImageFileError(f"{path}: not a readable .npy array ({exc})") from None


def _image_from_array(path: Path, a: Tensor) -> Tensor:
    if a.dtype == torch.bool:
        a = a.float()
    if not a.is_floating_point():
        raise ImageFileError(f"{path}: an image array must hold floats on [0, 1], got {a.dtype}")
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 3 and a.shape[-1] in (1, 3) and a.shape[0] not in (1, 3, 4):  # (H, W, C) as numpy images come
        a = a.permute(2, 0, 1)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[0] != 1:
        raise ImageFileError(f"{path}: an image array must be (H, W), (C, H, W), (1, C, H, W) or (H, W, C) with "
                             f"C = 1 or 3, got {tuple(a.shape)}")
    if a.numel() == 0:
        raise ImageFileError(f"{path}: the image array {tuple(a.shape)} holds no pixels")
    if not torch.isfinite(a).all():
        raise ImageFileError(f"{path}: image values must be finite (NaN or infinity found)")
    return a.float()


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- sidecars


@dataclass(frozen=True)
class SidecarMeasurement:
    """A measurement read back from its sidecar: the data, its exact operator, the sidecar
    (:class:`restore.measurement.Measurement` adds what a restoration needs)."""

    y: Tensor
    operator: Any
    sidecar: dict[str, Any]
    path: Path


def sidecar_path(measurement_path: PathLike) -> Path:
    """``y.png`` / ``y.npy`` -> ``y.json``."""
    return Path(measurement_path).with_suffix(".json")


def save_measurement(
    y: Tensor,
    path: PathLike,
    operator: Any,
    *,
    operator_name: Optional[str] = None,
    seed: Optional[int] = None,
    input_path: Optional[PathLike] = None,
    input_shape: Optional[tuple[int, ...]] = None,
    bits: int = 8,
) -> dict[str, Any]:
    """Write the measurement ``y`` to ``path`` (``.png``: clipped and quantized with
    ``bits``; ``.npy``: exact), the operator's tensors as ``<stem>.<name>.npy`` and the
    sidecar ``<stem>.json`` (:func:`sidecar_path`); returns the sidecar.  ``input_shape``,
    the shape of the clean image, is recorded for operators whose measurement has another
    shape (phase retrieval, compressed sensing), so a restoration knows the image size.  All writes are
    atomic and form one unit (:func:`restore.files.all_or_nothing`): on any error none
    of the files is left."""
    path = Path(path)
    suffix = path.suffix.lower()
    entry: dict[str, Any] = {"file": path.name, "shape": list(y.shape), "dtype": str(y.dtype).removeprefix("torch.")}
    with all_or_nothing():
        if suffix == ".png":
            write_image(path, y, bits=bits)
            outside = ((y < 0) | (y > 1)).float().mean().item()
            entry.update(storage="png", bits=bits, clipped_fraction=outside)
        elif suffix == ".npy":
            write_array(path, y)
            entry.update(storage="npy")
        else:
            raise ValueError(f"{path}: a measurement is written as .png or .npy, not {suffix!r}")
        tensors = {}
        for name, tensor in operator.tensors().items():
            tensors[name] = write_array(path.with_name(f"{path.stem}.{name}.npy"), tensor).name
        inspect = write_inspection_files(operator, y, path)
        params = dict(operator.params())
        noise = params.pop("noise", None)
        sidecar = {
            "format": SIDECAR_FORMAT,
            "version": SIDECAR_VERSION,
            "operator": operator_name or operator.name,
            "params": params,
            "tensors": tensors,
            "noise": noise,
            "seed": seed,
            "noise_rng": NOISE_RNG,
            "input": None if input_path is None else str(input_path),
            "input_sha256": None if input_path is None else sha256_file(input_path),
            "input_shape": None if input_shape is None else list(input_shape),
            "measurement": entry,
            "inspect": inspect,
        }
        write_json(sidecar_path(path), sidecar)
    return sidecar


def write_inspection_files(operator: Any, y: Tensor, path: Path) -> dict[str, str]:
    """The mask and kernel in use, generated or given, written next to the measurement
    for people to look at (rebuilding uses ``params`` and ``tensors`` only):

    * a mask operator (``is_mask``; A x = m * x, so A(1) = m) as ``<stem>.used-mask.png``
      in the CLI file convention, white = region to fill (usable as ``--mask``);
    * an operator's ``kernel`` attribute (the blur operators') as ``<stem>.used-kernel.npy``.
    """
    files = {}
    if operator.capabilities().get("is_mask") and y.ndim == 4:
        with torch.no_grad():
            known = operator.forward(torch.ones_like(y[:1]))
        files["mask"] = write_image(path.with_name(f"{path.stem}.used-mask.png"), 1 - known).name
    kernel = getattr(operator, "kernel", None)
    if isinstance(kernel, Tensor):
        files["kernel"] = write_array(path.with_name(f"{path.stem}.used-kernel.npy"), kernel).name
    return files


def read_sidecar(path: PathLike) -> dict[str, Any]:
    """The sidecar JSON, checked for the keys :func:`load_operator_from_sidecar` needs."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such sidecar file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{path}: not a restore measurement sidecar (format must be {SIDECAR_FORMAT!r})")
    if data.get("version") != SIDECAR_VERSION:
        raise ValueError(f"{path}: sidecar version {data.get('version')!r} is not supported "
                         f"(expected {SIDECAR_VERSION})")
    for key, kind in (("operator", str), ("params", dict), ("tensors", dict), ("measurement", dict)):
        if not isinstance(data.get(key), kind):
            raise ValueError(f"{path}: sidecar key {key!r} is missing or not a {kind.__name__}")
    return data


def load_operator_from_sidecar(path: PathLike, registry: Any) -> Any:
    """Rebuild the exact operator a sidecar describes, through ``registry`` (a
    :class:`restore.plugins.Registry`): ``factory(**params, noise=noise, **tensors)``."""
    return _build_operator(Path(path), read_sidecar(path), registry)


def load_measurement(path: PathLike, registry: Any) -> SidecarMeasurement:
    """The measurement and its exact operator from a sidecar ``y.json``."""
    path = Path(path)
    sidecar = read_sidecar(path)
    entry = sidecar["measurement"]
    file = path.parent / entry["file"]
    y = read_array(file) if entry.get("storage") == "npy" else read_image(file)
    recorded = entry.get("shape")
    if isinstance(recorded, list) and list(y.shape) != recorded:
        raise ValueError(f"{file}: holds values of shape {tuple(y.shape)} but its sidecar {path} records "
                         f"{tuple(recorded)}; the measurement changed after `restore degrade`: make it again")
    return SidecarMeasurement(y=y, operator=_build_operator(path, sidecar, registry), sidecar=sidecar, path=path)


def _build_operator(path: Path, sidecar: dict[str, Any], registry: Any) -> Any:
    factory = registry.get("operator", sidecar["operator"])
    kwargs = dict(sidecar["params"])
    if sidecar.get("noise") is not None:
        kwargs["noise"] = sidecar["noise"]
    for name, file in sidecar["tensors"].items():
        kwargs[name] = str(path.parent / file)
    return factory(**kwargs)
