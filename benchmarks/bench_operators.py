"""Operator speed: forward, and adjoint where linear, for every registered operator.

    python benchmarks/bench_operators.py [--sizes 256 1024] [--batches 1 8] [--device cpu cuda]
                                         [--repeats 5] [--threads 2] [--ops NAME ...]

Inputs are float32 RGB images (B, 3, S, S) on [0, 1]; each time is the median of
``--repeats`` runs after one warm-up run, in milliseconds (CUDA runs are synchronized).
Operators come from the plugin registry (third-party ones included) and are built
with the parameters in :data:`BENCH_PARAMS`, or their defaults; one that cannot be
built or run at a size is listed with the reason.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

import torch

from restore.plugins import load_registry

#: Parameters for built-ins whose defaults need something (a mask, a kernel), at DPS's settings.
BENCH_PARAMS: dict[str, dict[str, Any]] = {
    "inpaint": {"mask": "box"},
    "blur": {"kernel": "gaussian", "size": 61, "std": 3.0},
    "sr": {"scale": 4},
    "cs": {"ratio": 0.25},
}

#: Operators that cannot run on images without per-size data.
SKIP = {"matrix": "needs an explicit (m, d) matrix; d = 3 S^2 is too large to store at these sizes"}


def median_ms(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return 1e3 * (time.perf_counter() - start)

    once()
    return statistics.median(once() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", nargs="+", default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ops", nargs="+", default=None, help="Operator names (default: all registered).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = load_registry()
    for plugin, error in registry.failures.items():
        print(f"plugin {plugin!r} failed to load: {error}")
    names = args.ops or registry.names("operator")
    print(f"torch {torch.__version__}, {args.threads} threads, float32, median of {args.repeats}; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| operator | device | size | batch | forward ms | adjoint ms |")
    print("|---|---|---|---|---|---|")
    for name in names:
        if name in SKIP:
            print(f"| {name} | - | - | - | skipped: {SKIP[name]} | |")
            continue
        for device_name in args.device:
            device = torch.device(device_name)
            for size in args.sizes:
                for batch in args.batches:
                    figures = row(registry, name, device, size, batch, args.repeats)
                    print(f"| {name} | {device_name} | {size} | {batch} | {figures} |",
                          flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


def row(registry: Any, name: str, device: torch.device, size: int, batch: int, repeats: int) -> str:
    """The two timing cells of one operator and input size (or the reason it failed)."""
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        op = registry.get("operator", name)(**BENCH_PARAMS.get(name, {}))
        with torch.no_grad():
            y = op.forward(x)
            forward = median_ms(lambda: op.forward(x), repeats, device)
            adjoint = median_ms(lambda: op.adjoint(y), repeats, device) if getattr(op, "linear", False) else None
    except (ValueError, TypeError, RuntimeError) as exc:
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]} |"
    return f"{ms(forward)} | {'-' if adjoint is None else ms(adjoint)}"


def ms(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.3f}"


if __name__ == "__main__":
    main()
