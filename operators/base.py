"""The operator contract: y = A(x) + n.

An :class:`Operator` maps images ``x`` of shape (B, C, H, W), values in [0, 1], to
measurements.  It carries its noise model and declares its capabilities, which
strategies read (``linear``, ``has_svd``, ``is_mask``).

* :class:`Operator`: differentiable ``forward``; nonlinear operators stop here.
* :class:`LinearOperator`: adds ``adjoint`` (exact for the stated boundary
  handling, checked by the dot-product test <A x, y> = <x, A^T y>), ``pinv`` and
  ``prox_l2``, the proximal map of the data term (conjugate gradients unless overridden).
* :class:`SVDOperator`: A = U diag(s) V^T with orthogonal U, V, as DDRM (Kawar et
  al. 2022, Sec. 4.3) uses it.  Spectral coordinates are flat vectors: ``vt(x)``
  has ``x[0].numel()`` entries per batch item, ``ut(y)`` has ``y[0].numel()``, and
  the first ``len(singulars())`` coordinates of both pair up with the singular
  values (in the order ``singulars()`` returns them; zeros allowed).

Input shape.  An operator may be *bound* to one input shape ``shape = (C, H, W)``
(constructor keyword, reported by ``params()``), or accept any shape (``shape`` is
None).  ``forward``, ``adjoint`` and ``pinv`` of the built-ins work unbound; the
SVD (``singulars``, ``v``, ``u``, ``x_numel``) depends on the image size, so it
needs a bound operator and says so otherwise.

Serialization.  ``params()`` holds the JSON-able constructor keywords; tensor-valued
keywords (a user mask, a user kernel) are left out of it and returned by
``tensors()`` under their keyword, so ``factory(**params(), **tensors())`` rebuilds
the operator exactly.  A caller storing the JSON writes each tensor next to it as a
``.npy`` file and passes the path back: factories accept a tensor, an array or a
file path for every tensor-valued keyword
(:func:`restore.operators.validation.load_array`).

Examples.  Every registered factory declares ``example``: keyword arguments that build
a typical instance (``restore check-operator NAME`` checks it when given no
``--param``; :func:`example_params` reads it).

Parameter checks live in :mod:`restore.operators.validation` (shared with the
strategies), linear-algebra helpers (CGLS, coordinate orderings) in
:mod:`restore.operators.linalg`.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Any, Callable, ClassVar, Hashable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from restore.operators.noise import NoiseModel
from restore.operators.validation import check_int, check_number

NoiseSpec = Union[NoiseModel, Mapping[str, Any], None]


def as_noise(noise: NoiseSpec) -> NoiseModel:
    """A noise model from a :class:`NoiseModel`, its JSON form (``params()["noise"]``) or None."""
    if isinstance(noise, NoiseModel):
        return noise
    if noise is None or isinstance(noise, Mapping):
        return NoiseModel.from_json(noise)
    raise TypeError(f"noise must be a NoiseModel, its JSON dict or None, got {type(noise).__name__}")


class Operator:
    """A differentiable measurement operator with its noise model.

    ``noise`` is a :class:`NoiseModel`, its JSON dict or None (no noise); ``shape``
    optionally binds the operator to inputs of one shape (C, H, W).
    """

    name: ClassVar[str] = "operator"
    linear: ClassVar[bool] = False
    has_svd: ClassVar[bool] = False
    is_mask: ClassVar[bool] = False
    #: Whether a measurement is an image in [0, 1] (written as PNG by ``restore degrade``);
    #: False for phase magnitudes, compressed-sensing coefficients and the like (.npy).
    image_measurement: ClassVar[bool] = True
    #: Contract checks that do not apply to this operator, with the reason
    #: (e.g. the gradient of a quantizing codec); ``operators/contract.py`` skips them.
    contract_exempt: ClassVar[dict[str, str]] = {}
    #: The task this operator poses, for strategies whose published settings are per task
    #: (DPS's step size): "inpaint", "super-resolution", "deblur", "phase-retrieval", "denoise", or None.
    task: ClassVar[Optional[str]] = None
    #: Keyword arguments of a typical instance (see the module docstring); None: not declared.
    example: ClassVar[Optional[dict[str, Any]]] = None

    #: The (C, H, W) every input must have, or None for any shape.
    shape: Optional[tuple[int, int, int]] = None

    #: Entries kept by :meth:`memo` before the oldest is dropped.
    MEMO_SIZE: ClassVar[int] = 32

    def __init__(self, noise: NoiseSpec = None, shape: Optional[Sequence[int]] = None) -> None:
        self.noise: NoiseModel = as_noise(noise)
        if shape is not None:
            self.shape = self._image_shape(shape)
        self._memo_store: OrderedDict[Hashable, Any] = OrderedDict()

    def _image_shape(self, shape: Any) -> tuple[int, int, int]:
        if not isinstance(shape, (tuple, list)) or len(shape) != 3:
            raise ValueError(f"{self.name}: shape must be [C, H, W], got {shape!r}")
        return tuple(check_int(self.name, "shape", s, low=1) for s in shape)

    def check_shape(self, shape: tuple[int, int, int]) -> None:
        """Hook: a ValueError if the operator cannot take inputs of ``shape`` (C, H, W)
        (a kernel larger than the image, a scale that does not divide it, ...).
        Subclasses call it at the end of ``__init__`` when bound."""

    def bound_to(self, shape: Sequence[int]) -> "Operator":
        """This operator bound to inputs of ``shape`` (C, H, W): itself when already
        bound to it, else a copy with the same parameters (constants shared, caches
        fresh), checked for that shape.  SVD strategies bind an unbound operator to
        their sample shape this way."""
        shape = self._image_shape(shape)
        if self.shape == shape:
            return self
        if self.shape is not None:
            raise ValueError(f"{self.name}: the operator is bound to shape {self.shape}, not {shape}")
        bound = copy.copy(self)
        bound.shape = shape
        bound._memo_store = OrderedDict()
        bound.check_shape(shape)
        return bound

    def forward(self, x: Tensor) -> Tensor:
        """The noiseless measurement A(x)."""
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def measure(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """A noisy measurement y = A(x) + n drawn from the noise model."""
        return self.noise.sample(self.forward(x), generator=generator)

    def params(self) -> dict[str, Any]:
        """JSON-serializable constructor parameters (noise and, when bound, shape included)."""
        out: dict[str, Any] = {"noise": self.noise.to_json()}
        if self.shape is not None:
            out["shape"] = list(self.shape)
        return out

    def tensors(self) -> dict[str, Tensor]:
        """Tensor-valued constructor keywords (masks, kernels) left out of ``params``."""
        return {}

    def capabilities(self) -> dict[str, bool]:
        return {"linear": self.linear, "has_svd": self.has_svd, "is_mask": self.is_mask}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params()})"

    def check_input(self, x: Union[Tensor, Sequence[int]]) -> None:
        """A ValueError unless ``x`` (a tensor or its shape) is (B, C, H, W) and matches the bound ``shape``."""
        size = tuple(x.shape) if isinstance(x, Tensor) else tuple(x)
        if len(size) != 4:
            raise ValueError(f"{self.name}: expected images (B, C, H, W), got a tensor of shape {size}")
        if self.shape is not None and size[1:] != self.shape:
            raise ValueError(f"{self.name}: the operator is bound to shape (C, H, W) = {self.shape}, got input {size}")

    def memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per ``key`` (derived constants: matrices per size,
        device and dtype); the least recently used of more than MEMO_SIZE entries go."""
        store = self._memo_store
        if key in store:
            store.move_to_end(key)
            return store[key]
        value = store[key] = make()
        if len(store) > self.MEMO_SIZE:
            store.popitem(last=False)
        return value


class LinearOperator(Operator):
    """A linear operator: adds the adjoint, a pseudo-inverse and the proximal map of the data term."""

    linear = True

    #: Conjugate gradients of the generic :meth:`prox_l2` stop at this relative residual of the
    #: normal equations, or after ``prox_max_iter`` iterations.
    prox_tol: ClassVar[float] = 1e-4
    prox_max_iter: ClassVar[int] = 50

    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y, the exact adjoint of ``forward``."""
        raise NotImplementedError

    def pinv(self, y: Tensor) -> Tensor:
        """The Moore-Penrose pseudo-inverse A^+ y."""
        raise NotImplementedError

    #: For an iterative pseudo-inverse, the relative normal-equation residual
    #: ||A^T (y - A A^+ y)|| / ||A^T y|| it is computed to; None when exact up to rounding.
    pinv_tolerance: Optional[float] = None

    def prox_l2(self, z: Tensor, y: Tensor, rho: float) -> Tensor:
        r"""The proximal map of the data term,

            prox(z) = argmin_x ||A x - y||^2 + rho ||x - z||^2 = (A^T A + rho I)^{-1} (A^T y + rho z),

        with no factor 1/2 on either term: the data step of DiffPIR (Zhu et al. 2023, Eq. 13)
        and of DPIR (Zhang et al. 2021, Eq. 6a, rho = alpha_k).  rho = 0 gives the
        least-squares solution nearest z, z + A^+ (y - A z): the projection of z onto
        {x : A x = y} when y is in the range of A.

        Here by conjugate gradients on the normal equations (A^T A + rho I)(x - z) = A^T (y - A z)
        with ``forward`` and ``adjoint`` (damped CGLS, :func:`restore.operators.linalg.cgls`),
        warm-started at x = z; it stops when the residual falls to ``prox_tol`` times
        ||A^T (y - A z)||, or after ``prox_max_iter`` iterations without a warning: it is the
        inner step of iterations (DiffPIR, DPIR) whose next step starts where it stopped, and
        for small rho on an ill-conditioned operator (a noiseless blur) stopping early is the
        regularization CG gives (Hanke 1995, "Conjugate Gradient Type Methods for Ill-Posed
        Problems"), where the exact projection would divide by singular values near 0.
        Operators with a closed form override it (SVD: :meth:`SVDOperator.prox_l2`; masks:
        elementwise; circular blur: by the FFT).
        """
        from restore.operators.linalg import cgls

        rho = check_number(self.name, "rho", rho, low=0.0)
        y = y.to(device=z.device, dtype=z.dtype)
        return z + cgls(self, y - self.forward(z), tol=self.prox_tol, max_iter=self.prox_max_iter, damp=rho,
                        warn=False)


class SVDOperator(LinearOperator):
    """A linear operator with an exact, cheap singular value decomposition A = U S V^T."""

    has_svd = True

    def singulars(self) -> Tensor:
        """The singular values s (1-D), paired with the leading spectral coordinates."""
        raise NotImplementedError

    def vt(self, x: Tensor) -> Tensor:
        """V^T x as (B, N) with N = x[0].numel()."""
        raise NotImplementedError

    def v(self, c: Tensor) -> Tensor:
        """V c, back to image shape; the inverse of :meth:`vt`."""
        raise NotImplementedError

    def ut(self, y: Tensor) -> Tensor:
        """U^T y as (B, M) with M = y[0].numel()."""
        raise NotImplementedError

    def u(self, c: Tensor) -> Tensor:
        """U c, back to measurement shape; the inverse of :meth:`ut`."""
        raise NotImplementedError

    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y = V diag(s) U^T y, from the SVD: needs a bound operator (the engine binds one
        per run); override it to take any size."""
        return self.v(self.scale_spectral(self.ut(y), self.singulars(), self.x_numel()))

    def pinv(self, y: Tensor) -> Tensor:
        """A^+ y = V diag(s^+) U^T y with s^+_i = 1 / s_i for s_i > 0 and 0 otherwise (the
        Moore-Penrose pseudo-inverse from the SVD; Golub & Van Loan, Sec. 5.5.2): needs a bound
        operator, like :meth:`adjoint`; override it to take any size."""
        s = self.singulars()
        inv = torch.where(s > 0, 1.0 / s.clamp_min(torch.finfo(s.dtype).tiny), torch.zeros_like(s))
        return self.v(self.scale_spectral(self.ut(y), inv, self.x_numel()))

    def x_numel(self) -> int:
        """Number of entries of one input image (needed to pad spectral vectors)."""
        return math.prod(self.bound_shape())

    def bound_shape(self) -> tuple[int, int, int]:
        """The bound input shape, or a ValueError saying the SVD needs one."""
        if self.shape is None:
            raise ValueError(
                f"{self.name}: the SVD (singulars, v, u, and adjoint / pinv unless the operator defines its own) "
                "depends on the image size; build the operator with shape=[C, H, W] or bind it with "
                "op.bound_to((C, H, W))"
            )
        return self.shape

    def spectrum(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """(s, observed) in the dtype and device of ``like`` (a batch of inputs, (B, ...)):
        the singular values padded with zeros to N = like[0].numel() entries, and which of them
        are above the numerical cutoff s_i > max(like.shape[1:]) eps s_max, eps the machine
        epsilon of like's dtype: the pseudo-inverse's rule (Golub & Van Loan, Sec. 5.5.8;
        numpy.linalg.pinv's rcond).  Below it (U^T y)_i / s_i is rounding error divided by s_i."""
        n = like[0].numel()
        s = self.singulars().to(device=like.device, dtype=like.dtype)
        k = s.numel()
        if k > n:
            raise ValueError(f"{self.name}: {k} singular values for inputs of {n} entries")
        padded = torch.zeros(n, device=like.device, dtype=like.dtype)
        padded[:k] = s
        cutoff = max(like.shape[1:]) * torch.finfo(like.dtype).eps * float(s.max()) if k else 0.0
        return padded, padded > cutoff

    def measured_coordinates(self, y: Tensor, s: Tensor, observed: Tensor) -> Tensor:
        """y_bar = U^T y / s on the observed coordinates, 0 elsewhere, (B, N); ``s`` and
        ``observed`` as :meth:`spectrum` gives them.  On an observed coordinate
        y_bar_i = (V^T x)_i for a noiseless y = A x."""
        k = self.singulars().numel()
        safe = torch.where(observed, s, torch.ones_like(s))
        y_bar = s.new_zeros(y.shape[0], s.numel())
        y_bar[:, :k] = self.ut(y.to(device=s.device, dtype=s.dtype))[:, :k] / safe[:k]
        y_bar[:, ~observed] = 0
        return y_bar

    def spectral_pull(self, z: Tensor, y_bar: Tensor, weight: Union[float, Tensor], observed: Tensor) -> Tensor:
        """V diag(w) (y_bar - V^T z), w = ``weight`` (a number or (N,)) on the observed
        coordinates and 0 elsewhere: adding it to z moves each observed spectral coordinate
        the fraction w_i of the way to the measurement (DDRM, DDNM, DiffPIR, :meth:`prox_l2`)."""
        w = torch.as_tensor(weight, device=z.device, dtype=z.dtype)
        w = torch.where(observed, w, torch.zeros_like(w))
        return self.v(w * (y_bar - self.vt(z)))

    def prox_l2(self, z: Tensor, y: Tensor, rho: float) -> Tensor:
        """argmin_x ||A x - y||^2 + rho ||x - z||^2 (see :meth:`LinearOperator.prox_l2`) in closed
        form: each observed spectral coordinate moves the fraction s_i^2 / (s_i^2 + rho) of the
        way from (V^T z)_i to y_bar_i, the others keep z's (rho = 0: the least-squares
        solution nearest z)."""
        rho = check_number(self.name, "rho", rho, low=0.0)
        s, observed = self.spectrum(z)
        s2 = s**2
        weight = s2 / (s2 + rho).clamp_min(torch.finfo(s.dtype).tiny)
        return z + self.spectral_pull(z, self.measured_coordinates(y, s, observed), weight, observed)

    @staticmethod
    def scale_spectral(coeffs: Tensor, scale: Tensor, n: int) -> Tensor:
        """diag(scale) applied to the leading coordinates of ``coeffs``, zero-padded to length n."""
        k = scale.numel()
        out = coeffs.new_zeros(coeffs.shape[0], n)
        out[:, :k] = coeffs[:, :k] * scale.to(coeffs.dtype)
        return out


def example_params(factory: Callable[..., Any]) -> dict[str, Any]:
    """The example keyword arguments a registered operator factory declares (its ``example``
    attribute, a class attribute for operator classes); a ValueError when it declares none."""
    example = getattr(factory, "example", None)
    if not isinstance(example, Mapping):
        name = getattr(factory, "__name__", repr(factory))
        raise ValueError(f"operator factory {name} declares no example configuration (an 'example' dict "
                         "of keyword arguments); pass its parameters explicitly")
    return dict(example)
