"""Writing outputs atomically: a temporary file in the target folder, then os.replace."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensor(tensor: torch.Tensor, path: Path) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(tensor.detach().cpu(), tmp))
