r"""Block compressed sensing: each channel is cut into b_h x b_w blocks, and every
block (flattened row-major, n = b_h b_w entries) is measured by the same m x n matrix
Phi with orthonormal rows, m = max(1, round(ratio * n)).

* ``basis="hadamard"``: Phi = S H D, with H the orthonormal Walsh-Hadamard matrix of
  Sylvester's construction (H_1 = [1], H_2k = [[H_k, H_k], [H_k, -H_k]], scaled by
  1 / sqrt(n); n must be a power of two), D a seeded random diagonal of signs and S a
  seeded random choice of m of its rows: the structurally random matrix of Do, Gan,
  Nguyen & Tran 2012 ("Fast and efficient compressive sensing using structurally random
  matrices", IEEE TSP), applied block-wise as in block CS (Gan 2007).
* ``basis="orthogonal"``: Phi = the first m rows of a seeded Haar-random orthogonal
  matrix (QR of a Gaussian matrix, signs fixed by diag(R) > 0; Mezzadri 2007).  Its
  cost is O(n^2) per block, so keep n small; a block as large as a small image gives
  whole-image random orthogonal sensing.

Measurement y: (B, C * m, H / b_h, W / b_w), channel c * m + k holding coefficient k
of channel c, one value per block.  The blocks must tile the image (a ValueError
naming ``block`` otherwise).

Rows orthonormal means Phi Phi^T = I, so A^+ = A^T.  SVD: let Q be Phi's full
orthogonal completion (the n x n matrix whose first m rows are Phi); then Phi =
[I_m 0] Q, so U = I, every singular value is 1, and V^T x applies Q to every block;
its coordinates k < m (raster order over channel, k, block row, block column, the same
order as y's entries) come first.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from restore.operators.base import NoiseSpec, SVDOperator
from restore.operators.linalg import LeadingFirst
from restore.operators.validation import check_choice, check_int, check_number, check_pair

BASES = ("hadamard", "orthogonal")


def hadamard(n: int) -> Tensor:
    """The orthonormal n x n Walsh-Hadamard matrix (Sylvester order), n a power of two."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


def haar_orthogonal(n: int, generator: torch.Generator) -> Tensor:
    """A Haar-distributed random orthogonal n x n matrix (Mezzadri 2007, Sec. 5)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q * torch.where(r.diagonal() < 0, -1.0, 1.0)[None, :]


class CompressedSensing(SVDOperator):
    """Block compressed sensing: seeded subsampled Walsh-Hadamard with random signs, or random orthogonal rows."""

    name = "cs"
    example = {"ratio": 0.25}
    image_measurement = False

    def __init__(
        self,
        ratio: float = 0.25,
        *,
        basis: str = "hadamard",
        block: Union[int, Sequence[int]] = 32,
        seed: int = 0,
        noise: NoiseSpec = None,
        shape: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__(noise, shape)
        self.ratio = check_number(self.name, "ratio", ratio, low=0.0, low_inclusive=False)
        if self.ratio > 1:
            raise ValueError(f"cs: ratio must be in (0, 1], got {ratio}")
        self.basis = check_choice(self.name, "basis", basis, BASES)
        self.block = check_pair(self.name, "block", block, low=1)
        self.seed = check_int(self.name, "seed", seed, low=0)
        n = self.block[0] * self.block[1]
        if self.basis == "hadamard" and n & (n - 1):
            raise ValueError(f"cs: block {self.block[0]}x{self.block[1]} has {n} pixels; "
                             "the Hadamard basis needs a power of two")
        self.rows = max(1, round(self.ratio * n))
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        if self.basis == "hadamard":
            signs = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).to(torch.float64)
            full = hadamard(n) * signs[None, :]
        else:
            full = haar_orthogonal(n, generator)
        chosen = torch.randperm(n, generator=generator)
        order = torch.cat([chosen[: self.rows].sort().values, chosen[self.rows :].sort().values])
        self._completion = full[order]
        if self.shape is not None:
            self.check_shape(self.shape)

    def check_shape(self, shape: tuple[int, int, int]) -> None:
        self._check_tiles(*shape[1:])

    def _check_tiles(self, height: int, width: int) -> None:
        if height % self.block[0] or width % self.block[1]:
            raise ValueError(f"cs: block {self.block[0]}x{self.block[1]} does not tile the image size {height}x{width}")

    def _matrix(self, rows: int, like: Tensor) -> Tensor:
        """The first ``rows`` rows of the orthogonal completion Q, on like's device and dtype."""
        return self.memo(("q", rows, like.device, like.dtype),
                         lambda: self._completion[:rows].to(like.device, like.dtype))

    def _blocks(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, n, H / b_h, W / b_w), each block flattened row-major."""
        self.check_input(x)
        self._check_tiles(*x.shape[-2:])
        (bh, bw), (b, c, h, w) = self.block, x.shape
        blocks = x.reshape(b, c, h // bh, bh, w // bw, bw).permute(0, 1, 3, 5, 2, 4)
        return blocks.reshape(b, c, bh * bw, h // bh, w // bw)

    def _image(self, t: Tensor) -> Tensor:
        """The inverse of :meth:`_blocks`."""
        (bh, bw), (b, c, _, th, tw) = self.block, t.shape
        return t.reshape(b, c, bh, bw, th, tw).permute(0, 1, 4, 2, 5, 3).reshape(b, c, th * bh, tw * bw)

    def forward(self, x: Tensor) -> Tensor:
        coeffs = torch.einsum("kn,bcnij->bckij", self._matrix(self.rows, x), self._blocks(x))
        return coeffs.flatten(1, 2)

    def adjoint(self, y: Tensor) -> Tensor:
        if y.dim() != 4 or y.shape[1] % self.rows:
            raise ValueError(f"cs: expected measurements (B, C * {self.rows}, H / b_h, W / b_w), "
                             f"got shape {tuple(y.shape)}")
        coeffs = y.reshape(y.shape[0], y.shape[1] // self.rows, self.rows, *y.shape[2:])
        image = self._image(torch.einsum("kn,bckij->bcnij", self._matrix(self.rows, y), coeffs))
        self.check_input(image)
        return image

    def pinv(self, y: Tensor) -> Tensor:
        return self.adjoint(y)

    # SVD: U = I, V^T = Q per block.
    def _layout(self) -> LeadingFirst:
        channels, height, width = self.bound_shape()
        self._check_tiles(height, width)

        def make() -> LeadingFirst:
            n = self.block[0] * self.block[1]
            lead = torch.zeros(channels, n, height // self.block[0], width // self.block[1], dtype=torch.bool)
            lead[:, : self.rows] = True
            return LeadingFirst(lead)

        return self.memo(("layout",), make)

    def singulars(self) -> Tensor:
        return torch.ones(self._layout().count, dtype=torch.float64)

    def vt(self, x: Tensor) -> Tensor:
        n = self.block[0] * self.block[1]
        return self._layout().flatten(torch.einsum("kn,bcnij->bckij", self._matrix(n, x), self._blocks(x)))

    def v(self, c: Tensor) -> Tensor:
        n = self.block[0] * self.block[1]
        return self._image(torch.einsum("kn,bckij->bcnij", self._matrix(n, c), self._layout().unflatten(c)))

    def _measurement_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.bound_shape()
        return channels * self.rows, height // self.block[0], width // self.block[1]

    def ut(self, y: Tensor) -> Tensor:
        if tuple(y.shape[1:]) != self._measurement_shape():
            raise ValueError(f"cs: expected measurements (B, *{self._measurement_shape()}), got shape {tuple(y.shape)}")
        return y.flatten(1)

    def u(self, c: Tensor) -> Tensor:
        return c.reshape(c.shape[0], *self._measurement_shape())

    def params(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "basis": self.basis,
            "block": list(self.block),
            "seed": self.seed,
            **super().params(),
        }


OPERATORS = {CompressedSensing.name: CompressedSensing}
