"""The typer application every command module adds itself to.

Every mistake a user can make ends with one line ``error: ...`` on stderr and exit status 2:
the commands raise :func:`fail`, and :class:`OneLineErrors` gives the option values that
click itself refuses (``--steps 0``, ``--scale abc``, a missing option) the same form in
place of click's usage box.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer
from typer.core import TyperGroup


def click_errors() -> tuple[type, ...]:
    """The exceptions click raises when it refuses a command line: recent typer versions raise
    those of their own copy of click (``typer.TyperException``), older ones click's own."""
    found: list[type] = [typer.TyperException] if hasattr(typer, "TyperException") else []
    try:
        import click
    except ImportError:  # typer >= 0.2x does not need click
        return tuple(found)
    return (*found, click.ClickException)


CLICK_ERRORS = click_errors()

#: Seeds are torch generator seeds: 0 .. 2**63 - 1.
MAX_SEED = 2**63 - 1
#: The package whose version ``restore --version`` prints.
DISTRIBUTION = "diffusion-restore"


def usage_line(exc: Exception) -> str:
    """Click's refusal as one line: the command, what was wrong, where the help is."""
    ctx = getattr(exc, "ctx", None)
    message = " ".join(exc.format_message().split())
    if ctx is None:
        return message
    return f"{ctx.command_path}: {message} (see {ctx.command_path} --help)"


class OneLineErrors(TyperGroup):
    """The root command group: click's usage errors become one ``error:`` line, exit 2."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with one_line():
            return super().invoke(ctx)


@contextlib.contextmanager
def one_line() -> Iterator[None]:
    """Re-raise click's refusal of the command line as :func:`fail`; a bare ``restore`` or
    ``restore train`` (click's no-arguments-is-help "error") still prints the help."""
    try:
        yield
    except CLICK_ERRORS as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise
        raise fail(usage_line(exc))


app = typer.Typer(
    cls=OneLineErrors,
    name="restore",
    help="Image restoration with diffusion priors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def print_version(value: bool) -> None:
    if value:
        from importlib import metadata

        typer.echo(f"restore {metadata.version(DISTRIBUTION)}")
        raise typer.Exit()


@app.callback()
def _options(
    disable_plugin: Optional[List[str]] = typer.Option(
        None, "--disable-plugin", help="Disable a plugin by name (repeatable); adds to RESTORE_DISABLE_PLUGINS."
    ),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=print_version,
                                 help="Print the package version and exit."),
) -> None:
    """Image restoration with diffusion priors."""
    import os

    from restore.plugins import DISABLE_ENV, disabled_from_env

    names = [*disabled_from_env(), *(disable_plugin or [])]
    if names:
        from importlib import metadata

        from restore.plugins import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, unknown_plugins_message

        known = {*BUILTIN_PLUGINS, *(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise fail(unknown_plugins_message(unknown, known))
    if disable_plugin:
        os.environ[DISABLE_ENV] = ",".join(dict.fromkeys(names))


def fail(message: str) -> "typer.Exit":
    """Print ``message`` as an error and return the exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def seed_option(default: Optional[int], help: str) -> Any:
    """A ``--seed`` option that refuses values outside 0 .. :data:`MAX_SEED` with one line."""
    return typer.Option(default, "--seed", min=0, max=MAX_SEED, help=help)


#: Every writing command's ``--overwrite`` (the rule: :func:`restore.files.protect`).
OVERWRITE = typer.Option(False, "--overwrite", help="Replace outputs that exist (without it an existing output is "
                         "an error). A command never writes over one of its inputs, with or without --overwrite.")


def file_params(params: dict[str, Any], flag: str = "--param",
                origin: Optional[dict[str, str]] = None) -> list[tuple[str, Path]]:
    """The parameters whose value names an existing file (a mask, a kernel): inputs a command
    must not write over, labelled by the option that gave them (``origin``) or ``FLAG NAME``."""
    return [((origin or {}).get(key, f"{flag} {key}"), Path(value)) for key, value in params.items()
            if isinstance(value, (str, Path)) and str(value) and Path(value).is_file()]


def prior_files(spec: str) -> list[tuple[str, Path]]:
    """The files a prior spec reads (``adm:PATH[:PRESET]``, ``unet:DIR``, ``diffusers:DIR``):
    inputs a command must not write over."""
    body = spec.partition("?")[0].partition(":")[2]
    found: list[tuple[str, Path]] = []
    for candidate in {body, body.rpartition(":")[0]} - {""}:
        path = Path(candidate)
        if path.is_file():
            found.append(("--prior", path))
        elif path.is_dir():
            found.extend(("--prior", p) for p in sorted(path.iterdir()) if p.is_file())
    return found
