"""The restoration commands: ``restore inpaint | deblur | sr | denoise | colorize | run``.

Each is a thin front door over :mod:`restore.pipeline`: it builds the operator from its
options, reads the :class:`~restore.measurement.Measurement` (``run --from``: a degrade
sidecar), restores with :func:`restore.pipeline.run` and writes with
:func:`restore.pipeline.write_outputs`, atomically and all or nothing
(:func:`restore.files.all_or_nothing`):

* ``OUT`` (default ``<image stem>_restored`` in the current folder, in the input's format,
  bit depth and channels; JPEG inputs give PNG), the posterior mean of ``--samples``;
* with ``--samples N > 1``: ``OUT.sample-K`` for each sample, ``OUT.std.npy`` (the exact
  per-pixel standard deviation) and ``OUT.std.png`` (its channel mean, coloured, with a
  colour bar);
* ``OUT.json``, the run record (docs/RUN_RECORD.md: versions, device, dtype, prior spec and
  weights SHA-256, input with SHA-256, operator with parameters and its tensors saved beside
  as ``OUT.NAME.npy``, strategy with hyperparameters, steps, NFE, seeds, wall time).

User mistakes end with one line on stderr and exit status 2 (:func:`user_errors`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence

import typer

from restore.cli.app import OVERWRITE, app, fail, file_params, prior_files, seed_option
from restore.cli.fast_options import CHANNELS_LAST, COMPILE, DTYPE, PRECISION, THREADS, fast_path
from restore.cli.operator_commands import PARAM_HELP, check_image_file, check_method_params, parse_params

from restore.cropping import AUTO_PIXELS, PADDING  # noqa: E402  (facts only: no torch)
from restore.strategies.catalog import (  # noqa: E402  (facts only: no torch)
    CONDITIONAL_DEFAULTS, DEFAULTS, operator_kind)

def _default(kind: str, quality: str, target: str = "fidelity") -> str:
    """The default run of operator kind ``kind`` (``conditional``: of a conditional prior), in words."""
    choice = (CONDITIONAL_DEFAULTS if kind == "conditional" else DEFAULTS[kind])[target][quality]
    params = f" ({', '.join(f'{k}={v}' for k, v in choice.params)})" if choice.params else ""
    steps = f" at {choice.steps} steps{choice.mean_phrase}" if choice.steps > 1 else " (1 NFE)"
    return f"{choice.method}{params}{steps}"


DEFAULT_HELP = (
    "Strategy (see `restore list`). Default (restore.strategies.catalog.default_run, chosen on the natural-image "
    "benchmark with the embedded prior, fast on a CPU; --target fidelity): denoise "
    f"{_default('denoise', 'fast')}, the posterior mean; inpaint {_default('inpaint', 'fast')} (with --noise "
    f"{_default('inpaint-noisy', 'fast')}); sr "
    f"{_default('sr', 'fast')}; circular deblur {_default('deblur', 'fast')}; colorize {_default('svd', 'fast')}; "
    f"other operators {_default('other', 'fast')}; a conditional prior (default-sr3x4) "
    f"{_default('conditional', 'fast')}."
)
QUALITY_HELP = (
    "fast (default) or high, the budget within the target: high takes 5x the steps where the benchmark found "
    "that this helps (" + "; ".join(
        f"--target {target} {kind}: {_default(kind, 'high', target)}" for target in ("fidelity", "perceptual")
        for kind in ("inpaint", "inpaint-noisy", "sr", "deblur", "denoise")
        if DEFAULTS[kind][target]["high"] != DEFAULTS[kind][target]["fast"])
    + f") and on operators not measured on images (other operators: {_default('other', 'high')}); elsewhere "
    "high is fast (docs/STRATEGIES.md). It chooses among the default runs: with --method it changes nothing "
    "(a warning says so; give --steps)."
)
PRIOR = typer.Option("default", "--prior", help="Prior spec: default (the embedded natural-image prior), "
                     "default-sr3x4 (the embedded x4 SR network for --noise 0.025; its default method: conditional), "
                     "unet:DIR, adm:PATH[:PRESET], diffusers:DIR, gaussian:SHAPE, gmm:D. A grey image with a colour "
                     "prior is restored in 3 channels and averaged back (operators acting on each channel alike).")
METHOD = typer.Option(None, "--method", help=DEFAULT_HELP)
QUALITY = typer.Option("fast", "--quality", help=QUALITY_HELP)
TARGET = typer.Option("fidelity", "--target", help="fidelity (default): the best PSNR / SSIM, a posterior-mean "
                      "estimate (an estimator, or the mean of --samples); perceptual: the best LPIPS, one posterior "
                      "sample (the first of --samples), which an estimator (tweedie, dpir) refuses. Chooses the "
                      "default --method (docs/STRATEGIES.md); the run record keeps it.")
STEPS = typer.Option(None, "--steps", min=1, help="Noise levels (default: the method's default, see --method).")
SEED = seed_option(None, help="Seed (default random, recorded in the sidecar). Same seed, same machine: "
                    "byte-identical images.")
DEVICE = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda, cuda:N.")
OUTPUT = typer.Option(None, "-o", "--output", help="Output image (.png, .tif, .jpg; .npy for .npy inputs). "
                      "Default: <image stem>_restored in the input's format (JPEG inputs: .png). Neither it nor its "
                      "side files (OUT.json, OUT.sample-K, OUT.std.*, OUT.NAME.npy) may be an input; existing ones "
                      "are replaced only with --overwrite.")
PARAM = typer.Option(None, "--param", help="Strategy hyperparameter KEY=VALUE (repeatable; e.g. eta=0.5, zeta=0.3; "
                     "every strategy takes symmetry=, every sampler warm_start= and t0=: docs/STRATEGIES.md).")
NOISE = typer.Option(None, "--noise", min=0.0, help="Gaussian noise sigma of the measurement on [0, 1] (default 0).")
SAMPLES = typer.Option(None, "--samples", min=1, help="Posterior samples in one batch (default: the default "
                       "method's, else 1): writes the estimate of --target (their mean, or the first), each sample "
                       "(OUT.sample-K) and the per-pixel standard deviation (OUT.std.npy, OUT.std.png with a "
                       "colour bar): the samples' spread, not a calibrated uncertainty (warm starts vary little). "
                       "An estimator of the posterior mean (tweedie, dpir) is deterministic and takes 1.")
ANTITHETIC = typer.Option(None, "--antithetic/--independent",
                          help="Draw the samples in antithetic pairs (sample 2j+1 the negation of sample 2j's noise: "
                          "a better mean for the same cost) or independently (default: as the default run draws them, "
                          "independently with --method).")
PREVIEW = typer.Option(None, "--preview",
                       help="Folder to write the denoised estimate into every --preview-every steps.")
PREVIEW_EVERY = typer.Option(5, "--preview-every", min=1, help="Steps between previews.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar and no messages (errors still go to stderr).")
JSON = typer.Option(False, "--json", help="Print the sidecar as JSON on stdout (implies no progress bar).")

KERNEL_HELP = ("gaussian[:STD[:SIZE]] (std 3, size 2 ceil(3 std) + 1 by default), motion[:SEED[:SIZE]] (size 61), "
               "or a kernel file (.npy, or a greyscale image), normalized to sum 1.")
MASK_HELP = ("Mask where WHITE (or 1, in a .npy mask) marks the region to fill (diffusers / IOPaint / LaMa convention; "
             "the Python API reads masks the same way); black / 0 = known, no other values. "
             "Example: restore inpaint photo.png --mask holes.png -o filled.png")


def shared(option: Any) -> Any:
    """A :class:`CommandOptions` field declared on the command line by ``option``."""
    return dataclasses.field(metadata={"option": option})


@dataclasses.dataclass(frozen=True)
class CommandOptions:
    """The options every restoration command takes, in one object: :func:`restoration_command`
    adds them to each command's own (image, operator, ``--noise``) and hands them over as this.
    Each field carries its command-line declaration (:func:`shared`), in the order ``--help``
    lists them."""
    prior: str = shared(PRIOR)
    method: Optional[str] = shared(METHOD)
    quality: str = shared(QUALITY)
    target: str = shared(TARGET)
    steps: Optional[int] = shared(STEPS)
    seed: Optional[int] = shared(SEED)
    device: str = shared(DEVICE)
    output: Optional[Path] = shared(OUTPUT)
    param: Optional[List[str]] = shared(PARAM)
    samples: Optional[int] = shared(SAMPLES)
    antithetic: Optional[bool] = shared(ANTITHETIC)
    preview: Optional[Path] = shared(PREVIEW)
    preview_every: int = shared(PREVIEW_EVERY)
    quiet: bool = shared(QUIET)
    as_json: bool = shared(JSON)
    overwrite: bool = shared(OVERWRITE)
    precision: str = shared(PRECISION)
    channels_last: Optional[bool] = shared(CHANNELS_LAST)
    compile_network: bool = shared(COMPILE)
    threads: Optional[int] = shared(THREADS)
    dtype: Optional[str] = shared(DTYPE)


#: Each :class:`CommandOptions` field's command-line declaration, by field name.
SHARED_OPTIONS = {field.name: field.metadata["option"] for field in dataclasses.fields(CommandOptions)}


def restoration_command(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``body(options, **own)`` as the command ``name``: typer sees the body's own
    parameters, then those of :data:`SHARED_OPTIONS`; the body gets the latter as one
    :class:`CommandOptions`.  One declaration of the shared options for every command."""
    types = typing.get_type_hints(CommandOptions)

    def register(body: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(body, eval_str=True)
        _, *own = signature.parameters.values()  # the first is ``options``
        common = [inspect.Parameter(field, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=types[field])
                  for field, option in SHARED_OPTIONS.items()]

        def command(**values: Any) -> None:
            body(CommandOptions(**{field: values.pop(field) for field in SHARED_OPTIONS}), **values)

        command.__signature__ = signature.replace(parameters=[*own, *common])  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in [*own, *common]}
        command.__name__, command.__doc__ = body.__name__, body.__doc__
        return app.command(name)(command)

    return register


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user's input causes into one line on stderr and exit status 2."""
    from restore.files import OutputError
    from restore.plugins import UnknownItemError
    from restore.strategies.base import DivergenceError

    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except DivergenceError as exc:
        raise fail(str(exc))
    except (UnknownItemError, ValueError, FileNotFoundError, OutputError) as exc:
        raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise fail(f"{where}{exc.strerror or exc}; check the path and its permissions")


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator's failure."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def out_of_memory_message(shape: Any, samples: int, device: Any) -> str:
    """What did not fit and what would: the same aspect ratio at half the pixels per run."""
    h, w = shape[-2:]
    samples = samples or 1
    batch = shape[0] * samples
    half = 1 / math.sqrt(2)
    elsewhere = "" if str(device) == "cpu" else ", or use --device cpu"
    return (f"out of memory on {device}: a batch of {batch} image(s) of {h}x{w} does not fit; give fewer --samples "
            f"(now {samples}) or an image of about {int(h * half)}x{int(w * half)} pixels (half as many){elsewhere}")


#: Memory a run needs per result pixel and sample, at the least: the network's first feature
#: maps (32 float32 channels) twice.  Results that cannot fit are refused before any work.
BYTES_PER_PIXEL = 256


def check_memory(shape: Any, samples: int, device: Any) -> None:
    """Refuse a result (C, H, W) whose run cannot fit in the memory of ``device``."""
    import os

    import torch

    h, w = shape[-2:]
    need = BYTES_PER_PIXEL * h * w * (samples or 1)
    if device.type == "cuda":
        if not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count():
            return  # refused with its own message later
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise fail(f"the result would be {h}x{w} pixels ({samples or 1} sample(s)): too large for the "
                   f"{have / 2**30:.0f} GiB of memory of {device} (a run needs about {need / 2**30:.0f} GiB); "
                   "give a smaller image or factor")


def default_output(measurement: Path) -> Path:
    """``<stem>_restored`` in the measurement's format (JPEG: PNG, never re-compressed)."""
    suffix = measurement.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        suffix = ".png"
    return Path(f"{measurement.stem}_restored{suffix}")


def run_restoration(measurement: Any, command: str, options: CommandOptions, *, inputs: Sequence[Any] = (),
                    crop_to_mask: Optional[bool] = None) -> None:
    """What every restoration command does once its measurement is read: every option checked,
    then (the options valid) the estimated noise level printed where it was estimated, one run of
    :func:`restore.pipeline.run`, then :func:`restore.pipeline.write_outputs` (module docstring).
    ``inputs``: the command's own input files, (option, path), which no output may replace."""
    import torch

    from restore import pipeline
    from restore.accel import prepare
    from restore.api import load, pick_device, pick_dtype
    from restore.cli.progress import Preview, ProgressBar
    from restore.files import check_outputs, check_target, protect
    from restore.plugins import default_registry

    fast = fast_path(options.precision, options.channels_last, options.compile_network, options.threads,
                     options.dtype)
    if options.quality not in ("fast", "high"):
        raise fail(f"--quality must be fast or high, got {options.quality!r}")
    if options.target not in ("fidelity", "perceptual"):
        raise fail(f"--target must be fidelity or perceptual, got {options.target!r}")
    params = parse_params(options.param)
    output = options.output or default_output(measurement.path)
    suffix = output.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy"):
        raise fail(f"-o {output}: write the result as .png, .tif, .jpg or .npy, not {suffix or 'no suffix'!r}")
    check_target(output)
    registry = default_registry()
    torch_device, torch_dtype = pick_device(options.device), pick_dtype(None)  # the sampler state: float32
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise fail("--device cuda: CUDA is not available on this machine; use --device cpu")
    # the prior before the defaults that depend on it (a conditional network's run: catalog.default_run)
    shape = measurement.image_shape  # a mask's default run depends on the depth of its holes at this size
    loaded_prior, _ = prepare(options.prior, lambda spec: load(spec, registry, torch_device, torch_dtype), fast,
                              torch_device, operator_kind(measurement.operator, shape))
    samples = options.samples or pipeline.default_samples(measurement.operator, options.method, options.quality,
                                                          options.target, loaded_prior, shape)
    check_method_params(options.method, params, measurement.operator, options.quality, options.target,
                        prior=loaded_prior, shape=shape)
    planned, sources = output_plan(output, samples, measurement, [*inputs, *prior_files(options.prior)])
    check_outputs(planned, sources, overwrite=options.overwrite)
    check_previews(options.preview, options.overwrite)
    listeners: list[Any] = []
    if not (options.quiet or options.as_json) and sys.stderr.isatty():
        listeners.append(ProgressBar())
    viewer = None
    if options.preview is not None:
        def to_image(x0: Any) -> Any:
            return loaded_prior.to_image(loaded_prior.decode(x0))

        viewer = Preview(options.preview, options.preview_every, to_image)
        listeners.append(viewer)
    if measurement.sigma_estimated is not None and not options.as_json:  # every option checked first
        typer.echo(f"estimated noise sigma: {measurement.sigma_estimated:.4f} (on [0, 1]; pass --sigma to override)",
                   err=options.quiet)
    try:
        done = pipeline.run(measurement, loaded_prior, prior_spec=options.prior, method=options.method,
                            steps=options.steps, seed=options.seed, samples=samples, device=torch_device,
                            dtype=torch_dtype, params=params, quality=options.quality, listeners=listeners,
                            registry=registry, crop_to_mask=crop_to_mask, target=options.target,
                            antithetic=options.antithetic)
    except BaseException as exc:
        for path in viewer.written if viewer else []:
            path.unlink(missing_ok=True)
        if is_out_of_memory(exc):
            raise fail(out_of_memory_message(measurement.y.shape, samples, torch_device))
        raise
    finally:
        for listener in listeners:
            getattr(listener, "close", lambda: None)()
    if not (options.quiet or options.as_json):
        for note in done.warnings:
            typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)
    extra = {"previews": [str(p) for p in viewer.written]} if viewer is not None else {}
    with protect(planned, sources, overwrite=options.overwrite):
        record = pipeline.write_outputs(output, done, 0, [measurement], extra=extra,
                                        invocation={"interface": "cli", "command": command, "argv": sys.argv[1:]})
    if options.as_json:
        typer.echo(json.dumps(record, indent=2))
    elif not options.quiet:
        typer.echo(f"wrote {output} and {output.with_suffix('.json')} ({record['strategy']['name']}, "
                   f"{record['steps']} steps, {record['nfe']} NFE, seed {record['seed']}, {record['seconds']:.1f} s)")


def output_plan(output: Path, samples: int, measurement: Any, inputs: Sequence[Any]) -> tuple[list, list]:
    """The files a run writes (module docstring) and the files it reads: the image, the
    ``--from`` sidecar with the tensor files it names, and ``inputs`` (mask, kernel, prior)."""
    from restore.pipeline import sibling

    planned = [("-o", output), ("sidecar of -o", output.with_suffix(".json"))]
    if samples > 1:
        planned += [(f"sample {k} of -o", sibling(output, f"sample-{k}")) for k in range(samples)]
        planned += [("std of -o", sibling(output, "std", ".npy")), ("std figure of -o", sibling(output, "std", ".png"))]
    planned += [(f"tensor {name} of -o", sibling(output, name, ".npy")) for name in measurement.operator.tensors()]
    sources = [("image", measurement.path), ("--from", measurement.sidecar), *inputs]
    if measurement.sidecar is not None:
        recorded = json.loads(Path(measurement.sidecar).read_text()).get("tensors", {})
        sources += [(f"tensor {name} of --from", measurement.sidecar.parent / file) for name, file in recorded.items()]
    return planned, sources


def check_previews(folder: Optional[Path], overwrite: bool) -> None:
    """Refuse a ``--preview`` folder that holds an earlier run's previews, unless ``overwrite``."""
    from restore.files import OutputError

    earlier = sorted(folder.glob("step-*.png")) if folder is not None and folder.is_dir() else []
    if earlier and not overwrite:
        raise OutputError(f"{earlier[0]} (--preview) exists: pass --overwrite to replace the previews, or choose "
                          "another folder")


def read_file(image: Path, operator: Any, noise: Any = None) -> Any:
    """The measurement ``image`` under ``operator`` (:func:`restore.measurement.read_file`)."""
    from restore import measurement

    return measurement.read_file(image, operator, noise=noise)


def make_operator(name: str, params: dict[str, Any], noise: Optional[float]) -> Any:
    """Operator ``name`` from parameters as users give them (:func:`restore.api.user_options`:
    masks 1 / white = fill, the kernel grammar), with Gaussian noise ``noise``; clear exits."""
    from restore.api import user_options
    from restore.cli.operator_commands import build_operator, check_image_files, check_keywords, load_operator_factory

    if noise is not None:
        params = {**params, "noise": {"kind": "gaussian", "sigma": noise}}
    _, factory = load_operator_factory(name)
    check_keywords(name, factory, params, {})
    check_image_files(params)
    return build_operator(name, factory, user_options(factory, params))


@restoration_command("inpaint")
def inpaint(
    options: CommandOptions,
    image: Path = typer.Argument(..., help="Image with holes to fill (.png, .jpg, .tif, .npy)."),
    mask: Path = typer.Option(..., "--mask", help=MASK_HELP),
    mask_white_known: bool = typer.Option(False, "--mask-white-known",
                                          help="Read --mask the other way: white = known."),
    crop_to_mask: Optional[bool] = typer.Option(
        None, "--crop-to-mask/--no-crop-to-mask", help=f"Restore only a box around each hole ({PADDING} pixels of "
        f"context) and paste it back, known pixels untouched; default: on above {AUTO_PIXELS:,} pixels."),
    noise: Optional[float] = NOISE,
) -> None:
    """Fill the region a mask marks: white = fill.

    Example: restore inpaint photo.png --mask holes.png -o filled.png
    (a mask whose white pixels are the known ones: add --mask-white-known)."""
    with user_errors():
        check_image_file(str(mask), "--mask")
        operator = make_operator("inpaint", {"mask": str(mask), "invert": mask_white_known}, noise)
        run_restoration(read_file(image, operator), "inpaint", options, inputs=[("--mask", mask)],
                        crop_to_mask=crop_to_mask)


@restoration_command("deblur")
def deblur(
    options: CommandOptions,
    image: Path = typer.Argument(..., help="Blurred image."),
    kernel: str = typer.Option(..., "--kernel", help=KERNEL_HELP),
    boundary: str = typer.Option("circular", "--boundary",
                                 help="circular (has an SVD: fast methods), reflect or valid."),
    noise: Optional[float] = NOISE,
) -> None:
    """Remove a known blur."""
    with user_errors():
        operator = make_operator("blur", {"kernel": kernel, "boundary": boundary}, noise)
        run_restoration(read_file(image, operator), "deblur", options,
                        inputs=file_params({"kernel": kernel}, origin={"kernel": "--kernel"}))


@restoration_command("sr")
def sr(
    options: CommandOptions,
    image: Path = typer.Argument(..., help="Low-resolution image."),
    scale: int = typer.Option(..., "--scale", min=1,
                              help="Integer upscaling factor (the result is SCALE times larger)."),
    kernel: str = typer.Option("bicubic", "--downsampling", help="How the image was made small: bicubic or box."),
    noise: Optional[float] = NOISE,
) -> None:
    """Super-resolve an image by an integer factor."""
    with user_errors():
        from restore.api import pick_device
        from restore.operators.io import load_image

        small = load_image(image).image.shape
        check_memory((small[1], small[2] * scale, small[3] * scale), options.samples, pick_device(options.device))
        operator = make_operator("sr", {"scale": scale, "method": kernel}, noise)
        run_restoration(read_file(image, operator), "sr", options)


@restoration_command("denoise")
def denoise(
    options: CommandOptions,
    image: Path = typer.Argument(..., help="Noisy image."),
    sigma: Optional[float] = typer.Option(None, "--sigma", min=0.0, help="Gaussian noise sigma on [0, 1]. Default: "
                                          "estimated (scikit-image's wavelet estimator) and printed."),
    noise: Optional[float] = typer.Option(None, "--noise", min=0.0, help="Same as --sigma."),
) -> None:
    """Remove Gaussian noise (its level given, or estimated from the image)."""
    with user_errors():
        if sigma is not None and noise is not None and sigma != noise:
            raise fail(f"--sigma {sigma} and --noise {noise} disagree; give one")
        level = sigma if sigma is not None else noise
        measurement = read_file(image, make_operator("denoise", {}, level), noise="estimate" if level is None else None)
        run_restoration(measurement, "denoise", options)


@restoration_command("colorize")
def colorize(
    options: CommandOptions,
    image: Path = typer.Argument(..., help="Grey image (1 channel, or 3 equal channels)."),
    weights: str = typer.Option("mean", "--weights", help="How the grey image was made: mean or luma (BT.601)."),
    noise: Optional[float] = NOISE,
) -> None:
    """Colour a grey image (the result has 3 channels)."""
    with user_errors():
        operator = make_operator("colorize", {"weights": weights}, noise)
        run_restoration(read_file(image, operator), "colorize", options)


@restoration_command("run")
def run(
    options: CommandOptions,
    image: Optional[Path] = typer.Argument(None, help="Degraded image (omit with --from)."),
    op: Optional[str] = typer.Option(None, "--op", help="Operator name (see `restore list`), any plugin's."),
    op_param: Optional[List[str]] = typer.Option(None, "--op-param", help="Operator parameter. " + PARAM_HELP),
    source: Optional[Path] = typer.Option(None, "--from", help="A measurement sidecar y.json made by "
                                          "`restore degrade`: restores y with the exact operator it records."),
    noise: Optional[float] = NOISE,
) -> None:
    """Restore with any operator: IMG --op NAME --op-param KEY=VALUE, or --from y.json."""
    from restore.measurement import read_sidecar

    with user_errors():
        if (source is None) == (op is None):
            raise fail("give either IMG --op NAME or --from y.json")
        if source is not None:
            if image is not None or op_param or noise is not None:
                raise fail("--from y.json brings its image, operator and noise; drop IMG, --op-param and --noise")
            measurement = read_sidecar(source)
        else:
            if image is None:
                raise fail("give the image to restore, or --from y.json")
            measurement = read_file(image, make_operator(op, parse_params(op_param), noise))
        run_restoration(measurement, "run", options, inputs=file_params(parse_params(op_param), "--op-param"))
