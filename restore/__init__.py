"""restore: image restoration with diffusion priors.

    y = A(x) + n     operator and noise model     restore.operators
    p(x)             score prior, pixel or latent restore.priors
    x ~ p(x | y)     conditioning strategy        restore.strategies

Importing this package is light: no torch, torchvision, lpips or diffusers.  The
names in :data:`EXPORTS` are importable from here (``from restore import hookimpl,
LinearOperator``) and load their module on first use (PEP 562 module ``__getattr__``).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Top-level name -> "module:attribute" it is loaded from on first access.
EXPORTS: dict[str, str] = {
    # plugin authoring
    "hookimpl": "restore.hookspecs:hookimpl",
    "Operator": "restore.operators.base:Operator",
    "LinearOperator": "restore.operators.base:LinearOperator",
    "SVDOperator": "restore.operators.base:SVDOperator",
    # restoring images (restore/api.py)
    "restore": "restore.api:restore",
    "inpaint": "restore.api:inpaint",
    "sr": "restore.api:sr",
    "deblur": "restore.api:deblur",
    "denoise": "restore.api:denoise",
    "colorize": "restore.api:colorize",
    "Result": "restore.api:Result",
    "Problem": "restore.strategies.base:Problem",
    "solve": "restore.strategies.engine:solve",
    "load_prior": "restore.priors.spec:load_prior",
}

__all__ = ["__version__", *EXPORTS]


def __getattr__(name: str) -> Any:
    target = EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'restore' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
