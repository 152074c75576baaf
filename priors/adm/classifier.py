"""The ADM noisy-image classifier (guided-diffusion ``EncoderUNetModel``).

Dhariwal & Nichol 2021 ("Diffusion Models Beat GANs on Image Synthesis", classifier
guidance): the UNet's encoder and middle block followed by a pooling head that maps
the final feature map to class logits.  Heads: ``pool='attention'`` (GroupNorm, SiLU,
AttentionPool2d — the released 256x256 classifier) and ``pool='adaptive'``
(GroupNorm, SiLU, global average pooling, zero-initialised 1x1 conv).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import AttentionPool2d, normalization, zero_init
from .presets import classifier_kwargs, normalize_classifier_config
from .unet import ADMTrunk


class ADMClassifier(ADMTrunk):
    """``forward(x, timesteps) -> logits (B, out_channels)`` for noisy images ``x`` in [-1, 1]."""

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: Sequence[int],
        dropout: float = 0.0,
        channel_mult: Sequence[float] = (1, 2, 4, 8),
        conv_resample: bool = True,
        use_checkpoint: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
        pool: str = "adaptive",
    ):
        super().__init__(
            in_channels, model_channels, num_res_blocks, attention_resolutions, dropout, channel_mult,
            conv_resample, None, use_checkpoint, num_heads, num_head_channels,
            use_scale_shift_norm, resblock_updown, use_new_attention_order,
        )
        self.image_size = image_size
        self.out_channels = out_channels
        ch = self.ch
        if pool == "attention":
            if num_head_channels == -1:
                raise ValueError("pool='attention' needs num_head_channels")
            head = [AttentionPool2d(image_size // self.ds, ch, num_head_channels, out_channels)]
        elif pool == "adaptive":
            head = [nn.AdaptiveAvgPool2d((1, 1)), zero_init(nn.Conv2d(ch, out_channels, 1)), nn.Flatten()]
        else:
            raise ValueError(f"unsupported pool {pool!r}: use 'attention' or 'adaptive'")
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), *head)

    @classmethod
    def from_config(cls, config: dict) -> "ADMClassifier":
        """Build from a guided-diffusion ``create_classifier`` config (see :mod:`.presets`)."""
        model = cls(**classifier_kwargs(config))
        model.config = normalize_classifier_config(config)
        return model

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | float) -> torch.Tensor:
        h = self.encode(x, self.embed(timesteps, x.shape[0], None))
        return self.out(h.to(self.out[0].weight.dtype)).to(x.dtype)
