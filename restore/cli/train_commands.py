"""``restore train prior | sr3 | classifier``: the commands that make the networks the project ships.

Each runs on CPU in one process, on one GPU (``--precision bf16`` for autocast, also on CPUs
with bf16 instructions), or under
``torchrun --nproc-per-node N restore train ...`` with DistributedDataParallel.  Rerunning
the same command with the same ``-o`` resumes from its checkpoint.
"""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Optional

import typer


from restore.cli.app import MAX_SEED, app, fail
from restore.cli.fast_options import THREADS

train_app = typer.Typer(help="Train priors, SR3-style conditional networks and noise-aware classifiers "
                             "(resumable; torchrun-ready).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

BSDS_TERMS = "Berkeley Segmentation Dataset: free for non-commercial research and educational purposes"

# Options every training command takes (one declaration each).
Data = Annotated[Path, typer.Option("--data", help="Folder of training images (e.g. ../shared/data/train/cbsd432).")]
Output = Annotated[Path, typer.Option("-o", "--output", help="Output folder: a unet:DIR model + checkpoint + card "
                                      "(rerunning resumes from the checkpoint; never --data or --val).")]
Val = Annotated[Optional[Path], typer.Option("--val", help="Held-out folder for validation.")]
ValCount = Annotated[int, typer.Option("--val-count", min=1, help="Validation images taken from --val.")]
ValCrop = Annotated[int, typer.Option("--val-crop", min=0, help="Centre crop of validation images (0: whole).")]
Images = Annotated[int, typer.Option("--images", min=1, help="Training length in images seen (the schedule's unit).")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Crops per step and process.")]
Crop = Annotated[int, typer.Option("--crop", min=8, help="Training crop side in pixels.")]
Channels = Annotated[int, typer.Option("--channels", help="3 (colour) or 1 (grey).")]
Base = Annotated[int, typer.Option("--base-channels", min=1, help="Width of the UNet's first level.")]
Mult = Annotated[str, typer.Option("--channel-mult", help="Width multipliers per level, comma-separated.")]
Blocks = Annotated[int, typer.Option("--num-res-blocks", min=1, help="Residual blocks per level.")]
LR = Annotated[float, typer.Option("--lr", help="Adam learning rate after warm-up.")]
Warmup = Annotated[int, typer.Option("--warmup-images", min=0, help="Linear learning-rate warm-up, in images.")]
Anneal = Annotated[float, typer.Option("--anneal-fraction", help="Final fraction of --images trained at lr / 10.")]
EmaBeta = Annotated[float, typer.Option("--ema-beta", help="EMA decay (bias-corrected; horizon 1/(1-beta) steps).")]
Seed = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED,
                                   help="Seeds the initial weights and every step's draws.")]
MaxMinutes = Annotated[Optional[float], typer.Option("--max-minutes", help="Stop (resumably) after this long.")]
MaxSteps = Annotated[Optional[int], typer.Option("--max-steps", min=1,
                                                 help="Stop (resumably) after this many steps in this invocation.")]
ValidateEvery = Annotated[int, typer.Option("--validate-every", min=1, help="Validate every N images.")]
CheckpointMinutes = Annotated[float, typer.Option("--checkpoint-minutes", help="Checkpoint and export this often.")]
Device = Annotated[str, typer.Option("--device", help="auto (cuda when available), cpu, cuda, cuda:1 ...")]
Precision = Annotated[str, typer.Option("--precision", help="fp32, or bf16 autocast for the loss and validation "
                                        "(GPUs and CPUs with bf16 instructions; float32 elsewhere, said once).")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help=THREADS.help)]
Title = Annotated[Optional[str], typer.Option("--title", help="Model card title.")]
Terms = Annotated[str, typer.Option("--terms", help="The training data's terms, for the model card.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress lines.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Train into an -o folder that holds other files and "
                                         "no checkpoint of an earlier run (replacing any of the files training "
                                         "writes); never --data or --val.")]


def _run(*, build, threads: Optional[int], device: str, output: Path, **options) -> None:
    """Build the task (``build()``), the world and the run options (the command's parameters
    named like :class:`restore.training.loop.RunOptions` fields), then train; user errors exit 2
    with one line."""
    import dataclasses

    import torch

    from restore.accel import default_threads
    from restore.distributed import close_world, init_world
    from restore.training.loop import RunOptions, TrainingInterrupted, train

    fields = {f.name for f in dataclasses.fields(RunOptions)} - {"out"}
    check_output_folder(output, options)
    run = {k: v for k, v in options.items() if k in fields}

    torch.set_num_threads(threads or default_threads())
    try:
        task = build()
        options = RunOptions(out=output, **run)
        world = init_world(device)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise fail(str(exc))
    try:
        train(task, options, world)
    except ValueError as exc:
        raise fail(str(exc))
    except TrainingInterrupted as exc:  # checkpoint written; exit as a process killed by the signal would
        raise typer.Exit(128 + signal.Signals[exc.signal].value)
    finally:
        close_world(world)


def check_output_folder(output: Path, options: dict) -> None:
    """Refuse an -o folder that is --data or --val, and, unless --overwrite, one that holds
    files but no checkpoint of an earlier run (rerunning into a run's folder resumes it)."""
    from restore.files import same_file
    from restore.training.loop import CHECKPOINT

    for flag in ("data", "val"):
        given = options.get(flag)
        if given is not None and same_file(output, given):
            raise fail(f"-o {output} is the --{flag} folder {given}: a command never writes over its inputs; "
                       "give another output folder")
    if output.is_dir() and not (output / CHECKPOINT).is_file() and any(output.iterdir()) \
            and not options.get("overwrite"):
        raise fail(f"-o {output} holds files and no {CHECKPOINT} of an earlier run: pass --overwrite to train into "
                   "it anyway, or give a new or empty folder")


def _images(data: Path, crop: int, channels: int, val: Optional[Path], val_count: int, val_crop: int):
    """Crops of ``data``, the validation images and the names the model card gives them."""
    from restore.training.data import CropSampler, load_validation

    sampler = CropSampler.from_folder(data, crop, channels)
    validation = load_validation(val, channels, val_count, val_crop or None) if val else []
    return sampler, f"{data.resolve().name} ({len(sampler)} images)", validation, _val_name(val, len(validation),
                                                                                           val_crop)


def _val_name(val: Optional[Path], count: int, crop: int) -> str:
    return f"{val.resolve().name}, {count} images" + (f", centre {crop}x{crop}" if crop else "") if val else ""


def _card(title: Optional[str], terms: str) -> dict:
    return {"terms": terms, **({"title": title} if title else {})}


def _mult(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise fail(f"--channel-mult must be comma-separated integers, got {text!r}")


@train_app.command("prior")
def train_prior(data: Data, output: Output, val: Val = None, val_count: ValCount = 8, val_crop: ValCrop = 256,
                images: Images = 100_000, batch_size: BatchSize = 16, crop: Crop = 64, channels: Channels = 3,
                base_channels: Base = 32, channel_mult: Mult = "1,2,2", num_res_blocks: Blocks = 1,
                lr: LR = 1e-3, warmup_images: Warmup = 2000, anneal_fraction: Anneal = 0.15, ema_beta: EmaBeta = 0.998,
                seed: Seed = 0, max_minutes: MaxMinutes = None, max_steps: MaxSteps = None,
                validate_images: ValidateEvery = 20_000, checkpoint_minutes: CheckpointMinutes = 5.0,
                device: Device = "auto", precision: Precision = "fp32", threads: Threads = None,
                title: Title = None, terms: Terms = BSDS_TERMS,
                init: Annotated[Optional[str], typer.Option(
                    "--init", help="Start from a trained prior's weights instead of seeded ones (fine-tuning): an "
                                   "embedded prior's name (default) or unet:DIR, of the architecture the options "
                                   "give, or of it with fewer --num-res-blocks (deepened: the added blocks start as "
                                   "identities); another mismatch is an error naming its options.")] = None,
                quiet: Quiet = False, overwrite: Overwrite = False) -> None:
    """Train the compact UNet as an EDM image prior on random augmented crops of a folder;
    validation prints the Tweedie denoising PSNR at sigma 15 / 25 / 50 (0..255)."""
    from restore.files import same_file
    from restore.priors.unet import UNetConfig
    from restore.training.prior import PriorTask, init_folder, initial_weights

    def build():
        config = UNetConfig(channels=channels, base_channels=base_channels, channel_mult=_mult(channel_mult),
                            num_res_blocks=num_res_blocks)
        if init is not None and same_file(output, init_folder(init)):
            raise ValueError(f"-o {output} is the --init folder {init}: a command never writes over its inputs; "
                             "give another output folder")
        start = initial_weights(init, config) if init is not None else None
        sampler, data_name, validation, val_name = _images(data, crop, channels, val, val_count, val_crop)
        return PriorTask(config, sampler, data_name, validation, val_name, card=_card(title, terms), seed=seed,
                         init=start)

    _run(**locals())


@train_app.command("sr3")
def train_sr3(data: Data, output: Output, scale: Annotated[int, typer.Option("--scale", min=2)] = 4,
              val: Val = None, val_count: ValCount = 4, val_crop: ValCrop = 128,
              val_steps: Annotated[int, typer.Option("--val-steps", min=1,
                                                     help="DDPM steps per validation image.")] = 50,
              residual: Annotated[bool, typer.Option(
                  "--residual/--no-residual",
                  help="Model the residual x - bicubic(y), predicting it (SRDiff; an untrained network returns "
                       "bicubic); --no-residual: SR3's noise-predicting network on the image.")] = True,
              noise_sigma: Annotated[float, typer.Option(
                  "--noise-sigma", min=0.0,
                  help="Gaussian noise std (on [0, 1]) added to the low-resolution training measurements; the "
                       "network serves that noise level only (the benchmark's SR x4: 0.025).")] = 0.0,
              images: Images = 100_000, batch_size: BatchSize = 16, crop: Crop = 64, channels: Channels = 3,
              base_channels: Base = 32, channel_mult: Mult = "1,2,2", num_res_blocks: Blocks = 1,
              lr: LR = 1e-3, warmup_images: Warmup = 2000, anneal_fraction: Anneal = 0.15, ema_beta: EmaBeta = 0.998,
              seed: Seed = 0, max_minutes: MaxMinutes = None, max_steps: MaxSteps = None,
              validate_images: ValidateEvery = 20_000, checkpoint_minutes: CheckpointMinutes = 5.0,
              device: Device = "auto", precision: Precision = "fp32", threads: Threads = None,
              title: Title = None, terms: Terms = BSDS_TERMS,
              quiet: Quiet = False, overwrite: Overwrite = False) -> None:
    """Train an SR3-style x SCALE conditional network (noisy image + bicubic-upsampled low-resolution
    image in; by default over the bicubic residual); validation prints its SR PSNR next to bicubic's
    on held-out crops."""
    from restore.priors.unet import UNetConfig
    from restore.training.sr3 import SR3Task

    def build():
        sampler, data_name, validation, val_name = _images(data, crop, channels, val, val_count, val_crop)
        config = UNetConfig(channels=channels, in_channels=2 * channels, base_channels=base_channels,
                            channel_mult=_mult(channel_mult), num_res_blocks=num_res_blocks)
        return SR3Task(config, sampler, data_name, scale, validation, val_name, val_steps,
                       card=_card(title, terms), seed=seed, residual=residual, noise_sigma=noise_sigma)

    _run(**locals())


@train_app.command("classifier")
def train_classifier(
        data: Annotated[Path, typer.Option("--data", help="Folder with one subfolder of images per class.")],
        output: Output, val: Val = None, val_crop: ValCrop = 64, images: Images = 50_000,
        batch_size: BatchSize = 16, crop: Crop = 64, channels: Channels = 3, base_channels: Base = 32,
        channel_mult: Mult = "1,2,2", num_res_blocks: Blocks = 1, lr: LR = 3e-4, warmup_images: Warmup = 1000,
        anneal_fraction: Anneal = 0.15, ema_beta: EmaBeta = 0.998, seed: Seed = 0,
        max_minutes: MaxMinutes = None, max_steps: MaxSteps = None, validate_images: ValidateEvery = 10_000,
        checkpoint_minutes: CheckpointMinutes = 5.0, device: Device = "auto", precision: Precision = "fp32",
        threads: Threads = None, title: Title = None,
        terms: Annotated[str, typer.Option("--terms", help="The training data's terms.")] = "see the data's licence",
        quiet: Quiet = False, overwrite: Overwrite = False) -> None:
    """Train a noise-aware classifier (one class per subfolder of --data) for classifier guidance;
    validation prints the accuracy on --val (same subfolders) at timesteps 0 / 250 / 500 / 750."""
    from restore.training.classifier import ClassifierTask, load_labelled_validation
    from restore.training.data import LabelledCropSampler

    def build():
        sampler = LabelledCropSampler.from_folder(data, crop, channels)
        validation = load_labelled_validation(val, sampler.classes, channels, val_crop or None) if val else []
        architecture = {"image_size": crop, "in_channels": channels, "model_channels": base_channels,
                        "num_res_blocks": num_res_blocks, "attention_resolutions": [],
                        "channel_mult": list(_mult(channel_mult)), "pool": "adaptive"}
        return ClassifierTask(architecture, sampler, f"{data.resolve().name} ({len(sampler)} images, "
                              f"classes {', '.join(sampler.classes)})", validation,
                              _val_name(val, len(validation), val_crop), card=_card(title, terms), seed=seed)

    _run(**locals())
