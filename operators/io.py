"""Image and measurement files.

* Images: PNG (grey, grey + alpha, RGB, RGBA, palette; up to 8 bits through Pillow,
  16 bits decoded here), JPEG and ``.npy`` read to a float32 tensor (1, C, H, W) on
  [0, 1]; PNG written with 8 or 16 bits.  An alpha channel is dropped only when it is fully opaque (else an error: the
  image would change).  16-bit PNGs are decoded here (Pillow truncates 16-bit colour
  PNGs to 8 bits); ``.npy`` arrays are channel-first, (H, W), (C, H, W) or (1, C, H, W).
* Every file is written atomically (a temporary file in the same folder, then
  ``os.replace``: :func:`restore.files.atomic_write`), so readers never see a partial file.
* Measurement sidecars: ``y.json`` next to the measurement ``y.png`` / ``y.npy`` holds
  the operator's registry name, its parameters, its noise model, the seed of the noise
  draw, the input path and its SHA-256, and the names of ``.npy`` files holding the
  operator's tensors (masks, kernels), so :func:`load_operator_from_sidecar` rebuilds
  the exact operator: ``factory(**params, noise=noise, **tensors)``, each tensor passed
  as its file path (factories accept a path for every tensor-valued keyword:
  :func:`restore.operators.base.load_array`).  The mask or kernel in use, generated
  or given, is also written for inspection (:func:`write_inspection_files`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from restore.files import atomic_write

PathLike = Union[str, os.PathLike]

SIDECAR_FORMAT = "restore-measurement"
SIDECAR_VERSION = 1
#: How the noise of a measurement is drawn from its recorded seed.
NOISE_RNG = "operator.measure(x.float32 on cpu, generator=torch.Generator('cpu').manual_seed(seed))"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> channels (grey, RGB, grey + alpha, RGBA); 3 (palette) is never 16-bit.
PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
READABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")


# ----------------------------------------------------------------------------- writing


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`restore.files.atomic_write`)."""
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))
    return Path(path)


def write_array(path: PathLike, x: Union[Tensor, np.ndarray]) -> Path:
    """Save an array exactly as ``.npy`` (atomically)."""
    array = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def write_json(path: PathLike, data: dict[str, Any]) -> Path:
    return atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def to_pixels(x: Tensor, bits: int = 8) -> np.ndarray:
    """(H, W, C) unsigned integers round(clip(x, 0, 1) * (2^bits - 1)) of an image
    (1, C, H, W), (C, H, W) or (H, W); C in 1..4."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    elif x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or not 1 <= x.shape[0] <= 4:
        raise ValueError(f"an image to write must be (1, C, H, W), (C, H, W) or (H, W) with C <= 4, got {tuple(x.shape)}")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("an image to write has NaN or infinite values")
    top = 2**bits - 1
    pixels = torch.round(x.clamp(0, 1) * top).permute(1, 2, 0).numpy()
    return pixels.astype(np.uint8 if bits == 8 else np.uint16)


def write_image(path: PathLike, x: Tensor, bits: int = 8) -> Path:
    """Write an image on [0, 1] as PNG with ``bits`` per sample (values are clipped to
    [0, 1] and rounded: see :func:`to_pixels`); atomic."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: images are written as .png (use write_array for .npy)")
    return atomic_write_bytes(path, encode_png(to_pixels(x, bits)))


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of (H, W, C) uint8 / uint16 pixels (filter type 0 on every row)."""
    h, w, c = pixels.shape
    depth = 8 * pixels.dtype.itemsize
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = pixels.astype(f">u{pixels.dtype.itemsize}").reshape(h, w * c).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- reading


def read_image(path: PathLike) -> Tensor:
    """An image file as a float32 tensor (1, C, H, W) on [0, 1]."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise ValueError(f"{path}: unsupported image type {suffix!r}; use one of {', '.join(READABLE_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if suffix == ".npy":
        return _image_from_array(path, read_array(path))
    data = path.read_bytes()
    if data[:8] == PNG_SIGNATURE and _png_header(data)[0] == 16:
        pixels, top = decode_png16(data), 65535
    else:
        pixels, top = _pillow_pixels(path, data), 255
    x = torch.from_numpy(pixels.astype(np.float32) / top).permute(2, 0, 1)[None]
    return _drop_opaque_alpha(path, x.contiguous())


def read_array(path: PathLike) -> Tensor:
    """A ``.npy`` file as a tensor, values and dtype as stored (no pickles)."""
    return torch.from_numpy(np.load(Path(path), allow_pickle=False))


def _image_from_array(path: Path, a: Tensor) -> Tensor:
    if a.dtype == torch.bool:
        a = a.float()
    if not a.is_floating_point():
        raise ValueError(f"{path}: an image array must hold floats on [0, 1], got {a.dtype}")
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[0] != 1:
        raise ValueError(f"{path}: an image array must be (H, W), (C, H, W) or (1, C, H, W), got {tuple(a.shape)}")
    if not torch.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"{path}: image values must be finite and on [0, 1]")
    return a.float()


def _pillow_pixels(path: Path, data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode == "1":
            im = im.convert("L")
        if im.mode not in ("L", "LA", "RGB", "RGBA"):
            raise ValueError(f"{path}: unsupported image mode {im.mode!r}; convert it to RGB or greyscale")
        pixels = np.asarray(im)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _drop_opaque_alpha(path: Path, x: Tensor) -> Tensor:
    if x.shape[1] not in (2, 4):
        return x
    if not torch.all(x[:, -1] == 1):
        raise ValueError(f"{path}: the alpha channel is not fully opaque; flatten the image first")
    return x[:, :-1]


def _png_chunks(data: bytes):
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        yield kind, data[pos + 8 : pos + 8 + length]
        pos += 12 + length


def _png_header(data: bytes) -> tuple[int, int, int, int, int]:
    """(bit depth, colour type, interlace, width, height) from the IHDR chunk."""
    kind, body = next(_png_chunks(data))
    if kind != b"IHDR":
        raise ValueError("not a PNG file: the first chunk is not IHDR")
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
    return depth, color, interlace, w, h


def decode_png16(data: bytes) -> np.ndarray:
    """(H, W, C) uint16 pixels of a non-interlaced 16-bit PNG (PNG spec, sec. 9: filters)."""
    depth, color, interlace, w, h = _png_header(data)
    if depth != 16 or color not in PNG_CHANNELS or interlace:
        raise ValueError(f"decode_png16 reads non-interlaced 16-bit PNGs, got depth {depth}, colour type {color}, interlace {interlace}")
    channels = PNG_CHANNELS[color]
    raw = zlib.decompress(b"".join(body for kind, body in _png_chunks(data) if kind == b"IDAT"))
    bpp, stride = 2 * channels, 2 * channels * w
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    out = np.empty((h, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for y in range(h):
        prior = out[y] = _unfilter(int(rows[y, 0]), rows[y, 1:], prior, bpp)
    return out.view(">u2").reshape(h, w, channels).astype(np.uint16)


def _unfilter(kind: int, line: np.ndarray, prior: np.ndarray, bpp: int) -> np.ndarray:
    """Undo one PNG row filter: 0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth (bytes mod 256)."""
    if kind == 0:
        return line
    if kind == 1:
        return (np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.int64) % 256).astype(np.uint8).ravel()
    if kind == 2:
        return line + prior
    if kind not in (3, 4):
        raise ValueError(f"corrupt PNG: unknown row filter type {kind}")
    out, up = bytearray(line.tobytes()), prior.tobytes()
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            out[i] = (out[i] + ((a + b) >> 1)) & 255
            continue
        c = up[i - bpp] if i >= bpp else 0
        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
        out[i] = (out[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return np.frombuffer(bytes(out), np.uint8)


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- sidecars


@dataclass(frozen=True)
class Measurement:
    """A measurement read back from its sidecar: the data, its exact operator, the sidecar."""

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
    bits: int = 8,
) -> dict[str, Any]:
    """Write the measurement ``y`` to ``path`` (``.png``: clipped and quantized with
    ``bits``; ``.npy``: exact), the operator's tensors as ``<stem>.<name>.npy`` and the
    sidecar ``<stem>.json`` (:func:`sidecar_path`); returns the sidecar.  All writes are
    atomic."""
    path = Path(path)
    suffix = path.suffix.lower()
    entry: dict[str, Any] = {"file": path.name, "shape": list(y.shape), "dtype": str(y.dtype).removeprefix("torch.")}
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
        raise ValueError(f"{path}: sidecar version {data.get('version')!r} is not supported (expected {SIDECAR_VERSION})")
    for key, kind in (("operator", str), ("params", dict), ("tensors", dict), ("measurement", dict)):
        if not isinstance(data.get(key), kind):
            raise ValueError(f"{path}: sidecar key {key!r} is missing or not a {kind.__name__}")
    return data


def load_operator_from_sidecar(path: PathLike, registry: Any) -> Any:
    """Rebuild the exact operator a sidecar describes, through ``registry`` (a
    :class:`restore.plugins.Registry`): ``factory(**params, noise=noise, **tensors)``."""
    return _build_operator(Path(path), read_sidecar(path), registry)


def load_measurement(path: PathLike, registry: Any) -> Measurement:
    """The measurement and its exact operator from a sidecar ``y.json``."""
    path = Path(path)
    sidecar = read_sidecar(path)
    entry = sidecar["measurement"]
    file = path.parent / entry["file"]
    y = read_array(file) if entry.get("storage") == "npy" else read_image(file)
    return Measurement(y=y, operator=_build_operator(path, sidecar, registry), sidecar=sidecar, path=path)


def _build_operator(path: Path, sidecar: dict[str, Any], registry: Any) -> Any:
    factory = registry.get("operator", sidecar["operator"])
    kwargs = dict(sidecar["params"])
    if sidecar.get("noise") is not None:
        kwargs["noise"] = sidecar["noise"]
    for name, file in sidecar["tensors"].items():
        kwargs[name] = str(path.parent / file)
    return factory(**kwargs)
