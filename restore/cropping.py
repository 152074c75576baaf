"""Inpaint a large photo at the cost of its holes: restore only a padded box around each hole.

The region to fill (engine mask 0 in any channel) is split into connected components
(8-connectivity, OpenCV's ``connectedComponentsWithStats``).  Each component's bounding box
is grown by ``padding`` pixels on every side (clipped to the image), boxes that overlap are
merged into their common bounding box until no two overlap, and each box is restored on its
own: the crop of the image with the crop of the mask, the box's own operator
``Inpaint(mask crop)`` with the full operator's noise model.  Only the pixels to fill are
pasted back; every other pixel of the result is the input's, bit for bit (an integer image
comes back with the very samples it came in with).  The padding is the context the prior
sees around a hole (64 pixels: about the receptive field of the embedded prior's lowest
resolution).

A 20 x 20 scratch on a 4000 x 3000 photo thus costs one 148 x 148 restoration.  Used by
``restore.inpaint(..., crop_to_mask=...)``, ``restore inpaint --crop-to-mask`` and
``restore serve``; ``crop_to_mask=None`` (the default) crops images of more than
:data:`AUTO_PIXELS` pixels.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # the module itself imports no torch, so the CLI can read its constants
    from torch import Tensor

#: ``crop_to_mask=None`` crops images with more pixels than this (1024 x 1024).
AUTO_PIXELS = 1024 * 1024
#: Context around each hole, in pixels on every side.
PADDING = 64

#: (top, left, bottom, right), bottom and right exclusive.
Box = tuple[int, int, int, int]
#: ``run(y, operator, seed)``: a run of :func:`restore.pipeline.solve_items` on one measurement.
Run = Callable[["Tensor", Any, Optional[int]], dict[str, Any]]


def fill_boxes(known: Tensor, padding: int = PADDING) -> list[Box]:
    """The padded, merged boxes around the holes of ``known`` ((C, H, W) or (H, W); 1 =
    known), in raster order of their top-left corners; none when nothing is to be filled."""
    import cv2
    import numpy as np

    fill = (known < 0.5).reshape(-1, *known.shape[-2:]).any(dim=0).numpy().astype(np.uint8)
    height, width = fill.shape
    count, _, stats, _ = cv2.connectedComponentsWithStats(fill, connectivity=8)
    boxes = []
    for left, top, w, h, _ in stats[1:]:  # label 0 is the known background
        boxes.append((max(0, int(top) - padding), max(0, int(left) - padding),
                      min(height, int(top + h) + padding), min(width, int(left + w) + padding)))
    return merge_boxes(boxes)


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Replace any two overlapping boxes by their bounding box until no two overlap."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes)


def wants_crop(crop_to_mask: Optional[bool], operator: Any, y: Tensor) -> bool:
    """Whether to restore box by box: asked for (True; only an operator with a user mask can),
    or None and the image has more than :data:`AUTO_PIXELS` pixels and a user mask."""
    has_mask = getattr(operator, "user_mask", None) is not None
    if crop_to_mask and not has_mask:
        raise ValueError(f"crop to mask needs inpainting with a mask given as a file or an array, "
                         f"not operator {getattr(operator, 'name', operator)!r}")
    if crop_to_mask is None:
        return has_mask and y.shape[-2] * y.shape[-1] > AUTO_PIXELS
    return bool(crop_to_mask)


def box_operator(operator: Any, box: Box) -> Any:
    """The inpainting operator of one box: the mask's crop (engine convention), the same noise."""
    top, left, bottom, right = box
    return type(operator)(operator.user_mask[:, top:bottom, left:right].contiguous(), noise=operator.noise)


def restore_cropped(y: Tensor, operator: Any, run: Run, seed: Optional[int], padding: int = PADDING) -> dict[str, Any]:
    """:func:`restore.pipeline.solve_items`'s result for (B, C, H, W) ``y`` computed box by box
    (module docstring): ``mean``, ``samples`` and ``std`` are ``y`` (std: 0) outside the
    pixels to fill; ``nfe``, ``calls`` and ``seconds`` add up over the boxes; ``provenance`` is the
    first box's with the full operator and ``crop_to_mask`` (boxes and padding) added.  Every
    box runs with the same ``seed`` (a random one, drawn once, when None)."""
    import secrets

    import torch

    if tuple(operator.user_mask.shape[-2:]) != tuple(y.shape[-2:]):
        raise ValueError(f"the mask is {operator.user_mask.shape[-2]}x{operator.user_mask.shape[-1]} pixels but the "
                         f"image is {y.shape[-2]}x{y.shape[-1]}; give a mask of the image's size")
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    boxes = fill_boxes(operator.user_mask, padding)
    if not boxes:
        raise ValueError("the mask marks no pixel to fill, so there is nothing to restore")
    fill = (operator.user_mask < 0.5).expand(y.shape[1], -1, -1)
    mean, samples, std, first = y.clone(), None, torch.zeros_like(y), None
    nfe, calls, seconds = 0, 0, 0.0
    for top, left, bottom, right in boxes:
        out = run(y[..., top:bottom, left:right].contiguous(), box_operator(operator, (top, left, bottom, right)),
                  seed)
        where = fill[:, top:bottom, left:right]
        if samples is None:
            samples = y[None].repeat(out["samples"].shape[0], 1, 1, 1, 1)
        for whole, part in ((mean, out["mean"]), (std, out["std"])):
            whole[..., top:bottom, left:right] = torch.where(where, part, whole[..., top:bottom, left:right])
        samples[..., top:bottom, left:right] = torch.where(where, out["samples"], samples[..., top:bottom, left:right])
        nfe, calls, seconds = nfe + out["nfe"], calls + out["calls"], seconds + out["seconds"]
        first = first or out["provenance"]
    provenance = {**first, "nfe": nfe, "seconds": round(seconds, 3),
                  "operator": {"name": operator.name, "params": operator.params(),
                               "tensors": sorted(operator.tensors())},
                  "crop_to_mask": {"boxes": [list(b) for b in boxes], "padding": padding}}
    return {"mean": mean, "samples": samples, "std": std, "nfe": nfe, "calls": calls, "seconds": seconds,
            "provenance": provenance}


def restore_around_mask(y: Tensor, operator: Any, run: Run, seed: Optional[int],
                        crop_to_mask: Optional[bool]) -> dict[str, Any]:
    """``run(y, operator, seed)``, box by box when :func:`wants_crop` says so."""
    if wants_crop(crop_to_mask, operator, y):
        return restore_cropped(y, operator, run, seed)
    return run(y, operator, seed)
