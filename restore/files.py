"""Writing outputs atomically: a temporary file in the target folder, then os.replace.

* The finished file gets the permissions any new file of the user gets, 0666 minus the
  umask (``tempfile.mkstemp`` creates 0600, which would otherwise survive the rename).
* :func:`all_or_nothing` groups the writes of one command: inside it every
  :func:`atomic_write` goes to its temporary file only, and the renames happen when the
  block ends without error (after every target is checked once more); on an error the
  temporary files are removed, so a failed command leaves neither a partial file nor part
  of a set (an image without its sidecar).  Only a rename that the operating system
  refuses after those checks could leave part of a set.
* :func:`protect` keeps a command off its user's files: before any work it refuses every
  planned output that is one of the command's inputs (always) or that exists (unless the
  user passed ``--overwrite``), and while the block runs every :func:`atomic_write` checks
  its target by the same two rules, so a side file the plan did not list is covered too.
  Two paths are one file when their real paths are equal (symlinks, ``..``, relative
  paths) or, both existing, when ``os.path.samefile`` says so (hard links).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from contextvars import ContextVar
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

import torch

#: Pending (temporary file, target) renames of the innermost :func:`all_or_nothing` block.
_PENDING: ContextVar[Optional[list[tuple[Path, Path]]]] = ContextVar("pending_renames", default=None)

#: A path with what it is to the command (``"-o"``, ``"--mask"``, ``"sidecar of -o"``), or a bare path.
Named = Union[tuple[str, Union[str, os.PathLike]], str, os.PathLike]


class OutputError(OSError):
    """An output path that cannot be written; the message names it and says why."""


class Guard:
    """The inputs a :func:`protect` block must not write, and whether existing outputs may go.
    Inputs are indexed by real path and by inode, so each check costs one lookup."""

    def __init__(self, inputs: Sequence[tuple[str, Path]], overwrite: bool) -> None:
        self.overwrite = overwrite
        self.by_path = {os.path.realpath(path): (label, path) for label, path in inputs}
        self.by_inode = {}
        for label, path in inputs:
            with contextlib.suppress(OSError):
                info = os.stat(path)
                self.by_inode[(info.st_dev, info.st_ino)] = (label, path)

    def check(self, label: str, path: Path) -> None:
        shown = f"{path} ({label})" if label and label != str(path) else str(path)
        try:
            info = os.stat(path)
        except OSError:
            info = None
        source = self.by_path.get(os.path.realpath(path)) or (
            None if info is None else self.by_inode.get((info.st_dev, info.st_ino)))
        if source is not None:
            what, given = source
            raise OutputError(f"{shown} would replace the input {what + ' ' if what else ''}{given}: a command never "
                              "writes over its inputs; choose another output path")
        if not self.overwrite and info is not None and not path.is_dir():
            raise OutputError(f"{shown} exists: pass --overwrite to replace it, or choose another output path")


#: The :class:`Guard` of the innermost :func:`protect` block.
_GUARD: ContextVar[Optional[Guard]] = ContextVar("output_guard", default=None)


def named(items: Iterable[Named]) -> list[tuple[str, Path]]:
    """``[("--mask", "m.png"), "x.png"]`` -> ``[("--mask", Path("m.png")), ("", Path("x.png"))]``;
    None entries and None paths are left out."""
    out = []
    for item in items:
        label, path = item if isinstance(item, tuple) else ("", item)
        if path is not None:
            out.append((label, Path(path)))
    return out


def same_file(a: Union[str, os.PathLike], b: Union[str, os.PathLike]) -> bool:
    """Whether two paths name one file or folder: equal real paths, or one inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs: Iterable[Named], inputs: Iterable[Named], *, overwrite: bool) -> None:
    """Refuse, with an :class:`OutputError` naming the path and the rule, a planned output that
    is one of ``inputs`` or that another planned output also names, and an existing one
    unless ``overwrite``.  Called before any work, so nothing is computed in vain."""
    guard = Guard(named(inputs), overwrite)
    seen: dict[str, str] = {}
    for label, path in named(outputs):
        guard.check(label, path)
        real = os.path.realpath(path)
        if real in seen:
            raise OutputError(f"{path} would be written twice ({seen[real]} and {label or path}); "
                              "choose another output path")
        seen[real] = label or str(path)


def check_writable_folder(folder: Path) -> None:
    """Refuse an output folder where no file can be created (probed with a temporary file in
    it, or in its nearest existing parent), before any work is done."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file; give a folder")
    parent = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
    if parent is None:
        return
    if not parent.is_dir():
        raise OutputError(f"{folder}: {parent} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write in {parent} ({exc.strerror or exc}); choose another output "
                          "folder") from None


@contextlib.contextmanager
def protect(outputs: Iterable[Named], inputs: Iterable[Named], *, overwrite: bool) -> Iterator[None]:
    """Check the planned ``outputs`` (:func:`check_outputs`), then hold every
    :func:`atomic_write` inside the block to the same rules (module docstring)."""
    inputs = named(inputs)
    check_outputs(outputs, inputs, overwrite=overwrite)
    token = _GUARD.set(Guard(inputs, overwrite))
    try:
        yield
    finally:
        _GUARD.reset(token)


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
    guard = _GUARD.get()
    if guard is not None:
        guard.check("", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror}); choose another output path") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        try:
            write(tmp)
        except OSError as exc:  # a full disk, a quota: say which output
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); free space or choose another "
                              "output path") from None
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
