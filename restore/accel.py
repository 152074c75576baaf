"""The GPU fast path of a loaded prior: half-precision network, channels_last, torch.compile.

Only the network changes; the sampler state, the strategies' arithmetic and the operators
stay in float32 (the start draw and y are float32, so every iterate is).  Half precision
follows guided-diffusion's ``use_fp16`` convention (Dhariwal & Nichol 2021, code release):

* the weights of convolutions, linear layers and attention run in bfloat16 / float16;
* normalisation layers (GroupNorm, LayerNorm, BatchNorm) compute in float32;
* the network's input is cast down at its entrance and its output back to float32.

ADM networks (:class:`restore.priors.adm.ADMUNet`) implement this themselves
(``set_torso_dtype``: torso convolutions in half precision, time embedding, norms and the
output head in float32); any other ``nn.Module`` network (the compact UNet, diffusers
UNets) gets it from :func:`to_half_precision`.  Attention in ADM and diffusers goes through
``torch.nn.functional.scaled_dot_product_attention`` already (fused kernels on GPU).

``channels_last`` stores conv weights and inputs NHWC (tensor cores on GPUs; on CPU it was no
faster here).  ``compile`` wraps the network in ``torch.compile``; compilation happens on the
first call, and when the compiler is unavailable or fails there, :class:`CompiledNetwork`
prints one line saying so and runs the network uncompiled from then on.

Entry point: :func:`accelerate`, used by ``restore batch`` and meant for the single-image
commands as well.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from restore.priors.base import Prior

#: ``--dtype`` names of the network precision (the short ones are printed and recorded).
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: The long spellings the single-image commands use, accepted too.
ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
NORMS = (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._BatchNorm)
#: Attributes through which priors reach their network (denoiser.network, sizing and label
#: wrappers' .network, the diffusers adapter's .unet).
NETWORK_ATTRIBUTES = ("network", "unet")


def parse_dtype(name: str) -> torch.dtype:
    """``fp32`` / ``bf16`` / ``fp16`` (or float32 / bfloat16 / float16) -> the torch dtype; a
    ValueError naming the choices otherwise."""
    short = ALIASES.get(name, name)
    if short not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[short]


def dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


@dataclass(frozen=True)
class Acceleration:
    """What :func:`accelerate` applies: network dtype, channels_last, torch.compile."""

    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    compile: bool = False

    def describe(self) -> dict[str, Any]:
        return {"dtype": dtype_name(self.dtype), "channels_last": self.channels_last, "compile": self.compile}


class Float32Norm(nn.Module):
    """A normalisation layer computed in float32 whatever its input dtype; returns the input dtype."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.float()).to(x.dtype)


class CastNetwork(nn.Module):
    """``network(x.to(dtype), *rest)`` with the output cast back to x's dtype (optionally NHWC input)."""

    def __init__(self, network: nn.Module, dtype: torch.dtype, channels_last: bool = False) -> None:
        super().__init__()
        self.network = network
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        inner = x.to(self.dtype)
        if self.channels_last and inner.ndim == 4:
            inner = inner.contiguous(memory_format=torch.channels_last)
        return self.network(inner, *args, **kwargs).to(x.dtype)


def to_half_precision(network: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Convert ``network`` in place to ``dtype`` except its normalisation layers, which are
    wrapped in :class:`Float32Norm`; returns it.  (ADM networks use their own ``set_torso_dtype``.)"""
    for module in list(network.modules()):
        for name, child in list(module._modules.items()):
            if isinstance(child, NORMS):
                module._modules[name] = Float32Norm(child)
    for module in network.modules():
        if not isinstance(module, (Float32Norm, *NORMS)):
            for param in module.parameters(recurse=False):
                param.data = param.data.to(dtype)
            for name, buffer in module.named_buffers(recurse=False):
                if buffer.is_floating_point():
                    module._buffers[name] = buffer.to(dtype)
    return network


class CompiledNetwork:
    """``torch.compile(network)``, falling back to ``network`` (with one line on stderr) when
    compiling fails on the first call: no compiler, an unsupported platform or operator.  A call
    that fails uncompiled too is the network's own error and is raised as such."""

    def __init__(self, network: nn.Module, warn: Callable[[str], None] = None) -> None:
        self.network = network
        self.warn = warn or (lambda message: print(message, file=sys.stderr))
        self.compiled: Optional[Callable[..., Tensor]] = None
        self.failed: Optional[str] = None
        try:
            self.compiled = torch.compile(network)
        except Exception as exc:  # torch.compile refuses some platforms / Python versions up front
            self.fall_back(exc)

    def fall_back(self, exc: BaseException) -> None:
        self.failed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        self.compiled = None
        self.warn(f"note: --compile is unavailable here ({self.failed}); running the network uncompiled")

    def __call__(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x, *args, **kwargs)
            except Exception as exc:
                out = self.network(x, *args, **kwargs)  # a failure of the network itself is raised here
                self.fall_back(exc)
                return out
        return self.network(x, *args, **kwargs)


def network_holder(prior: Prior) -> tuple[Any, str, nn.Module]:
    """The object holding the prior's network module, the attribute name, and the module:
    followed from ``prior.denoiser`` through :data:`NETWORK_ATTRIBUTES`."""
    holder: Any = prior.denoiser
    for _ in range(16):
        attribute = next((a for a in NETWORK_ATTRIBUTES if hasattr(holder, a)), None)
        if attribute is None:
            break
        inner = getattr(holder, attribute)
        if isinstance(inner, nn.Module):
            return holder, attribute, inner
        holder = inner
    raise ValueError(f"prior {prior.name!r} has no neural network to accelerate "
                     "(analytic priors run in the dtype of the data; use --dtype fp32)")


def accelerate(prior: Prior, acceleration: Acceleration, *, warn: Callable[[str], None] = None) -> Prior:
    """Apply ``acceleration`` to the prior's network in place (see the module docstring); returns the prior.

    float32 without channels_last or compile leaves the prior untouched (any prior, analytic
    ones included)."""
    if acceleration == Acceleration():
        return prior
    holder, attribute, network = network_holder(prior)
    if acceleration.channels_last:
        network.to(memory_format=torch.channels_last)
    if hasattr(network, "set_torso_dtype"):  # ADM: its own use_fp16 convention, casts x itself
        network.set_torso_dtype(acceleration.dtype)
        wrapped: Any = network
    else:
        to_half_precision(network, acceleration.dtype)
        wrapped = CastNetwork(network, acceleration.dtype, acceleration.channels_last)
    if acceleration.compile:
        wrapped = CompiledNetwork(wrapped, warn)
    setattr(holder, attribute, wrapped)
    prior.info["acceleration"] = acceleration.describe()
    return prior
