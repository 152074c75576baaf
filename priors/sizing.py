"""Any image size for any prior: wrappers around a network callable ``network(x, t) -> out``.

Operators act on the pixel grid of the measurement, so the image is never resized
(resizing would change the forward model A and the noise level per pixel).  Instead:

* Fully convolutional networks (the compact UNet, diffusers UNets without attention)
  need height and width divisible by 2^levels: :class:`PaddedNetwork` reflect-pads
  up to the next multiple and crops the output back.
* Fixed-size networks (the 256x256 ADM models, whose self-attention and training
  statistics are tied to 256x256 inputs) see only inputs of exactly that size:
  :class:`TiledNetwork`, per axis, reflect-pads a shorter side up to the size, and
  covers a longer side with overlapping tiles whose outputs are blended with a
  smooth window.  Each tile costs one network evaluation.

Blending: tile k has the separable weight w_k(i, j) = r(i) r(j), with r = 1 in the
middle and a raised-cosine ramp sin^2(pi (n + 1/2) / (2 L)) over the first and last L
(= ``overlap``) pixels; the output is sum_k w_k out_k / sum_k w_k.  Where a single
tile covers a pixel the output is exactly that tile's; the window is > 0 everywhere,
so the normalisation never divides by zero.

Padding is symmetric reflection about the edge pixels (numpy's "reflect"), repeated
periodically when the pad is longer than the image.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

Network = Callable[[Tensor, Tensor], Tensor]


def reflect_indices(length: int, before: int, after: int, device=None) -> Tensor:
    """Source indices of a reflect-padded axis: ``length`` values plus ``before`` / ``after``
    reflected ones (period 2 (length - 1); a length-1 axis is repeated)."""
    k = torch.arange(-before, length + after, device=device)
    if length == 1:
        return torch.zeros_like(k)
    period = 2 * (length - 1)
    k = k.remainder(period)
    return torch.where(k < length, k, period - k)


def reflect_pad(x: Tensor, height: int, width: int) -> tuple[Tensor, tuple[int, int]]:
    """``x`` (..., H, W) reflect-padded to (height, width), centred; returns it and the (top, left) offsets."""
    h, w = x.shape[-2:]
    top, left = (height - h) // 2, (width - w) // 2
    if (top, left) == (0, 0) and (h, w) == (height, width):
        return x, (0, 0)
    rows = reflect_indices(h, top, height - h - top, x.device)
    cols = reflect_indices(w, left, width - w - left, x.device)
    return x.index_select(-2, rows).index_select(-1, cols), (top, left)


class PaddedNetwork:
    """A fully convolutional ``network`` at any size: pad to multiples of ``multiple``, crop back."""

    def __init__(self, network: Network, multiple: int) -> None:
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        self.network = network
        self.multiple = multiple

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        padded, (top, left) = reflect_pad(x, math.ceil(h / m) * m, math.ceil(w / m) * m)
        return self.network(padded, t)[..., top:top + h, left:left + w]


def tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of the fewest tiles of ``size`` covering ``length`` with at least
    ``overlap`` shared pixels between neighbours, spread evenly (first at 0, last at the end)."""
    if length <= size:
        return [0]
    count = math.ceil((length - overlap) / (size - overlap))
    return [round(k * (length - size) / (count - 1)) for k in range(count)]


def blend_window(size: int, overlap: int, device=None, dtype=torch.float32) -> Tensor:
    """1-D tile weight: raised-cosine ramps over ``overlap`` pixels at both ends, 1 between."""
    n = torch.arange(size, device=device, dtype=torch.float64)
    edge = torch.minimum(n, size - 1 - n)  # distance to the nearer end
    ramp = torch.sin(math.pi * (edge + 0.5) / (2 * max(overlap, 1))).square()
    return torch.where(edge < overlap, ramp, torch.ones_like(n)).to(dtype)


class TiledNetwork:
    """A fixed-size ``network`` (trained on ``size`` = (H, W) inputs) at any size; see the module docstring."""

    def __init__(self, network: Network, size: tuple[int, int], overlap: int | None = None) -> None:
        self.network = network
        self.size = (int(size[0]), int(size[1]))
        self.overlap = min(self.size) // 4 if overlap is None else int(overlap)
        if not 0 <= self.overlap <= min(self.size) // 2:
            raise ValueError(f"overlap must be in [0, {min(self.size) // 2}] for tiles of {self.size}, got {overlap}")

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        th, tw = self.size
        canvas, (top, left) = reflect_pad(x, max(h, th), max(w, tw))
        H, W = canvas.shape[-2:]
        rows, cols = tile_starts(H, th, self.overlap), tile_starts(W, tw, self.overlap)
        if len(rows) * len(cols) == 1:
            return self.network(canvas, t)[..., top:top + h, left:left + w]
        window = (blend_window(th, self.overlap, x.device, x.dtype)[:, None]
                  * blend_window(tw, self.overlap, x.device, x.dtype))
        total = torch.zeros(H, W, device=x.device, dtype=x.dtype)
        out = None
        for r in rows:
            for c in cols:
                tile = self.network(canvas[..., r:r + th, c:c + tw], t)
                if out is None:
                    out = tile.new_zeros(*tile.shape[:-2], H, W)
                out[..., r:r + th, c:c + tw] += window * tile
                total[r:r + th, c:c + tw] += window
        return (out / total)[..., top:top + h, left:left + w]
