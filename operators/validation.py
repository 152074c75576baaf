"""Checking and reading user-given parameters, for operators and strategies alike.

Every check returns the value in its canonical type or raises one ValueError that
names the owner (an operator or strategy name), the parameter and what was expected,
so that the CLI can print it as it is.
"""
from __future__ import annotations

import inspect
import math
import os
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import numpy as np
import torch
from torch import Tensor

ArraySource = Union[Tensor, np.ndarray, str, os.PathLike]

#: File suffixes read as images (greyscale, scaled to [0, 1]) by :func:`load_array`.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def check_number(owner: str, name: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
                 low_inclusive: bool = True) -> float:
    """``value`` as a float in [low, high] (or (low, high] when not ``low_inclusive``), else a
    ValueError naming ``owner`` and the parameter ``name``."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if low_inclusive else value > low) and value <= high
    if not ok:
        lower = f"{'>=' if low_inclusive else '>'} {low:g}" if math.isfinite(low) else ""
        upper = f"<= {high:g}" if math.isfinite(high) else ""
        bounds = " and ".join(b for b in (lower, upper) if b)
        raise ValueError(f"{owner}: {name} must be a finite number{' ' + bounds if bounds else ''}, got {value!r}")
    return float(value)


def check_int(owner: str, name: str, value: Any, *, low: int, odd: bool = False) -> int:
    """``value`` as an int >= ``low`` (odd if asked), or a ValueError naming ``name``."""
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    if odd and value % 2 == 0:
        raise ValueError(f"{owner}: {name} must be odd, got {value}")
    return int(value)


def check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_pair(owner: str, name: str, value: Any, *, low: int) -> tuple[int, int]:
    """An int or a pair of ints (height, width), each >= ``low``, as a pair."""
    pair = (value, value) if isinstance(value, Integral) and not isinstance(value, bool) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{owner}: {name} must be an integer or a pair [height, width], got {value!r}")
    return check_int(owner, name, pair[0], low=low), check_int(owner, name, pair[1], low=low)


def bind_options(owner: str, param: str, name: str, generator: Callable[..., Any],
                 options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword options of the generator ``name`` (given as parameter ``param``),
    defaults filled in, so ``params()`` pins every value; a ValueError names an
    option the generator does not take."""
    signature = inspect.signature(generator)
    accepted = [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"{owner}: {param} {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(accepted)}"
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
        raise ValueError(f"{name}: unsupported file type {suffix!r}; "
                         f"use .npy or an image ({', '.join(IMAGE_SUFFIXES)})")
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("1", "L", "I;16", "I", "F"):
            image = image.convert("L")
        array = np.asarray(image)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.int32): 65535.0}
    values = array.astype(np.float64) / scale.get(array.dtype, 1.0)
    return torch.from_numpy(values), True
