"""Denoising: A = I, so y = x + n.

A^T = A^+ = I; the SVD is U = V = I with every singular value 1 (coordinates are x
flattened).  The noise model carries the whole problem.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from restore.operators.base import SVDOperator
class Denoise(SVDOperator):
    """Denoising: the identity operator; the noise model is the degradation."""

    name = "denoise"
    task = "denoise"
    example = {"noise": {"kind": "gaussian", "sigma": 0.1}}

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        return self.forward(y)

    def pinv(self, y: Tensor) -> Tensor:
        return self.forward(y)

    def singulars(self) -> Tensor:
        return torch.ones(math.prod(self.bound_shape()), dtype=torch.float64)

    def vt(self, x: Tensor) -> Tensor:
        return self.forward(x).flatten(1)

    def v(self, c: Tensor) -> Tensor:
        return c.reshape(c.shape[0], *self.bound_shape())

    ut = vt
    u = v


OPERATORS = {Denoise.name: Denoise}
