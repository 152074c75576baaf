"""Building blocks of the ADM UNet (Dhariwal & Nichol 2021, "Diffusion Models Beat
GANs on Image Synthesis"; Nichol & Dhariwal 2021, "Improved Denoising Diffusion
Probabilistic Models").

Attribute names follow the public guided-diffusion checkpoints, so that their state
dicts load with ``strict=True``: ResBlock ``in_layers.{0,2}``, ``emb_layers.1``,
``out_layers.{0,3}``, ``skip_connection``; AttentionBlock ``norm``, ``qkv``,
``proj_out``; Downsample ``op``; Upsample ``conv``; AttentionPool2d
``positional_embedding``, ``qkv_proj``, ``c_proj``.  Only 2-D images are supported.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from restore.priors.norms import normalize_in_float32


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, shape (B,) -> (B, dim).

    ``[cos(t * f_i), sin(t * f_i)]`` with ``f_i = max_period ** (-i / (dim // 2))``,
    cosines first, zero-padded when ``dim`` is odd (the ADM convention).
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype; returns the input dtype
    (:func:`restore.priors.norms.normalize_in_float32`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_in_float32(self, x)


def normalization(channels: int) -> GroupNorm32:
    """The normalisation used throughout ADM: 32 groups, eps 1e-5."""
    return GroupNorm32(32, channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters (ADM zero-initialises the last conv of each residual branch)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class EmbedSequential(nn.Sequential):
    """``nn.Sequential`` that hands the timestep embedding ``emb`` to its ResBlocks."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling, optionally followed by a 3x3 conv (``conv``)."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x if self.conv is None else self.conv(x)


class Downsample(nn.Module):
    """2x downsampling: a stride-2 3x3 conv (``op``) or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding.

    h = conv(SiLU(GN(x))); with ``use_scale_shift_norm`` (Improved DDPM / ADM "AdaGN")
    h = GN(h) * (1 + scale) + shift with (scale, shift) = Linear(SiLU(emb)), otherwise
    h = GN(h + Linear(SiLU(emb))); then h = conv(dropout(SiLU(h))) and the block returns
    skip(x) + h.  ``up``/``down`` resample both paths inside the block (BigGAN-style
    "resblock_updown"), between the first normalisation and the first conv.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float = 0.0,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        if up:
            self.resample = Upsample(channels, use_conv=False)
        elif down:
            self.resample = Downsample(channels, use_conv=False)
        else:
            self.resample = None
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            normalization(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.resample is None:
            h = self.in_layers(x)
        else:
            h = self.resample(self.in_layers[:-1](x))
            x = self.resample(x)
            h = self.in_layers[-1](h)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def qkv_attention(qkv: torch.Tensor, num_heads: int, legacy_order: bool, queries: int | None = None) -> torch.Tensor:
    """Multi-head softmax attention over the last axis of a fused (B, 3*H*C, T) tensor.

    ``legacy_order`` reads the channels as (H, 3, C) per head — guided-diffusion's
    ``QKVAttentionLegacy``, used by all released UNets; otherwise as (3, H, C)
    (``QKVAttention``, used by ``use_new_attention_order`` and AttentionPool2d).
    ``softmax(q k^T / sqrt(C)) v`` is evaluated by ``scaled_dot_product_attention``;
    ``queries`` keeps only the first few query positions.  Returns (B, H*C, T_q),
    heads outermost.
    """
    batch, width, length = qkv.shape
    ch = width // (3 * num_heads)
    shape = (batch, num_heads, 3, ch, length) if legacy_order else (batch, 3, num_heads, ch, length)
    qkv = qkv.reshape(shape).transpose(-1, -2)  # (..., T, C)
    q, k, v = qkv.unbind(dim=2 if legacy_order else 1)  # each (B, H, T, C)
    if queries is not None:
        q = q[:, :, :queries]
    out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T_q, C)
    return out.transpose(-1, -2).reshape(batch, num_heads * ch, -1)


def heads_for(channels: int, num_heads: int, num_head_channels: int) -> int:
    """Number of heads: ``channels // num_head_channels`` unless that is -1, else ``num_heads``."""
    if num_head_channels == -1:
        return num_heads
    if channels % num_head_channels:
        raise ValueError(f"{channels} channels are not divisible by num_head_channels={num_head_channels}")
    return channels // num_head_channels


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual connection: x + proj_out(attn(qkv(GN(x))))."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1,
                 use_new_attention_order: bool = False):
        super().__init__()
        self.num_heads = heads_for(channels, num_heads, num_head_channels)
        self.legacy_order = not use_new_attention_order
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = qkv_attention(self.qkv(self.norm(x)), self.num_heads, self.legacy_order)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class AttentionPool2d(nn.Module):
    """CLIP-style attention pooling (ADM classifier head).

    Prepends the spatial mean as a token, adds a learnt positional embedding, and
    returns the attention output of that first token projected to ``output_dim``.
    """

    def __init__(self, spacial_dim: int, embed_dim: int, num_head_channels: int, output_dim: int | None = None):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(embed_dim, spacial_dim**2 + 1) / embed_dim**0.5)
        self.qkv_proj = nn.Conv1d(embed_dim, 3 * embed_dim, 1)
        self.c_proj = nn.Conv1d(embed_dim, output_dim or embed_dim, 1)
        self.num_heads = heads_for(embed_dim, 1, num_head_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *_ = x.shape
        x = x.reshape(b, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)
        x = x + self.positional_embedding.to(x.dtype)
        pooled = qkv_attention(self.qkv_proj(x), self.num_heads, legacy_order=False, queries=1)
        return self.c_proj(pooled)[:, :, 0]
