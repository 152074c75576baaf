"""Unconditional samplers on the reference Gaussian mixture: sliced-Wasserstein distance to
exact samples, time per step, and the exact-vs-exact floor (mean and spread over 5 independent exact sets).

    python benchmarks/bench_samplers.py [--dims 8 80] [--steps 10 20 50 100 1000] [--samples 2000]

Every sampler runs on the linear VP grid of ADM (respaced to the step count) with
the exact mixture denoiser; SW uses 1000 random directions, the same for every row.
"""
from __future__ import annotations

import argparse
import time

import torch

from restore.diffusion.samplers import SAMPLERS
from restore.metrics.distribution import sliced_wasserstein
from restore.priors.analytic import reference_mixture
from restore.strategies.engine import CountingDenoiser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 80])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100, 1000])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print("| d | sampler | steps | NFE | SW to exact | SW / floor | ms per step |")
    print("|---|---|---|---|---|---|---|")
    for d in args.dims:
        mixture = reference_mixture(d)
        gen = torch.Generator().manual_seed(args.seed)
        exact = mixture.sample(args.samples, generator=gen)
        floors = torch.tensor([sliced_wasserstein(exact, mixture.sample(args.samples, generator=gen),
                                                  generator=torch.Generator().manual_seed(1)) for _ in range(5)])
        floor = float(floors.mean())
        print(f"| {d} | exact vs exact (floor, mean of 5 ± std) | - | - | {floor:.3f} ± {float(floors.std()):.3f} | 1.00 | - |")
        for name in args.samplers:
            for steps in args.steps:
                sigmas = mixture.sampling_sigmas(steps)
                counting = CountingDenoiser(mixture)
                x = counting.init_noise((args.samples, d), float(sigmas[0]), generator=gen, dtype=torch.float64)
                start = time.perf_counter()
                out = SAMPLERS[name](counting, x, sigmas, generator=gen)
                elapsed = time.perf_counter() - start
                sw = sliced_wasserstein(out, exact, generator=torch.Generator().manual_seed(1))
                print(f"| {d} | {name} | {steps} | {counting.nfe} | {sw:.3f} | {sw / floor:.2f} | {1e3 * elapsed / steps:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
