"""The fast-path options every command that runs a network takes (one definition each), and
:func:`fast_path`, which checks them, sets the process's threads and returns the
:class:`restore.accel.FastPath` the pipeline applies (meaning: :mod:`restore.accel`)."""
from __future__ import annotations

from typing import Optional

import typer

from restore.cli.app import fail

PRECISION = typer.Option("auto", "--precision", help="Network precision: auto (default: bf16 for the tasks where it "
                         "keeps quality, docs/PERFORMANCE.md, on hardware with fast bf16; else fp32), fp32, bf16, or "
                         "fp16 (GPU). Norms, the sampler state and the data-consistency steps stay float32.")
CHANNELS_LAST = typer.Option(None, "--channels-last/--no-channels-last",
                             help="NHWC convolutions (default: on for networks; exact to float rounding).")
COMPILE = typer.Option(False, "--compile", help="torch.compile the network (pays off on long runs; falls back, "
                       "saying so, where the compiler is unavailable).")
THREADS = typer.Option(None, "--threads", min=1, help="CPU threads (default: the cores, less one on 2-4-core "
                       "machines; docs/PERFORMANCE.md). Bit-identical reruns need the same count.")
#: The old spelling, refused with the new one's name (it meant the run's dtype in the task
#: commands and the network precision in batch).
DTYPE = typer.Option(None, "--dtype", hidden=True)
DTYPE_GONE = ("--dtype is replaced by --precision auto|fp32|bf16|fp16 (the network's precision; the sampler state "
              "is always float32)")


def fast_path(precision: str, channels_last: Optional[bool], compile_network: bool, threads: Optional[int],
              dtype: Optional[str] = None) -> "FastPath":  # noqa: F821 (torch-free annotation)
    """Set the process's CPU threads (``threads`` or :func:`restore.accel.default_threads`) and
    return the fast path the options ask for; a bad value exits 2 with one line."""
    import torch

    from restore.accel import FastPath, default_threads

    if dtype is not None:
        raise fail(DTYPE_GONE)
    torch.set_num_threads(threads or default_threads())
    try:
        return FastPath(precision, channels_last, compile_network)
    except ValueError as exc:
        raise fail(f"--precision: {exc}")
