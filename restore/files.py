"""Writing outputs atomically: a temporary file in the target folder, then os.replace.

* The finished file gets the permissions any new file of the user gets, 0666 minus the
  umask (``tempfile.mkstemp`` creates 0600, which would otherwise survive the rename).
* :func:`all_or_nothing` groups the writes of one command: inside it every
  :func:`atomic_write` goes to its temporary file only, and the renames happen when the
  block ends without error (after every target is checked once more); on an error the
  temporary files are removed, so a failed command leaves neither a partial file nor part
  of a set (an image without its sidecar).  Only a rename that the operating system
  refuses after those checks could leave part of a set.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator, Optional

import torch

#: Pending (temporary file, target) renames of the innermost :func:`all_or_nothing` block.
_PENDING: ContextVar[Optional[list[tuple[Path, Path]]]] = ContextVar("pending_renames", default=None)


class OutputError(OSError):
    """An output path that cannot be written; the message names it and says why."""


def current_umask() -> int:
    """The process umask (POSIX offers no read-only query: set it and put it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_target(path: Path) -> None:
    """Refuse a target that is a folder, whose nearest existing parent is a file, or where
    the user may not write (checked before any work is done, so a command fails early)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputError(f"{path}: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: no permission to write in {parent}; choose another output path")


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one rename (at the end
    of the enclosing :func:`all_or_nothing` block, if any)."""
    path = Path(path)
    check_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror}); choose another output path") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        pending = _PENDING.get()
        if pending is None:
            os.replace(tmp, path)
        else:
            pending.append((tmp, path))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Make the :func:`atomic_write` calls inside the block one unit (module docstring)."""
    pending: list[tuple[Path, Path]] = []
    token = _PENDING.set(pending)
    try:
        yield
        for _, target in pending:
            check_target(target)
        for tmp, target in pending:
            os.replace(tmp, target)
    finally:
        _PENDING.reset(token)
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)


def atomic_save_tensor(tensor: torch.Tensor, path: Path) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(tensor.detach().cpu(), tmp))
