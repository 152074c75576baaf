r"""An explicit matrix as an SVD operator: y = A x with A of shape (m, d).

Inputs are batches of d-vectors, (B, d), or of any per-item shape holding d entries
(``shape``, e.g. (C, H, W)), which are flattened in raster order; measurements are
(B, m).  The operator stores the full singular value decomposition

    A = U diag(s) V^T,  U (m, m) and V (d, d) orthogonal,  s (k,), k = min(m, d),

either computed from A (``torch.linalg.svd`` with ``full_matrices=True``, in float64)
or given (``u``, ``s``, ``v``; the benchmark of MCGdiff, Cardoso et al. 2024, Sec. 4.1,
draws U and V at random and sorts s).  In the contract of
:class:`restore.operators.base.SVDOperator` the spectral coordinates are
``vt(x) = V^T x`` (d entries) and ``ut(y) = U^T y`` (m entries), whose first k entries
pair with s.  ``forward`` multiplies by A = U[:, :k] diag(s) V[:, :k]^T; ``adjoint``
and ``pinv`` are the SVD ones of the base class, so the dot-product test
<A x, y> = <x, A^T y> checks the decomposition against the matrix.

All factors are kept in float64 on the CPU and cast to the input's dtype and device.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from restore.operators.base import NoiseSpec, SVDOperator, as_noise
from restore.operators.validation import ArraySource, check_int, load_array
#: Largest entry of |Q^T Q - I| accepted for a given orthogonal factor (float64).
ORTHOGONALITY_TOLERANCE = 1e-8


def _orthogonal(name: str, q: Tensor, size: int) -> Tensor:
    if q.shape != (size, size):
        raise ValueError(f"matrix: {name} must have shape ({size}, {size}), got {tuple(q.shape)}")
    error = float((q.T @ q - torch.eye(size, dtype=q.dtype)).abs().max())
    if not error <= ORTHOGONALITY_TOLERANCE:
        raise ValueError(f"matrix: {name} is not orthogonal (max |{name}^T {name} - I| = {error:.2e})")
    return q


class MatrixOperator(SVDOperator):
    """y = A x for an explicit (m, d) matrix: give ``matrix``, or its SVD ``u`` (m, m), ``s``
    (min(m, d),) and ``v`` (d, d).  ``shape`` is the per-item input shape (default (d,))."""

    name = "matrix"
    #: A fixed, well-conditioned 4 x 6 matrix.
    example = {"matrix": torch.eye(4, 6, dtype=torch.float64) + 0.1 * torch.linspace(-1, 1, 24).reshape(4, 6)}

    def __init__(self, matrix: Optional[ArraySource] = None, *, u: Optional[ArraySource] = None,
                 s: Optional[ArraySource] = None, v: Optional[ArraySource] = None,
                 shape: Optional[Sequence[int]] = None, noise: NoiseSpec = None) -> None:
        super().__init__(as_noise(noise))
        given = [name for name, f in (("u", u), ("s", s), ("v", v)) if f is not None]
        if (matrix is not None and given) or (matrix is None and len(given) != 3):
            raise ValueError(f"matrix: give either matrix, or all three of u, s and v (got {', '.join(given) or 'none'}"
                             f"{' and matrix' if matrix is not None else ''})")
        if matrix is not None:
            a, _ = load_array(matrix, "matrix")
            if a.dim() != 2 or not torch.isfinite(a).all():
                raise ValueError(f"matrix: matrix must be a finite 2-D array (m, d), got shape {tuple(a.shape)}")
            u_, s_, vh = torch.linalg.svd(a, full_matrices=True)
            self._u, self._s, self._v = u_, s_, vh.T
        else:
            u_, _ = load_array(u, "u")
            v_, _ = load_array(v, "v")
            s_, _ = load_array(s, "s")
            if u_.dim() != 2 or v_.dim() != 2:
                raise ValueError(f"matrix: u and v must be 2-D, got shapes {tuple(u_.shape)} and {tuple(v_.shape)}")
            m, d = u_.shape[0], v_.shape[0]
            self._u, self._v = _orthogonal("u", u_, m), _orthogonal("v", v_, d)
            if s_.shape != (min(m, d),) or not (torch.isfinite(s_).all() and (s_ >= 0).all()):
                raise ValueError(f"matrix: s must hold min(m, d) = {min(m, d)} finite values >= 0, "
                                 f"got shape {tuple(s_.shape)}")
            self._s = s_
        m, d, k = self._u.shape[0], self._v.shape[0], self._s.numel()
        self._matrix = (self._u[:, :k] * self._s) @ self._v[:, :k].T
        if shape is None:
            shape = (d,)
        if not isinstance(shape, (tuple, list)) or not shape:
            raise ValueError(f"matrix: shape must be a non-empty list of sizes, got {shape!r}")
        self.shape = tuple(check_int(self.name, "shape", n, low=1) for n in shape)
        if math.prod(self.shape) != d:
            raise ValueError(f"matrix: shape {list(self.shape)} holds {math.prod(self.shape)} entries, "
                             f"A has d = {d} columns")

    @property
    def matrix(self) -> Tensor:
        """A itself, (m, d), float64."""
        return self._matrix

    def _factor(self, t: Tensor, like: Tensor) -> Tensor:
        return t.to(device=like.device, dtype=like.dtype)

    def _flat(self, x: Tensor, size: int, what: str) -> Tensor:
        if x.dim() < 2 or x[0].numel() != size:
            raise ValueError(f"matrix: {what} must be a batch (B, ...) of {size} entries per item, "
                             f"got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], size)

    def forward(self, x: Tensor) -> Tensor:
        return self._flat(x, self._v.shape[0], "x") @ self._factor(self._matrix, x).T

    def singulars(self) -> Tensor:
        return self._s

    def vt(self, x: Tensor) -> Tensor:
        return self._flat(x, self._v.shape[0], "x") @ self._factor(self._v, x)

    def v(self, c: Tensor) -> Tensor:
        return (self._flat(c, self._v.shape[0], "spectral coordinates") @ self._factor(self._v, c).T).reshape(
            c.shape[0], *self.shape)

    def ut(self, y: Tensor) -> Tensor:
        return self._flat(y, self._u.shape[0], "y") @ self._factor(self._u, y)

    def u(self, c: Tensor) -> Tensor:
        return self._flat(c, self._u.shape[0], "spectral coordinates") @ self._factor(self._u, c).T

    def x_numel(self) -> int:
        return self._v.shape[0]

    def tensors(self) -> dict[str, Tensor]:
        return {"u": self._u, "s": self._s, "v": self._v}


OPERATORS = {MatrixOperator.name: MatrixOperator}
