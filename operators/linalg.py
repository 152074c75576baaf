"""Linear-algebra helpers of the operators: the working dtype of numerical kernels, a fixed
ordering of coordinates for SVD operators (:class:`LeadingFirst`) and the minimum-norm
least-squares solver CGLS (:func:`cgls`) for pseudo-inverses and proximal maps without a closed form.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor


def working_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; every other dtype computes in float32 (for steps such as
    the FFT that have no bfloat16 kernels)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class LeadingFirst:
    """A fixed ordering of the entries of a tensor of shape ``lead.shape``: the entries
    where ``lead`` is True first, then the others, each group in raster order.

    SVD operators whose spectral coordinates are a permutation of an array (known
    pixels of a mask, the leading block of a Kronecker product) use it to put the
    coordinates paired with singular values first, as the contract asks.
    """

    def __init__(self, lead: Tensor) -> None:
        flat = lead.reshape(-1).to("cpu", torch.bool)
        self.shape = tuple(lead.shape)
        self.count = int(flat.sum())
        self._order = torch.cat([flat.nonzero()[:, 0], (~flat).nonzero()[:, 0]])
        self._inverse = torch.argsort(self._order)
        self._on_device: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def _indices(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._on_device:
            self._on_device[device] = (self._order.to(device), self._inverse.to(device))
        return self._on_device[device]

    def flatten(self, t: Tensor) -> Tensor:
        """(B, *shape) -> (B, N), leading entries first."""
        order, _ = self._indices(t.device)
        return t.reshape(t.shape[0], -1).index_select(1, order)

    def unflatten(self, c: Tensor) -> Tensor:
        """(B, N) -> (B, *shape); the inverse of :meth:`flatten`."""
        _, inverse = self._indices(c.device)
        return c.index_select(1, inverse).reshape(c.shape[0], *self.shape)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """<a_i, b_i> per batch item, shape (B,)."""
    return (a * b).flatten(1).sum(1)


def _per_item(v: Tensor, like: Tensor) -> Tensor:
    """A (B,) tensor shaped to broadcast against ``like`` (B, ...)."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def cgls(op: Any, y: Tensor, *, tol: float, max_iter: int, damp: float = 0.0, warn: bool = True) -> Tensor:
    """The minimum-norm least-squares solution A^+ y by CGLS; with ``damp`` = rho > 0 the
    solution of the damped problem min ||A x - y||^2 + rho ||x||^2, i.e. (A^T A + rho I) x = A^T y.

    CGLS is conjugate gradients on the normal equations A^T A x = A^T y (Hestenes &
    Stiefel 1952; the stable form of Paige & Saunders 1982, "LSQR", Sec. 7.1).  From
    x_0 = 0 every iterate lies in range(A^T), so the limit is the minimum-norm
    solution, i.e. A^+ y.  The damped form runs the same recursion on the normal equations
    of the stacked system [A; sqrt(rho) I] x = [y; 0] (Bjorck 1996, "Numerical Methods for
    Least Squares Problems", Sec. 7.4.1).  Iterates per batch item; stops when
    ||A^T (y - A x_k) - rho x_k|| <= tol ||A^T y|| for every item, or after ``max_iter``
    iterations, with a RuntimeWarning giving the residual reached unless ``warn`` is False.
    """
    tiny = torch.finfo(working_dtype(y)).tiny
    s = op.adjoint(y)
    x = torch.zeros_like(s)
    r, p = y, s
    gamma = _dot(s, s)
    gamma_start = gamma
    target = (tol**2) * gamma_start
    for _ in range(max_iter):
        done = gamma <= target
        if bool(done.all()):
            return x
        q = op.forward(p)
        qq = _dot(q, q) + damp * _dot(p, p)
        alpha = torch.where(done | (qq <= 0), torch.zeros_like(gamma), gamma / qq.clamp_min(tiny))
        x = x + _per_item(alpha, p) * p
        r = r - _per_item(alpha, q) * q
        s = op.adjoint(r) - damp * x if damp else op.adjoint(r)
        gamma_next = _dot(s, s)
        beta = torch.where(gamma > 0, gamma_next / gamma.clamp_min(tiny), torch.zeros_like(gamma))
        p = s + _per_item(beta, p) * p
        gamma = gamma_next
    if warn and not bool((gamma <= target).all()):
        reached = (gamma / gamma_start.clamp_min(tiny)).sqrt().max().item()
        warnings.warn(
            f"{op.name}: CGLS stopped after max_iter={max_iter} iterations at relative residual "
            f"{reached:.2e} > tol={tol:.1e}",
            RuntimeWarning,
            stacklevel=2,
        )
    return x
