"""What the restoration examples share: their command-line options, a test photo, a score.

Every example takes ``--prior`` (default: the embedded prior ``default``), ``--steps``,
``--size`` (the test photo's side in pixels), ``--seed`` and ``--photo PATH`` (a photo of
your own, PNG / JPEG / TIFF, used as it is); the test photo is scikit-image's ``chelsea``
(a cat), cropped to a square and resized by area averaging.
"""
from __future__ import annotations

import argparse

import torch


def arguments(description: str, size: int = 128) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--prior", default="default", help="prior spec (default: the embedded prior)")
    parser.add_argument("--steps", type=int, default=None, help="noise levels (default: each method's)")
    parser.add_argument("--size", type=int, default=size, help="side of the test photo in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photo", default=None, help="a photo of your own instead of the test photo")
    return parser.parse_args()


def photo(args: argparse.Namespace) -> torch.Tensor:
    """The ``--photo`` file, else scikit-image's chelsea, centre square, resized to
    (1, 3, size, size); on [0, 1]."""
    if args.photo is not None:
        from restore.operators.io import read_image

        return read_image(args.photo)
    from skimage import data

    size = args.size
    x = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float() / 255
    side = min(x.shape[-2:])
    top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
    x = x[..., top:top + side, left:left + side]
    return torch.nn.functional.interpolate(x, size=(size, size), mode="area").clamp(0, 1)


def psnr(x: torch.Tensor, reference: torch.Tensor) -> float:
    from restore.metrics.fidelity import psnr as metric

    return float(metric(x.clamp(0, 1), reference).mean())
