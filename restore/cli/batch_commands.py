"""``restore batch``: restore a folder or manifest of measurements, resumably, in one process
or under ``torchrun`` (logic in :mod:`restore.batch`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from restore.cli.app import app, fail, file_params, seed_option
from restore.cli.fast_options import CHANNELS_LAST, COMPILE, DTYPE, PRECISION, THREADS, fast_path
from restore.cli.operator_commands import PARAM_HELP, parse_params, parse_value
from restore.cli.restore_commands import DEVICE, METHOD, NOISE, PARAM, PRIOR, QUALITY, QUIET, STEPS, TARGET


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
    target: str = TARGET,
    seed: int = seed_option(0, help="Run seed; each image's seed is derived from it and the image's name."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images of equal size per network call."),
    device: str = DEVICE,
    dtype: Optional[str] = DTYPE,
    precision: str = PRECISION,
    compile_network: bool = COMPILE,
    channels_last: Optional[bool] = CHANNELS_LAST,
    threads: Optional[int] = THREADS,
    quiet: bool = QUIET,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Restore many images: resumable (complete outputs are skipped; rerun after any interruption),
    deterministic per image (seed derived from --seed and the image's name), batched by size,
    and sharded over processes under `torchrun --nproc-per-node N --no-python restore batch ...`.
    --noise applies to folder and manifest images; measurements made by `restore degrade` bring
    their exact operator and noise in their sidecars.

    The exit status is 0 when every image was restored or skipped, 1 when any failed (each is
    listed with its reason), 2 for a usage error.  Before any image is restored, the run is
    refused when an output (OUT/<key>.<ext>, OUT/<key>.json, OUT/summary.json) would be one of
    the inputs (OUT the input folder, a manifest's images in OUT), when nothing can be written
    in OUT, or when --param names a hyperparameter the method does not take."""
    from restore.batch import BatchInputError, Settings, discover, format_summary, run
    from restore.files import OutputError, same_file
    from restore.plugins import UnknownItemError
    from restore.distributed import close_world, init_world
    from restore.priors.spec import load_prior

    if quality not in ("fast", "high"):
        raise fail(f"--quality must be fast or high, got {quality!r}")
    if target not in ("fidelity", "perceptual"):
        raise fail(f"--target must be fidelity or perceptual, got {target!r}")
    try:
        params = parse_params(op_param)
        method_params = parse_params(param)
    except ValueError as exc:
        raise fail(str(exc))
    for key, value in (("mask", mask), ("kernel", kernel), ("scale", None if scale is None else parse_value(scale))):
        if value is not None:
            params[key] = value
    if mask_white_known:
        params["invert"] = True
    if op is not None:  # the operator's keys, refused before any image with the valid ones listed
        from restore.cli.operator_commands import check_keywords, load_operator_factory

        check_keywords(op, load_operator_factory(op)[1], params, {}, flag="--op-param")
    fast = fast_path(precision, channels_last, compile_network, threads, dtype)
    try:
        if same_file(output, source):
            raise OutputError(f"-o {output} is the input folder {source}: a command never writes over its inputs; "
                              "give another output folder")
        items = discover(source, op=op, params=params, exclude=output)
        world = init_world(device)
    except (BatchInputError, ValueError, OutputError, UnknownItemError, OSError) as exc:
        raise fail(str(exc))
    try:  # the prior, loaded here only when --param must be checked against its default strategy; the run reuses it
        loaded = load_prior(prior, device=world.device) if method is None and method_params else None
        check_before_work(source, output, items, method, method_params, quality, target, noise, loaded)
    except (ValueError, OutputError, UnknownItemError, OSError) as exc:
        close_world(world)
        raise fail(str(exc))
    settings = Settings(prior=prior, method=method, method_params=method_params, steps=steps, quality=quality,
                        target=target, seed=seed, batch_size=batch_size, noise=noise,
                        fast=fast)
    prefix = f"[rank {world.rank}/{world.size}] " if world.size > 1 else ""

    def report(message: str) -> None:
        if not quiet:
            typer.echo(prefix + message, err=True)

    try:
        summary = run(items, output, settings, world, report=report, prior=loaded)
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


def check_before_work(source: Path, output: Path, items: list, method: Optional[str], method_params: dict,
                      quality: str, target: str, noise: Optional[float], prior: Any = None) -> None:
    """Refuse the run before any image is restored: an output that is an input (batch's resume
    rules decide about existing outputs: :mod:`restore.batch`), an output folder where nothing
    can be written, a strategy hyperparameter that the method (given, or the default for each
    operator of the run and the loaded ``prior``: a conditional network has its own,
    :func:`restore.strategies.catalog.default_run`) does not take, an estimator given as the
    method of the perceptual target (:func:`restore.pipeline.refuse_an_estimate_as_samples`)."""
    from restore import measurement as measurements
    from restore.batch import SUMMARY_FILE
    from restore.cli.operator_commands import check_method_params
    from restore.files import check_outputs, check_writable_folder
    from restore.pipeline import refuse_an_estimate_as_samples
    from restore.plugins import default_registry

    if method is not None:
        refuse_an_estimate_as_samples(default_registry(), method, 1, target)

    planned = [("summary", output / SUMMARY_FILE)]
    inputs: list = [("manifest" if source.is_file() else "", source)]
    first: dict[str, object] = {}
    for item in items:
        inputs += [("", item.image), ("", item.sidecar), *file_params(item.params, "param")]
        try:
            measurement_file, suffix = item.measurement_file(), item.output_suffix()
        except (ValueError, OSError):
            continue  # the item fails with its reason when its turn comes
        inputs.append(("", measurement_file))
        planned += [(f"output of {item.key}", output / f"{item.key}{suffix}"),
                    (f"sidecar of {item.key}", output / f"{item.key}.json")]
        first.setdefault(item.op or rio_operator_name(item.sidecar), item)
    check_outputs(planned, inputs, overwrite=True)
    check_writable_folder(output)
    for item in first.values():
        try:
            measurement = measurements.read_sidecar(item.sidecar) if item.sidecar is not None else \
                measurements.read_file(item.image, item.op, options=item.params, noise=noise)
        except Exception:  # noqa: BLE001  (an unreadable item fails on its own turn, with its reason)
            continue
        check_method_params(method, method_params, measurement.operator, quality, target, prior=prior,
                            shape=measurement.image_shape)


def rio_operator_name(sidecar: Path) -> str:
    from restore.operators.io import read_sidecar

    return read_sidecar(sidecar)["operator"]
