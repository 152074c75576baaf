"""Conversions between what networks predict and the denoised estimate x0.

All in the VE view x = x0 + sigma * eps (see :mod:`restore.diffusion.schedules`);
a VP network sees x_vp = alpha x with alpha = 1 / sqrt(1 + sigma^2) and
s = sigma alpha, so x_vp = alpha x0 + s eps.

* epsilon:  x0 = x - sigma eps                              (Ho et al. 2020)
* x0:       the output itself
* v:        v = alpha eps - s x0, so x0 = alpha x_vp - s v   (Salimans & Ho 2022, Sec. 4)
* score:    grad log p_sigma(x) = (x0 - x) / sigma^2        (Tweedie's formula; Efron 2011)
"""
from __future__ import annotations

from torch import Tensor

PARAMETRIZATIONS = ("epsilon", "x0", "v", "score")


def _check(kind: str) -> None:
    if kind not in PARAMETRIZATIONS:
        raise ValueError(f"unknown parametrization {kind!r}; known: {', '.join(PARAMETRIZATIONS)}")


def broadcast_sigma(sigma: Tensor, x: Tensor) -> Tensor:
    """sigma of shape () or (B,) as (B, 1, ..., 1) in x's dtype, for elementwise use."""
    sigma = sigma.to(device=x.device, dtype=x.dtype)
    return sigma.reshape(-1, *([1] * (x.dim() - 1))) if sigma.dim() else sigma


def to_x0(kind: str, output: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
    """The x0 estimate from a network ``output`` of parametrization ``kind`` at VE input ``x``."""
    _check(kind)
    s = broadcast_sigma(sigma, x)
    if kind == "epsilon":
        return x - s * output
    if kind == "x0":
        return output
    if kind == "score":
        return x + s**2 * output
    alpha = (1 + s**2).rsqrt()
    return alpha * (alpha * x) - s * alpha * output


def from_x0(kind: str, x0: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
    """The output of parametrization ``kind`` that corresponds to the estimate ``x0``; inverse of :func:`to_x0`."""
    _check(kind)
    s = broadcast_sigma(sigma, x)
    if kind == "epsilon":
        return (x - x0) / s
    if kind == "x0":
        return x0
    if kind == "score":
        return (x0 - x) / s**2
    alpha = (1 + s**2).rsqrt()
    eps = (x - x0) / s
    return alpha * eps - s * alpha * x0
