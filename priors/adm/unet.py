"""The ADM UNet (guided-diffusion ``UNetModel``).

Architecture of Dhariwal & Nichol 2021 ("Diffusion Models Beat GANs on Image
Synthesis"), building on Nichol & Dhariwal 2021 ("Improved DDPM"): a time-embedding
MLP, an encoder of ResBlocks (+ self-attention at chosen downsampling factors) with
2x downsampling between levels, a ResBlock-attention-ResBlock middle, and a decoder
that concatenates the encoder activations (skip connections) level by level.

Reduced precision mirrors guided-diffusion's ``use_fp16``: ``set_torso_dtype``
converts the convolution weights of the encoder, middle and decoder; the time/class
embeddings, linear layers, GroupNorms (computed in float32) and the output head stay
float32.  ``forward`` casts ``x`` to the torso dtype and returns the output in
``x.dtype``.  No autocast is used.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .blocks import (
    AttentionBlock,
    Downsample,
    EmbedSequential,
    ResBlock,
    Upsample,
    normalization,
    timestep_embedding,
    zero_init,
)
from .presets import normalize_config, unet_kwargs


class ADMTrunk(nn.Module):
    """Time (and class) embedding, encoder ``input_blocks`` and ``middle_block``.

    Shared by :class:`ADMUNet` and the classifier.  ``attention_resolutions`` are
    downsampling factors (1 = full resolution) at which attention follows each ResBlock.
    Records ``skip_channels`` (channels of every encoder output), the final width
    ``ch`` and downsampling factor ``ds``.
    """

    torso = ("input_blocks", "middle_block")

    def __init__(
        self,
        in_channels: int,
        model_channels: int,
        num_res_blocks: int,
        attention_resolutions: Sequence[int],
        dropout: float = 0.0,
        channel_mult: Sequence[float] = (1, 2, 4, 8),
        conv_resample: bool = True,
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.num_classes = num_classes
        self.use_checkpoint = use_checkpoint
        self.config: dict | None = None  # create_model-style config when built from one
        emb_dim = 4 * model_channels
        self._res_kwargs = dict(emb_channels=emb_dim, dropout=dropout, use_scale_shift_norm=use_scale_shift_norm)
        self._attn_kwargs = dict(num_head_channels=num_head_channels, use_new_attention_order=use_new_attention_order)
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        self.skip_channels = [ch]
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [self.resblock(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(self.attention(ch, num_heads))
                self.input_blocks.append(EmbedSequential(*layers))
                self.skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                down = self.resblock(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample)
                self.input_blocks.append(EmbedSequential(down))
                self.skip_channels.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(
            self.resblock(ch, ch), self.attention(ch, num_heads), self.resblock(ch, ch)
        )
        self.ch, self.ds = ch, ds

    def resblock(self, channels: int, out_channels: int, **updown) -> ResBlock:
        return ResBlock(channels, out_channels=out_channels, **self._res_kwargs, **updown)

    def attention(self, channels: int, num_heads: int) -> AttentionBlock:
        return AttentionBlock(channels, num_heads=num_heads, **self._attn_kwargs)

    @property
    def dtype(self) -> torch.dtype:
        """The torso's compute dtype."""
        return self.input_blocks[0][0].weight.dtype

    def set_torso_dtype(self, dtype: torch.dtype) -> "ADMTrunk":
        """Convert the torso's conv weights to ``dtype`` (guided-diffusion's convert_to_fp16).

        Lossy: converting back to float32 does not restore the rounded weights.
        """
        for name in self.torso:
            for module in getattr(self, name).modules():
                if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                    module.to(dtype)
        return self

    def embed(self, timesteps: torch.Tensor | float, batch: int, y: torch.Tensor | None) -> torch.Tensor:
        """Timestep (+ class) embedding, shape (batch, 4 * model_channels), in ``time_embed``'s dtype."""
        if (y is None) != (self.num_classes is None):
            raise ValueError(
                "this model is class-conditional: pass class labels y"
                if y is None else "y was given but this model is not class-conditional"
            )
        t = torch.as_tensor(timesteps, device=self.time_embed[0].weight.device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"timesteps must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(self.time_embed[0].weight.dtype))
        return emb if y is None else emb + self.label_emb(y)

    def run(self, block: EmbedSequential, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply one block; with ``use_checkpoint``, recompute its activations in backward."""
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(block, h, emb, use_reentrant=False)
        return block(h, emb)

    def encode(self, x: torch.Tensor, emb: torch.Tensor, skips: list | None = None) -> torch.Tensor:
        """Encoder and middle block; appends every encoder output to ``skips`` if given."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2] % self.ds or x.shape[-1] % self.ds:
            raise ValueError(
                f"expected input of shape (B, {self.in_channels}, H, W) with H, W multiples of {self.ds}, "
                f"got {tuple(x.shape)}"
            )
        h = x.to(self.dtype)
        for block in self.input_blocks:
            h = self.run(block, h, emb)
            if skips is not None:
                skips.append(h)
        return self.run(self.middle_block, h, emb)


class ADMUNet(ADMTrunk):
    """guided-diffusion ``UNetModel`` for 2-D images.

    ``forward(x, timesteps, y=None)`` takes images in [-1, 1] (VP scaling), integer or
    fractional timesteps (shape (B,) or a scalar) and, for class-conditional models,
    labels ``y`` (B,); it returns (B, out_channels, H, W) — with ``learn_sigma`` the
    epsilon prediction followed by the variance interpolation value.  H and W must be
    divisible by 2 ** (len(channel_mult) - 1).
    """

    torso = ("input_blocks", "middle_block", "output_blocks")

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
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
    ):
        super().__init__(
            in_channels, model_channels, num_res_blocks, attention_resolutions, dropout, channel_mult,
            conv_resample, num_classes, use_checkpoint, num_heads, num_head_channels,
            use_scale_shift_norm, resblock_updown, use_new_attention_order,
        )
        self.image_size = image_size
        self.out_channels = out_channels
        heads_up = num_heads if num_heads_upsample == -1 else num_heads_upsample
        skips = list(self.skip_channels)
        ch, ds = self.ch, self.ds
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [self.resblock(ch + skips.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(self.attention(ch, heads_up))
                if level and i == num_res_blocks:
                    layers.append(self.resblock(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(
            normalization(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, out_channels, 3, padding=1))
        )

    @classmethod
    def from_config(cls, config: dict) -> "ADMUNet":
        """Build from a guided-diffusion ``create_model`` config (see :mod:`.presets`)."""
        model = cls(**unet_kwargs(config))
        model.config = normalize_config(config)
        return model

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(timesteps, x.shape[0], y)
        skips: list[torch.Tensor] = []
        h = self.encode(x, emb, skips)
        for block in self.output_blocks:
            h = self.run(block, torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.to(self.out[-1].weight.dtype)).to(x.dtype)
