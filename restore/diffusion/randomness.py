"""Where sampling noise comes from: one ``torch.Generator`` for a batch, or one per item.

A batch drawn from one generator depends on the batch's size and order.  With
:class:`ItemGenerators` every item has its own generator, and each draw of shape
(B, ...) is the stack of B per-item draws of shape (...): item i of a batch then sees
exactly the numbers it would see if it were sampled alone, so results do not depend on
the batch size, the order or the number of workers (``restore batch`` relies on this).
Every random draw of the samplers and strategies goes through :func:`randn`.

An item may also draw the *negation* of its generator's numbers (``signs``): two items with
generators seeded alike and opposite signs are an antithetic pair (Hammersley & Morton, "A new
Monte Carlo technique: antithetic variates", 1956), :func:`antithetic_pairs`.  Averaging such a
pair cancels every part of a sample that is odd in the noise: where the sampler is linear in its
noise (a Gaussian prior, an SVD sampler) the pair's mean is the sampler's expectation exactly.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor


class ItemGenerators:
    """One ``torch.Generator`` per batch item, and its sign (+1, or -1: the item draws the
    negation of its generator's numbers).  Draws are made on each generator's device, then
    moved (:meth:`from_seeds` makes CPU generators)."""

    def __init__(self, generators: Sequence[torch.Generator], signs: Optional[Sequence[int]] = None) -> None:
        if not generators:
            raise ValueError("ItemGenerators needs at least one generator")
        self.generators = list(generators)
        self.signs = [1] * len(self.generators) if signs is None else [int(s) for s in signs]
        if len(self.signs) != len(self.generators) or any(s not in (1, -1) for s in self.signs):
            raise ValueError(f"signs must be one +1 or -1 per generator ({len(self.generators)}), got {signs!r}")

    @classmethod
    def from_seeds(cls, seeds: Sequence[int], signs: Optional[Sequence[int]] = None) -> "ItemGenerators":
        return cls([torch.Generator().manual_seed(int(s)) for s in seeds], signs)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], device=None, dtype: Optional[torch.dtype] = None) -> Tensor:
        shape = tuple(shape)
        if not shape or shape[0] != len(self.generators):
            raise ValueError(f"a draw of shape {shape} for {len(self.generators)} per-item generators: "
                             "the leading dimension must be the batch")
        draws = [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in self.generators]
        draws = [d if sign > 0 else d.neg_() for d, sign in zip(draws, self.signs)]
        return torch.stack(draws).to(device)


def antithetic_pairs(seeds: Sequence[int], samples: int) -> ItemGenerators:
    """The generators of ``samples`` samples of each of ``len(seeds) // samples`` images, in
    sample-major order (item s * B + b is sample s of image b), where sample 2j + 1 of every
    image draws the negation of sample 2j's numbers: its generator is seeded ``seeds[2j * B + b]``
    and its own seed must be that one (a record's seeds then reproduce the run).  An odd last
    sample has no partner and draws from its own seed."""
    paired = antithetic_seeds(seeds, samples)
    batch = len(paired) // samples
    for k, (given, needed) in enumerate(zip(seeds, paired)):
        if int(given) != needed:
            raise ValueError(f"antithetic pairs: sample {k // batch} of image {k % batch} draws the negation of "
                             f"sample {k // batch - 1}'s noise, so its seed must be {needed}, got {int(given)}")
    return ItemGenerators.from_seeds(paired, [-1 if (k // batch) % 2 else 1 for k in range(len(paired))])


def antithetic_seeds(seeds: Sequence[int], samples: int) -> list[int]:
    """``seeds`` of ``samples`` samples of each image (sample-major) with sample 2j + 1's replaced
    by sample 2j's: the seeds :func:`antithetic_pairs` takes."""
    seeds = [int(s) for s in seeds]
    if samples < 1 or len(seeds) % samples:
        raise ValueError(f"{len(seeds)} seeds cannot hold {samples} samples of each image")
    batch = len(seeds) // samples
    return [seeds[k - batch] if (k // batch) % 2 else seeds[k] for k in range(len(seeds))]


Generator = Union[torch.Generator, ItemGenerators, None]


def randn(shape: Sequence[int], generator: Generator = None, *, device=None,
          dtype: Optional[torch.dtype] = None) -> Tensor:
    """Standard normal noise of ``shape`` from ``generator`` (one for the batch, or per item)."""
    if isinstance(generator, ItemGenerators):
        return generator.randn(shape, device=device, dtype=dtype)
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
