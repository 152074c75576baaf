"""Per-step events that sampler loops hand to observers (progress, previews, tracing)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import Tensor


@dataclass(frozen=True)
class StepEvent:
    """State after step ``step`` of ``total``: the current iterate ``x`` at noise level
    ``sigma`` (VE scale), the denoised estimate ``x0`` the step was based on and ``nfe``, the
    network evaluations so far (stamped by :func:`restore.strategies.engine.solve`; 0 from a
    sampler called directly)."""

    step: int
    total: int
    sigma: float
    x: Tensor
    x0: Tensor
    nfe: int = 0


StepCallback = Optional[Callable[[StepEvent], None]]
