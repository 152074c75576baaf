r"""DPIR: plug-and-play half-quadratic splitting with the prior's denoiser (Zhang, Li, Zuo, Zhang,
Van Gool & Timofte 2021, "Plug-and-Play Image Restoration with Deep Denoiser Prior", TPAMI,
Alg. 1 and Sec. 5's parameter setting).

HQS splits min_x ||y - A x||^2 / (2 sigma_y^2) + R(x) into a data step and a prior step
(their Eq. 6a-6b) with a noise level sigma_k that decreases over K iterations:

    z_k = argmin_z ||y - A z||^2 + alpha_k ||z - x_{k-1}||^2,   alpha_k = lambda sigma_y^2 / sigma_k^2
    x_k = D(z_k, sigma_k)

The data step is the operator's proximal map (:meth:`restore.operators.base.LinearOperator.prox_l2`
in prior units, :meth:`Problem.prox_l2`: closed form through the SVD or a mask, conjugate
gradients otherwise), so every linear operator serves (masks, blur of any boundary, SR,
colorization, compressed sensing, third-party ones).  The prior step is the engine's Tweedie
denoiser D(x, sigma) = E[x0 | x0 + sigma eps = x], averaged over the common ``symmetry`` group
when one is set.  The result is x_K, and on a noiseless problem its projection onto
{A x = y} (the data step with alpha = 0: the exact posterior is supported there, so the
measured coordinates, e.g. an inpainting's known pixels, are kept exactly as measured where
the paper's x_K only nearly keeps them); K = the number of steps = the NFE (times |G| with a
symmetry average).  Deterministic: the start draw and the generator are not used.

Schedule, as the authors' released code sets it (``utils_pnp.get_rho_sigma``): sigma_k
geometric from sigma_1 = 49/255 to sigma_K = the noise level sigma_y, lambda = 0.23, and
sigma_y floored at 0.255/255 inside alpha_k, so a noiseless measurement gives a data step
that is nearly, not exactly, a projection; for noiseless demosaicing (their one noiseless
task, a mask like inpainting) sigma_K = 0.6/255 and K = 40.  These are the defaults here
(``sigma_end`` = max(sigma_y, 0.6/255), not below the denoiser's sigma_min; ``lambda_`` = 0.23;
40 steps) but for two things.  The first data step starts from the mid-grey image
(:meth:`Problem.grey`) instead of the paper's task-specific initial guess (bicubic, Matlab
demosaicing), so nothing depends on the task.  And sigma_1 follows the rule behind the
paper's value, that the first denoiser call see the starting estimate's error as noise: a
grey start is off by the image's own deviation from grey in every unobserved coordinate, up to
half the range, so ``sigma_start`` = 0.5 (1 on [-1, 1] priors): the denoiser first fills what
the measurement does not see, where from 49/255 it kept the grey (40 steps on a 70 % random
mask: 18.2 dB against biharmonic's 25.0 on one CBSD68 crop; 22.9 dB from 0.25, the RMS
deviation of natural images).  Noise levels are in image units ([0, 1], the paper's x/255), taken
to prior units by (hi - lo).  The paper's periodical geometric self-ensemble (one flip / turn
per iteration) is not implemented; the full group average of ``symmetry`` is.

How it differs from ``diffpir`` (:mod:`restore.strategies.diffpir`), which shares the data
step: DiffPIR re-noises each step's estimate (x_{t-1} = x0_hat + sigma' (...), with fresh noise
of share zeta) and so *samples* from an approximate posterior; DPIR feeds the data step's
output straight to the denoiser and returns a deterministic point estimate, a fidelity
(PSNR) estimate rather than a sample.  For a Gaussian prior with its exact denoiser, a fixed
(alpha, sigma) pair is block coordinate descent on a quadratic: the iterates converge to
z* = the posterior mean under the prior N(mu, Sigma + sigma^2 I) and noise level
sqrt(lambda) sigma_y, x* = D(z*, sigma) (``tests/test_dpir.py``); as sigma -> 0 on a noiseless
problem both tend to the exact posterior mean.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser
from restore.diffusion.samplers import emit, predict_at
from restore.diffusion.schedules import geometric_sigmas
from restore.events import StepCallback
from restore.operators.validation import check_number
from restore.strategies.base import Problem, Strategy

#: sigma_1 here, in image units: the largest error of a mid-grey start (module docstring).
SIGMA_START = 0.5
#: sigma_K of the released noiseless demosaicing script, in image units.
SIGMA_END_NOISELESS = 0.6 / 255
#: The floor of sigma_y inside alpha_k in the released code, in image units.
SIGMA_Y_FLOOR = 0.255 / 255


class DPIR(Strategy):
    """Plug-and-play HQS: ``lambda_`` (the weight of the prior in the data step), noise levels
    ``sigma_start`` and ``sigma_end`` of the denoiser in image units (None: the noise level,
    at least 0.6/255)."""

    name = "dpir"
    requires = ("linear",)
    needs_pixel_prior = True
    assumes = ("gaussian-noise",)
    default_steps = 40
    posterior_mean = True

    def __init__(self, lambda_: float = 0.23, sigma_start: float = SIGMA_START,
                 sigma_end: Optional[float] = None) -> None:
        self.lambda_ = check_number(self.name, "lambda_", lambda_, low=0.0, low_inclusive=False)
        self.sigma_start = check_number(self.name, "sigma_start", sigma_start, low=0.0, low_inclusive=False)
        self.sigma_end = None if sigma_end is None else check_number(
            self.name, "sigma_end", sigma_end, low=0.0, high=self.sigma_start, low_inclusive=False)

    def grid(self, problem: Problem, denoiser: Denoiser, steps: int) -> Tensor:
        """sigma_1 ... sigma_K geometric (prior units), then 0 (module docstring)."""
        start = self.sigma_start * problem.scale
        if self.sigma_end is not None:
            end = self.sigma_end * problem.scale
        else:
            end = min(max(problem.sigma_y, SIGMA_END_NOISELESS * problem.scale, denoiser.sigma_min), start)
        return geometric_sigmas(steps, end, start)

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        """x_K of the HQS iteration over the levels sigmas[:-1] (the grid's final 0 excluded)."""
        noise = max(problem.sigma_y, SIGMA_Y_FLOOR * problem.scale)
        x = problem.grey(x)
        for i, sigma in enumerate(float(s) for s in sigmas[:-1]):
            z = problem.prox_l2(x, self.lambda_ * noise**2 / sigma**2)
            x = predict_at(denoiser, z, sigma).x0
            emit(callback, i, sigmas, x, x)
        if problem.sigma_y == 0:  # the exact posterior lies on {A x = y}: end on it (module docstring)
            x = problem.prox_l2(x, 0.0)
        return x


STRATEGIES = {DPIR.name: DPIR}
