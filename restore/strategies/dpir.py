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
(``sigma_end`` = max(sigma_y, 0.6/255), not below the denoiser's sigma_min; ``lambda_`` = 0.23)
but for three things.  K defaults to 20 (the catalog's fast default).  The start is the paper's
kind of task-specific initial guess only where one is cheap and needs no tuning: for a mask
operator (``start="fill"``, the default) the measured pixels with the holes filled by
biharmonic interpolation (:meth:`Problem.filled`), elsewhere (and with ``start="grey"``) the
mid-grey image (:meth:`Problem.grey`), whose first data step is the least-squares solution
nearest grey (for SR and blur the paper starts from bicubic / the blurred image instead).  And
``sigma_start`` (None) follows the rule behind the paper's value, that the first denoiser call
see the starting estimate's error as noise: from the fill, the paper's sigma_1 = 49/255; from
grey, which is off by the image's own deviation from grey in every unobserved coordinate, up to
half the range, 0.5 (1 on [-1, 1] priors), so the denoiser first fills what the measurement does
not see.  Screened on CBSD432 training crops (``benchmarks/restoration.py --data
../shared/data/train/cbsd432 --images 4``, 20 NFE, the crops both runs finished): on a noiseless
96 x 96 box (two crops) 19.8 dB from grey at 0.5 and 27.5 dB from the fill at sigma_1 0.2 or 0.1
(the paper's 49/255 lies between), against 27.0 for the biharmonic fill alone; on 70 % random
masks (three crops) 29.36 dB from the fill at 0.2 against 29.24 from grey at 0.5; for SR x4 and
Gaussian deblurring (two crops) grey at 0.2 lost 0.03 dB against 0.5.  (Earlier, one CBSD68
crop, 40 steps on a 70 % random mask from grey: 18.2 dB at 49/255, the grey kept, 22.9 dB at
0.25, against biharmonic's 25.0.)  Noise levels are in image units ([0, 1], the paper's x/255),
taken to prior units by (hi - lo).  ``lambda_`` stays the paper's 0.23 here; the catalog's SR
default sets 0.1 (:data:`restore.strategies.catalog.DEFAULTS`): on noisy SR x4 (sigma_y 0.025, six
CBSD432 training crops, 20 NFE) lambda 0.025 / 0.05 / 0.1 / 0.23 / 0.5 / 1.0 gave 25.39 / 25.63 /
25.78 / 25.67 / 25.29 / 24.69 dB (a smaller lambda, a smaller alpha_k, leans each data step
further toward the measurement).  Not a better default everywhere: on the same crops lambda 0.1
broke down on motion deblurring (16.81 against 27.02 dB at 0.23), whose kernel passes the noise
through near-zero frequencies once alpha_k is small (docs/STRATEGIES.md).

``ensemble`` is the paper's periodical geometric self-ensemble (Sec. 5.1.3): iteration k
denoises g_k^{-1} D(g_k z_k, sigma_k) with g_k the element k mod |G| of a symmetry group
(:mod:`restore.diffusion.symmetry`; ``prior``, the default, takes the group the prior records),
so the estimate averages the group's views over the iterations at no extra NFE, where the
common ``symmetry`` parameter averages all |G| views in every iteration at |G| times the cost.
On the four training crops above (grey start, 20 NFE) the dihedral cycle gained 0.03 to 0.06 dB
on 70 % random masks, SR x4 and Gaussian deblurring, and lost 0.08 dB on the box.

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
from restore.diffusion.symmetry import GROUPS, act, act_inverse
from restore.diffusion.schedules import geometric_sigmas
from restore.events import StepCallback
from restore.operators.validation import check_number
from restore.strategies.base import Problem, Strategy

#: sigma_1 in image units from the mid-grey start: its largest error (module docstring).
SIGMA_START = 0.5
#: sigma_1 in image units from a classical estimate: the paper's 49/255 (module docstring).
SIGMA_START_ESTIMATE = 49 / 255
#: sigma_K of the released noiseless demosaicing script, in image units.
SIGMA_END_NOISELESS = 0.6 / 255
#: The floor of sigma_y inside alpha_k in the released code, in image units.
SIGMA_Y_FLOOR = 0.255 / 255


class DPIR(Strategy):
    """Plug-and-play HQS: ``lambda_`` (the weight of the prior in the data step), noise levels
    ``sigma_start`` and ``sigma_end`` of the denoiser in image units (None: the noise level,
    at least 0.6/255), ``ensemble`` the group of the periodical self-ensemble (``none``,
    ``hflip``, ``dihedral`` or ``prior``)."""

    name = "dpir"
    requires = ("linear",)
    needs_pixel_prior = True
    assumes = ("gaussian-noise",)
    default_steps = 20
    posterior_mean = True

    def __init__(self, lambda_: float = 0.23, sigma_start: Optional[float] = None,
                 sigma_end: Optional[float] = None, ensemble: str = "prior", start: str = "fill") -> None:
        self.lambda_ = check_number(self.name, "lambda_", lambda_, low=0.0, low_inclusive=False)
        self.sigma_start = None if sigma_start is None else check_number(
            self.name, "sigma_start", sigma_start, low=0.0, low_inclusive=False)
        self.sigma_end = None if sigma_end is None else check_number(
            self.name, "sigma_end", sigma_end, low=0.0, high=self.sigma_start or SIGMA_START, low_inclusive=False)
        if ensemble != "prior" and ensemble not in GROUPS:
            raise ValueError(f"strategy {self.name!r}: ensemble must be 'prior' or one of {', '.join(GROUPS)}, "
                             f"got {ensemble!r}")
        self.ensemble = ensemble
        if start not in ("grey", "fill"):
            raise ValueError(f"strategy {self.name!r}: start must be 'grey' or 'fill', got {start!r}")
        self.start = start

    def ensemble_group(self, problem: Problem) -> tuple[tuple[int, bool], ...]:
        """The elements g_k cycle through (module docstring); quarter turns only on square images."""
        elements = GROUPS[problem.prior.symmetry if self.ensemble == "prior" else self.ensemble]
        shape = problem.prior.shape
        if len(elements) > 1 and shape is not None and (len(shape) < 2 or shape[-1] != shape[-2]):
            elements = tuple(g for g in elements if g[0] % 2 == 0)
        return elements

    def fills(self, problem: Problem) -> bool:
        """Whether the iteration starts from a classical fill (``start="fill"`` on a mask operator)."""
        return self.start == "fill" and bool(problem.operator.capabilities().get("is_mask"))

    def grid(self, problem: Problem, denoiser: Denoiser, steps: int) -> Tensor:
        """sigma_1 ... sigma_K geometric (prior units), then 0 (module docstring)."""
        first = self.sigma_start or (SIGMA_START_ESTIMATE if self.fills(problem) else SIGMA_START)
        start = first * problem.scale
        if self.sigma_end is not None:
            end = self.sigma_end * problem.scale
        else:
            end = min(max(problem.sigma_y, SIGMA_END_NOISELESS * problem.scale, denoiser.sigma_min), start)
        return geometric_sigmas(steps, end, start)

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        """x_K of the HQS iteration over the levels sigmas[:-1] (the grid's final 0 excluded)."""
        noise = max(problem.sigma_y, SIGMA_Y_FLOOR * problem.scale)
        x = problem.filled(x) if self.fills(problem) else problem.grey(x)
        group = self.ensemble_group(problem)
        for i, sigma in enumerate(float(s) for s in sigmas[:-1]):
            z = problem.prox_l2(x, self.lambda_ * noise**2 / sigma**2)
            turns, mirror = group[i % len(group)]
            x = act_inverse(predict_at(denoiser, act(z, turns, mirror), sigma).x0, turns, mirror)
            emit(callback, i, sigmas, x, x)
        if problem.sigma_y == 0:  # the exact posterior lies on {A x = y}: end on it (module docstring)
            x = problem.prox_l2(x, 0.0)
        return x


STRATEGIES = {DPIR.name: DPIR}
