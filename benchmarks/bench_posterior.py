"""Exactness of the conditioning strategies on linear problems with an exact posterior.

    python benchmarks/bench_posterior.py [--quick] [--cells 8x1 80x4] [--strategies ddrm pigdm]
                                         [--nfe 20 100 1000] [--sigma-y 0.1|mcgdiff] [--seed 0]

Problems (the Gaussian-mixture benchmark of Cardoso et al. 2024, MCGdiff, Sec. 4.1): the
reference mixture in d dimensions (25 unit-variance components on a grid of spacing 8,
weights ~ squared normals, redrawn per problem), A = U diag(s) V^T with Haar-random
orthogonal U (d_y x d_y) and V (d x d) and s ~ U[0, 1] sorted in decreasing order,
y = A x + sigma_y n with x drawn from the prior.  MCGdiff draws sigma_y = u max(s),
u ~ U[0, 1], per problem (``--sigma-y mcgdiff``); the default here is a fixed sigma_y = 0.1.

For every cell (d, d_y), problem and strategy of the registry (those that refuse the
operator are listed once as "n/a: reason"), ``--samples`` posterior samples (one batch,
y repeated) are compared with as many exact posterior samples
(:meth:`GaussianMixture.posterior`) by the sliced Wasserstein distance with 1000 random
directions (the same directions for every row of a problem).  Step counts are chosen per
strategy so that the engine's NFE count equals the target (probed on a one-sample run:
NFE is affine in the step count); the NFE column reports the count actually used.
Rows "exact (floor)" (a second exact sample set) and "prior" (prior samples) bound the
table.  Figures are the mean and standard deviation over problems; runs that diverged are
counted and left out of the mean.

Strategy options: ``--option dps.zeta=0.3`` (repeatable).  DPS has no published step for a
dense matrix operator; the default here is its published zeta' = 0.3 for the linear tasks
(super-resolution, deblurring), which was also the best of 0.3 / 0.5 / 1.0 on three d = 8,
d_y = 2 problems at 1000 NFE (SW 2.46 / 2.65 / 2.94).
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch

from restore.metrics.distribution import sliced_wasserstein
from restore.operators.matrix import MatrixOperator
from restore.operators.noise import GaussianNoise
from restore.plugins import load_registry
from restore.priors.analytic import GaussianMixture, reference_mixture
from restore.priors.base import Prior
from restore.strategies.base import DivergenceError, Problem, Strategy, StrategyNotApplicable
from restore.strategies.engine import solve

DEFAULT_OPTIONS = ["dps.zeta=0.3"]


def haar_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed orthogonal matrix: QR of a Gaussian matrix with the signs of R's diagonal fixed."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def make_problem(d: int, d_y: int, sigma_y: str,
                 seed: int) -> tuple[GaussianMixture, MatrixOperator, torch.Tensor, float]:
    """Prior, operator, one measurement (1, d_y) and its noise level for problem ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    mixture = reference_mixture(d, seed=seed)
    s = torch.rand(d_y, generator=gen, dtype=torch.float64).sort(descending=True).values
    u = float(torch.rand((), generator=gen, dtype=torch.float64))
    noise = u * float(s[0]) if sigma_y == "mcgdiff" else float(sigma_y)
    operator = MatrixOperator(u=haar_orthogonal(d_y, gen), s=s, v=haar_orthogonal(d, gen), noise=GaussianNoise(noise))
    y = operator.measure(mixture.sample(1, generator=gen), generator=gen)
    return mixture, operator, y, noise


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, _, raw = item.partition("=")
        name, _, param = key.rpartition(".")
        if not name or not param or not raw:
            raise SystemExit(f"--option {item!r}: expected STRATEGY.PARAM=VALUE")
        try:
            value: Any = int(raw) if raw.lstrip("-").isdigit() else float(raw)
        except ValueError:
            value = raw
        options.setdefault(name, {})[param] = value
    return options


def steps_for_nfe(problem: Problem, strategy: Strategy, target: int) -> int:
    """The step count whose NFE is ``target`` (NFE is affine in the steps), probed on one sample."""
    probe = Problem(problem.prior, problem.operator, problem.y[:1])

    def nfe(steps: int) -> int:
        return solve(probe, strategy, steps=steps, generator=torch.Generator().manual_seed(0)).nfe

    low, high = nfe(2), nfe(4)
    slope, offset = (high - low) / 2, low - (high - low)
    steps = max(1, round((target - offset) / slope))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 problems, 500 samples, NFE 20 and 100, cells 8x1 8x2 80x4")
    parser.add_argument("--cells", nargs="+", default=None, help="cells DxDY (default 8x1 8x2 8x4 80x1 80x2 80x4)")
    parser.add_argument("--strategies", nargs="+", default=None, help="default: every registered strategy")
    parser.add_argument("--nfe", type=int, nargs="+", default=None, help="default 20 100 1000")
    parser.add_argument("--problems", type=int, default=None, help="problems per cell (default 20)")
    parser.add_argument("--samples", type=int, default=None, help="samples per problem (default 2000)")
    parser.add_argument("--sigma-y", default="0.1",
                        help="measurement noise: a number, or 'mcgdiff' (u max(s), u ~ U[0, 1])")
    parser.add_argument("--option", action="append", default=None, help="STRATEGY.PARAM=VALUE (default: dps.zeta=0.3)")
    parser.add_argument("--directions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="first problem seed")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    cells = args.cells or (["8x1", "8x2", "80x4"] if quick else ["8x1", "8x2", "8x4", "80x1", "80x2", "80x4"])
    nfes = args.nfe or ([20, 100] if quick else [20, 100, 1000])
    n_problems = args.problems or (3 if quick else 20)
    n_samples = args.samples or (500 if quick else 2000)
    if args.sigma_y != "mcgdiff":
        float(args.sigma_y)
    options = parse_options(args.option if args.option is not None else DEFAULT_OPTIONS)
    registry = load_registry()
    names = args.strategies or registry.names("strategy")

    print(f"# posterior exactness: {n_problems} problems per cell, {n_samples} samples, SW with {args.directions} "
          f"directions, sigma_y = {args.sigma_y}, seeds {args.seed}..{args.seed + n_problems - 1}")
    print("| d | d_y | strategy | NFE | SW to exact posterior (mean ± sd) | diverged | s per run |")
    print("|---|---|---|---|---|---|---|")
    for cell in cells:
        d, d_y = (int(v) for v in cell.split("x"))
        rows: dict[tuple[str, int], list[float]] = {}
        used_nfe: dict[tuple[str, int], int] = {}
        diverged: dict[tuple[str, int], int] = {}
        seconds: dict[tuple[str, int], float] = {}
        refused: dict[str, str] = {}
        for p in range(args.seed, args.seed + n_problems):
            mixture, operator, y, noise = make_problem(d, d_y, args.sigma_y, p)
            gen = torch.Generator().manual_seed(10_000 + p)
            posterior = mixture.posterior(operator.matrix, y[0], noise)
            exact = posterior.sample(n_samples, generator=gen)

            def sw(samples: torch.Tensor) -> float:
                return sliced_wasserstein(samples, exact, directions=args.directions,
                                          generator=torch.Generator().manual_seed(20_000 + p))

            rows.setdefault(("exact (floor)", 0), []).append(sw(posterior.sample(n_samples, generator=gen)))
            rows.setdefault(("prior", 0), []).append(sw(mixture.sample(n_samples, generator=gen)))
            prior = Prior(mixture, name=f"gmm:{d}:{p}", shape=(d,), data_range=(0.0, 1.0))
            problem = Problem(prior, operator, y.expand(n_samples, d_y).clone())
            for name in names:
                if name in refused:
                    continue
                try:
                    strategy = registry.get("strategy", name)(**options.get(name, {}))
                    strategy.check(problem)
                except (StrategyNotApplicable, ValueError, TypeError) as exc:
                    refused[name] = f"{type(exc).__name__}: {exc}"
                    continue
                for target in nfes:
                    steps = steps_for_nfe(problem, strategy, target)
                    key = (name, target)
                    start = time.perf_counter()
                    try:
                        result = solve(problem, strategy, steps=steps,
                                       generator=torch.Generator().manual_seed(30_000 + p))
                    except DivergenceError:
                        diverged[key] = diverged.get(key, 0) + 1
                        continue
                    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
                    used_nfe[key] = result.nfe
                    rows.setdefault(key, []).append(sw(result.sample))
        for (name, target), values in rows.items():
            v = torch.tensor(values)
            spread = float(v.std()) if len(values) > 1 else math.nan
            key = (name, target)
            runs = len(values)
            per_run = f"{seconds[key] / runs:.2f}" if key in seconds else "-"
            print(f"| {d} | {d_y} | {name} | {used_nfe.get(key, '-')} | {float(v.mean()):.3f} ± {spread:.3f} | "
                  f"{diverged.get(key, 0)} | {per_run} |", flush=True)
        for (name, target), count in diverged.items():
            if (name, target) not in rows:
                print(f"| {d} | {d_y} | {name} | - | all {count} runs diverged | {count} | - |", flush=True)
        for name, reason in refused.items():
            print(f"| {d} | {d_y} | {name} | - | n/a: {reason} | - | - |", flush=True)


if __name__ == "__main__":
    main()
