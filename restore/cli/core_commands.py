"""Core commands: ``restore list`` and ``restore sample``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from restore.cli.app import OVERWRITE, app, fail, prior_files, seed_option
from restore.cli.fast_options import CHANNELS_LAST, COMPILE, DTYPE, PRECISION, THREADS, fast_path


@app.command("list")
def list_items(
    as_json: bool = typer.Option(
        False, "--json", help="Print the registry as JSON: items (name, kind, plugin, summary), failures, disabled."
    ),
) -> None:
    """Show every registered operator, prior format, strategy, sampler and metric, with its plugin
    and the first sentence of its docstring."""
    from restore.plugins import KINDS, default_registry

    registry = default_registry()
    if as_json:
        import json

        items = [registry.entries[kind][name].to_json() for kind in KINDS for name in registry.names(kind)]
        report = {"items": items, "failures": registry.failures, "disabled": list(registry.disabled)}
        typer.echo(json.dumps(report, indent=2))
        return
    headings = {"operator": "operators", "prior": "prior formats", "strategy": "strategies",
                "sampler": "samplers", "metric": "metrics"}
    for kind in KINDS:
        typer.secho(f"{headings[kind]}:", bold=True)
        entries = registry.entries[kind]
        if not entries:
            typer.echo("  (none)")
        width = max((len(n) for n in entries), default=0)
        for name in sorted(entries):
            entry = entries[name]
            typer.echo(f"  {name:<{width}}  [{entry.plugin}]  {entry.summary}".rstrip())
    if registry.disabled:
        typer.echo(f"disabled plugins: {', '.join(registry.disabled)}")
    for plugin, error in registry.failures.items():
        typer.secho(f"plugin {plugin!r} failed to load: {error}", fg=typer.colors.YELLOW, err=True)


def sample_grid(images, columns: int = 4, gap: int = 2):
    """Images (N, C, H, W) tiled row by row, ``columns`` wide, with white gaps: (1, C, H', W')."""
    import torch

    n, c, h, w = images.shape
    cols = min(columns, n)
    rows = -(-n // cols)
    grid = torch.ones(1, c, rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, dtype=images.dtype)
    for k in range(n):
        r, q = divmod(k, cols)
        grid[0, :, r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = images[k]
    return grid


@app.command("sample")
def sample(
    prior: str = typer.Option(..., "--prior", help="Prior spec, e.g. gmm:8 or gaussian:3x16x16."),
    sampler: str = typer.Option("ddpm", "--sampler", help="Unconditional sampler (see `restore list`)."),
    steps: int = typer.Option(100, "--steps", min=1, help="Number of noise levels."),
    num: int = typer.Option(16, "-n", "--num", min=1, help="Number of samples."),
    seed: int = seed_option(0, help="Random seed (same seed, same samples on the same machine)."),
    start: str = typer.Option("prior-default", "--start",
                              help="Start draw: prior-default (the prior's Gaussian at sigma_max) or exact "
                                   "(exact prior samples plus noise; analytic priors only)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Write the samples as a torch archive (.pt), an array (.npy), "
                                               "or, for image priors, a grid image (.png, .tif, .jpg)."),
    size: Optional[str] = typer.Option(None, "--size", help="HxW of the samples, for priors that run at any size "
                                       "(unet:DIR, default)."),
    overwrite: bool = OVERWRITE,
    precision: str = PRECISION, channels_last: Optional[bool] = CHANNELS_LAST, compile_network: bool = COMPILE,
    threads: Optional[int] = THREADS, dtype: Optional[str] = DTYPE,
) -> None:
    """Draw unconditional samples from a prior; for analytic priors, report the sliced-Wasserstein
    distance to exact samples next to the exact-vs-exact floor.

    -o may not be a file of the prior; an existing file is replaced only with --overwrite."""
    import torch

    from restore.diffusion.start import start_draw
    from restore.metrics.distribution import sliced_wasserstein
    from restore.plugins import UnknownItemError, default_registry
    from restore.accel import prepare
    from restore.priors.spec import load_prior

    from restore.files import OutputError, check_outputs, check_target, protect
    from restore.priors.spec import prior_channels

    from restore.operators.io import WRITABLE

    image_output = output is not None and output.suffix.lower() in WRITABLE
    if output is not None and output.suffix.lower() not in (".pt", ".npy") and not image_output:
        raise fail(f"-o {output}: samples are written as .pt (torch archive), .npy (array) or an image "
                   f"({', '.join(WRITABLE)}: a grid of the samples, image priors only), not {output.suffix!r}")
    try:
        if output is not None:
            check_target(output)
            check_outputs([("-o", output)], prior_files(prior), overwrite=overwrite)
        registry = default_registry()
        sampler_fn = registry.get("sampler", sampler)
        fast = fast_path(precision, channels_last, compile_network, threads, dtype)
        loaded, _ = prepare(prior, lambda spec: load_prior(spec, registry=registry), fast, torch.device("cpu"), None)
    except (UnknownItemError, ValueError, FileNotFoundError, OutputError) as exc:
        raise fail(str(exc))
    shape = loaded.shape
    if size is not None:
        height, _, width = size.lower().partition("x")
        if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
            raise fail(f"--size {size!r} is not HxW with positive integers, e.g. 64x64")
        if shape is not None:
            raise fail(f"prior {prior!r} has the fixed shape {tuple(shape)}; drop --size")
        shape = (prior_channels(loaded) or 3, int(height), int(width))
    if shape is None:
        raise fail(f"prior {prior!r} runs at any size; give the sample size with --size HxW")
    if image_output and (len(shape) != 3 or shape[0] not in (1, 3) or loaded.latent):
        raise fail(f"-o {output}: samples of shape {tuple(shape)} are not images; write .pt or .npy")
    denoiser = loaded.denoiser
    gen = torch.Generator().manual_seed(seed)
    sigmas = denoiser.sampling_sigmas(steps)
    try:
        # Analytic priors (with exact samplers) in float64; networks in their weights' float32.
        dtype = torch.float64 if callable(getattr(denoiser, "sample", None)) else torch.float32
        x = start_draw(denoiser, (num, *shape), float(sigmas[0]), start=start, generator=gen, dtype=dtype)
    except ValueError as exc:
        raise fail(str(exc))
    out = sampler_fn(denoiser, x, sigmas, generator=gen)
    typer.echo(f"{num} samples of shape {tuple(shape)} from {prior} with {sampler}, {steps} steps, {start} start")
    exact_sampler = getattr(denoiser, "sample", None)
    if callable(exact_sampler):
        exact = exact_sampler(num, generator=gen)
        directions = torch.Generator().manual_seed(seed + 1)
        sw = sliced_wasserstein(out, exact, generator=directions)
        floor = sliced_wasserstein(exact_sampler(num, generator=gen), exact, generator=directions)
        typer.echo(f"sliced Wasserstein to exact samples: {sw:.4f}   (exact vs exact: {floor:.4f})")
    if output is not None:
        from restore.files import atomic_save_tensor
        from restore.operators.io import write_array

        try:
            with protect([("-o", output)], prior_files(prior), overwrite=overwrite):
                if image_output:
                    from restore.operators.io import write_image

                    write_image(output, sample_grid(loaded.to_image(out.float())))
                elif output.suffix.lower() == ".pt":
                    atomic_save_tensor(out, output)
                else:
                    write_array(output, out)
        except OSError as exc:
            raise fail(str(exc))
        typer.echo(f"wrote {output}")
