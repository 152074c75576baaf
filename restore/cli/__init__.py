"""The ``restore`` command line (typer).

One module per group of commands; each adds its commands to :data:`app`.
Heavy imports (torch models, metrics) happen inside the commands, so
``restore --help`` starts fast.
"""
from restore.cli.app import app
from restore.cli import core_commands  # noqa: F401  (registers commands)
from restore.cli import operator_commands  # noqa: F401
from restore.cli import restore_commands  # noqa: F401
from restore.cli import train_commands  # noqa: F401
from restore.cli import eval_commands  # noqa: F401
from restore.cli import batch_commands  # noqa: F401
from restore.cli import serve_commands  # noqa: F401


def main() -> None:
    app()
