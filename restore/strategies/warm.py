r"""Warm start: the reverse process started part way down, from a noised initial estimate
(Chung, Sim & Ye 2022, "Come-Closer-Diffuse-Faster: Accelerating Conditional Diffusion Models
for Inverse Problems through Stochastic Contraction", CVPR, Sec. 3).

Instead of starting at sigma_max from the prior's noise, CCDF forward-diffuses an initial
estimate x_init to an intermediate time t0 < T, x_{t0} = x_init + sigma_{t0} eps in the VE
view (their Eq. 8, divided by sqrt(abar)), and runs only the remaining N' = t0 N reverse steps;
the conditional reverse process contracts the estimate's error (their Theorem 1), so a better
estimate needs fewer steps.

Here the strategy's grid of ``steps`` levels (as the engine made it) is cut at index
i0 = round((1 - t0) steps), at most steps - 1, and the strategy samples on sigmas[i0:] from
x = x_init + sigmas[i0] eps: ``steps - i0`` steps, whose NFE the engine counts together with
the estimate's.  t0 = 1 (i0 = 0) is the cold start exactly: the estimate is not computed.
A t0 < 1 whose cut rounds to i0 = 0 (too few steps: 1 step, or 2 at t0 0.8) is that cold
start too, and a warning says so with the fewest steps that start warm
(:func:`fewest_warm_steps`).
Estimates (the common parameter ``warm_start`` of :mod:`restore.strategies.base`):

* ``pinv``: the least-squares solution nearest the mid-grey image c (:meth:`Problem.grey`),
  c + A^+ (y - A c) (:meth:`Problem.prox_l2` with rho = 0): for a mask the known pixels of y
  and grey elsewhere; no NFE.
* ``dpir``: the plug-and-play estimate of :mod:`restore.strategies.dpir` at its defaults, with
  the run's denoiser (symmetrized when the run is), its NFE counted.
"""
from __future__ import annotations

import itertools
import warnings
from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.samplers import forward_noise
from restore.strategies.base import Problem, Strategy


def start_index(steps: int, t0: float) -> int:
    """The index of the grid level a warm start begins at: round((1 - t0) steps), at most steps - 1."""
    return min(round((1 - t0) * steps), steps - 1)


def fewest_warm_steps(t0: float) -> int:
    """The fewest steps whose grid a warm start at ``t0`` < 1 cuts (:func:`start_index` >= 1)."""
    return next(n for n in itertools.count(2) if start_index(n, t0) >= 1)


def initial_estimate(kind: str, problem: Problem, denoiser: Denoiser, like: Tensor) -> Tensor:
    """The estimate ``kind`` (``pinv`` or ``dpir``) in prior space, shaped like ``like``."""
    if kind == "pinv":
        return problem.prox_l2(problem.grey(like), 0.0)
    if kind == "dpir":
        from restore.strategies.dpir import DPIR

        dpir = DPIR()
        grid = dpir.grid(problem, denoiser, DPIR.default_steps).to(like.device)
        return dpir.sample(problem, denoiser, like, grid)
    raise ValueError(f"unknown warm start {kind!r}")


def warm_start(strategy: Strategy, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor,
               generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """The start draw and the grid the strategy samples on: ``(x, sigmas)`` unchanged for a cold
    start, else ``(x_init + sigmas[i0] eps, sigmas[i0:])`` (module docstring).  ``x_init`` is
    computed on one copy of a problem's measurements (:attr:`Problem.copies`) and shared by the
    samples of each: N warm samples cost the estimate once plus N times the sampled steps."""
    if strategy.warm_start == "none":
        return x, sigmas
    i0 = start_index(len(sigmas) - 1, strategy.t0)
    if i0 == 0:
        if strategy.t0 < 1:  # asked for, and impossible on so few steps: said, not silent
            warnings.warn(f"strategy {strategy.name!r}: warm_start={strategy.warm_start} at t0 {strategy.t0} on "
                          f"{len(sigmas) - 1} step(s) starts at the first level, i.e. cold (no estimate); a warm "
                          f"start at this t0 needs at least {fewest_warm_steps(strategy.t0)} steps", stacklevel=3)
        return x, sigmas
    one = problem.one_copy()  # the estimate is deterministic: once per measurement, not per sample
    estimate = initial_estimate(strategy.warm_start, one, denoiser, x[:one.y.shape[0]])
    estimate = estimate.repeat(problem.copies, *(1,) * (estimate.dim() - 1))
    return forward_noise(estimate, 0.0, float(sigmas[i0]), generator), sigmas[i0:]
