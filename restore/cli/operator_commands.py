"""Operator commands: ``restore degrade`` (make a measurement) and ``restore check-operator``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from restore.cli.app import OVERWRITE, app, fail, file_params, seed_option

PARAM_HELP = (
    "Operator parameter KEY=VALUE (repeatable). VALUE is read as JSON when it parses "
    "(4, 0.5, true, [9, 9]) and as a plain string otherwise."
)


def parse_params(items: Optional[List[str]]) -> dict[str, Any]:
    """``["scale=4", "kind=box"]`` -> ``{"scale": 4, "kind": "box"}``."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {item!r} is not of the form KEY=VALUE")
        params[key.strip()] = parse_value(raw)
    return params


def parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def load_operator_factory(name: str) -> tuple[Any, Callable[..., Any]]:
    """The default registry and the factory of operator ``name``; a clear exit otherwise."""
    from restore.plugins import UnknownItemError, default_registry

    registry = default_registry()
    try:
        return registry, registry.get("operator", name)
    except UnknownItemError as exc:
        broken = "".join(f"\n  plugin {p!r} failed to load: {why}" for p, why in registry.failures.items())
        raise fail(f"{exc}{broken}")


def check_keywords(op: str, factory: Callable[..., Any], params: dict[str, Any], origin: dict[str, str],
                   kind: str = "operator", flag: str = "--param") -> None:
    """A clear exit naming any parameter that ``factory`` (of an operator or a strategy:
    ``kind``) does not take, with those it takes (factories with ``**options`` or without a
    signature check their own keywords when called)."""
    import inspect

    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    accepted = set(signature.parameters)
    for key in params:
        if key not in accepted:
            given = origin.get(key, f"{flag} {key}=...")
            raise fail(f"{kind} {op!r} has no parameter {key!r} (given by {given}); "
                       f"its parameters: {', '.join(sorted(accepted)) or 'none'}")


def check_method_params(method: Optional[str], params: dict[str, Any], operator: Any, quality: str,
                        target: str = "fidelity", flag: str = "--param", prior: Any = None,
                        shape: Optional[tuple[int, ...]] = None) -> None:
    """Refuse, before any work, a hyperparameter that the strategy does not take: ``method``,
    or the default run for ``operator`` on images of ``shape`` and the loaded ``prior``
    (:func:`restore.strategies.catalog.default_run`; None: a prior that is not conditional)."""
    from restore.plugins import default_registry
    from restore.strategies.catalog import default_run

    if not params:
        return
    name = method or default_run(operator, quality, target, prior, shape).method
    check_keywords(name, default_registry().get("strategy", name), params, {}, kind="strategy", flag=flag)


def check_image_files(params: dict[str, Any]) -> None:
    """A clear exit for an image-valued parameter (mask, kernel) whose file is not a readable image."""
    for name, value in params.items():
        check_image_file(value, name)


def build_operator(op: str, factory: Callable[..., Any], params: dict[str, Any]) -> Any:
    """The operator, or a clear exit: a bad parameter, an image-valued parameter (mask,
    kernel) whose file is not a readable image, or a noise level that is not finite."""
    import math

    check_image_files(params)
    try:
        operator = factory(**params)
    except (ValueError, TypeError, OSError) as exc:
        raise fail(f"operator {op!r}: {exc}")
    noise = operator.noise.to_json()
    if any(isinstance(v, float) and not math.isfinite(v) for v in noise.values()):
        raise fail(f"operator {op!r}: the noise {noise} is not finite; give a finite sigma or rate")
    return operator


def check_image_file(value: Any, what: str) -> None:
    """Read a parameter's image file once (a path with an image suffix), so that a damaged
    or non-image file is named clearly before an operator uses it."""
    from restore.operators.io import READABLE_SUFFIXES, load_image

    if not isinstance(value, (str, Path)):
        return
    suffix = Path(value).suffix.lower()
    if suffix in READABLE_SUFFIXES and suffix != ".npy" and Path(value).is_file():
        try:
            load_image(value)
        except (ValueError, FileNotFoundError) as exc:
            raise fail(f"{what}: {exc}")


def is_image_measurement(operator: Any, y: Any) -> bool:
    """A measurement is stored as PNG when the operator declares image measurements
    (``image_measurement``, default True) and ``y`` is one image with 1 or 3 channels."""
    declared = getattr(operator, "image_measurement", True)
    return bool(declared) and y.ndim == 4 and y.shape[0] == 1 and y.shape[1] in (1, 3)


@app.command("degrade")
def degrade(
    image: Path = typer.Argument(..., help="Clean image (.png, .jpg, .npy), values on [0, 1]."),
    op: str = typer.Option(..., "--op", help="Operator name (see `restore list`)."),
    param: Optional[List[str]] = typer.Option(None, "--param", help=PARAM_HELP),
    scale: Optional[str] = typer.Option(None, "--scale", help="Shortcut for --param scale=VALUE (super-resolution)."),
    mask: Optional[str] = typer.Option(
        None,
        "--mask",
        help="Shortcut for --param mask=VALUE (inpaint): a mask image where WHITE marks the region to fill "
        "(diffusers / LaMa convention), a .npy mask (1 = fill), or a generator name (box, random, strokes, outpaint).",
    ),
    mask_white_known: bool = typer.Option(
        False, "--mask-white-known", help="Read a --mask image the other way round, white = known (sets invert=true)."
    ),
    kernel: Optional[str] = typer.Option(None, "--kernel", help="Shortcut for --param kernel=VALUE (blur): "
                                         "gaussian[:STD[:SIZE]] (std 3, size 2 ceil(3 std) + 1 by default), "
                                         "motion[:SEED[:SIZE]] (size 61), or a kernel file (.npy, or a greyscale "
                                         "image)."),
    noise: Optional[float] = typer.Option(None, "--noise", min=0.0, help="Gaussian noise sigma on the [0, 1] range."),
    poisson: Optional[float] = typer.Option(None, "--poisson", help="Poisson noise: photon count at intensity 1."),
    seed: Optional[int] = seed_option(
        None,
        help="Seed of the noise draw and, for operators whose parameters include a seed (generated masks, "
        "motion kernels), of the operator unless --param seed= is given. Default: a random seed, recorded in "
        "the sidecar.",
    ),
    output: Optional[Path] = typer.Option(
        None,
        "-o",
        "--output",
        help="Measurement file: .png for image measurements (clipped to [0, 1], quantized) or .npy (exact). "
        "Measurements that are not images (phase-retrieval magnitudes, compressed-sensing vectors) must be .npy. "
        "Default: <image stem>_<op>.png or .npy in the current folder.",
    ),
    bits: int = typer.Option(8, "--bits", help="Bits per sample of a PNG measurement: 8 or 16."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Make a measurement y = A(x) + n of a clean image, with a JSON sidecar.

    The sidecar <output stem>.json holds the operator, its parameters, its tensors (as
    .npy files), the noise, the seed and the input, from which restoration commands
    rebuild the exact operator (--from y.json).  Writes are atomic.  None of the files
    may be the image, a mask or kernel file given; existing ones are replaced only with
    --overwrite."""
    import secrets

    import torch

    from restore.api import user_options
    from restore.files import OutputError, protect
    from restore.operators.io import read_image, save_measurement, sidecar_path

    if noise is not None and poisson is not None:
        raise fail("--noise and --poisson exclude each other; give one noise model")
    if bits not in (8, 16):
        raise fail(f"--bits must be 8 or 16, got {bits}")
    try:
        params = parse_params(param)
    except ValueError as exc:
        raise fail(str(exc))
    shortcuts: list[tuple[str, str, Any]] = [("scale", "--scale", None if scale is None else parse_value(scale))]
    shortcuts.append(("kernel", "--kernel", None if kernel is None else str(kernel)))
    shortcuts.append(("mask", "--mask", mask))
    shortcuts.append(("invert", "--mask-white-known", True if mask_white_known else None))
    if noise is not None:
        shortcuts.append(("noise", "--noise", {"kind": "gaussian", "sigma": noise}))
    if poisson is not None:
        shortcuts.append(("noise", "--poisson", {"kind": "poisson", "rate": poisson}))
    origin = {}
    for key, flag, value in shortcuts:
        if value is not None:
            params[key], origin[key] = value, flag

    _, factory = load_operator_factory(op)
    check_keywords(op, factory, params, origin)
    seed = secrets.randbelow(2**31) if seed is None else seed
    try:  # masks (1 / white = fill) and kernels (gaussian[:STD[:SIZE]], ...) read as every command reads them
        check_image_files(params)
        given = user_options(factory, params)
    except ValueError as exc:
        raise fail(str(exc))
    operator = build_operator(op, factory, given)
    if "seed" not in params and "seed" in operator.params():  # a seeded generator (mask, kernel)
        operator = build_operator(op, factory, {**given, "seed": seed})

    try:
        x = read_image(image)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc))
    with torch.no_grad():
        try:
            y = operator.measure(x, generator=torch.Generator().manual_seed(seed))
        except ValueError as exc:
            raise fail(f"operator {op!r} cannot measure {image} (shape {tuple(x.shape)}): {exc}")
    as_image = is_image_measurement(operator, y)
    if output is None:
        output = Path(f"{image.stem}_{op}{'.png' if as_image else '.npy'}")
    suffix = output.suffix.lower()
    if suffix not in (".png", ".npy"):
        raise fail(f"-o {output}: write the measurement as .png or .npy, not {suffix!r}")
    if suffix == ".png" and not as_image:
        raise fail(f"operator {op!r} measures {tuple(y.shape)} values that are not an image; "
                   "write them with -o NAME.npy")
    planned = [("-o", output), ("sidecar of -o", sidecar_path(output)),
               *((f"tensor {name} of -o", output.with_name(f"{output.stem}.{name}.npy"))
                 for name in operator.tensors())]
    try:
        with protect(planned, [("image", image), *file_params(params, origin=origin)], overwrite=overwrite):
            sidecar = save_measurement(y, output, operator, operator_name=op, seed=seed, input_path=image,
                                       input_shape=tuple(x.shape), bits=bits)
    except OutputError as exc:
        raise fail(str(exc))
    except OSError as exc:
        raise fail(f"{exc.filename or output}: {exc.strerror or exc}")
    typer.echo(f"wrote {output} {tuple(y.shape)} and {sidecar_path(output)} "
               f"(operator {op}, noise {sidecar['noise']}, seed {seed})")
    clipped = sidecar["measurement"].get("clipped_fraction", 0.0)
    if clipped > 0:
        typer.secho(
            f"warning: {100 * clipped:.2f}% of the measurement lies outside [0, 1] and was clipped in the PNG; "
            "use -o NAME.npy to keep exact values",
            fg=typer.colors.YELLOW,
            err=True,
        )


@app.command("check-operator")
def check_operator(
    name: str = typer.Argument(..., help="Registered operator name (built-in or from a plugin; see `restore list`)."),
    param: Optional[List[str]] = typer.Option(None, "--param", help=PARAM_HELP),
    shape: Optional[str] = typer.Option(
        None, "--shape", help="Per-item input shape C,H,W for unbound operators (default 3,64,64)."
    ),
    batch: int = typer.Option(2, "--batch", min=1, help="Batch size of the test inputs."),
    seed: int = seed_option(0, help="Seed of the random test inputs."),
    skip: Optional[List[str]] = typer.Option(None, "--skip", help="Check to skip by name (repeatable)."),
) -> None:
    """Check an operator against the operator contract and print a report.

    Without --param the operator's declared example configuration is checked.

    The checks: adjoint (dot-product test), Penrose conditions of the pseudo-inverse,
    SVD, gradients, JSON round trip, dtypes, batching.  The exit status is 1 when a
    check fails.  Checks an operator declares inapplicable (its contract_exempt
    mapping, e.g. the gradient of a quantizing codec) are skipped with the reason."""
    from restore.operators.contract import all_passed, check_factory, format_report

    try:
        params = parse_params(param)
    except ValueError as exc:
        raise fail(str(exc))
    dims = None if shape is None else [int(v) if v.strip().isdigit() else 0 for v in shape.split(",")]
    if dims is not None and (len(dims) != 3 or min(dims) < 1):
        raise fail(f"--shape {shape!r} is not C,H,W with positive integer sizes")
    registry, factory = load_operator_factory(name)
    check_keywords(name, factory, params, {})
    checks = check_factory(factory, params or None, shape=dims, batch=batch, seed=seed, skip=skip or ())
    plugin = registry.entries["operator"][name].plugin
    given = json.dumps(params) if params else "its declared example"
    typer.echo(format_report(checks, title=f"operator {name!r} from plugin {plugin!r}, params {given}"))
    if not all_passed(checks):
        raise typer.Exit(code=1)
