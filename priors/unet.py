"""The project's compact UNet: fully convolutional, so it runs at any image size.

A small DDPM-style UNet (Ho et al. 2020, Appendix B; the ResBlock layout of
Dhariwal & Nichol 2021 without attention): a 3x3 input convolution, per level
``num_res_blocks`` residual blocks then a stride-2 convolution, two middle blocks,
and a decoder whose blocks concatenate the matching encoder activations and
upsample (nearest, then 3x3 convolution).  Residual block:

    h = conv(SiLU(GN(x)));  h = h + Linear(SiLU(emb));  h = conv(SiLU(GN(h)));  return skip(x) + h

There is no global attention, so the receptive field is local and any height and
width that is a multiple of :attr:`CompactUNet.multiple` works (other sizes are
reflect-padded by :class:`restore.priors.sizing.PaddedNetwork`).

``forward(x, noise)`` takes the noise conditioning as one float per batch item and
embeds it sinusoidally (Vaswani et al. 2017, as in ADM), then through a 2-layer MLP.
What ``noise`` means is fixed by the denoiser view the checkpoint declares (see
:mod:`restore.priors.native`): the fractional VP timestep t for VP schedules, or
c_noise = ln(sigma) / 4 (Karras et al. 2022, Table 1) for the EDM preconditioning.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Optional

import torch
from torch import Tensor, nn

from restore.priors.adm.blocks import timestep_embedding


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a :class:`CompactUNet`.

    ``channels``: image channels (the output); ``in_channels``: input channels, = ``channels``
    unless a condition is concatenated to the input (SR3-style networks: noisy image and
    upsampled measurement, 2 x channels); ``base_channels``: width of the first level, level i
    has ``base_channels * channel_mult[i]``; ``groups``: GroupNorm groups (must divide every width).
    """

    channels: int = 3
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    groups: int = 8
    in_channels: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        if self.in_channels is None:
            object.__setattr__(self, "in_channels", self.channels)
        if (self.channels < 1 or self.in_channels < 1 or self.base_channels < 1 or self.num_res_blocks < 1
                or not self.channel_mult):
            raise ValueError(f"invalid UNet config {self}: channels, base_channels, num_res_blocks must be >= 1 "
                             "and channel_mult non-empty")
        bad = [self.base_channels * m for m in self.channel_mult if (self.base_channels * m) % self.groups]
        if bad:
            raise ValueError(f"groups={self.groups} does not divide the level widths {bad}")

    @classmethod
    def from_dict(cls, data: dict) -> "UNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown UNet architecture keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channel_mult"] = list(self.channel_mult)
        if data["in_channels"] == data["channels"]:
            del data["in_channels"]  # configs of unconditional networks stay as they were
        return data


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the noise embedding added in between, residual skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.emb(self.act(emb))[:, :, None, None]
        h = self.conv2(self.act(self.norm2(h)))
        return self.skip(x) + h


class CompactUNet(nn.Module):
    """x (B, in_channels, H, W), noise (B,) -> output (B, channels, H, W); H, W multiples of :attr:`multiple`."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        base, groups = config.base_channels, config.groups
        emb_dim = 4 * base
        self.embed = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(config.in_channels, base * config.channel_mult[0], 3, padding=1)

        widths = [base * m for m in config.channel_mult]
        skip_widths = [widths[0]]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = widths[0]
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock(ch, width, emb_dim, groups))
                ch = width
                skip_widths.append(ch)
            self.down.append(blocks)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_widths.append(ch)

        self.middle = nn.ModuleList([ResBlock(ch, ch, emb_dim, groups), ResBlock(ch, ch, emb_dim, groups)])

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResBlock(ch + skip_widths.pop(), width, emb_dim, groups))
                ch = width
            self.up.append(blocks)
            if level > 0:
                self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                   nn.Conv2d(ch, ch, 3, padding=1)))

        self.out = nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv2d(ch, config.channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this (one factor 2 per downsampling)."""
        return 2 ** (len(self.config.channel_mult) - 1)

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if c != self.config.in_channels:
            raise ValueError(f"CompactUNet expects {self.config.in_channels} input channels, "
                             f"got input of shape {tuple(x.shape)}")
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"CompactUNet needs height and width divisible by {self.multiple}, got {h}x{w} "
                             "(wrap it in restore.priors.sizing.PaddedNetwork for other sizes)")
        noise = torch.as_tensor(noise, device=x.device).reshape(-1).expand(b)
        emb = self.embed(timestep_embedding(noise, self.config.base_channels).to(x.dtype))

        hs = [self.conv_in(x)]
        for level, blocks in enumerate(self.down):
            for block in blocks:
                hs.append(block(hs[-1], emb))
            if level < len(self.downsample):
                hs.append(self.downsample[level](hs[-1]))
        out = hs[-1]
        for block in self.middle:
            out = block(out, emb)
        for level, blocks in enumerate(self.up):
            for block in blocks:
                out = block(torch.cat([out, hs.pop()], dim=1), emb)
            if level < len(self.upsample):
                out = self.upsample[level](out)
        return self.out(out)


def deeper_or_same(config: UNetConfig, trained: UNetConfig) -> bool:
    """Whether ``config`` is ``trained`` with as many or more residual blocks per level (:func:`deepen`)."""
    return replace(config, num_res_blocks=trained.num_res_blocks) == trained and \
        config.num_res_blocks >= trained.num_res_blocks


def deepen(network: CompactUNet, trained: CompactUNet) -> None:
    """Load ``trained`` into ``network``, the same UNet with more residual blocks per level, so that
    ``network`` computes ``trained``'s function exactly (function-preserving growth: Net2Net's deeper
    networks, Chen, Goodfellow & Shlens, ICLR 2016).  An encoder level's added blocks follow its
    trained ones and are identities (a zero last convolution, an identity skip): each pushes a copy
    of the level's last activation.  The decoder pops those in reverse, so its level's first block
    gets such a copy, as before; the added decoder blocks follow that first block, get the other
    copies and pass the first block's output through (their 1x1 skip convolution selects its
    channels, their last convolution is zero); the trained blocks after them get what they got
    before.  The added blocks' other weights stay as ``network`` has them, so they train."""
    small, big = trained.config, network.config
    if not deeper_or_same(big, small):
        raise ValueError(f"deepen: {big} is not {small} with more residual blocks per level")
    added = big.num_res_blocks - small.num_res_blocks
    state = network.state_dict()
    for key, value in trained.state_dict().items():
        part = key.split(".")
        if part[0] == "up" and int(part[2]) > 0:  # up.LEVEL.BLOCK...: the trained blocks after the added ones
            part[2] = str(int(part[2]) + added)
        state[".".join(part)] = value
    network.load_state_dict(state)
    with torch.no_grad():
        for blocks in network.down:
            for block in blocks[small.num_res_blocks:]:
                block.conv2.weight.zero_()
                block.conv2.bias.zero_()
        for blocks in network.up:
            for block in blocks[1:1 + added]:
                width = block.conv2.out_channels
                block.conv2.weight.zero_()
                block.conv2.bias.zero_()
                block.skip.weight.zero_()
                block.skip.bias.zero_()
                block.skip.weight[:, :width, 0, 0] = torch.eye(width)
