"""Distances between sample sets."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def sliced_wasserstein(a: Tensor, b: Tensor, *, directions: int = 1000,
                       generator: Optional[torch.Generator] = None) -> float:
    """Sliced 2-Wasserstein distance between two equal-size sample sets (Rabin et al. 2011;
    Bonneel et al. 2015): sqrt of the mean over random unit directions theta of
    W2^2(theta^T a, theta^T b), each 1-D W2 computed exactly by sorting."""
    a = a.reshape(a.shape[0], -1).to(torch.float64)
    b = b.reshape(b.shape[0], -1).to(torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"sample sets must have equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    theta = torch.randn(a.shape[1], directions, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    pa, _ = (a @ theta).sort(dim=0)
    pb, _ = (b @ theta).sort(dim=0)
    return float(((pa - pb) ** 2).mean().sqrt())


METRICS = {"sliced-wasserstein": sliced_wasserstein}
