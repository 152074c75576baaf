"""Unconditional samplers on the reference Gaussian mixture at fixed budgets of network evaluations:
sliced-Wasserstein distance to exact samples over the exact-vs-exact floor (mean and spread over 5
independent exact sets), from the prior's default start and from the exact noisy marginal.

    python benchmarks/bench_samplers.py [--dims 8 80] [--nfe 10 20 50 100 1000] [--samples 2000]
        [--samplers ...] [--starts prior-default exact] [--threads 1]

A budget counts network evaluations (NFE), not steps: each sampler runs on the largest grid
whose NFE fits the budget (found by a dry run on one item), so a solver with k evaluations per
step gets about budget / k steps.  Grids are ADM's linear VP grid respaced to that many levels,
the denoiser is the exact mixture's, NFE is counted by the engine's counting wrapper, and every
run starts from the same seed (common random numbers).  SW uses 1000 random directions, the
same for every row.  Each cell is "SW / floor (NFE used)"; ms per NFE is taken at the largest budget.
"""
from __future__ import annotations

import argparse
import time

import torch

from restore.diffusion.samplers import SAMPLERS
from restore.diffusion.start import START_CHOICES, start_draw
from restore.metrics.distribution import sliced_wasserstein
from restore.priors.analytic import GaussianMixture, reference_mixture
from restore.strategies.engine import CountingDenoiser


def nfe_of(name: str, mixture: GaussianMixture, levels: int) -> int:
    """The evaluations the sampler makes on a grid of ``levels`` levels (dry run on one item)."""
    counting = CountingDenoiser(mixture)
    sigmas = mixture.sampling_sigmas(levels)
    x = mixture.init_noise((1, mixture.dim), float(sigmas[0]), generator=torch.Generator().manual_seed(0),
                           dtype=torch.float64)
    SAMPLERS[name](counting, x, sigmas, generator=torch.Generator().manual_seed(0))
    return counting.calls


def levels_for_budget(name: str, mixture: GaussianMixture, budget: int) -> int:
    """The most grid levels whose NFE fits ``budget`` (NFE grows with the levels); 0 if none does."""
    lo, hi = 0, min(budget, mixture.schedule.num_timesteps)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if nfe_of(name, mixture, mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 80])
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50, 100, 1000])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--starts", nargs="+", default=list(START_CHOICES), choices=list(START_CHOICES))
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    budgets = sorted(args.nfe)
    print("| d | sampler | start | " + " | ".join(f"NFE {b}" for b in budgets) + " | ms per NFE |")
    print("|---|---|---|" + "---|" * len(budgets) + "---|")
    for d in args.dims:
        mixture = reference_mixture(d)
        gen = torch.Generator().manual_seed(args.seed)
        exact = mixture.sample(args.samples, generator=gen)
        floors = torch.tensor([sliced_wasserstein(exact, mixture.sample(args.samples, generator=gen),
                                                  generator=torch.Generator().manual_seed(1)) for _ in range(5)])
        floor = float(floors.mean())
        print(f"| {d} | exact vs exact (floor: SW {floor:.3f} ± {float(floors.std()):.3f}, mean ± std of 5) | - | "
              + " | ".join("1.00" for _ in budgets) + " | - |", flush=True)
        for name in args.samplers:
            levels = {b: levels_for_budget(name, mixture, b) for b in budgets}
            for start in args.starts:
                cells, ms_per_nfe = [], float("nan")
                for budget in budgets:
                    if levels[budget] == 0:
                        cells.append("-")
                        continue
                    sigmas = mixture.sampling_sigmas(levels[budget])
                    counting = CountingDenoiser(mixture)
                    run_gen = torch.Generator().manual_seed(args.seed + 1)
                    x = start_draw(mixture, (args.samples, d), float(sigmas[0]), start=start, generator=run_gen,
                                   dtype=torch.float64)
                    began = time.perf_counter()
                    out = SAMPLERS[name](counting, x, sigmas, generator=run_gen)
                    ms_per_nfe = 1e3 * (time.perf_counter() - began) / counting.calls  # NFE of each sample
                    sw = sliced_wasserstein(out, exact, generator=torch.Generator().manual_seed(1))
                    cells.append(f"{sw / floor:.2f} ({counting.calls})")
                print(f"| {d} | {name} | {start} | " + " | ".join(cells) + f" | {ms_per_nfe:.2f} |", flush=True)


if __name__ == "__main__":
    main()
