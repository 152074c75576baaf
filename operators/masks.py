"""Inpainting masks: seeded generators and mask files.

Engine convention: a mask is True / 1 where the pixel is *known* and False / 0 where
it is to be filled.  Every generator has the signature
``generator(height, width, *, seed, **options) -> Tensor`` and returns a (H, W) bool
tensor; the same ``seed`` and options give the same mask on every platform (the
random numbers come from a CPU ``torch.Generator``), and different seeds give
different masks.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from restore.operators.validation import ArraySource, check_choice, check_int, check_number, check_pair, load_array

PairLike = Union[int, Sequence[int]]


def _rng(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(check_int("mask", "seed", seed, low=0))


def _uniform(rng: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=rng, dtype=torch.float64).item()


def _randint(rng: torch.Generator, low: int, high: int) -> int:
    """A uniform integer in [low, high] (both included)."""
    return int(torch.randint(low, high + 1, (), generator=rng).item())


def box_mask(
    height: int, width: int, *, seed: int = 0, size: Optional[PairLike] = None, margin: Optional[PairLike] = None
) -> Tensor:
    """A missing box of ``size`` (h, w) at a uniformly random position at least
    ``margin`` pixels from every border.

    Defaults follow DPS (Chung et al. 2023, box inpainting on 256 x 256 images: a 128 x
    128 box with a 16-pixel margin): size = half of each side, margin = 1/16 of each side.
    """
    size_h, size_w = check_pair("box mask", "size", size if size is not None else [height // 2, width // 2], low=1)
    margin_h, margin_w = check_pair("box mask", "margin",
                                    margin if margin is not None else [height // 16, width // 16], low=0)
    if size_h + 2 * margin_h > height or size_w + 2 * margin_w > width:
        raise ValueError(
            f"box mask: size {size_h}x{size_w} with margin {margin_h}x{margin_w} does not fit a {height}x{width} image"
        )
    rng = _rng(seed)
    top = _randint(rng, margin_h, height - margin_h - size_h)
    left = _randint(rng, margin_w, width - margin_w - size_w)
    known = torch.ones(height, width, dtype=torch.bool)
    known[top : top + size_h, left : left + size_w] = False
    return known


def random_mask(height: int, width: int, *, seed: int = 0, ratio: float = 0.7) -> Tensor:
    """Random pixel dropout: exactly round(ratio * H * W) pixels, drawn uniformly without
    replacement, are missing (in every channel), as DPS's random inpainting does."""
    ratio = check_number("random mask", "ratio", ratio, low=0.0)
    if ratio > 1:
        raise ValueError(f"random mask: ratio must be in [0, 1], got {ratio}")
    missing = torch.randperm(height * width, generator=_rng(seed))[: round(ratio * height * width)]
    known = torch.ones(height * width, dtype=torch.bool)
    known[missing] = False
    return known.reshape(height, width)


def _draw_segment(known: Tensor, start: tuple[float, float], end: tuple[float, float], radius: float) -> None:
    """Clear the pixels within ``radius`` of the segment start-end (a capsule: a
    thick line with round ends), points given as (row, column)."""
    height, width = known.shape
    (r0, c0), (r1, c1) = start, end
    top, bottom = max(0, math.floor(min(r0, r1) - radius)), min(height, math.ceil(max(r0, r1) + radius) + 1)
    left, right = max(0, math.floor(min(c0, c1) - radius)), min(width, math.ceil(max(c0, c1) + radius) + 1)
    if top >= bottom or left >= right:
        return
    rows = torch.arange(top, bottom, dtype=torch.float64)[:, None]
    cols = torch.arange(left, right, dtype=torch.float64)[None, :]
    dr, dc = r1 - r0, c1 - c0
    length2 = dr * dr + dc * dc
    t = ((rows - r0) * dr + (cols - c0) * dc) / length2 if length2 > 0 else torch.zeros(())
    t = t.clamp(0, 1)
    dist2 = (rows - r0 - t * dr) ** 2 + (cols - c0 - t * dc) ** 2
    known[top:bottom, left:right] &= dist2 > radius * radius


def stroke_mask(
    height: int,
    width: int,
    *,
    seed: int = 0,
    max_strokes: int = 4,
    max_vertices: int = 10,
    max_length: Optional[float] = None,
    min_width: Optional[float] = None,
    max_width: Optional[float] = None,
    max_turn: float = 2 * math.pi / 5,
) -> Tensor:
    """Free-form brush strokes, after Algorithm 1 of Yu et al. 2019, "Free-Form Image
    Inpainting with Gated Convolution" (ICCV), the masks LaMa (Suvorov et al. 2022) also
    trains on.

    Draws between 1 and ``max_strokes`` strokes.  Each starts at a uniform random point
    with a uniform random heading and brush width in [min_width, max_width]; it has
    between 2 and ``max_vertices`` vertices, each segment turning the heading by a
    uniform angle in [-max_turn, max_turn] and having a length uniform in
    [max_length / 4, max_length]; vertices are clipped to the image.  Segments are drawn
    as capsules (round joints).  Defaults scale with s = min(H, W): max_length = s / 4,
    widths s / 32 to s / 10 pixels.
    """
    side = min(height, width)
    max_strokes = check_int("stroke mask", "max_strokes", max_strokes, low=1)
    max_vertices = check_int("stroke mask", "max_vertices", max_vertices, low=2)
    max_length = check_number("stroke mask", "max_length", max_length if max_length is not None else side / 4, low=0)
    max_width = check_number("stroke mask", "max_width", max_width if max_width is not None else side / 10, low=0)
    min_width = check_number("stroke mask", "min_width",
                             min_width if min_width is not None else min(side / 32, max_width), low=0)
    max_turn = check_number("stroke mask", "max_turn", max_turn, low=0)
    if min_width > max_width:
        raise ValueError(f"stroke mask: min_width {min_width} exceeds max_width {max_width}")
    rng = _rng(seed)
    known = torch.ones(height, width, dtype=torch.bool)
    for _ in range(_randint(rng, 1, max_strokes)):
        point = (_uniform(rng, 0, height - 1), _uniform(rng, 0, width - 1))
        heading = _uniform(rng, 0, 2 * math.pi)
        radius = _uniform(rng, min_width, max_width) / 2
        for _ in range(_randint(rng, min(4, max_vertices), max_vertices) - 1):
            heading += _uniform(rng, -max_turn, max_turn)
            length = _uniform(rng, max_length / 4, max_length)
            end = (
                min(max(point[0] + length * math.sin(heading), 0.0), height - 1.0),
                min(max(point[1] + length * math.cos(heading), 0.0), width - 1.0),
            )
            _draw_segment(known, point, end, radius)
            point = end
    return known


OUTPAINT_SIDES = ("left", "right", "top", "bottom", "expand")


def outpaint_mask(height: int, width: int, *, seed: int = 0, side: str = "right", fraction: float = 0.5) -> Tensor:
    """Half-image / outpainting masks (deterministic; ``seed`` is accepted only so all
    generators share one signature).

    ``side`` left / right / top / bottom: that border strip, round(fraction * W) columns
    (or round(fraction * H) rows) wide, is missing; fraction = 0.5 is the classic half
    image.  ``side="expand"``: a border of round(fraction * H / 2) rows at top and bottom
    and round(fraction * W / 2) columns left and right is missing, so the known image is
    the centre (fraction 0.5: the centre half of each side, i.e. a 2x expansion).
    """
    check_int("outpaint mask", "seed", seed, low=0)
    check_choice("outpaint mask", "side", side, OUTPAINT_SIDES)
    fraction = check_number("outpaint mask", "fraction", fraction, low=0.0, low_inclusive=False)
    if fraction >= 1:
        raise ValueError(f"outpaint mask: fraction must be in (0, 1), got {fraction}")
    known = torch.ones(height, width, dtype=torch.bool)
    strip_h, strip_w = round(fraction * height), round(fraction * width)
    if side == "left":
        known[:, :strip_w] = False
    elif side == "right":
        known[:, width - strip_w :] = False
    elif side == "top":
        known[:strip_h, :] = False
    elif side == "bottom":
        known[height - strip_h :, :] = False
    else:
        border_h, border_w = round(fraction * height / 2), round(fraction * width / 2)
        known[:border_h, :] = False
        known[height - border_h :, :] = False
        known[:, :border_w] = False
        known[:, width - border_w :] = False
    return known


#: Mask generators by name.
GENERATORS: dict[str, Callable[..., Tensor]] = {
    "box": box_mask,
    "random": random_mask,
    "strokes": stroke_mask,
    "outpaint": outpaint_mask,
}


def load_mask(source: ArraySource, *, invert: bool = False) -> Tensor:
    """A user mask as a (C, H, W) float64 tensor in the engine convention (1 = known).

    * Image files (png, jpg, ...): the file convention of the CLI, diffusers and LaMa:
      **white marks the region to fill**, so known = (grey < 0.5).
    * Tensors, arrays and ``.npy`` files: the engine convention, known = (value >= 0.5).

    Values are thresholded at 0.5 (grey levels scaled to [0, 1]), so soft or
    anti-aliased masks become binary.  ``invert`` flips the result.  Accepted shapes:
    (H, W), (C, H, W) or (1, C, H, W).  Errors name the parameter ``mask``.
    """
    values, from_image = load_array(source, "mask")
    if values.dim() == 4 and values.shape[0] == 1:
        values = values[0]
    if values.dim() == 2:
        values = values[None]
    if values.dim() != 3:
        raise ValueError(f"mask: expected a (H, W), (C, H, W) or (1, C, H, W) mask, got shape {tuple(values.shape)}")
    if values.numel() == 0:
        raise ValueError(f"mask: empty mask of shape {tuple(values.shape)}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError("mask: contains NaN or infinite values")
    known = values < 0.5 if from_image else values >= 0.5
    return (known ^ bool(invert)).to(torch.float64)
