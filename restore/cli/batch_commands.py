"""``restore batch``: restore a folder or manifest of measurements, resumably, in one process
or under ``torchrun`` (logic in :mod:`restore.batch`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from restore.cli.app import app, fail
from restore.cli.operator_commands import PARAM_HELP, parse_params, parse_value
from restore.cli.restore_commands import DEVICE, METHOD, NOISE, PARAM, PRIOR, QUALITY, QUIET, STEPS


@app.command("batch")
def batch(
    source: Path = typer.Argument(..., help="A folder of measurements, or a manifest (.csv with a header row, "
                                            "or .jsonl) with columns image | from, op, mask, kernel, scale, "
                                            "params (JSON), output."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder: <key>.<ext> and <key>.json per image, "
                                                            "summary.json at the end."),
    op: Optional[str] = typer.Option(None, "--op", help="Operator of every image (see `restore list`). Without it, "
                                                        "a folder is read as `restore degrade` sidecars (*.json)."),
    op_param: Optional[List[str]] = typer.Option(None, "--op-param", help="Operator parameter. " + PARAM_HELP),
    mask: Optional[str] = typer.Option(None, "--mask", help="Shortcut for --op-param mask=VALUE: a mask image where "
                                                            "WHITE marks the region to fill, a .npy mask (1 = fill), "
                                                            "or a generator name."),
    mask_white_known: bool = typer.Option(False, "--mask-white-known",
                                          help="Read mask images the other way round, white = known."),
    kernel: Optional[str] = typer.Option(None, "--kernel", help="Shortcut for --op-param kernel=VALUE: "
                                         "gaussian[:STD[:SIZE]], motion[:SEED[:SIZE]] or a kernel file."),
    scale: Optional[str] = typer.Option(None, "--scale", help="Shortcut for --op-param scale=VALUE."),
    noise: Optional[float] = NOISE,
    prior: str = PRIOR,
    method: Optional[str] = METHOD,
    param: Optional[List[str]] = PARAM,
    steps: Optional[int] = STEPS,
    quality: str = QUALITY,
    seed: int = typer.Option(0, "--seed", help="Run seed; each image's seed is derived from it and the image's name."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images of equal size per network call."),
    device: str = DEVICE,
    dtype: str = typer.Option("fp32", "--dtype", help="Network precision: fp32, bf16 or fp16 (sampler state "
                                                      "stays fp32; norms compute in fp32)."),
    compile_network: bool = typer.Option(False, "--compile", help="torch.compile the network (falls back, "
                                                                  "saying so, where the compiler is unavailable)."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
                                                 help="NHWC convolutions (default: on for CUDA, off on CPU)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="CPU threads per process. Bit-identical reruns need the same count."),
    quiet: bool = QUIET,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Restore many images: resumable (complete outputs are skipped; rerun after any interruption),
    deterministic per image (seed derived from --seed and the image's name), batched by size,
    and sharded over processes under `torchrun --nproc-per-node N --no-python restore batch ...`.
    --noise applies to folder and manifest images; measurements made by `restore degrade` bring
    their exact operator and noise in their sidecars.

    The exit status is 0 when every image was restored or skipped, 1 when any failed (each is
    listed with its reason), 2 for a usage error."""
    import torch

    from restore.accel import Acceleration, parse_dtype
    from restore.batch import BatchInputError, Settings, discover, format_summary, run
    from restore.plugins import UnknownItemError
    from restore.distributed import close_world, init_world

    if quality not in ("fast", "high"):
        raise fail(f"--quality must be fast or high, got {quality!r}")
    try:
        params = parse_params(op_param)
        method_params = parse_params(param)
        net_dtype = parse_dtype(dtype)
    except ValueError as exc:
        raise fail(str(exc))
    for key, value in (("mask", mask), ("kernel", kernel), ("scale", None if scale is None else parse_value(scale))):
        if value is not None:
            params[key] = value
    if mask_white_known:
        params["invert"] = True
    if threads:
        torch.set_num_threads(threads)
    try:
        items = discover(source, op=op, params=params, exclude=output)
        world = init_world(device)
    except (BatchInputError, ValueError) as exc:
        raise fail(str(exc))
    cuda = world.device.type == "cuda"
    settings = Settings(prior=prior, method=method, method_params=method_params, steps=steps, quality=quality,
                        seed=seed, batch_size=batch_size, noise=noise,
                        acceleration=Acceleration(net_dtype, cuda if channels_last is None else channels_last,
                                                  compile_network))
    prefix = f"[rank {world.rank}/{world.size}] " if world.size > 1 else ""

    def report(message: str) -> None:
        if not quiet:
            typer.echo(prefix + message, err=True)

    try:
        summary = run(items, output, settings, world, report=report)
    except (UnknownItemError, ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        close_world(world)
        raise fail(str(exc))
    close_world(world)
    if world.main:
        if as_json:
            typer.echo(json.dumps({"items": len(items), "processes": world.size, **summary.to_json()}, indent=2))
        else:
            typer.echo(format_summary(summary, len(items)))
    if summary.failed:
        raise typer.Exit(code=1)
