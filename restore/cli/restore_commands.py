"""The restoration commands: ``restore inpaint | deblur | sr | denoise | colorize | run``.

Each reads an already-degraded image, builds the operator, restores through
:func:`restore.api.restore_tensor` (the engine's ``solve``) and writes, atomically and
all or nothing (:func:`restore.files.all_or_nothing`):

* ``OUT`` (default ``<image stem>_restored`` in the current folder, in the input's format,
  bit depth and channels; JPEG inputs give PNG), the posterior mean of ``--samples``;
* with ``--samples N > 1``: ``OUT.sample-K`` for each sample, ``OUT.std.npy`` (the exact
  per-pixel standard deviation) and ``OUT.std.png`` (its channel mean, coloured, with a
  colour bar);
* ``OUT.json``, the provenance sidecar (versions, device, dtype, prior spec and weights
  SHA-256, operator with parameters and its tensors saved beside as ``OUT.NAME.npy``,
  strategy with hyperparameters, steps, NFE, seed, wall time, inputs with SHA-256).

User mistakes end with one line on stderr and exit status 2 (:func:`user_errors`).
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer

from restore.cli.app import app, fail
from restore.cli.operator_commands import PARAM_HELP, check_image_file, parse_params

from restore.cropping import AUTO_PIXELS, PADDING  # noqa: E402  (facts only: no torch)
from restore.strategies.catalog import DEFAULTS  # noqa: E402  (facts only: no torch)

def _default(kind: str, quality: str) -> str:
    name, steps = DEFAULTS[kind][quality]
    return f"{name}" + (f" at {steps} steps" if steps > 1 else " (1 NFE)")


DEFAULT_HELP = (
    "Strategy (see `restore list`). Default (restore.strategies.catalog.default_method, chosen on the natural-image "
    f"benchmark with the embedded prior, fast on a CPU, no backward pass): denoise {_default('denoise', 'fast')}, "
    f"the posterior mean; inpaint {_default('mask', 'fast')}; sr, circular deblur, colorize "
    f"{_default('svd', 'fast')}; other operators {_default('other', 'fast')}."
)
QUALITY_HELP = (
    f"fast (default) or high: inpaint {_default('mask', 'high')}, sr / deblur / colorize {_default('svd', 'high')}, "
    f"other operators {_default('other', 'high')}; about {DEFAULTS['svd']['high'][1] // DEFAULTS['svd']['fast'][1]}x "
    f"the network evaluations of fast ({DEFAULTS['other']['high'][1] // DEFAULTS['other']['fast'][1]}x for DPS, "
    "plus a backward pass per step)."
)
PRIOR = typer.Option("default", "--prior", help="Prior spec: default (the embedded natural-image prior), "
                     "unet:DIR, adm:PATH[:PRESET], diffusers:DIR, gaussian:SHAPE, gmm:D. A grey image with a colour "
                     "prior is restored in 3 channels and averaged back (operators acting on each channel alike).")
METHOD = typer.Option(None, "--method", help=DEFAULT_HELP)
QUALITY = typer.Option("fast", "--quality", help=QUALITY_HELP)
STEPS = typer.Option(None, "--steps", min=1, help="Noise levels (default: the method's default, see --method).")
SEED = typer.Option(None, "--seed", help="Seed (default random, recorded in the sidecar). Same seed, same machine: "
                    "byte-identical images.")
DEVICE = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda, cuda:N.")
DTYPE = typer.Option("float32", "--dtype", help="float32, float64, float16 or bfloat16.")
OUTPUT = typer.Option(None, "-o", "--output", help="Output image (.png, .tif, .jpg; .npy for .npy inputs). "
                      "Default: <image stem>_restored in the input's format (JPEG inputs: .png).")
PARAM = typer.Option(None, "--param", help="Strategy hyperparameter KEY=VALUE (repeatable; e.g. eta=0.5, zeta=0.3).")
NOISE = typer.Option(None, "--noise", min=0.0, help="Gaussian noise sigma of the measurement on [0, 1] (default 0).")
SAMPLES = typer.Option(1, "--samples", min=1, help="Posterior samples in one batch: writes their mean, each sample "
                       "(OUT.sample-K) and the per-pixel standard deviation (OUT.std.npy, OUT.std.png with a colour bar).")
PREVIEW = typer.Option(None, "--preview", help="Folder to write the denoised estimate into every --preview-every steps.")
PREVIEW_EVERY = typer.Option(5, "--preview-every", min=1, help="Steps between previews.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar and no messages (errors still go to stderr).")
JSON = typer.Option(False, "--json", help="Print the sidecar as JSON on stdout (implies no progress bar).")

MASK_HELP = ("Mask image where WHITE marks the region to fill (diffusers / LaMa convention), or a .npy mask "
             "(1 = known). Example: restore inpaint photo.png --mask holes.png -o filled.png")


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
        raise fail(f"{exc.filename or ''}: {exc.strerror or exc}; check the path and its permissions")


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator's failure."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def out_of_memory_message(shape: Any, samples: int, device: Any) -> str:
    """What did not fit and what would: the same aspect ratio at half the pixels per run."""
    h, w = shape[-2:]
    batch = shape[0] * samples
    half = 1 / math.sqrt(2)
    return (f"out of memory on {device}: a batch of {batch} image(s) of {h}x{w} does not fit; give fewer --samples "
            f"(now {samples}) or an image of about {int(h * half)}x{int(w * half)} pixels (half as many), "
            "or use --device cpu")


def default_output(image: Path) -> Path:
    suffix = image.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        suffix = ".png"
    return Path(f"{image.stem}_restored{suffix}")


def sibling(output: Path, tag: str, suffix: Optional[str] = None) -> Path:
    """``out.png`` -> ``out.<tag><suffix or .png>``."""
    return output.with_name(f"{output.stem}.{tag}{suffix or output.suffix}")


def std_figure(std: Any) -> Any:
    """The channel mean of a (C, H, W) standard-deviation map coloured (viridis anchor
    colours, linear between them, 0 at the bottom of the scale and the map's maximum at the
    top) with a labelled colour bar on the right: an RGB uint8 array (H', W', 3)."""
    import numpy as np
    from PIL import Image, ImageDraw

    anchors = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64)
    values = std.double().mean(dim=0).numpy()
    top = float(values.max())
    scale = values / top if top > 0 else values

    def colour(v: Any) -> Any:
        position = np.clip(v, 0, 1) * (len(anchors) - 1)
        low = np.minimum(position.astype(int), len(anchors) - 2)
        t = (position - low)[..., None]
        return (anchors[low] * (1 - t) + anchors[low + 1] * t).round().astype(np.uint8)

    h, w = values.shape
    bar_h = max(h, 64)
    canvas = np.full((bar_h, w + 70, 3), 255, np.uint8)
    canvas[:h, :w] = colour(scale)
    ramp = np.linspace(1, 0, bar_h)[:, None].repeat(12, axis=1)
    canvas[:, w + 6:w + 18] = colour(ramp)
    figure = Image.fromarray(canvas)
    draw = ImageDraw.Draw(figure)
    draw.text((w + 22, 0), f"{top:.3g}", fill=(0, 0, 0))
    draw.text((w + 22, bar_h - 11), "0", fill=(0, 0, 0))
    draw.text((w + 22, bar_h // 2 - 5), "std", fill=(0, 0, 0))
    return np.asarray(figure)


class Inputs:
    """The image a command restores: pixels, bit depth, alpha, and where it came from."""

    def __init__(self, path: Optional[Path], image: Any, bits: int, alpha: Any = None) -> None:
        self.path, self.image, self.bits, self.alpha = path, image, bits, alpha

    @classmethod
    def read(cls, path: Path) -> "Inputs":
        from restore.operators.io import load_image

        loaded = load_image(path)
        return cls(path, loaded.image, loaded.bits, loaded.alpha)


def run_restoration(
    *, inputs: Inputs, operator: Any, op_name: str, prior: str, method: Optional[str], quality: str,
    steps: Optional[int], seed: Optional[int], device: str, dtype: str, output: Optional[Path],
    param: Optional[List[str]], samples: int, preview: Optional[Path], preview_every: int, quiet: bool,
    as_json: bool, extra: Optional[dict[str, Any]] = None, crop_to_mask: Optional[bool] = None,
) -> None:
    """What every restoration command does once its operator is built (module docstring)."""
    import torch

    from restore.api import load, pick_device, pick_dtype, restore_tensor, with_quantization_noise
    from restore.cli.progress import Preview, ProgressBar
    from restore.cropping import restore_around_mask
    from restore.files import check_target
    from restore.plugins import default_registry

    if quality not in ("fast", "high"):
        raise fail(f"--quality must be fast or high, got {quality!r}")
    params = parse_params(param)
    if output is None:
        if inputs.path is None:
            raise fail("give -o OUTPUT")
        output = default_output(inputs.path)
    suffix = output.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy"):
        raise fail(f"-o {output}: write the result as .png, .tif, .jpg or .npy, not {suffix or 'no suffix'!r}")
    bits = inputs.bits if suffix in (".tif", ".tiff") else min(inputs.bits, 8 if suffix in (".jpg", ".jpeg") else 16)
    if inputs.bits == 32 and suffix == ".png":
        raise fail(f"-o {output}: the input holds float32 samples, which PNG cannot; write .tif or .npy")
    check_target(output)
    if inputs.path is not None and inputs.path.resolve() in (output.resolve(), output.with_suffix(".json").resolve()):
        raise fail(f"-o {output} would overwrite the input {inputs.path}; choose another output name")
    registry = default_registry()
    torch_device, torch_dtype = pick_device(device), pick_dtype(dtype)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise fail("--device cuda: CUDA is not available on this machine; use --device cpu")
    loaded_prior = load(prior, registry, torch_device, torch_dtype)
    operator, quantization = with_quantization_noise(operator, inputs.bits)
    if quantization:
        extra = {**(extra or {}), "quantization_sigma": quantization}
    listeners: list[Any] = []
    if not (quiet or as_json) and sys.stderr.isatty():
        listeners.append(ProgressBar())
    viewer = None
    if preview is not None:
        def to_image(x0: Any) -> Any:
            return loaded_prior.to_image(loaded_prior.decode(x0))

        viewer = Preview(preview, preview_every, to_image)
        listeners.append(viewer)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            def run(y: Any, run_op: Any, run_seed: Optional[int]) -> dict[str, Any]:
                return restore_tensor(y, run_op, loaded_prior, method=method, steps=steps, seed=run_seed,
                                      samples=samples, device=torch_device, dtype=torch_dtype, params=params,
                                      quality=quality, listeners=listeners, registry=registry, prior_spec=prior)

            out = restore_around_mask(inputs.image, operator, run, seed, crop_to_mask)
    except BaseException as exc:
        for path in viewer.written if viewer else []:
            path.unlink(missing_ok=True)
        if is_out_of_memory(exc):
            raise fail(out_of_memory_message(inputs.image.shape, samples, torch_device))
        raise
    finally:
        for listener in listeners:
            getattr(listener, "close", lambda: None)()
    notes = list(dict.fromkeys(str(w.message).splitlines()[0] for w in caught))
    if not (quiet or as_json):
        for note in notes:
            typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)
    sidecar: dict[str, Any] = {"format": "restore-result", "version": 1, "command": op_name,
                               "argv": sys.argv[1:], **out["provenance"], "warnings": notes, **(extra or {})}
    if viewer is not None:
        sidecar["previews"] = [str(p) for p in viewer.written]
    write_outputs(output, out, inputs, operator, bits, sidecar)
    if as_json:
        typer.echo(json.dumps(sidecar, indent=2))
    elif not quiet:
        p = out["provenance"]
        typer.echo(f"wrote {output} and {output.with_suffix('.json')} ({p['strategy']['name']}, {p['steps']} steps, "
                   f"{p['nfe']} NFE, seed {p['seed']}, {p['seconds']:.1f} s)")


def write_outputs(output: Path, out: dict[str, Any], inputs: Inputs, operator: Any, bits: int,
                  sidecar: dict[str, Any]) -> None:
    """Write the mean, the samples and std maps (more than one sample), the operator's
    tensors and the sidecar (filled in with the inputs and outputs), all or nothing."""
    import torch

    from restore.files import all_or_nothing
    from restore.operators.io import sha256_file, write_array, write_image, write_json

    mean, draws, std = out["mean"], out["samples"], out["std"]
    alpha = inputs.alpha
    if alpha is not None and alpha.shape[-2:] != mean.shape[-2:]:  # super-resolution of an opaque image
        alpha = torch.ones((1, 1, *mean.shape[-2:]))

    def write(path: Path, x: Any) -> str:
        if path.suffix.lower() == ".npy":
            return write_array(path, x).name
        return write_image(path, x, bits=bits, alpha=alpha).name

    with all_or_nothing():
        files: dict[str, Any] = {"image": write(output, mean)}
        if len(draws) > 1:
            files["samples"] = [write(sibling(output, f"sample-{k}"), draw) for k, draw in enumerate(draws)]
            files["std"] = write_array(sibling(output, "std", ".npy"), std[0]).name
            figure = torch.from_numpy(std_figure(std[0]).copy()).permute(2, 0, 1)[None].float() / 255
            files["std_figure"] = write_image(sibling(output, "std", ".png"), figure).name
        sidecar["operator"]["tensors"] = {name: write_array(sibling(output, name, ".npy"), t).name
                                          for name, t in operator.tensors().items()}
        sidecar["input"] = None if inputs.path is None else {"path": str(inputs.path),
                                                             "sha256": sha256_file(inputs.path), "bits": inputs.bits}
        sidecar["outputs"] = files
        write_json(output.with_suffix(".json"), sidecar)


def check_mask(operator: Any, image: Any) -> None:
    """Refuse a user mask of another size, one that marks nothing to fill, or one that fills everything."""
    mask = getattr(operator, "user_mask", None)
    if mask is None:
        return
    h, w = image.shape[-2:]
    if tuple(mask.shape[-2:]) != (h, w):
        raise fail(f"the mask is {mask.shape[-2]}x{mask.shape[-1]} pixels but the image is {h}x{w}; "
                   "give a mask of the image's size")
    known = float(mask.mean())
    if known == 1:
        raise fail("the mask is empty: it marks no pixel to fill (white = fill), so there is nothing to restore; "
                   "pass --mask-white-known if white marks the known pixels")
    if known == 0:
        raise fail("the mask covers the whole image: no pixel is known, so this is not inpainting; "
                   "pass --mask-white-known if white marks the known pixels")


def make_operator(name: str, params: dict[str, Any], noise: Optional[float]) -> Any:
    from restore.cli.operator_commands import build_operator, check_keywords, load_operator_factory

    if noise is not None:
        params = {**params, "noise": {"kind": "gaussian", "sigma": noise}}
    _, factory = load_operator_factory(name)
    check_keywords(name, factory, params, {})
    return build_operator(name, factory, params)


def kernel_params(spec: str) -> dict[str, Any]:
    """``gaussian:SIGMA[:SIZE]``, ``motion:SEED[:SIZE]`` or a kernel file -> blur parameters.
    A Gaussian's support defaults to 2 ceil(3 sigma) + 1 pixels, a motion kernel's to 31."""
    kind, _, rest = spec.partition(":")
    if kind in ("gaussian", "motion") and rest:
        value, _, size = rest.partition(":")
        try:
            number = float(value) if kind == "gaussian" else int(value)
            side = int(size) if size else None
        except ValueError:
            raise fail(f"--kernel {spec!r}: expected gaussian:SIGMA[:SIZE] or motion:SEED[:SIZE] with numbers")
        if kind == "gaussian":
            if not (math.isfinite(number) and number > 0):
                raise fail(f"--kernel {spec!r}: the Gaussian's sigma must be a finite number > 0")
            return {"kernel": "gaussian", "std": number, "size": side or 2 * math.ceil(3 * number) + 1}
        return {"kernel": "motion", "seed": number, "size": side or 31}
    path = Path(spec)
    if not path.is_file():
        raise fail(f"--kernel {spec!r}: not gaussian:SIGMA, motion:SEED or an existing .npy / image file")
    check_image_file(spec, "--kernel")
    return {"kernel": str(path)}


@app.command("inpaint")
def inpaint(
    image: Path = typer.Argument(..., help="Image with holes to fill (.png, .jpg, .tif, .npy)."),
    mask: Path = typer.Option(..., "--mask", help=MASK_HELP),
    mask_white_known: bool = typer.Option(False, "--mask-white-known", help="Read --mask the other way: white = known."),
    crop_to_mask: Optional[bool] = typer.Option(
        None, "--crop-to-mask/--no-crop-to-mask", help=f"Restore only a box around each hole ({PADDING} pixels of "
        f"context) and paste it back, known pixels untouched; default: on above {AUTO_PIXELS:,} pixels."),
    prior: str = PRIOR, method: Optional[str] = METHOD, quality: str = QUALITY, steps: Optional[int] = STEPS,
    seed: Optional[int] = SEED, device: str = DEVICE, dtype: str = DTYPE, output: Optional[Path] = OUTPUT,
    param: Optional[List[str]] = PARAM, noise: Optional[float] = NOISE, samples: int = SAMPLES,
    preview: Optional[Path] = PREVIEW, preview_every: int = PREVIEW_EVERY, quiet: bool = QUIET, as_json: bool = JSON,
) -> None:
    """Fill the region a mask marks: white = fill.

    Example: restore inpaint photo.png --mask holes.png -o filled.png
    (a mask whose white pixels are the known ones: add --mask-white-known)."""
    with user_errors():
        inputs = Inputs.read(image)
        check_image_file(str(mask), "--mask")
        operator = make_operator("inpaint", {"mask": str(mask), "invert": mask_white_known}, noise)
        check_mask(operator, inputs.image)
        run_restoration(inputs=inputs, operator=operator, op_name="inpaint", crop_to_mask=crop_to_mask,
            prior=prior, method=method, quality=quality, steps=steps, seed=seed, device=device, dtype=dtype,
            output=output, param=param, samples=samples, preview=preview, preview_every=preview_every,
            quiet=quiet, as_json=as_json)


@app.command("deblur")
def deblur(
    image: Path = typer.Argument(..., help="Blurred image."),
    kernel: str = typer.Option(..., "--kernel", help="gaussian:SIGMA[:SIZE], motion:SEED[:SIZE], or a kernel file "
                               "(.npy, or a greyscale image), normalized to sum 1."),
    boundary: str = typer.Option("circular", "--boundary", help="circular (has an SVD: fast methods), reflect or valid."),
    prior: str = PRIOR, method: Optional[str] = METHOD, quality: str = QUALITY, steps: Optional[int] = STEPS,
    seed: Optional[int] = SEED, device: str = DEVICE, dtype: str = DTYPE, output: Optional[Path] = OUTPUT,
    param: Optional[List[str]] = PARAM, noise: Optional[float] = NOISE, samples: int = SAMPLES,
    preview: Optional[Path] = PREVIEW, preview_every: int = PREVIEW_EVERY, quiet: bool = QUIET, as_json: bool = JSON,
) -> None:
    """Remove a known blur."""
    with user_errors():
        inputs = Inputs.read(image)
        operator = make_operator("blur", {**kernel_params(kernel), "boundary": boundary}, noise)
        run_restoration(inputs=inputs, operator=operator, op_name="deblur",
            prior=prior, method=method, quality=quality, steps=steps, seed=seed, device=device, dtype=dtype,
            output=output, param=param, samples=samples, preview=preview, preview_every=preview_every,
            quiet=quiet, as_json=as_json)


@app.command("sr")
def sr(
    image: Path = typer.Argument(..., help="Low-resolution image."),
    scale: int = typer.Option(..., "--scale", min=1, help="Integer upscaling factor (the result is SCALE times larger)."),
    kernel: str = typer.Option("bicubic", "--downsampling", help="How the image was made small: bicubic or box."),
    prior: str = PRIOR, method: Optional[str] = METHOD, quality: str = QUALITY, steps: Optional[int] = STEPS,
    seed: Optional[int] = SEED, device: str = DEVICE, dtype: str = DTYPE, output: Optional[Path] = OUTPUT,
    param: Optional[List[str]] = PARAM, noise: Optional[float] = NOISE, samples: int = SAMPLES,
    preview: Optional[Path] = PREVIEW, preview_every: int = PREVIEW_EVERY, quiet: bool = QUIET, as_json: bool = JSON,
) -> None:
    """Super-resolve an image by an integer factor."""
    with user_errors():
        inputs = Inputs.read(image)
        if inputs.alpha is not None and not bool((inputs.alpha == 1).all()):
            raise fail(f"{image}: super-resolving an image with transparency is not supported; flatten it first")
        operator = make_operator("sr", {"scale": scale, "method": kernel}, noise)
        run_restoration(inputs=inputs, operator=operator, op_name="sr",
            prior=prior, method=method, quality=quality, steps=steps, seed=seed, device=device, dtype=dtype,
            output=output, param=param, samples=samples, preview=preview, preview_every=preview_every,
            quiet=quiet, as_json=as_json)


@app.command("denoise")
def denoise(
    image: Path = typer.Argument(..., help="Noisy image."),
    sigma: Optional[float] = typer.Option(None, "--sigma", min=0.0, help="Gaussian noise sigma on [0, 1]. Default: "
                                          "estimated (scikit-image's wavelet estimator) and printed."),
    prior: str = PRIOR, method: Optional[str] = METHOD, quality: str = QUALITY, steps: Optional[int] = STEPS,
    seed: Optional[int] = SEED, device: str = DEVICE, dtype: str = DTYPE, output: Optional[Path] = OUTPUT,
    param: Optional[List[str]] = PARAM, noise: Optional[float] = typer.Option(None, "--noise", min=0.0,
                                                                            help="Same as --sigma."),
    samples: int = SAMPLES, preview: Optional[Path] = PREVIEW, preview_every: int = PREVIEW_EVERY,
    quiet: bool = QUIET, as_json: bool = JSON,
) -> None:
    """Remove Gaussian noise (its level given, or estimated from the image)."""
    from restore.api import estimate_sigma

    with user_errors():
        if sigma is not None and noise is not None and sigma != noise:
            raise fail(f"--sigma {sigma} and --noise {noise} disagree; give one")
        inputs = Inputs.read(image)
        level = sigma if sigma is not None else noise
        extra = {}
        if level is None:
            level = estimate_sigma(inputs.image)
            extra = {"sigma_estimated": level}
            if not as_json:
                typer.echo(f"estimated noise sigma: {level:.4f} (on [0, 1]; pass --sigma to override)", err=quiet)
        operator = make_operator("denoise", {}, level)
        run_restoration(inputs=inputs, operator=operator, op_name="denoise", extra=extra,
            prior=prior, method=method, quality=quality, steps=steps, seed=seed, device=device, dtype=dtype,
            output=output, param=param, samples=samples, preview=preview, preview_every=preview_every,
            quiet=quiet, as_json=as_json)


@app.command("colorize")
def colorize(
    image: Path = typer.Argument(..., help="Grey image (1 channel, or 3 equal channels)."),
    weights: str = typer.Option("mean", "--weights", help="How the grey image was made: mean or luma (BT.601)."),
    prior: str = PRIOR, method: Optional[str] = METHOD, quality: str = QUALITY, steps: Optional[int] = STEPS,
    seed: Optional[int] = SEED, device: str = DEVICE, dtype: str = DTYPE, output: Optional[Path] = OUTPUT,
    param: Optional[List[str]] = PARAM, noise: Optional[float] = NOISE, samples: int = SAMPLES,
    preview: Optional[Path] = PREVIEW, preview_every: int = PREVIEW_EVERY, quiet: bool = QUIET, as_json: bool = JSON,
) -> None:
    """Colour a grey image (the result has 3 channels)."""
    with user_errors():
        inputs = Inputs.read(image)
        x = inputs.image
        if x.shape[1] == 3 and bool((x[:, :1] == x).all()):
            inputs.image = x[:, :1].contiguous()
        elif x.shape[1] != 1:
            raise fail(f"{image}: colorize takes a grey image; this one has {x.shape[1]} channels that differ")
        operator = make_operator("colorize", {"weights": weights}, noise)
        run_restoration(inputs=inputs, operator=operator, op_name="colorize",
            prior=prior, method=method, quality=quality, steps=steps, seed=seed, device=device, dtype=dtype,
            output=output, param=param, samples=samples, preview=preview, preview_every=preview_every,
            quiet=quiet, as_json=as_json)


@app.command("run")
def run(
    image: Optional[Path] = typer.Argument(None, help="Degraded image (omit with --from)."),
    op: Optional[str] = typer.Option(None, "--op", help="Operator name (see `restore list`), any plugin's."),
    op_param: Optional[List[str]] = typer.Option(None, "--op-param", help="Operator parameter. " + PARAM_HELP),
    source: Optional[Path] = typer.Option(None, "--from", help="A measurement sidecar y.json made by `restore degrade`: "
                                          "restores y with the exact operator it records."),
    prior: str = PRIOR, method: Optional[str] = METHOD, quality: str = QUALITY, steps: Optional[int] = STEPS,
    seed: Optional[int] = SEED, device: str = DEVICE, dtype: str = DTYPE, output: Optional[Path] = OUTPUT,
    param: Optional[List[str]] = PARAM, noise: Optional[float] = NOISE, samples: int = SAMPLES,
    preview: Optional[Path] = PREVIEW, preview_every: int = PREVIEW_EVERY, quiet: bool = QUIET, as_json: bool = JSON,
) -> None:
    """Restore with any operator: IMG --op NAME --op-param KEY=VALUE, or --from y.json."""
    from restore.operators.io import load_measurement
    from restore.plugins import default_registry

    with user_errors():
        if (source is None) == (op is None):
            raise fail("give either IMG --op NAME or --from y.json")
        if source is not None:
            if image is not None or op_param or noise is not None:
                raise fail("--from y.json brings its image, operator and noise; drop IMG, --op-param and --noise")
            measurement = load_measurement(source, default_registry())
            entry = measurement.sidecar["measurement"]
            path = source.parent / entry["file"]
            inputs = Inputs(path, measurement.y.float(), int(entry.get("bits", 8)))
            output = output or Path(f"{path.stem}_restored.png")
            operator, name, extra = measurement.operator, measurement.sidecar["operator"], {"measurement": str(source)}
            shape = measurement.sidecar.get("input_shape")
            if shape is not None and operator.shape is None:
                operator = operator.bound_to(shape[1:])
        else:
            if image is None:
                raise fail("give the image to restore, or --from y.json")
            inputs = Inputs.read(image)
            operator, name, extra = make_operator(op, parse_params(op_param), noise), op, {}
            check_mask(operator, inputs.image)
        run_restoration(inputs=inputs, operator=operator, op_name=name, extra=extra,
            prior=prior, method=method, quality=quality, steps=steps, seed=seed, device=device, dtype=dtype,
            output=output, param=param, samples=samples, preview=preview, preview_every=preview_every,
            quiet=quiet, as_json=as_json)
