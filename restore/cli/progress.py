"""Observers of a sampling run for the restoration commands: a progress bar and previews.

Both are ordinary observer plugins (``@hookimpl`` methods ``restore_run_start`` /
``restore_step`` / ``restore_run_end``), listeners of one run (``solve(..., listeners=...)``,
:class:`restore.plugins.RunObservers`); the sampler loops know nothing of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from torch import Tensor

from restore.hookspecs import hookimpl


class ProgressBar:
    """A rich progress bar on stderr: step of total, NFE, noise level sigma, elapsed and ETA."""

    def __init__(self) -> None:
        self.progress: Optional[Any] = None
        self.task: Any = None

    @hookimpl
    def restore_run_start(self, info: Mapping[str, Any]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("NFE {task.fields[nfe]}  sigma {task.fields[sigma]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        self.progress.start()
        name = info.get("strategy", "sampling")
        self.task = self.progress.add_task(str(name), total=info.get("steps"), nfe=0, sigma="-")

    @hookimpl
    def restore_step(self, event: Any) -> None:
        if self.progress is None:
            return
        self.progress.update(self.task, completed=event.step + 1, total=event.total, nfe=event.nfe,
                             sigma=f"{event.sigma:.3g}")

    @hookimpl
    def restore_run_end(self, info: Mapping[str, Any]) -> None:
        self.close()

    def close(self) -> None:
        """Stop the bar (also when a run ends by an error, which sends no ``restore_run_end``)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class Preview:
    """Write the denoised estimate x0 after every ``every``-th step (and the last) to
    ``folder/step-NNNN.png`` (NNNN the number of steps done) (``step-NNNN-K.png`` for batch item K of a batch);
    ``to_image`` maps the estimate from denoiser space to an image on [0, 1]."""

    def __init__(self, folder: Path, every: int, to_image: Callable[[Tensor], Tensor]) -> None:
        self.folder, self.every, self.to_image = Path(folder), int(every), to_image
        self.written: list[Path] = []

    @hookimpl
    def restore_step(self, event: Any) -> None:
        done = event.step + 1  # events are numbered from 0, after each step
        if done % self.every and done != event.total:
            return
        from restore.operators.io import write_image

        images = self.to_image(event.x0.detach()).clamp(0, 1)
        for k, image in enumerate(images):
            suffix = "" if len(images) == 1 else f"-{k}"
            path = self.folder / f"step-{done:04d}{suffix}.png"
            self.written.append(write_image(path, image[None]))
