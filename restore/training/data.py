"""Training data: every image of a folder held in memory as uint8, and random crops of it.

Augmentation is the dihedral group of the square (Ronneberger et al. 2015 and most
denoiser training since DnCNN, Zhang et al. 2017): a random horizontal flip and a
random multiple of 90 degrees, applied to a random ``size`` x ``size`` crop.  The
crops are drawn from a caller-owned ``torch.Generator``, so a run is reproducible
and resumable step for step (:mod:`restore.training.loop` reseeds it per step), and on
that generator's device: a batch is one gather there, not a Python loop on the CPU and a
copy (1.8-1.9x the images per second on an H200: benchmarks/results/training_gpu_h200.md).
A folder too large for the GPU (:data:`DEVICE_SHARE` of its free memory) stays on the host
instead, and says so: the crop positions are still drawn on the device, so the crops are the
same either way (:meth:`CropSampler.sample`).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name; a clear error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"training data folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def read_uint8(path: Path, channels: int) -> Tensor:
    """One image as a (channels, H, W) uint8 tensor (EXIF orientation applied; grey or RGB)."""
    from PIL import Image, ImageOps

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("L" if channels == 1 else "RGB")
        array = np.asarray(im, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


#: The largest part of a GPU's free memory a training folder's pixels may take there; a larger
#: folder stays in host memory and each batch is gathered there and copied over.
DEVICE_SHARE = 0.25


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether ``nbytes`` of training pixels may be copied to ``device``: always for the CPU,
    up to :data:`DEVICE_SHARE` of a CUDA device's free memory."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_SHARE * free


#: The augmentation group of :class:`CropSampler`, recorded in exported priors
#: (:mod:`restore.diffusion.symmetry`).
AUGMENTATION = "dihedral"


class CropSampler:
    """Random augmented crops of a set of in-memory images, as float tensors in [0, 1], drawn
    on the device of the caller's generator (the images are copied there once, as uint8, 200 MB
    for CBSD432; a folder larger than :data:`DEVICE_SHARE` of a GPU's free memory stays on
    the host, with a warning, and each batch's crops are gathered there and copied over).

    One batch is one gather: crop ``b``'s pixel (i, j) is the source pixel
    (top_b + u, left_b + v), where (u, v) is the image of (i, j) under the crop's element of
    the dihedral group (a flip, then k quarter turns: :func:`dihedral_source`).  No Python
    loop runs per crop, so drawing a batch costs a few kernels on a GPU.
    """

    def __init__(self, images: Sequence[Tensor], size: int) -> None:
        if not images:
            raise ValueError("no training images")
        small = [tuple(im.shape[-2:]) for im in images if min(im.shape[-2:]) < size]
        if small:
            raise ValueError(f"{len(small)} training image(s) are smaller than the crop size {size} "
                             f"(e.g. {small[0][0]}x{small[0][1]}): lower --crop")
        if len({im.shape[0] for im in images}) > 1:
            raise ValueError("training images must all have the same number of channels")
        self.size = size
        self.channels = images[0].shape[0]
        sizes = torch.tensor([[im.shape[-2], im.shape[-1]] for im in images])
        numels = self.channels * sizes[:, 0] * sizes[:, 1]
        # images are drawn in proportion to their area, so every pixel is equally likely
        self._host = {"pixels": torch.cat([im.reshape(-1) for im in images]), "sizes": sizes,
                      "starts": torch.cumsum(numels, 0) - numels, "weights": (numels / numels.sum()).float()}
        self._on: dict[torch.device, dict[str, Tensor]] = {}

    @classmethod
    def from_folder(cls, folder: Path, size: int, channels: int, limit: Optional[int] = None) -> "CropSampler":
        files = image_files(folder)[:limit]
        return cls([read_uint8(p, channels) for p in files], size)

    def __len__(self) -> int:
        return len(self._host["sizes"])

    def _tensors(self, device: torch.device) -> dict[str, Tensor]:
        """The images' tensors on ``device``; the pixels stay on the host (pinned where a GPU
        is present) when they do not fit there (:func:`fits_on`), and a warning says so once."""
        if device not in self._on:
            pixels = self._host["pixels"]
            on = {k: v.to(device) for k, v in self._host.items() if k != "pixels"}
            if fits_on(device, pixels.numel()):
                on["pixels"] = pixels.to(device)
            else:
                warnings.warn(f"the training images take {pixels.numel() / 2**30:.1f} GiB, more than "
                              f"{DEVICE_SHARE:.0%} of {device}'s free memory: they stay in host memory and each "
                              "batch is gathered there and copied over (slower; the crops are the same)",
                              stacklevel=3)
                on["pixels"] = pixels.pin_memory() if torch.cuda.is_available() else pixels
            self._on[device] = on
        return self._on[device]

    def sample(self, batch: int, generator: torch.Generator) -> Tensor:
        """(batch, C, size, size) float32 crops in [0, 1] on ``generator.device``: an image
        drawn in proportion to its area, a uniform position, a uniform element of the dihedral
        group.  The draws are made on that device; the gather where the pixels are (the same
        device, or the host for a folder too large for it: then the draws are copied to the
        host and the crops back, the same crops)."""
        device = generator.device
        t = self._tensors(device)
        picks = torch.multinomial(t["weights"], batch, replacement=True, generator=generator)
        h, w = t["sizes"][picks, 0], t["sizes"][picks, 1]
        top = (torch.rand(batch, generator=generator, device=device) * (h - self.size + 1)).long()
        left = (torch.rand(batch, generator=generator, device=device) * (w - self.size + 1)).long()
        element = torch.randint(0, 8, (batch,), generator=generator, device=device)
        where = t["pixels"].device
        starts, h, w, top, left, element = (v.to(where) for v in (t["starts"][picks], h, w, top, left, element))
        u, v = dihedral_source(self.size, element // 2, element % 2 == 1)        # (batch, size, size) each
        c = torch.arange(self.channels, device=where).reshape(1, -1, 1, 1)
        index = (starts.reshape(-1, 1, 1, 1) + c * (h * w).reshape(-1, 1, 1, 1)
                 + (top.reshape(-1, 1, 1) + u).unsqueeze(1) * w.reshape(-1, 1, 1, 1)
                 + (left.reshape(-1, 1, 1) + v).unsqueeze(1))
        crops = t["pixels"][index]
        if where != device:  # pixels kept on the host: only for a CUDA device (fits_on)
            crops = crops.pin_memory().to(device, non_blocking=True)
        return crops.float().div_(255.0)


def dihedral_source(size: int, turns: Tensor, flip: Tensor) -> tuple[Tensor, Tensor]:
    """Source coordinates (u, v) of each output pixel (i, j) of ``rot90(crop', k)`` on a
    ``size`` x ``size`` crop, where crop' is the crop mirrored left-right where ``flip``:
    the output equals ``crop[u, v]``.  ``turns`` (k in 0..3) and ``flip`` are per-crop
    tensors; the result is two (len(turns), size, size) long tensors.

    A quarter turn (``torch.rot90``, dims (-2, -1)) reads out[i, j] = in[j, n - i] with
    n = size - 1, so k turns read (i, j), (j, n - i), (n - i, n - j), (n - j, i); the
    mirror then reads in'[a, b] = in[a, n - b].
    """
    device = turns.device
    n = size - 1
    i = torch.arange(size, device=device).reshape(1, -1, 1).expand(len(turns), size, size)
    j = torch.arange(size, device=device).reshape(1, 1, -1).expand(len(turns), size, size)
    k = turns.reshape(-1, 1, 1)
    u = torch.where(k == 0, i, torch.where(k == 1, j, torch.where(k == 2, n - i, n - j)))
    v = torch.where(k == 0, j, torch.where(k == 1, n - i, torch.where(k == 2, n - j, i)))
    return u, torch.where(flip.reshape(-1, 1, 1), n - v, v)


def load_validation(folder: Path, channels: int, count: int, crop: Optional[int]) -> list[Tensor]:
    """Up to ``count`` images of ``folder`` as (1, C, H, W) floats in [0, 1], centre-cropped to
    ``crop`` x ``crop`` when given (validation cost stays fixed whatever the image size)."""
    images = []
    for path in image_files(folder)[:count]:
        image = read_uint8(path, channels).float().div_(255.0)
        if crop is not None:
            h, w = image.shape[-2:]
            c = min(crop, h, w)
            top, left = (h - c) // 2, (w - c) // 2
            image = image[:, top:top + c, left:left + c]
        images.append(image[None])
    return images


class LabelledCropSampler:
    """Crops of a folder with one subfolder per class (sorted names are the classes 0..K-1),
    drawn with classes equally likely; ``sample`` returns (crops, labels), drawing each
    class's crops in one call of its :class:`CropSampler` (K calls a batch, not one per crop)."""

    def __init__(self, classes: Sequence[str], samplers: Sequence[CropSampler]) -> None:
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least two classes (subfolders), found {len(classes)}")
        self.classes = list(classes)
        self.samplers = list(samplers)
        self.size = samplers[0].size

    @classmethod
    def from_folder(cls, folder: Path, size: int, channels: int) -> "LabelledCropSampler":
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"training data folder not found: {folder}")
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
        return cls([p.name for p in subfolders], [CropSampler.from_folder(p, size, channels) for p in subfolders])

    def __len__(self) -> int:
        return sum(len(s) for s in self.samplers)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        labels = torch.randint(0, len(self.classes), (batch,), generator=generator, device=generator.device)
        counts = torch.bincount(labels, minlength=len(self.classes)).tolist()  # one host sync a batch
        crops = torch.empty(batch, self.samplers[0].channels, self.size, self.size, device=generator.device)
        for k, count in enumerate(counts):
            if count:
                crops[labels == k] = self.samplers[k].sample(count, generator)
        return crops, labels
