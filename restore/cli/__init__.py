"""The ``restore`` command line (typer).

One module per group of commands; each adds its commands to :data:`app`.
Heavy imports (torch models, metrics) happen inside the commands, so
``restore --help`` starts fast.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn, Union

from restore.cli.app import app
from restore.cli import core_commands  # noqa: F401  (registers commands)
from restore.cli import operator_commands  # noqa: F401
from restore.cli import restore_commands  # noqa: F401
from restore.cli import train_commands  # noqa: F401
from restore.cli import eval_commands  # noqa: F401
from restore.cli import batch_commands  # noqa: F401
from restore.cli import serve_commands  # noqa: F401


def main() -> None:
    """The ``restore`` executable: run the command, then :func:`leave` with its exit status."""
    try:
        app()
    except SystemExit as stop:
        leave(stop.code)
    leave(0)


def leave(code: Union[int, str, None]) -> NoReturn:
    """Exit with ``code`` as :func:`sys.exit` would, without the interpreter's finalisation.

    Once torch is imported, finalising the interpreter (tearing down its modules, then torch's
    C++ destructors) takes about 0.9 s on the project's 2-core machine (``python -c "import
    torch"``: 2.9 s against 2.0 s when an atexit handler calls ``os._exit``; docs/PERFORMANCE.md),
    a tenth of the README's main job for nothing the user gets.  So the atexit handlers run
    (logging's flush, ``tempfile`` finalizers, any a plugin registered), stdout and stderr are
    flushed, and the process ends with ``os._exit``: all that is skipped is freeing memory the
    operating system reclaims anyway.  Every file the commands write is closed before they
    return.  With a thread other than the main one alive (whose end ``sys.exit`` would wait
    for) it exits the ordinary way.  ``code`` means what it means to ``sys.exit``: None is 0,
    any other non-integer is printed to stderr and gives 1.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what the interpreter's own exit reports as 120
            status = status or 120
    os._exit(status)
