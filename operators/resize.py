r"""Super-resolution measurements: downsampling by an integer ``scale``.

Both methods are separable: per channel y = A_h X A_w^T with small matrices A_h
(H/s x H) and A_w (W/s x W), i.e. A = A_h kron A_w on row-major vec(X).  Hence

* A^T y = A_h^T Y A_w, exactly;
* A^+ = A_h^+ kron A_w^+ (the pseudo-inverse of a Kronecker product), each factor's
  pseudo-inverse from its SVD with numpy's cutoff s_i > max(n, m) eps s_max;
* SVD: with A_h = U_h S_h V_h^T and A_w = U_w S_w V_w^T (full V),
  A = (U_h kron U_w)(S_h kron S_w)(V_h kron V_w)^T.  V^T x is V_h^T X V_w; its
  leading block [:H/s, :W/s] pairs with the singular values s_h(i) s_w(j), listed in
  that block's raster order per channel and moved first (the rest after, in raster
  order); U^T y = U_h^T Y U_w, all of it leading.

``scale`` must divide H and W (otherwise a ValueError naming ``scale``): then x's
size follows from y's, and the adjoint and pseudo-inverse need no bound shape.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from restore.operators.base import NoiseSpec, SVDOperator
from restore.operators.linalg import LeadingFirst
from restore.operators.validation import check_choice, check_int
def cubic(t: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (Keys 1981), MATLAB's ``cubic``:
    1.5|t|^3 - 2.5|t|^2 + 1 for |t| <= 1, -0.5|t|^3 + 2.5|t|^2 - 4|t| + 2 for 1 < |t| <= 2,
    0 beyond."""
    a = t.abs()
    inner = 1.5 * a**3 - 2.5 * a**2 + 1
    outer = -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return torch.where(a <= 1, inner, torch.where(a <= 2, outer, torch.zeros_like(a)))


def bicubic_matrix(size: int, scale: int) -> Tensor:
    """The (size / scale) x size matrix of MATLAB ``imresize(x, 1/scale, 'bicubic')``
    along one axis (antialiasing on, MATLAB's default when shrinking), float64.

    From MATLAB's ``contributions``: with s = 1 / scale, output pixel i (1-based) sits at
    input coordinate u = i / s + (1 - 1 / s) / 2; the kernel is widened by the scale,
    h(t) = s cubic(s t), width 4 / s; taps j = floor(u - width / 2) + (0 .. ceil(width) + 1)
    get weights h(u - j), normalized to sum 1 per row; taps outside 1..size are mirrored
    with the edge pixel repeated (MATLAB's symmetric padding: index j maps to
    [1..size, size..1] at (j - 1) mod 2 size).
    """
    out = size // scale
    width = 4.0 * scale
    taps = math.ceil(width) + 2
    u = torch.arange(1, out + 1, dtype=torch.float64) * scale + 0.5 * (1 - scale)
    left = torch.floor(u - width / 2)
    index = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    weights = cubic((u[:, None] - index) / scale) / scale
    weights = weights / weights.sum(dim=1, keepdim=True)
    folded = (index.long() - 1) % (2 * size)
    source = torch.where(folded < size, folded, 2 * size - 1 - folded)
    matrix = torch.zeros(out, size, dtype=torch.float64)
    return matrix.scatter_add_(1, source, weights)


def box_matrix(size: int, scale: int) -> Tensor:
    """The (size / scale) x size block-mean matrix: row i averages pixels
    i*scale .. i*scale + scale - 1 (average pooling)."""
    block = torch.full((1, scale), 1.0 / scale, dtype=torch.float64)
    return torch.kron(torch.eye(size // scale, dtype=torch.float64), block)


#: Per-axis matrix builders by method.
METHODS: dict[str, Callable[[int, int], Tensor]] = {"bicubic": bicubic_matrix, "avgpool": box_matrix}


class Downsample(SVDOperator):
    """Super-resolution: downsample by an integer scale, MATLAB-style bicubic or average pooling.

    ``method="bicubic"`` matches MATLAB ``imresize(x, 1/scale)`` (bicubic with
    antialiasing) in floating point, with no rounding to 8 bits; ``method="avgpool"``
    averages scale x scale blocks.  Output (B, C, H / scale, W / scale).
    """

    name = "sr"
    task = "super-resolution"
    example = {"scale": 4}

    def __init__(
        self,
        scale: int = 4,
        *,
        method: str = "bicubic",
        noise: NoiseSpec = None,
        shape: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__(noise, shape)
        self.scale = check_int(self.name, "scale", scale, low=1)
        self.method = check_choice(self.name, "method", method, tuple(METHODS))
        if self.shape is not None:
            self.check_shape(self.shape)

    def check_shape(self, shape: tuple[int, int, int]) -> None:
        self._check_divides(*shape[1:])

    def _check_divides(self, height: int, width: int) -> None:
        if height % self.scale or width % self.scale:
            raise ValueError(f"sr: scale {self.scale} does not divide the image size {height}x{width}")

    def _factors(self, height: int, width: int) -> dict[str, Tensor]:
        """Per-axis matrices, pseudo-inverses and SVDs (float64, CPU) for an H x W input."""

        def axis(size: int) -> dict[str, Tensor]:
            matrix = METHODS[self.method](size, self.scale)
            u, s, vh = torch.linalg.svd(matrix, full_matrices=True)
            cutoff = max(matrix.shape) * torch.finfo(torch.float64).eps * s.max()
            inverse_s = torch.where(s > cutoff, 1 / s, torch.zeros_like(s))
            pinv = vh[: s.numel()].T @ (inverse_s[:, None] * u.T)
            return {"a": matrix, "pinv": pinv, "u": u, "s": s, "v": vh.T}

        def make() -> dict[str, Tensor]:
            rows, cols = axis(height), axis(width)
            return {**{f"{k}_h": t for k, t in rows.items()}, **{f"{k}_w": t for k, t in cols.items()}}

        return self.memo(("factors", height, width), make)

    def _matrices(self, height: int, width: int, names: tuple[str, str], like: Tensor) -> tuple[Tensor, Tensor]:
        """The named row and column factors on like's device and dtype."""
        self._check_divides(height, width)

        def make() -> tuple[Tensor, Tensor]:
            factors = self._factors(height, width)
            return tuple(factors[name].to(like.device, like.dtype) for name in names)

        return self.memo(("on", height, width, names, like.device, like.dtype), make)

    @staticmethod
    def _apply(rows: Tensor, z: Tensor, cols: Tensor) -> Tensor:
        """rows @ z @ cols^T on the last two dimensions."""
        return torch.matmul(torch.matmul(rows, z), cols.transpose(0, 1))

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        a_h, a_w = self._matrices(*x.shape[-2:], ("a_h", "a_w"), x)
        return self._apply(a_h, x, a_w)

    def _input_size(self, y: Tensor) -> tuple[int, int]:
        if y.dim() != 4:
            raise ValueError(f"sr: expected measurements (B, C, h, w), got shape {tuple(y.shape)}")
        height, width = y.shape[-2] * self.scale, y.shape[-1] * self.scale
        self.check_input((y.shape[0], y.shape[1], height, width))
        return height, width

    def adjoint(self, y: Tensor) -> Tensor:
        a_h, a_w = self._matrices(*self._input_size(y), ("a_h", "a_w"), y)
        return self._apply(a_h.transpose(0, 1), y, a_w.transpose(0, 1))

    def pinv(self, y: Tensor) -> Tensor:
        p_h, p_w = self._matrices(*self._input_size(y), ("pinv_h", "pinv_w"), y)
        return self._apply(p_h, y, p_w)

    # The Kronecker SVD.
    def _layout(self) -> LeadingFirst:
        channels, height, width = self.bound_shape()

        def make() -> LeadingFirst:
            lead = torch.zeros(channels, height, width, dtype=torch.bool)
            lead[:, : height // self.scale, : width // self.scale] = True
            return LeadingFirst(lead)

        return self.memo(("layout",), make)

    def singulars(self) -> Tensor:
        channels, height, width = self.bound_shape()
        factors = self._factors(height, width)
        return torch.outer(factors["s_h"], factors["s_w"]).flatten().repeat(channels)

    def vt(self, x: Tensor) -> Tensor:
        self.check_input(x)
        v_h, v_w = self._matrices(*self.bound_shape()[1:], ("v_h", "v_w"), x)
        return self._layout().flatten(self._apply(v_h.transpose(0, 1), x, v_w.transpose(0, 1)))

    def v(self, c: Tensor) -> Tensor:
        v_h, v_w = self._matrices(*self.bound_shape()[1:], ("v_h", "v_w"), c)
        return self._apply(v_h, self._layout().unflatten(c), v_w)

    def ut(self, y: Tensor) -> Tensor:
        u_h, u_w = self._matrices(*self._input_size(y), ("u_h", "u_w"), y)
        return self._apply(u_h.transpose(0, 1), y, u_w.transpose(0, 1)).flatten(1)

    def u(self, c: Tensor) -> Tensor:
        channels, height, width = self.bound_shape()
        u_h, u_w = self._matrices(height, width, ("u_h", "u_w"), c)
        return self._apply(u_h, c.reshape(c.shape[0], channels, height // self.scale, width // self.scale), u_w)

    def params(self) -> dict[str, Any]:
        return {"scale": self.scale, "method": self.method, **super().params()}


OPERATORS = {Downsample.name: Downsample}
