"""Normalisation layers of reduced-precision networks, computed in float32.

Half-precision networks keep their normalisation in float32 (guided-diffusion's ``use_fp16``
convention, Dhariwal & Nichol 2021, code release): the statistics and the affine map are
computed in float32 and the result is returned in the input's dtype.  One function does it
for ADM's ``GroupNorm32`` and for :class:`restore.accel.Float32Norm` (any other network).

On the CPU, PyTorch's group and layer norm kernels take a bfloat16 input with float32 affine
parameters and compute in float32 ("mixed type"), so the bf16 input goes in as it is, where
the generic path first copies it to float32 and the output back: on the 1 M-parameter default
prior at 256 x 256 in bf16 + channels_last that copy was a quarter of the network's time, and
skipping it changed no output value (docs/PERFORMANCE.md).  Elsewhere (CUDA, fp16, other
norms) the input is cast to float32 first.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _float32(param: Optional[Tensor]) -> Optional[Tensor]:
    return None if param is None else param.float()


def normalize_in_float32(norm: nn.Module, x: Tensor) -> Tensor:
    """``norm(x)`` with statistics and affine map in float32, returned in ``x``'s dtype (module
    docstring); ``norm`` a GroupNorm or LayerNorm (read through its parameters, never its
    ``forward``, so a subclass may call this from its own), or any module already in float32."""
    mixed = x.device.type == "cpu" and x.dtype == torch.bfloat16
    inner = x if mixed else x.float()
    if isinstance(norm, nn.GroupNorm):
        out = F.group_norm(inner, norm.num_groups, _float32(norm.weight), _float32(norm.bias), norm.eps)
    elif isinstance(norm, nn.LayerNorm):
        out = F.layer_norm(inner, norm.normalized_shape, _float32(norm.weight), _float32(norm.bias), norm.eps)
    else:
        out = norm(x.float())
    return out.to(x.dtype)
