"""Where sampling noise comes from: one ``torch.Generator`` for a batch, or one per item.

A batch drawn from one generator depends on the batch's size and order.  With
:class:`ItemGenerators` every item has its own generator, and each draw of shape
(B, ...) is the stack of B per-item draws of shape (...): item i of a batch then sees
exactly the numbers it would see if it were sampled alone, so results do not depend on
the batch size, the order or the number of workers (``restore batch`` relies on this).
Every random draw of the samplers and strategies goes through :func:`randn`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor


class ItemGenerators:
    """One CPU ``torch.Generator`` per batch item (draws are made on the CPU, then moved)."""

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        if not generators:
            raise ValueError("ItemGenerators needs at least one generator")
        self.generators = list(generators)

    @classmethod
    def from_seeds(cls, seeds: Sequence[int]) -> "ItemGenerators":
        return cls([torch.Generator().manual_seed(int(s)) for s in seeds])

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], device=None, dtype: Optional[torch.dtype] = None) -> Tensor:
        shape = tuple(shape)
        if not shape or shape[0] != len(self.generators):
            raise ValueError(f"a draw of shape {shape} for {len(self.generators)} per-item generators: "
                             "the leading dimension must be the batch")
        draws = [torch.randn(shape[1:], generator=g, dtype=dtype) for g in self.generators]
        return torch.stack(draws).to(device)


Generator = Union[torch.Generator, ItemGenerators, None]


def randn(shape: Sequence[int], generator: Generator = None, *, device=None,
          dtype: Optional[torch.dtype] = None) -> Tensor:
    """Standard normal noise of ``shape`` from ``generator`` (one for the batch, or per item)."""
    if isinstance(generator, ItemGenerators):
        return generator.randn(shape, device=device, dtype=dtype)
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
