"""Uploaded image files: limits checked on the file's header, then decoded as the CLI reads files.

A decompression bomb (a small file that decodes to a huge image) is refused before any pixel
is decoded: PNG and JPEG sizes come from Pillow's header parse (which itself refuses more than
twice ``PIL.Image.MAX_IMAGE_PIXELS``; ``restore serve`` sets that to its own limit), TIFF sizes from
tifffile's first page tags.  Nothing here touches the file system: uploads are bytes in memory.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional

import numpy as np


class Refused(ValueError):
    """A request this server refuses (an upload, an option, a job it does not have): ``status``
    is the HTTP status, the message says why and what to do."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Per request: ``max_bytes`` of upload, ``max_pixels`` per image."""

    max_bytes: int = 64 * 2**20
    max_pixels: int = 40_000_000


@dataclass(frozen=True)
class Picture:
    """A decoded upload: ``pixels`` (H, W, C) as the file stores them (uint8, uint16 or float32),
    ``grey`` when it is a grey image (so 2 channels are grey + alpha)."""

    pixels: np.ndarray
    grey: bool

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def bits(self) -> int:
        return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(self.pixels.dtype, 32)

    @property
    def colour(self) -> np.ndarray:
        """The samples without an alpha channel, on [0, 1] as float32 (H, W, C)."""
        pixels = self.pixels
        if pixels.shape[-1] == 4 or (pixels.shape[-1] == 2 and self.grey):
            pixels = pixels[..., :-1]
        top = {8: 255.0, 16: 65535.0}.get(self.bits, 1.0)
        return pixels.astype(np.float32) / top


def header_size(data: bytes, field: str) -> Optional[tuple[int, int]]:
    """(width, height) from the header of a PNG, JPEG or TIFF file without decoding its pixels;
    None when the header does not parse (the decoder then names the problem)."""
    from PIL import Image

    from restore.operators.io import image_format

    kind = image_format(data)
    try:
        if kind == "tiff":
            import tifffile

            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                page = tif.pages[0]
                return int(page.imagewidth), int(page.imagelength)
        if kind is not None:
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError as exc:
        raise Refused(f"{field}: refused as a decompression bomb ({exc})", 413) from None
    except Exception:  # a damaged header: the decoder reports it
        return None
    return None


def read_picture(data: bytes, field: str, limits: Limits) -> Picture:
    """Decode an uploaded image file (:func:`restore.operators.io.decode_pixels`) after the
    checks of the module docstring; :class:`Refused` with one clear message otherwise."""
    from restore.operators.io import ImageFileError, decode_pixels

    if not data:
        raise Refused(f"{field}: the file is empty (0 bytes); choose an image file")
    size = header_size(data, field)
    if size is not None and size[0] * size[1] > limits.max_pixels:
        raise Refused(f"{field}: {size[0]}x{size[1]} is {size[0] * size[1]:,} pixels, over this server's limit of "
                      f"{limits.max_pixels:,} (restore serve --max-pixels)", 413)
    try:
        pixels, grey = decode_pixels(data, field)
    except ImageFileError as exc:
        raise Refused(str(exc)) from None
    return Picture(np.ascontiguousarray(pixels), grey)


def read_fill_mask(data: bytes, limits: Limits, size: tuple[int, int]) -> np.ndarray:
    """An uploaded mask image as a (H, W) bool array, True where to fill: the CLI's file
    convention, white (ITU-R 601 luma >= 0.5) = fill, alpha ignored; it must match ``size``."""
    picture = read_picture(data, "mask", limits)
    if picture.size != size:
        raise Refused(f"mask: it is {picture.size[1]}x{picture.size[0]} pixels but the image is "
                      f"{size[1]}x{size[0]}; give a mask of the image's size")
    values = picture.colour
    grey = values[..., 0] if values.shape[-1] == 1 else values[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return grey >= 0.5


def png_preview(picture: Picture) -> bytes:
    """An 8-bit PNG of the picture for the browser (16-bit and float samples scaled)."""
    from restore.operators.io import encode_pixels

    pixels = picture.pixels
    if pixels.dtype != np.uint8:
        top = 65535.0 if pixels.dtype == np.uint16 else 1.0
        pixels = np.round(np.clip(pixels.astype(np.float64) / top, 0, 1) * 255).astype(np.uint8)
    return encode_pixels(pixels, "png")
