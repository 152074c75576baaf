"""What every trained network is exported with: seeded initial weights and a model card."""
from __future__ import annotations

import json

import torch
from torch import nn

from restore.priors.unet import CompactUNet, UNetConfig


def describe(architecture: UNetConfig) -> str:
    return f"CompactUNet {json.dumps(architecture.to_dict())}"


def seeded_network(architecture: UNetConfig, seed: int) -> CompactUNet:
    """A freshly initialised network whose weights depend only on ``seed`` (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CompactUNet(architecture)


def model_card(architecture: str, network: nn.Module, data_name: str, validation_name: str,
               record: dict, extra: dict) -> str:
    """The model card written next to the weights: what (``architecture``, a one-line description),
    trained on what, where, how long, how good (``record``: :func:`restore.training.loop.train`'s)."""
    params = sum(p.numel() for p in network.parameters())
    hw = record["hardware"]
    lines = [f"# {extra.get('title', 'restore compact UNet prior (EDM)')}", "",
             extra.get("summary", "An unconditional image prior: the compact fully convolutional UNet of "
                                  "`restore.priors.unet`, trained with the EDM loss (Karras et al. 2022)."), "",
             "| field | value |", "|---|---|",
             f"| architecture | {architecture}, {params:,} parameters |",
             f"| objective | "
             f"{extra.get('objective', 'EDM loss and preconditioning, sigma_data 0.5, VE sigma 0.002..80')}"
             ", data range [-1, 1] |",
             *([f"| measurement | {extra['measurement']} |"] if "measurement" in extra else []),
             *([f"| initial weights | {extra['init']} |"] if "init" in extra else []),
             f"| training data | {data_name} |",
             f"| data terms | {extra.get('terms', 'see the data set licence')} |",
             f"| crops | {record['identity']['crop']}x{record['identity']['crop']}, "
             "random flips and 90-degree rotations |",
             f"| optimiser | Adam, lr {record['schedule']['lr']} (warm-up {record['schedule']['warmup']} images, "
             f"x{record['schedule']['anneal_factor']} for the last {record['schedule']['anneal_fraction']:.0%}), "
             f"batch {record['batch_size']}, grad-norm clip |",
             f"| EMA | bias-corrected, beta {record['ema_beta']} (horizon {record['ema_horizon_steps']:.0f} steps) |",
             f"| images seen | {record['images']:,} of {record['schedule']['total']:,} planned "
             f"({record['steps']:,} steps) |",
             f"| hardware | {hw['name']} ({hw['device']}), {hw['processes']} process(es), {hw['threads']} thread(s), "
             f"torch {hw['torch']} |",
             f"| training wall time | {record['train_seconds'] / 60:.1f} min |", ""]
    if record["validation"]:
        keys = [k for k in record["validation"][-1] if k not in ("images", "step")]
        title = extra.get("validation_title", "Tweedie denoising PSNR, dB on 0..255")
        lines += [f"## Validation ({title}, {validation_name})", "",
                  "| images seen | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for entry in record["validation"]:
            lines.append(f"| {entry['images']:,} | " + " | ".join(f"{entry[k]:.2f}" for k in keys) + " |")
        lines.append("")
    lines += extra.get("notes", [])
    return "\n".join(lines) + "\n"
