r"""Blur: y = k * x, one 2-D kernel applied to every channel.

The blur is a true convolution, y(n) = sum_a k(a) x(n - a + c) with c = (h // 2, w // 2)
the kernel centre (so a centred symmetric kernel does not shift the image); it is
computed with FFTs (exact up to rounding, cost independent of the kernel size).
``boundary`` says what lies outside the image:

* ``"circular"``: x is periodic.  A = F^* diag(K) F with K the DFT of the kernel, so
  A^T multiplies by conj(K), and A^+ by conj(K) / |K|^2 where |K| > rcond * max|K|
  (0 elsewhere; rcond defaults to max(H, W) * eps of the working dtype, the numerical
  rank rule of numpy's ``matrix_rank``).  Output H x W.  Has an exact *real* SVD,
  see :class:`CircularBlur`.
* ``"reflect"``: x is extended by mirroring about the edge pixels without repeating
  them (x(-1) = x(1), numpy / PyTorch ``"reflect"``; DPS's blur operators pad this
  way, ``nn.ReflectionPad2d``), then the valid part is kept:
  A = Valid o Pad; A^T = Pad^T o Valid^T, where Pad^T adds each mirrored pixel back
  onto its source.  Output H x W.
* ``"valid"``: only outputs whose kernel window lies inside the image are kept,
  output (H - h + 1) x (W - w + 1); A^T is the "full" correlation (zero padding).

``reflect`` and ``valid`` keep only outputs that a circular convolution computes
without wrap-around, so their FFTs may zero-pad to a fast length (:func:`fast_length`)
without changing any value.

For ``reflect`` and ``valid`` the pseudo-inverse is computed by CGLS
(:func:`restore.operators.linalg.cgls`) to relative normal-equation residual ``tol``.
``circular`` and ``reflect`` need odd kernel sides (a centre pixel); every mode
needs the kernel no larger than the image.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from restore.operators.base import LinearOperator, NoiseSpec, Operator, SVDOperator
from restore.operators.linalg import cgls, working_dtype
from restore.operators.validation import ArraySource, bind_options, check_choice, check_int, check_number
from restore.operators.kernels import GENERATORS, load_kernel, normalized

BOUNDARIES = ("circular", "reflect", "valid")


def fast_length(n: int) -> int:
    """The smallest 5-smooth number (2^a 3^b 5^c) >= n: an FFT length that is fast."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


class Blur(Operator):
    """What all blur boundaries share: the kernel, its source, its DFT and the checks."""

    name = "blur"
    boundary = "circular"
    task = "deblur"

    def __init__(
        self,
        kernel: Union[str, ArraySource],
        options: dict[str, Any],
        noise: NoiseSpec,
        shape: Optional[Sequence[int]],
    ) -> None:
        super().__init__(noise, shape)
        if isinstance(kernel, str) and kernel in GENERATORS:
            self.generator: Optional[str] = kernel
            self.options = bind_options(self.name, "kernel", kernel, GENERATORS[kernel], options)
            self.raw_kernel = GENERATORS[kernel](**self.options)
            if "size" in self.options and self.options["size"] is None:  # the generator's rule: pin the size it used
                self.options["size"] = int(self.raw_kernel.shape[-1])
        else:
            if isinstance(kernel, str) and not Path(kernel).is_file():
                raise ValueError(f"blur: kernel {kernel!r} is neither a generator ({', '.join(GENERATORS)}) nor a file")
            if options:
                raise ValueError(
                    f"blur: options {', '.join(sorted(options))} only apply to generated kernels "
                    f"(kernel = {', '.join(GENERATORS)}), not to a user kernel"
                )
            self.generator, self.options = None, {}
            self.raw_kernel = load_kernel(kernel)
        self.kernel = normalized(self.raw_kernel)
        if self.boundary != "valid" and any(side % 2 == 0 for side in self.kernel.shape):
            raise ValueError(
                f"blur: kernel is {self._kernel_size()}; boundary {self.boundary!r} needs odd sides "
                "(a centre pixel); pad it or use boundary 'valid'"
            )
        if self.shape is not None:
            self.check_shape(self.shape)

    def check_shape(self, shape: tuple[int, int, int]) -> None:
        self._check_size(*shape[1:])

    def _kernel_size(self) -> str:
        return "x".join(map(str, self.kernel.shape))

    def _check_size(self, height: int, width: int) -> None:
        if self.kernel.shape[0] > height or self.kernel.shape[1] > width:
            raise ValueError(f"blur: kernel is {self._kernel_size()}, larger than the {height}x{width} image")

    def _spectrum(self, height: int, width: int, device: torch.device, real: torch.dtype,
                  onesided: bool = True) -> Tensor:
        """The DFT K of the kernel embedded in an H x W grid with its centre at (0, 0)
        (``rfft2`` half spectrum, or the full ``fft2`` one), complex of the real dtype."""

        def make() -> Tensor:
            kh, kw = self.kernel.shape
            grid = torch.zeros(height, width, dtype=torch.float64)
            grid[:kh, :kw] = self.kernel
            grid = torch.roll(grid, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
            spectrum = torch.fft.rfft2(grid) if onesided else torch.fft.fft2(grid)
            return spectrum.to(device, torch.complex128 if real == torch.float64 else torch.complex64)

        return self.memo(("spectrum", height, width, onesided, device, real), make)

    def _circular(self, z: Tensor, conjugate: bool, size: Optional[tuple[int, int]] = None) -> Tensor:
        """Circular convolution with the kernel, or its adjoint (correlation) when
        ``conjugate``, of z zero-padded at the bottom and right to ``size`` (default:
        z's own size); computed in the working dtype, returned at ``size``."""
        height, width = size or z.shape[-2:]
        spectrum = self._spectrum(height, width, z.device, working_dtype(z))
        spectrum = spectrum.conj() if conjugate else spectrum
        out = torch.fft.irfft2(torch.fft.rfft2(z.to(working_dtype(z)), s=(height, width)) * spectrum, s=(height, width))
        return out.to(z.dtype)

    def params(self) -> dict[str, Any]:
        source = {} if self.generator is None else {"kernel": self.generator, **self.options}
        return {**source, "boundary": self.boundary, **super().params()}

    def tensors(self) -> dict[str, Tensor]:
        return {} if self.generator is not None else {"kernel": self.raw_kernel}


class CircularBlur(Blur, SVDOperator):
    r"""Blur with periodic boundary; an exact real SVD.

    The unitary DFT diagonalizes A but its basis is complex.  A real orthogonal basis
    pairs each frequency w with -w (for real x, X(-w) = conj X(w)): with X the
    orthonormal DFT (``norm="ortho"``), the coordinates of V^T x are

        Re X(w) for the self-conjugate frequencies w = -w (mod H, W),
        sqrt(2) Re X(w), sqrt(2) Im X(w) for one w of every pair {w, -w},

    an orthogonal change of basis (Parseval).  Since Y(w) = K(w) X(w), U^T y uses the
    same coordinates of conj(phase(K(w))) Y(w), phase(K) = K / |K| (1 where K = 0, the
    sign of the real K at self-conjugate w), and then U^T A x = |K| V^T x coordinate by
    coordinate: the singular values are |K(w)|, once for self-conjugate w, twice
    (cosine and sine parts) for each pair.  U differs from V by these phases, so both
    are real and orthogonal for any real kernel, symmetric or not.  Coordinates are
    ordered per channel: [self-conjugate, pair real parts, pair imaginary parts],
    frequencies in raster order; ``singulars()`` lists every |K(w)| (zeros included).
    """

    def __init__(
        self,
        kernel: Union[str, ArraySource],
        *,
        rcond: Optional[float] = None,
        noise: NoiseSpec = None,
        shape: Optional[Sequence[int]] = None,
        **options: Any,
    ) -> None:
        super().__init__(kernel, options, noise, shape)
        self.rcond = None if rcond is None else check_number(self.name, "rcond", rcond, low=0.0)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        self._check_size(*x.shape[-2:])
        return self._circular(x, conjugate=False)

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_input(y)
        self._check_size(*y.shape[-2:])
        return self._circular(y, conjugate=True)

    def pinv(self, y: Tensor) -> Tensor:
        self.check_input(y)
        height, width = y.shape[-2:]
        self._check_size(height, width)
        spectrum = self._spectrum(height, width, y.device, working_dtype(y))
        magnitude = spectrum.abs()
        rcond = self.rcond if self.rcond is not None else max(height, width) * torch.finfo(working_dtype(y)).eps
        kept = magnitude > rcond * magnitude.max()
        inverse = torch.where(kept, spectrum.conj() / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny) ** 2, 0)
        out = torch.fft.irfft2(torch.fft.rfft2(y.to(working_dtype(y))) * inverse, s=(height, width))
        return out.to(y.dtype)

    def prox_l2(self, z: Tensor, y: Tensor, rho: float) -> Tensor:
        """argmin_x ||k * x - y||^2 + rho ||x - z||^2 frequency by frequency (the FFT closed form
        of DPIR's data step, Zhang et al. 2021, Eq. 17 at scale 1):
        X = (conj(K) Y + rho Z) / (|K|^2 + rho), and X = Z where |K| is below the cutoff of
        :meth:`SVDOperator.spectrum` (unobserved); the SVD form's result, at two FFTs' cost."""
        rho = check_number(self.name, "rho", rho, low=0.0)
        self.check_input(z)
        height, width = z.shape[-2:]
        self._check_size(height, width)
        work = working_dtype(z)
        spectrum = self._spectrum(height, width, z.device, work)
        magnitude = spectrum.abs()
        kept = magnitude > max(z.shape[1:]) * torch.finfo(z.dtype).eps * magnitude.max()
        z_hat, y_hat = torch.fft.rfft2(z.to(work)), torch.fft.rfft2(y.to(device=z.device, dtype=work))
        blend = (spectrum.conj() * y_hat + rho * z_hat) / (magnitude**2 + rho).clamp_min(torch.finfo(work).tiny)
        return torch.fft.irfft2(torch.where(kept, blend, z_hat), s=(height, width)).to(z.dtype)

    # The real SVD.
    def _basis(self, device: torch.device) -> dict[str, Tensor]:
        """Frequency index sets (self-conjugate S, pair representatives R), the inverse
        of the [S, R, -R] ordering, sign(K) on S, phase(K) on R and the singular values."""
        height, width = self.bound_shape()[1:]
        self._check_size(height, width)

        def make() -> dict[str, Tensor]:
            index = torch.arange(height * width)
            partner = ((-(index // width)) % height) * width + (-(index % width)) % width
            selfconj, pairs = index[index == partner], index[index < partner]
            spectrum = self._spectrum(height, width, torch.device("cpu"), torch.float64, onesided=False).reshape(-1)
            real_sc, pair_k = spectrum[selfconj].real, spectrum[pairs]
            pair_abs = pair_k.abs()
            basis = {
                "selfconj": selfconj,
                "pairs": pairs,
                "inverse": torch.argsort(torch.cat([selfconj, pairs, partner[pairs]])),
                "sign": torch.where(real_sc < 0, -1.0, 1.0).to(torch.float64),
                "phase": torch.where(pair_abs > 0, pair_k / pair_abs.clamp_min(1e-300), 1 + 0j),
                "singulars": torch.cat([real_sc.abs(), pair_abs, pair_abs]),
            }
            return {key: value.to(device) for key, value in basis.items()}

        return self.memo(("basis", height, width, device), make)

    def singulars(self) -> Tensor:
        channels = self.bound_shape()[0]
        return self._basis(torch.device("cpu"))["singulars"].repeat(channels)

    def _to_coords(self, z: Tensor, rotate: bool) -> Tensor:
        """Real orthonormal coordinates (B, C * H * W) of a real image batch z; with
        ``rotate`` the phases of K are divided out first (U^T instead of V^T)."""
        self.check_input(z)
        basis = self._basis(z.device)
        work = working_dtype(z)
        spectrum = torch.fft.fft2(z.to(work), norm="ortho").flatten(2)
        selfconj, pairs = spectrum[..., basis["selfconj"]].real, spectrum[..., basis["pairs"]]
        if rotate:
            selfconj = selfconj * basis["sign"].to(work)
            pairs = pairs * basis["phase"].to(pairs.dtype).conj()
        coords = torch.cat([selfconj, math.sqrt(2) * pairs.real, math.sqrt(2) * pairs.imag], dim=-1)
        return coords.flatten(1).to(z.dtype)

    def _from_coords(self, c: Tensor, rotate: bool) -> Tensor:
        """The inverse of :meth:`_to_coords`: real images (B, C, H, W) from coordinates."""
        channels, height, width = self.bound_shape()
        basis = self._basis(c.device)
        dtype, work = c.dtype, working_dtype(c)
        c = c.to(work).reshape(c.shape[0], channels, height * width)
        n_sc, n_pairs = basis["selfconj"].numel(), basis["pairs"].numel()
        selfconj = c[..., :n_sc].to(torch.complex128 if work == torch.float64 else torch.complex64)
        pairs = torch.complex(c[..., n_sc : n_sc + n_pairs], c[..., n_sc + n_pairs :]) / math.sqrt(2)
        if rotate:
            selfconj = selfconj * basis["sign"].to(work)
            pairs = pairs * basis["phase"].to(pairs.dtype)
        spectrum = torch.cat([selfconj, pairs, pairs.conj()], dim=-1)[..., basis["inverse"]]
        image = torch.fft.ifft2(spectrum.reshape(c.shape[0], channels, height, width), norm="ortho").real
        return image.to(dtype)

    def vt(self, x: Tensor) -> Tensor:
        return self._to_coords(x, rotate=False)

    def v(self, c: Tensor) -> Tensor:
        return self._from_coords(c, rotate=False)

    def ut(self, y: Tensor) -> Tensor:
        return self._to_coords(y, rotate=True)

    def u(self, c: Tensor) -> Tensor:
        return self._from_coords(c, rotate=True)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "rcond": self.rcond}


class PaddedBlur(Blur, LinearOperator):
    """Blur with ``reflect`` or ``valid`` boundary (see the module docstring); no SVD,
    pseudo-inverse by CGLS."""

    def __init__(
        self,
        kernel: Union[str, ArraySource],
        *,
        boundary: str = "reflect",
        tol: float = 1e-6,
        max_iter: int = 500,
        noise: NoiseSpec = None,
        shape: Optional[Sequence[int]] = None,
        **options: Any,
    ) -> None:
        self.boundary = check_choice(self.name, "boundary", boundary, ("reflect", "valid"))
        super().__init__(kernel, options, noise, shape)
        self.tol = check_number(self.name, "tol", tol, low=0.0, low_inclusive=False)
        self.max_iter = check_int(self.name, "max_iter", max_iter, low=1)

    def _reflect_indices(self, size: int, before: int, after: int, device: torch.device) -> Tensor:
        """Source index of every position of a row padded by mirroring (edge not repeated)."""
        position = torch.arange(-before, size + after, device=device)
        return torch.where(position < 0, -position, torch.where(position >= size, 2 * (size - 1) - position, position))

    def _pads(self) -> tuple[int, int, int, int]:
        kh, kw = self.kernel.shape
        return kh // 2, kh - 1 - kh // 2, kw // 2, kw - 1 - kw // 2

    def _crop(self, height: int, width: int) -> tuple[slice, slice]:
        """Rows and columns of a circular convolution of an H x W image (zero-padded at
        the bottom and right to any larger FFT size) that are valid: no wrap-around."""
        kh, kw = self.kernel.shape
        return slice(kh - 1 - kh // 2, height - kh // 2), slice(kw - 1 - kw // 2, width - kw // 2)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        height, width = x.shape[-2:]
        self._check_size(height, width)
        if self.boundary == "reflect":
            top, bottom, left, right = self._pads()
            x = x.index_select(-2, self._reflect_indices(height, top, bottom, x.device))
            x = x.index_select(-1, self._reflect_indices(width, left, right, x.device))
        full_h, full_w = x.shape[-2:]
        rows, cols = self._crop(full_h, full_w)
        return self._circular(x, conjugate=False, size=(fast_length(full_h), fast_length(full_w)))[..., rows, cols]

    def adjoint(self, y: Tensor) -> Tensor:
        if y.dim() != 4:
            raise ValueError(f"blur: expected measurements (B, C, H, W), got shape {tuple(y.shape)}")
        kh, kw = self.kernel.shape
        out_h, out_w = y.shape[-2:]
        height, width = (out_h, out_w) if self.boundary == "reflect" else (out_h + kh - 1, out_w + kw - 1)
        self.check_input((y.shape[0], y.shape[1], height, width))
        full_h, full_w = (height + kh - 1, width + kw - 1) if self.boundary == "reflect" else (height, width)
        rows, cols = self._crop(full_h, full_w)
        fft_h, fft_w = fast_length(full_h), fast_length(full_w)
        embedded = y.new_zeros(*y.shape[:-2], fft_h, fft_w)
        embedded[..., rows, cols] = y
        z = self._circular(embedded, conjugate=True)[..., :full_h, :full_w]
        if self.boundary == "valid":
            return z
        top, bottom, left, right = self._pads()
        folded = z.new_zeros(*z.shape[:-2], height, full_w).index_add(
            -2, self._reflect_indices(height, top, bottom, z.device), z
        )
        return folded.new_zeros(*z.shape[:-2], height, width).index_add(
            -1, self._reflect_indices(width, left, right, z.device), folded
        )

    def pinv(self, y: Tensor) -> Tensor:
        return cgls(self, y, tol=self.tol, max_iter=self.max_iter)

    @property
    def pinv_tolerance(self) -> float:
        """The pseudo-inverse is CGLS to relative normal-equation residual ``tol``."""
        return self.tol

    def params(self) -> dict[str, Any]:
        return {**super().params(), "tol": self.tol, "max_iter": self.max_iter}


def blur(
    kernel: Union[str, ArraySource],
    *,
    boundary: str = "circular",
    noise: NoiseSpec = None,
    shape: Optional[Sequence[int]] = None,
    **options: Any,
) -> Blur:
    """Blur by a Gaussian, a seeded random motion, or a user kernel (boundary circular / reflect / valid).

    ``kernel`` is ``"gaussian"`` (options ``size``, ``std``), ``"motion"`` (options
    ``size``, ``intensity``, ``seed``) or a user kernel: a tensor, array, ``.npy`` or
    greyscale image file, normalized to sum 1.  ``circular`` also takes ``rcond`` (the
    pseudo-inverse cutoff), ``reflect`` / ``valid`` take ``tol`` and ``max_iter`` (CGLS).
    """
    check_choice("blur", "boundary", boundary, BOUNDARIES)
    misplaced = sorted(set(options) & ({"tol", "max_iter"} if boundary == "circular" else {"rcond"}))
    if misplaced:
        raise ValueError(f"blur: {', '.join(misplaced)} does not apply to boundary {boundary!r}")
    if boundary == "circular":
        return CircularBlur(kernel, noise=noise, shape=shape, **options)
    return PaddedBlur(kernel, boundary=boundary, noise=noise, shape=shape, **options)


blur.example = {"kernel": "gaussian"}

OPERATORS = {"blur": blur}
