r"""Diffusion Posterior Sampling (Chung et al. 2023, "Diffusion Posterior Sampling for General
Noisy Inverse Problems", ICLR, Alg. 1 (Gaussian noise) and Alg. 2 (Poisson noise)).

Each step is an ancestral DDPM step followed by a gradient step on the measurement residual
of the denoised estimate x0_hat(x_i) = D(x_i, sigma_i), differentiated through the denoiser
(and, for latent priors, through the decoder: the residual is taken on
``Problem.forward``, which decodes):

    x'_{i-1} = DDPM step from x_i                                   (:func:`ddpm_step`)
    x_{i-1}  = x'_{i-1} - zeta_i grad_{x_i} 1/2 ||y - A(x0_hat(x_i))||^2,
    zeta_i   = zeta' / ||y - A(x0_hat(x_i))||

which is ``x'_{i-1} - zeta' grad_{x_i} ||y - A(x0_hat(x_i))||``: the gradient of the
non-squared residual norm, as the authors' released code computes it
(``condition_methods.py``, ``PosteriorSampling``) with the zeta' of its configs.  (Alg. 1
writes the squared norm without the 1/2; with the same zeta_i that is twice this step,
and the published zeta' values are those of the code.)  The norm is taken per batch item.

Units.  The residual is taken in prior pixel units, (hi - lo) (y - A(image(x0)))
(:meth:`Problem.residual`): the released code measures y and x on the same [-1, 1]
scale as its prior, and the gradient of image(x) = (x - lo) / (hi - lo) carries the
factor 1 / (hi - lo), which the residual's factor cancels.  So one prior-space problem
posed with data_range (0, 1) or (-1, 1) gives the same samples, and on [-1, 1] priors the
published zeta' values take the published step.  (Nonlinear operators such as phase
retrieval see [0, 1] images here, a different function of the prior-space x than the
paper's, so their published zeta' carries over only approximately.)

Non-Gaussian noise (Alg. 2): the residual is weighted by the noise model's
``residual_weights`` (Poisson: Lambda_jj = 1 / (2 y_j), the Gaussian approximation of
shot noise, ||r||_Lambda^2 = sum_j r_j^2 / (2 y_j), y_j floored at one photon).

Step scaling between the VE view and the paper's VP iterate.  The paper steps on
x_vp = sqrt(abar) x with abar = 1 / (1 + sigma^2).  With f the residual norm,
grad_{x_vp,i} f = grad_{x,i} f / sqrt(abar_i), and a change d of x_vp,i-1 is a change
d / sqrt(abar_{i-1}) of x_{i-1}.  So the paper's update is, in the VE view,

    x_{i-1} = x'_{i-1} - zeta' sqrt((1 + sigma_i^2) (1 + sigma_{i-1}^2)) grad_{x_i} f,

which is what :meth:`DPS.sample` does for VP-trained denoisers (``denoiser.vp``).  For
denoisers trained in the VE view there is no VP iterate and the step is zeta' grad_{x_i} f.

Defaults: 1000 ancestral steps (the paper's setting); zeta' from the released configs by
the task the operator declares (``Operator.task``): 0.3 for super-resolution and
Gaussian / motion / nonlinear deblurring, 0.5 for inpainting, 1.0 for phase retrieval.
Operators outside those tasks need an explicit ``zeta``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser, Prediction
from restore.diffusion.samplers import ddpm_step, emit, predict_at, sigma_pairs
from restore.events import StepCallback
from restore.operators.base import Operator
from restore.operators.validation import check_number
from restore.strategies.base import Problem, Strategy, StrategyNotApplicable

#: zeta' of the authors' released configurations (``configs/*_config.yaml``), by task.
PUBLISHED_ZETA = {"super-resolution": 0.3, "deblur": 0.3, "inpaint": 0.5, "phase-retrieval": 1.0}


class DPS(Strategy):
    """Diffusion posterior sampling for any differentiable operator, linear or not.

    ``zeta``: the paper's zeta' (step size over residual norm); None picks the published
    value for the operator's task (:data:`PUBLISHED_ZETA`), and an operator outside those
    tasks must be given one.
    """

    name = "dps"
    default_steps = 1000

    def __init__(self, zeta: Optional[float] = None) -> None:
        self.zeta = None if zeta is None else check_number(self.name, "zeta", zeta, low=0.0, low_inclusive=False)

    def step_size(self, operator: Operator) -> float:
        """zeta' for ``operator``: the given one, else the published one for its task."""
        if self.zeta is not None:
            return self.zeta
        task = operator.task
        if task not in PUBLISHED_ZETA:
            published = ", ".join(f"{k} {v}" for k, v in PUBLISHED_ZETA.items())
            raise StrategyNotApplicable(f"dps: no published zeta for operator {operator.name!r} (task {task!r}); "
                                        f"pass zeta (published values: {published})")
        return PUBLISHED_ZETA[task]

    def check(self, problem: Problem) -> None:
        super().check(problem)
        self.step_size(problem.operator)

    @staticmethod
    def residual_norm(problem: Problem, x0: Tensor) -> Tensor:
        """||y - A(x0)|| per batch item in prior pixel units, weighted by the noise model."""
        return problem.residual(x0).flatten(1).norm(dim=1)

    def guided_prediction(self, problem: Problem, denoiser: Denoiser, x: Tensor,
                          sigma: float) -> tuple[Prediction, Tensor]:
        """D(x, sigma) (detached) and grad_x ||y - A(D(x, sigma))||, one denoiser evaluation."""
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            pred = predict_at(denoiser, x_in, sigma)
            grad, = torch.autograd.grad(self.residual_norm(problem, pred.x0).sum(), x_in)
        var_frac = None if pred.var_frac is None else pred.var_frac.detach()
        return Prediction(pred.x0.detach(), var_frac), grad

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        zeta = self.step_size(problem.operator)
        for i, s, s_next in sigma_pairs(sigmas):
            pred, grad = self.guided_prediction(problem, denoiser, x, s)
            vp_factor = math.sqrt((1 + s**2) * (1 + s_next**2)) if denoiser.vp else 1.0
            x = ddpm_step(x, pred, s, s_next, generator) - zeta * vp_factor * grad
            emit(callback, i, sigmas, x, pred.x0)
        return x


STRATEGIES = {DPS.name: DPS}
