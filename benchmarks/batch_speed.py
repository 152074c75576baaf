"""Milliseconds per image of one network call on a batch, whole and in chunks, on this CPU: the
measurement behind ``restore.accel.CPU_CHUNK_PIXELS``.

    python benchmarks/batch_speed.py [--prior default] [--sizes 64 128 256 512] [--batches 1 2 4 8]
                                     [--threads 2] [--repeats 3] [--max-pixels 524288]

The prior's denoiser at sigma 0.4 on random images, its network in float32 + channels_last (the
fast path of a CPU without bf16 instructions), called on a batch of ``B`` images of ``S x S``
pixels twice: ``whole`` (one call on the batch) and ``chunked`` (through
:class:`restore.accel.ChunkedNetwork` at ``CPU_CHUNK_PIXELS``, the fast path's default on a
CPU).  Wall time (what a user waits for, all threads together), best of ``--repeats`` calls
interleaved between the two after one warm-up each, divided by B.  Batches of more than
``--max-pixels`` pixels are skipped.  ``max|diff|`` is the largest absolute difference between
the two outputs (float rounding: the network treats each image alone).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

from restore import accel
from restore.priors.spec import load_prior


def timed(call, repeats: list[float]) -> torch.Tensor:
    tic = time.perf_counter()
    out = call()
    repeats.append(time.perf_counter() - tic)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", default="default")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-pixels", type=int, default=2 * 512 * 512)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    whole = accel.accelerate(load_prior(args.prior), accel.Acceleration(torch.float32, channels_last=True))
    chunked = accel.accelerate(load_prior(args.prior),
                               accel.Acceleration(torch.float32, True, chunk_pixels=accel.CPU_CHUNK_PIXELS))
    print(f"prior {args.prior}, torch {torch.__version__}, {platform.machine()}, "
          f"{torch.backends.cpu.get_cpu_capability()}, {args.threads} thread(s), fp32 + channels_last, "
          f"chunks of at most {accel.CPU_CHUNK_PIXELS} pixels, best of {args.repeats} interleaved calls")
    print(f"{'size':>9} {'batch':>5} {'whole ms/image':>15} {'chunked ms/image':>17} {'chunked/whole':>14} "
          f"{'max|diff|':>10}")
    sigma = torch.tensor(0.4)
    with torch.no_grad():
        for size in args.sizes:
            for batch in args.batches:
                if batch * size * size > args.max_pixels:
                    continue
                x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
                calls = {"whole": lambda: whole.denoiser(x, sigma), "chunked": lambda: chunked.denoiser(x, sigma)}
                times: dict[str, list[float]] = {name: [] for name in calls}
                outputs = {name: call() for name, call in calls.items()}  # warm-up
                for _ in range(args.repeats):
                    for name, call in calls.items():
                        outputs[name] = timed(call, times[name])
                ms = {name: 1000 * min(t) / batch for name, t in times.items()}
                diff = float((outputs["whole"] - outputs["chunked"]).abs().max())
                print(f"{size:>4}x{size:<4} {batch:>5} {ms['whole']:15.1f} {ms['chunked']:17.1f} "
                      f"{ms['chunked'] / ms['whole']:14.2f} {diff:10.1e}", flush=True)
    print(f"# command: python benchmarks/batch_speed.py {' '.join(sys.argv[1:] if argv is None else argv)}")


if __name__ == "__main__":
    main()
