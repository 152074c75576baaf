"""``restore train prior | sr3 | classifier``: the commands that make the networks the project ships.

Each runs on CPU in one process, on one GPU (``--precision bf16`` for autocast), or under
``torchrun --nproc-per-node N restore train ...`` with DistributedDataParallel.  Rerunning
the same command with the same ``-o`` resumes from its checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from restore.cli.app import app, fail

train_app = typer.Typer(help="Train priors, SR3-style conditional networks and noise-aware classifiers.",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

BSDS_TERMS = "Berkeley Segmentation Dataset: free for non-commercial research and educational purposes"


def _run_options(out: Path, images: int, batch_size: int, lr: float, ema_beta: float, seed: int,
                 max_minutes: Optional[float], max_steps: Optional[int], validate_every: int, precision: str,
                 quiet: bool, checkpoint_minutes: float, warmup: int, anneal_fraction: float):
    from restore.training.loop import RunOptions

    return RunOptions(out=out, images=images, batch_size=batch_size, lr=lr, ema_beta=ema_beta, seed=seed,
                      max_minutes=max_minutes, max_steps=max_steps, validate_images=validate_every,
                      precision=precision, quiet=quiet, checkpoint_minutes=checkpoint_minutes, warmup_images=warmup,
                      anneal_fraction=anneal_fraction)


@train_app.command("prior")
def train_prior(
    data: Path = typer.Option(..., "--data", help="Folder of training images (e.g. ../shared/data/train/cbsd432)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder: a unet:DIR prior + checkpoint + card."),
    val: Optional[Path] = typer.Option(None, "--val", help="Held-out folder for the Tweedie PSNR validation."),
    val_count: int = typer.Option(8, "--val-count", min=1, help="Validation images taken from --val."),
    val_crop: Optional[int] = typer.Option(256, "--val-crop", help="Centre crop of validation images (0: whole)."),
    images: int = typer.Option(100_000, "--images", min=1, help="Training length in images seen (the schedule's unit)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Crops per step and process."),
    crop: int = typer.Option(64, "--crop", min=8, help="Training crop side in pixels."),
    channels: int = typer.Option(3, "--channels", help="3 (colour) or 1 (grey)."),
    base_channels: int = typer.Option(32, "--base-channels", min=1),
    channel_mult: str = typer.Option("1,2,2", "--channel-mult", help="Width multipliers per level."),
    num_res_blocks: int = typer.Option(1, "--num-res-blocks", min=1),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate after warm-up."),
    warmup: int = typer.Option(2000, "--warmup-images", min=0),
    anneal_fraction: float = typer.Option(0.15, "--anneal-fraction",
                                          help="Final fraction of --images trained at lr / 10."),
    ema_beta: float = typer.Option(0.998, "--ema-beta", help="EMA decay (bias-corrected; horizon 1/(1-beta) steps)."),
    seed: int = typer.Option(0, "--seed"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop (resumably) after this long."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1,
                                            help="Stop (resumably) after this many steps in this invocation."),
    validate_every: int = typer.Option(20_000, "--validate-every", min=1, help="Validate every N images."),
    checkpoint_minutes: float = typer.Option(5.0, "--checkpoint-minutes"),
    device: str = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda, cuda:1 ..."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, or bf16 autocast (GPU)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per process (torch.set_num_threads)."),
    title: Optional[str] = typer.Option(None, "--title", help="Model card title."),
    terms: str = typer.Option(BSDS_TERMS, "--terms", help="The training data's terms, for the model card."),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Train the compact UNet as an EDM image prior on random augmented crops of a folder."""
    import torch

    from restore.priors.unet import UNetConfig
    from restore.training.data import CropSampler, load_validation
    from restore.training.distributed import close_world, init_world
    from restore.training.loop import train
    from restore.training.prior import PriorTask

    if threads:
        torch.set_num_threads(threads)
    try:
        architecture = UNetConfig(channels=channels, base_channels=base_channels,
                                  channel_mult=tuple(int(v) for v in channel_mult.split(",")),
                                  num_res_blocks=num_res_blocks)
        sampler = CropSampler.from_folder(data, crop, channels)
        validation = load_validation(val, channels, val_count, val_crop or None) if val else []
        world = init_world(device)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise fail(str(exc))
    card = {"terms": terms}
    if title:
        card["title"] = title
    task = PriorTask(architecture, sampler, f"{data.resolve().name} ({len(sampler)} images)",
                     validation, f"{val.resolve().name}, first {len(validation)} images"
                     + (f", centre {val_crop}x{val_crop}" if val_crop else "") if val else "", card=card, seed=seed)
    options = _run_options(output, images, batch_size, lr, ema_beta, seed, max_minutes, max_steps, validate_every,
                           precision, quiet, checkpoint_minutes, warmup, anneal_fraction)
    try:
        train(task, options, world)
    except ValueError as exc:
        raise fail(str(exc))
    finally:
        close_world(world)
