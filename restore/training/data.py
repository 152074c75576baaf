"""Training data: every image of a folder held in memory as uint8, and random crops of it.

Augmentation is the dihedral group of the square (Ronneberger et al. 2015 and most
denoiser training since DnCNN, Zhang et al. 2017): a random horizontal flip and a
random multiple of 90 degrees, applied to a random ``size`` x ``size`` crop.  The
crops are drawn from a caller-owned ``torch.Generator``, so a run is reproducible
and resumable step for step (:mod:`restore.training.loop` reseeds it per step).
"""
from __future__ import annotations

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


#: The augmentation group of :class:`CropSampler`, recorded in exported priors
#: (:mod:`restore.diffusion.symmetry`).
AUGMENTATION = "dihedral"


class CropSampler:
    """Random augmented crops of a set of in-memory images, as float tensors in [0, 1]."""

    def __init__(self, images: Sequence[Tensor], size: int) -> None:
        small = [tuple(im.shape[-2:]) for im in images if min(im.shape[-2:]) < size]
        if small:
            raise ValueError(f"{len(small)} training image(s) are smaller than the crop size {size} "
                             f"(e.g. {small[0][0]}x{small[0][1]}): lower --crop")
        if not images:
            raise ValueError("no training images")
        self.images = list(images)
        self.size = size
        # images are drawn in proportion to their area, so every pixel is equally likely
        areas = torch.tensor([float(im.shape[-1] * im.shape[-2]) for im in self.images])
        self.weights = areas / areas.sum()

    @classmethod
    def from_folder(cls, folder: Path, size: int, channels: int, limit: Optional[int] = None) -> "CropSampler":
        files = image_files(folder)[:limit]
        return cls([read_uint8(p, channels) for p in files], size)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int, generator: torch.Generator) -> Tensor:
        """(batch, C, size, size) float32 crops in [0, 1]."""
        picks = torch.multinomial(self.weights, batch, replacement=True, generator=generator)
        out = []
        for i in picks.tolist():
            image = self.images[i]
            h, w = image.shape[-2:]
            top = int(torch.randint(0, h - self.size + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - self.size + 1, (1,), generator=generator))
            crop = image[:, top:top + self.size, left:left + self.size]
            flip = bool(torch.randint(0, 2, (1,), generator=generator))
            turns = int(torch.randint(0, 4, (1,), generator=generator))
            if flip:
                crop = crop.flip(-1)
            out.append(torch.rot90(crop, turns, dims=(-2, -1)))
        return torch.stack(out).float().div_(255.0)


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
    drawn with classes equally likely; ``sample`` returns (crops, labels)."""

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
        labels = torch.randint(0, len(self.classes), (batch,), generator=generator)
        crops = torch.cat([self.samplers[k].sample(1, generator) for k in labels.tolist()])
        return crops, labels
