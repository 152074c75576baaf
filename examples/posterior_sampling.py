"""Posterior sampling through the Python API, checked against the exact posterior.

    python examples/posterior_sampling.py [--strategy ddrm] [--steps 100] [--samples 1000]

The prior is the project's reference Gaussian mixture (d = 8); the operator a random
2 x 8 matrix with noise sigma_y = 0.1.  Because the prior is analytic, the exact
posterior is known and the script prints how far the strategy's samples are from it,
next to the exact-vs-exact floor and the prior's own distance.
"""
import argparse

import torch

from restore.metrics.distribution import sliced_wasserstein
from restore.operators.noise import GaussianNoise
from restore.plugins import default_registry
from restore.priors.spec import load_prior
from restore.strategies.base import Problem
from restore.strategies.engine import solve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="ddrm")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    registry = default_registry()
    gen = torch.Generator().manual_seed(args.seed)
    prior = load_prior("gmm:8", registry=registry)
    mixture = prior.denoiser
    A = torch.randn(2, 8, generator=gen, dtype=torch.float64)
    operator = registry.get("operator", "matrix")(matrix=A, noise=GaussianNoise(0.1))

    x_true = mixture.sample(1, generator=gen)
    y = operator.measure(x_true, generator=gen)
    problem = Problem(prior, operator, y.expand(args.samples, -1))
    strategy = registry.get("strategy", args.strategy)()
    result = solve(problem, strategy, steps=args.steps, generator=gen)

    posterior = mixture.posterior(A, y[0], 0.1)
    exact = posterior.sample(args.samples, generator=gen)
    directions = lambda: torch.Generator().manual_seed(1)  # noqa: E731  (same directions everywhere)
    sw = sliced_wasserstein(result.sample, exact, generator=directions())
    floor = sliced_wasserstein(posterior.sample(args.samples, generator=gen), exact, generator=directions())
    prior_sw = sliced_wasserstein(mixture.sample(args.samples, generator=gen), exact, generator=directions())
    print(f"{args.strategy}: {result.nfe} network evaluations")
    print(f"sliced Wasserstein to the exact posterior: {sw:.3f}  (exact vs exact {floor:.3f}, prior {prior_sw:.3f})")


if __name__ == "__main__":
    main()
