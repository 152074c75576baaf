"""The typer application every command module adds itself to."""
from __future__ import annotations

from typing import List, Optional

import typer

app = typer.Typer(
    name="restore",
    help="Image restoration with diffusion priors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    disable_plugin: Optional[List[str]] = typer.Option(
        None, "--disable-plugin", help="Disable a plugin by name (repeatable); adds to RESTORE_DISABLE_PLUGINS."
    ),
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
