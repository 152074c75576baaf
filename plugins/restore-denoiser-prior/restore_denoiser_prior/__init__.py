r"""A restore plugin: a Gaussian denoiser from any package as a score prior, by Tweedie's formula.

Prior spec::

    denoiser:MODULE:FUNCTION[?sigma_min=A&sigma_max=B&shape=CxHxW]

``MODULE:FUNCTION`` names a callable ``f(x, sigma) -> x0`` (imported with importlib, so
it runs that module's code, as an entry point would): ``x`` is a batch (B, C, H, W) of
images on [0, 1] with white Gaussian noise of standard deviation ``sigma`` added
(x = x0 + sigma eps, ``sigma`` a float64 tensor (B,) on the [0, 1] scale) and ``f``
returns its estimate of x0.  For the minimum-mean-square-error denoiser,
f(x, sigma) = E[x0 | x], Tweedie's formula (Robbins 1956; Efron 2011, "Tweedie's
formula and selection bias") gives the score of the noisy image distribution,

    grad_x log p_sigma(x) = (f(x, sigma) - x) / sigma^2,

which is everything a diffusion sampler needs: the denoiser *is* the prior.

A denoiser only knows the noise levels it was trained on, so the prior is only valid
there: the range [A, B] comes from the spec or from ``sigma_min`` / ``sigma_max``
attributes of the callable (the spec may narrow a declared range, never widen it), the
sampling grid stays inside it, and evaluating the prior at any other noise level raises
:class:`NoiseLevelOutOfRange`.  A ``torch.nn.Module`` callable is moved to the requested
device and dtype, set to eval mode and frozen.
"""
from __future__ import annotations

import importlib
import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from restore import hookimpl
from restore.diffusion.denoiser import Denoiser, NetworkDenoiser, Prediction
from restore.diffusion.schedules import karras_sigmas
from restore.priors.base import Prior
from restore.priors.spec import PriorSpec, parse_spec

SCHEME = "denoiser"
#: Relative slack on the range ends, for grids whose end points are computed in floating point.
RANGE_SLACK = 1e-9


class NoiseLevelOutOfRange(ValueError):
    """The prior was asked for a noise level outside the range its denoiser was trained for."""


class TweedieDenoiser(Denoiser):
    """A Gaussian denoiser f(x, sigma) used as a diffusion prior on [sigma_min, sigma_max] only."""

    vp = False

    def __init__(self, function: Callable[[Tensor, Tensor], Tensor], sigma_min: float, sigma_max: float,
                 name: str) -> None:
        self.function = function
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.name = name

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        sigma = NetworkDenoiser.batch_sigma(sigma, x)
        low, high = float(sigma.min()), float(sigma.max())
        if low < self.sigma_min * (1 - RANGE_SLACK) or high > self.sigma_max * (1 + RANGE_SLACK):
            worst = low if low < self.sigma_min else high
            raise NoiseLevelOutOfRange(
                f"prior {self.name!r} is valid for noise levels sigma in [{self.sigma_min:g}, {self.sigma_max:g}] "
                f"(the range its denoiser was trained for); it was asked for sigma = {worst:g}"
            )
        x0 = self.function(x, sigma)
        if not isinstance(x0, Tensor) or x0.shape != x.shape:
            raise ValueError(f"prior {self.name!r}: the denoiser must return a tensor of the input's shape "
                             f"{tuple(x.shape)}, got {getattr(x0, 'shape', type(x0).__name__)}")
        return Prediction(x0)

    def score(self, x: Tensor, sigma: Tensor) -> Tensor:
        """grad_x log p_sigma(x) = (D(x, sigma) - x) / sigma^2 (Tweedie's formula)."""
        s = NetworkDenoiser.batch_sigma(sigma, x).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return (self(x, sigma) - x) / s**2

    def sampling_sigmas(self, steps: int) -> Tensor:
        """``steps`` levels of the Karras et al. (2022, Eq. 5) grid on [sigma_min, sigma_max], then 0."""
        return karras_sigmas(steps, self.sigma_min, self.sigma_max)


def load_denoiser_prior(spec: str, *, device=None, dtype: Optional[torch.dtype] = None) -> Prior:
    """``denoiser:MODULE:FUNCTION[?sigma_min=A&sigma_max=B&shape=CxHxW]``: a Gaussian denoiser
    f(x, sigma) -> x0 as a score prior by Tweedie's formula, valid on the noise range it was trained for.

    Images on [0, 1]; ``shape`` fixes the sample shape (otherwise any size).
    """
    parsed = parse_spec(spec)
    parsed.check_options(("sigma_min", "sigma_max", "shape"))
    module_name, _, attribute = parsed.require_body("MODULE:FUNCTION").partition(":")
    if not module_name or not attribute:
        raise ValueError(f"prior spec {spec!r}: expected {SCHEME}:MODULE:FUNCTION, "
                         f"e.g. {SCHEME}:mypackage.models:denoise")
    function = _import(spec, module_name, attribute)
    sigma_min, sigma_max = _noise_range(parsed, function)
    if isinstance(function, torch.nn.Module):
        function.to(device=device, dtype=dtype).eval().requires_grad_(False)
    shape = _shape(parsed)
    info: dict[str, Any] = {"format": SCHEME, "denoiser": f"{module_name}:{attribute}",
                            "sigma_min": sigma_min, "sigma_max": sigma_max}
    if shape is not None:
        info["channels"] = shape[0]
    return Prior(TweedieDenoiser(function, sigma_min, sigma_max, spec), name=spec, shape=shape,
                 data_range=(0.0, 1.0), info=info)


def _import(spec: str, module_name: str, attribute: str) -> Callable[[Tensor, Tensor], Tensor]:
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise  # the module exists but one of its own imports is missing
        raise ValueError(f"prior spec {spec!r}: no module named {module_name!r}") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ValueError(f"prior spec {spec!r}: module {module_name!r} has no attribute {attribute!r}")
        found = getattr(found, part)
    if not callable(found):
        raise ValueError(f"prior spec {spec!r}: {module_name}:{attribute} is not callable")
    return found


def _noise_range(parsed: PriorSpec, function: Any) -> tuple[float, float]:
    """[sigma_min, sigma_max] from the spec, within the one the callable declares (if any)."""
    declared = (getattr(function, "sigma_min", None), getattr(function, "sigma_max", None))
    given = (parsed.float_option("sigma_min"), parsed.float_option("sigma_max"))
    chosen = tuple(g if g is not None else d for g, d in zip(given, declared))
    if None in chosen:
        raise ValueError(f"prior spec {parsed.text!r}: state the noise range the denoiser was trained for, "
                         "as ?sigma_min=A&sigma_max=B or as sigma_min / sigma_max attributes of the callable")
    low, high = (float(v) for v in chosen)
    if not (math.isfinite(high) and 0 < low < high):
        raise ValueError(f"prior spec {parsed.text!r}: need 0 < sigma_min < sigma_max, got [{low:g}, {high:g}]")
    declared_low, declared_high = declared
    too_low = declared_low is not None and low < float(declared_low)
    if too_low or (declared_high is not None and high > float(declared_high)):
        shown = ", ".join("-" if d is None else f"{float(d):g}" for d in declared)
        raise ValueError(f"prior spec {parsed.text!r}: the denoiser declares it was trained for sigma in "
                         f"[{shown}]; [{low:g}, {high:g}] goes outside it")
    return low, high


def _shape(parsed: PriorSpec) -> Optional[tuple[int, ...]]:
    text = parsed.options.get("shape")
    if text is None:
        return None
    parts = text.split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"prior spec {parsed.text!r}: shape={text!r} must be CxHxW with positive integers, "
                         "e.g. 3x64x64")
    return tuple(int(p) for p in parts)


@hookimpl
def restore_prior_formats():
    return {SCHEME: load_denoiser_prior}
