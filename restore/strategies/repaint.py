r"""RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic
Models", CVPR, Alg. 1 and Sec. 4.2 "Resampling").

For a masking operator (mask m, 1 = known), each reverse step from level sigma to sigma'
draws both parts of the image at sigma' and joins them:

    x_known   = y + sigma' eps                 the measurement noised to sigma' (VE view of
                                               q(x_{t-1} | x_0) = N(sqrt(abar) x_0, (1 - abar) I))
    x_unknown = DDPM step from x               (:func:`ddpm_step`)
    x'        = m * x_known + (1 - m) * x_unknown

Resampling: after some reverse steps the iterate jumps back up j levels by the forward
process, x_s -> x_s + sqrt(s_big^2 - s^2) z (in the VE view q(x_t | x_{t-1}) only adds
variance sigma_t^2 - sigma_{t-1}^2), and is denoised again, so that the generated part can
adapt to the known part.  :func:`repaint_schedule` gives the order of levels (the authors'
``get_schedule_jump`` with ``jump_length`` j and ``jump_n_sample`` r, as in the paper's
setting T = 250, j = 10, r = 10): every j-th level from the bottom that has j levels above
it is left r - 1 times by a jump of j levels.  A jump is taken as j single forward steps,
which is the same distribution as one jump and keeps one step event per level.

Noisy measurements: at the last step (sigma' = 0) the known pixels are set to y itself,
bit for bit in prior space (and up to float rounding of the [0, 1] -> prior-range map in
the returned image).  With noisy y, "exactly" therefore means equal to the measurement,
noise included: RePaint assumes the known pixels are clean and does not denoise them.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.samplers import ddpm_step, emit, forward_noise, predict_at, sigma_pairs
from restore.events import StepCallback
from restore.operators.validation import check_int
from restore.strategies.base import Problem, Strategy, StrategyNotApplicable


def repaint_schedule(levels: int, jump_length: int = 10, jump_n_sample: int = 10) -> list[int]:
    """The grid indices RePaint visits on a grid of ``levels`` noise levels (index 0 the
    highest, ``levels`` the clean end sigma = 0), starting at 0 and ending at ``levels``.

    Index i is diffusion timestep t = levels - 1 - i.  Every t in 0, j, 2j, ... with
    t + j <= levels - 1 is a jump point: on the first r - 1 arrivals there the walk goes
    back up j levels (one index per move) before continuing down.  Consecutive entries
    differ by one; a larger index is a reverse (denoising) step.
    """
    for name, value in (("levels", levels), ("jump_length", jump_length), ("jump_n_sample", jump_n_sample)):
        check_int("repaint", name, value, low=1)
    jumps_left = {levels - 1 - t: jump_n_sample - 1 for t in range(0, levels - jump_length, jump_length)}
    path = [0]
    i = 0
    while i < levels:
        i += 1
        path.append(i)
        if jumps_left.get(i, 0) > 0:
            jumps_left[i] -= 1
            path += range(i - 1, i - jump_length - 1, -1)
            i -= jump_length
    return path


def known_part(problem: Problem, x: Tensor) -> tuple[Tensor, Tensor]:
    """The mask m = A^T A 1 (1 = known) and the known pixels m * y in prior space, shaped
    like ``x``; A^T maps the measurement back onto the image grid whatever its layout."""
    operator = problem.operator
    mask = operator.adjoint(operator(torch.ones_like(x)))
    if not ((mask == 0) | (mask == 1)).all():
        raise StrategyNotApplicable(f"strategy 'repaint' needs a binary mask; {type(operator).__name__} "
                                    "gives A^T A 1 with values other than 0 and 1")
    known = mask * problem.prior.to_prior(operator.adjoint(problem.y.to(x.dtype)))
    return mask, known


class RePaint(Strategy):
    """RePaint inpainting with resampling: ``jump_length`` j and ``jump_n_sample`` r
    (paper's defaults 10 and 10 on 250 levels; r = 1 switches resampling off)."""

    name = "repaint"
    requires = ("is_mask",)
    needs_pixel_prior = True
    assumes = ("noiseless",)
    default_steps = 250

    def __init__(self, jump_length: int = 10, jump_n_sample: int = 10) -> None:
        repaint_schedule(1, jump_length, jump_n_sample)  # validates both
        self.jump_length = jump_length
        self.jump_n_sample = jump_n_sample

    def nfe(self, steps: int) -> int:
        """The run's network evaluations at ``steps`` levels: one per reverse move of
        :func:`repaint_schedule`, i.e. steps + (r - 1) j J with J = |{0, j, 2j, ... <= steps - 1 - j}|
        jump points (2410 at the paper's 250, 10, 10; ``steps`` itself without resampling): not
        proportional to ``steps``, as resampling starts only where j levels lie above a level."""
        path = repaint_schedule(steps, self.jump_length, self.jump_n_sample)
        return sum(b > a for a, b in zip(path, path[1:]))

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        mask, known = known_part(problem, x)
        path = repaint_schedule(len(sigmas) - 1, self.jump_length, self.jump_n_sample)
        visited = sigmas[path]
        x0 = x
        for k, s, s_next in sigma_pairs(visited):
            if s_next < s:
                pred = predict_at(denoiser, x, s)
                x0 = pred.x0
                noised = forward_noise(known, 0.0, s_next, generator) if s_next > 0 else known
                x = mask * noised + (1 - mask) * ddpm_step(x, pred, s, s_next, generator)
            else:
                x = forward_noise(x, s, s_next, generator)
            emit(callback, k, visited, x, x0)
        return x


STRATEGIES = {RePaint.name: RePaint}
