"""The operator contract: y = A(x) + n.

An :class:`Operator` maps images ``x`` of shape (B, C, H, W), values in [0, 1], to
measurements.  It carries its noise model and declares its capabilities, which
strategies read (``linear``, ``has_svd``, ``is_mask``).

* :class:`Operator`: differentiable ``forward``; nonlinear operators stop here.
* :class:`LinearOperator`: adds ``adjoint`` (exact for the stated boundary
  handling, checked by the dot-product test <A x, y> = <x, A^T y>) and ``pinv``.
* :class:`SVDOperator`: A = U diag(s) V^T with orthogonal U, V, as DDRM (Kawar et
  al. 2022, Sec. 4.3) uses it.  Spectral coordinates are flat vectors: ``vt(x)``
  has ``x[0].numel()`` entries per batch item, ``ut(y)`` has ``y[0].numel()``, and
  the first ``len(singulars())`` coordinates of both pair up with the singular
  values (in the order ``singulars()`` returns them; zeros allowed).

Input shape.  An operator may be *bound* to one input shape ``shape = (C, H, W)``
(constructor keyword, reported by ``params()``), or accept any shape (``shape`` is
None).  ``forward``, ``adjoint`` and ``pinv`` of the built-ins work unbound; the
SVD (``singulars``, ``v``, ``u``, ``_x_numel``) depends on the image size, so it
needs a bound operator and says so otherwise.

Serialization.  ``params()`` holds the JSON-able constructor keywords; tensor-valued
keywords (a user mask, a user kernel) are left out of it and returned by
``tensors()`` under their keyword, so ``factory(**params(), **tensors())`` rebuilds
the operator exactly.  A caller storing the JSON writes each tensor next to it as a
``.npy`` file and passes the path back: factories accept a tensor, an array or a
file path for every tensor-valued keyword (:func:`load_array`).
"""
from __future__ import annotations

import copy
import inspect
import math
import os
import warnings
from collections import OrderedDict
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Callable, ClassVar, Hashable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from restore.operators.noise import NoiseModel

NoiseSpec = Union[NoiseModel, Mapping[str, Any], None]
ArraySource = Union[Tensor, np.ndarray, str, os.PathLike]

#: File suffixes read as images (greyscale, scaled to [0, 1]) by :func:`load_array`.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def as_noise(noise: NoiseSpec) -> NoiseModel:
    """A noise model from a :class:`NoiseModel`, its JSON form (``params()["noise"]``) or None."""
    if isinstance(noise, NoiseModel):
        return noise
    if noise is None or isinstance(noise, Mapping):
        return NoiseModel.from_json(noise)
    raise TypeError(f"noise must be a NoiseModel, its JSON dict or None, got {type(noise).__name__}")


def working_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; every other dtype computes in float32 (for steps such as
    the FFT that have no bfloat16 kernels)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def check_number(op: str, name: str, value: Any, *, low: float, low_inclusive: bool = True) -> float:
    """``value`` as a float, or a ValueError naming ``op`` and parameter ``name``."""
    bound = ">=" if low_inclusive else ">"
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if low_inclusive else value > low)
    if not ok:
        raise ValueError(f"{op}: {name} must be a finite number {bound} {low}, got {value!r}")
    return float(value)


def check_int(op: str, name: str, value: Any, *, low: int, odd: bool = False) -> int:
    """``value`` as an int >= ``low`` (odd if asked), or a ValueError naming ``name``."""
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{op}: {name} must be an integer >= {low}, got {value!r}")
    if odd and value % 2 == 0:
        raise ValueError(f"{op}: {name} must be odd, got {value}")
    return int(value)


def check_choice(op: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{op}: {name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_pair(op: str, name: str, value: Any, *, low: int) -> tuple[int, int]:
    """An int or a pair of ints (height, width), each >= ``low``, as a pair."""
    pair = (value, value) if isinstance(value, Integral) and not isinstance(value, bool) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{op}: {name} must be an integer or a pair [height, width], got {value!r}")
    return check_int(op, name, pair[0], low=low), check_int(op, name, pair[1], low=low)


def bind_options(op: str, param: str, name: str, generator: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword options of the generator ``name`` (given as parameter ``param``),
    defaults filled in, so ``params()`` pins every value; a ValueError names an
    option the generator does not take."""
    signature = inspect.signature(generator)
    accepted = [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"{op}: {param} {name!r} takes no option {', '.join(map(repr, unknown))}; its options: {', '.join(accepted)}"
        )
    bound = signature.bind_partial(**options)
    bound.apply_defaults()
    return {key: value for key, value in bound.arguments.items() if key in accepted}


def load_array(source: ArraySource, name: str) -> tuple[Tensor, bool]:
    """A tensor-valued parameter given as a tensor, a numpy array or a file path.

    Returns the values as a float64 CPU tensor and whether they came from an image
    file.  ``.npy`` files hold the array as is; image files (:data:`IMAGE_SUFFIXES`)
    are read in greyscale (colour converted by PIL's ITU-R 601 luma) and scaled to
    [0, 1]: 8-bit values by 255, 16-bit ones (PIL modes ``I;16`` and ``I``) by 65535,
    float images (mode ``F``) as they are.  Errors name the parameter.
    """
    if isinstance(source, Tensor):
        return source.detach().to("cpu", torch.float64), False
    if isinstance(source, np.ndarray):
        return torch.from_numpy(np.asarray(source, dtype=np.float64)), False
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a tensor, an array or a file path, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float64)), False
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{name}: unsupported file type {suffix!r}; use .npy or an image ({', '.join(IMAGE_SUFFIXES)})")
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("1", "L", "I;16", "I", "F"):
            image = image.convert("L")
        array = np.asarray(image)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.int32): 65535.0}
    values = array.astype(np.float64) / scale.get(array.dtype, 1.0)
    return torch.from_numpy(values), True


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

    #: The (C, H, W) every input must have, or None for any shape.
    shape: Optional[tuple[int, int, int]] = None

    #: Entries kept by :meth:`_memo` before the oldest is dropped.
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

    def _check_shape(self, shape: tuple[int, int, int]) -> None:
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
        bound._check_shape(shape)
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

    def _check_input(self, x: Union[Tensor, Sequence[int]]) -> None:
        """A ValueError unless ``x`` (a tensor or its shape) is (B, C, H, W) and matches the bound ``shape``."""
        size = tuple(x.shape) if isinstance(x, Tensor) else tuple(x)
        if len(size) != 4:
            raise ValueError(f"{self.name}: expected images (B, C, H, W), got a tensor of shape {size}")
        if self.shape is not None and size[1:] != self.shape:
            raise ValueError(f"{self.name}: the operator is bound to shape (C, H, W) = {self.shape}, got input {size}")

    def _memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
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
    """A linear operator: adds the adjoint and a pseudo-inverse."""

    linear = True

    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y, the exact adjoint of ``forward``."""
        raise NotImplementedError

    def pinv(self, y: Tensor) -> Tensor:
        """The Moore-Penrose pseudo-inverse A^+ y."""
        raise NotImplementedError


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
        return self.v(self._spectral(self.ut(y), self.singulars(), self._x_numel()))

    def pinv(self, y: Tensor) -> Tensor:
        s = self.singulars()
        inv = torch.where(s > 0, 1.0 / s.clamp_min(torch.finfo(s.dtype).tiny), torch.zeros_like(s))
        return self.v(self._spectral(self.ut(y), inv, self._x_numel()))

    def _x_numel(self) -> int:
        """Number of entries of one input image (needed to pad spectral vectors)."""
        return math.prod(self._bound_shape())

    def _bound_shape(self) -> tuple[int, int, int]:
        """The bound input shape, or a ValueError saying the SVD needs one."""
        if self.shape is None:
            raise ValueError(
                f"{self.name}: the SVD (singulars, v, u) depends on the image size; "
                "build the operator with shape=[C, H, W]"
            )
        return self.shape

    @staticmethod
    def _spectral(coeffs: Tensor, scale: Tensor, n: int) -> Tensor:
        """diag(scale) applied to the leading coordinates of ``coeffs``, zero-padded to length n."""
        k = scale.numel()
        out = coeffs.new_zeros(coeffs.shape[0], n)
        out[:, :k] = coeffs[:, :k] * scale.to(coeffs.dtype)
        return out


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


def cgls(op: LinearOperator, y: Tensor, *, tol: float, max_iter: int) -> Tensor:
    """The minimum-norm least-squares solution A^+ y by CGLS.

    CGLS is conjugate gradients on the normal equations A^T A x = A^T y (Hestenes &
    Stiefel 1952; the stable form of Paige & Saunders 1982, "LSQR", Sec. 7.1).  From
    x_0 = 0 every iterate lies in range(A^T), so the limit is the minimum-norm
    solution, i.e. A^+ y.  Iterates per batch item; stops when
    ||A^T (y - A x_k)|| <= tol ||A^T y|| for every item, or after ``max_iter``
    iterations with a RuntimeWarning giving the residual reached.
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
        qq = _dot(q, q)
        alpha = torch.where(done | (qq <= 0), torch.zeros_like(gamma), gamma / qq.clamp_min(tiny))
        x = x + _per_item(alpha, p) * p
        r = r - _per_item(alpha, q) * q
        s = op.adjoint(r)
        gamma_next = _dot(s, s)
        beta = torch.where(gamma > 0, gamma_next / gamma.clamp_min(tiny), torch.zeros_like(gamma))
        p = s + _per_item(beta, p) * p
        gamma = gamma_next
    if not bool((gamma <= target).all()):
        reached = (gamma / gamma_start.clamp_min(tiny)).sqrt().max().item()
        warnings.warn(
            f"{op.name}: pinv (CGLS) stopped after max_iter={max_iter} iterations at relative residual "
            f"{reached:.2e} > tol={tol:.1e}",
            RuntimeWarning,
            stacklevel=2,
        )
    return x
