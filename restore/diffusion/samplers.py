"""Unconditional samplers, each one short function over a descending grid of sigmas.

Every sampler has the signature

    sampler(denoiser, x, sigmas, *, generator=None, callback=None, **options) -> x0

where ``x`` is the starting draw at ``sigmas[0]`` (:func:`restore.diffusion.start.start_draw`:
the prior's default Gaussian or the exact noisy marginal), ``sigmas`` ends in 0 and the result
is the final sample.  All work in the VE view x = x0 + sigma eps of
:mod:`restore.diffusion.denoiser`; with sigma_t^2 = 1/abar_t - 1 each step is exactly its VP
counterpart scaled by sqrt(abar), so respaced VP grids reproduce guided-diffusion's samplers.
``callback`` receives a :class:`restore.events.StepEvent` after each step; samplers never do I/O.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser, Prediction
from restore.diffusion.randomness import Generator, randn
from restore.events import StepCallback, StepEvent


def noise_like(x: Tensor, generator: Generator) -> Tensor:
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)


def predict_at(denoiser: Denoiser, x: Tensor, sigma: float) -> Prediction:
    return denoiser.predict(x, torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float64))


def emit(callback: StepCallback, i: int, sigmas: Tensor, x: Tensor, x0: Tensor) -> None:
    if callback is not None:
        callback(StepEvent(step=i, total=len(sigmas) - 1, sigma=float(sigmas[i + 1]), x=x, x0=x0))


def sigma_pairs(sigmas: Tensor):
    """Consecutive pairs (i, sigma_i, sigma_{i+1}) as floats."""
    values = [float(s) for s in sigmas]
    return [(i, values[i], values[i + 1]) for i in range(len(values) - 1)]


def ddpm_posterior(x: Tensor, pred: Prediction, sigma: float, sigma_next: float) -> tuple[Tensor, Tensor]:
    """Mean and log-variance of q(x_next | x, x0) in the VE view (Ho et al. 2020, Eq. 6-7):

        mean = x0 + (sigma_next^2 / sigma^2) (x - x0),
        beta~ = sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2.

    With a learned-range fraction f (Nichol & Dhariwal 2021, Eq. 15) the variance is
    exp(f log beta + (1 - f) log beta~) with the VP step beta = (sigma^2 - sigma_next^2) / (1 + sigma^2),
    both taken to the VE scale by the factor 1 + sigma_next^2.  Requires sigma_next > 0.
    """
    x0 = pred.x0
    mean = x0 + (sigma_next**2 / sigma**2) * (x - x0)
    log_tilde = math.log(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
    if pred.var_frac is None:
        return mean, torch.full_like(x, log_tilde)
    log_beta = math.log((sigma**2 - sigma_next**2) / (1 + sigma**2) * (1 + sigma_next**2))
    return mean, pred.var_frac * log_beta + (1 - pred.var_frac) * log_tilde


def ddpm_step(x: Tensor, pred: Prediction, sigma: float, sigma_next: float,
              generator: Optional[torch.Generator] = None) -> Tensor:
    """One ancestral step: a draw from q(x_next | x, x0) (:func:`ddpm_posterior`); x0 itself at sigma_next = 0."""
    if sigma_next == 0:
        return pred.x0
    mean, log_var = ddpm_posterior(x, pred, sigma, sigma_next)
    return mean + (0.5 * log_var).exp() * noise_like(x, generator)


def sample_ddpm(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator=None,
                callback: StepCallback = None) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2): draw x_next ~ q(x_next | x, D(x, sigma)),
    with learned-range variance when the denoiser reports it (Nichol & Dhariwal 2021)."""
    for i, s, s_next in sigma_pairs(sigmas):
        pred = predict_at(denoiser, x, s)
        x = ddpm_step(x, pred, s, s_next, generator)
        emit(callback, i, sigmas, x, pred.x0)
    return x


def ddim_noise(sigma: float, sigma_next: float, eta: float) -> float:
    """The fresh-noise level c = eta sqrt(beta~) of a DDIM step, beta~ as in :func:`ddpm_posterior`."""
    return eta * sigma_next * math.sqrt(max(sigma**2 - sigma_next**2, 0.0)) / sigma


def ddim_mean(x0: Tensor, eps: Tensor, sigma_next: float, c: float) -> Tensor:
    """The deterministic part x0 + sqrt(sigma_next^2 - c^2) eps of a DDIM-type step whose fresh
    noise has level c <= sigma_next: the noise level sigma_next is split between the kept
    direction eps and fresh noise.  DDIM uses c = :func:`ddim_noise`; DDRM / DDNM (eta sigma_next)
    and DiffPIR (sqrt(zeta) sigma_next) choose c differently and add their own noise."""
    return x0 + math.sqrt(max(sigma_next**2 - c**2, 0.0)) * eps


def forward_noise(x: Tensor, sigma: float, sigma_to: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """A draw from the forward transition q(x_to | x) = N(x, (sigma_to^2 - sigma^2) I) of the VE
    process, sigma_to >= sigma (sigma = 0 noises a clean x0 to level sigma_to)."""
    if sigma_to < sigma:
        raise ValueError(f"forward_noise: sigma_to ({sigma_to}) must be >= sigma ({sigma})")
    return x + math.sqrt(sigma_to**2 - sigma**2) * noise_like(x, generator)


def ddim_step(x: Tensor, x0: Tensor, sigma: float, sigma_next: float, eta: float = 0.0,
              generator: Optional[torch.Generator] = None, eps: Optional[Tensor] = None) -> Tensor:
    """One DDIM step (Song et al. 2021, Eq. 12) in the VE view: with eps = (x - x0) / sigma and
    c = eta sqrt(beta~) (beta~ as in :func:`ddpm_posterior`),
    x_next = x0 + sqrt(sigma_next^2 - c^2) eps + c z.  eta = 0 is deterministic, eta = 1 is DDPM.
    Strategies that correct the noise direction pass their own ``eps``."""
    if eps is None:
        eps = (x - x0) / sigma
    c = ddim_noise(sigma, sigma_next, eta)
    x_next = ddim_mean(x0, eps, sigma_next, c)
    return x_next + c * noise_like(x, generator) if c > 0 else x_next


def sample_ddim(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, eta: float = 0.0, generator=None,
                callback: StepCallback = None) -> Tensor:
    """DDIM sampling with stochasticity ``eta`` (see :func:`ddim_step`)."""
    for i, s, s_next in sigma_pairs(sigmas):
        x0 = predict_at(denoiser, x, s).x0
        x = ddim_step(x, x0, s, s_next, eta, generator)
        emit(callback, i, sigmas, x, x0)
    return x


def euler_maruyama_step(x: Tensor, x0: Tensor, sigma: float, sigma_next: float,
                        generator: Optional[torch.Generator] = None) -> Tensor:
    """One Euler-Maruyama step of the reverse VE SDE dx = -d(sigma^2) grad log p + sqrt(d(sigma^2)) dw
    (Song et al. 2021, Eq. 6; their reverse-diffusion predictor): with the score (x0 - x) / sigma^2,
    x_next = x + (sigma^2 - sigma_next^2) score + sqrt(sigma^2 - sigma_next^2) z.
    The step to sigma = 0 returns the denoised estimate, as Song et al. do."""
    if sigma_next == 0:
        return x0
    dvar = sigma**2 - sigma_next**2
    return x + dvar * (x0 - x) / sigma**2 + math.sqrt(dvar) * noise_like(x, generator)


def sample_euler_maruyama(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator=None,
                          callback: StepCallback = None) -> Tensor:
    """Euler-Maruyama sampling of the reverse VE SDE (see :func:`euler_maruyama_step`)."""
    for i, s, s_next in sigma_pairs(sigmas):
        x0 = predict_at(denoiser, x, s).x0
        x = euler_maruyama_step(x, x0, s, s_next, generator)
        emit(callback, i, sigmas, x, x0)
    return x


def sample_euler(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator=None,
                 callback: StepCallback = None) -> Tensor:
    """Euler on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, Eq. 4)."""
    for i, s, s_next in sigma_pairs(sigmas):
        x0 = predict_at(denoiser, x, s).x0
        x = x + (s_next - s) * (x - x0) / s
        emit(callback, i, sigmas, x, x0)
    return x


def sample_heun(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator=None,
                callback: StepCallback = None) -> Tensor:
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1, without churn):
    an Euler step, then the average of the slopes at both ends, except on the last step to sigma = 0."""
    for i, s, s_next in sigma_pairs(sigmas):
        x0 = predict_at(denoiser, x, s).x0
        slope = (x - x0) / s
        x_euler = x + (s_next - s) * slope
        if s_next > 0:
            slope_next = (x_euler - predict_at(denoiser, x_euler, s_next).x0) / s_next
            x = x + (s_next - s) * (slope + slope_next) / 2
        else:
            x = x_euler
        emit(callback, i, sigmas, x, x0)
    return x


def sample_pc(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, snr: float = 0.16, corrector_steps: int = 1,
              generator=None, callback: StepCallback = None) -> Tensor:
    """Predictor-corrector sampling (Song et al. 2021, Alg. 2 and 4): a reverse-diffusion
    (Euler-Maruyama) predictor step, then ``corrector_steps`` Langevin steps at the new level,
    x <- x + e g + sqrt(2 e) z with g the score and e = 2 (snr ||z|| / ||g||)^2.

    As in the authors' implementation the norms are averaged over the batch: per-item
    ratios are heavy-tailed in low dimension and inflate the spread.  Items of a batch
    therefore share the step size (and nothing else)."""
    for i, s, s_next in sigma_pairs(sigmas):
        x0 = predict_at(denoiser, x, s).x0
        x = euler_maruyama_step(x, x0, s, s_next, generator)
        for _ in range(corrector_steps if s_next > 0 else 0):
            grad = (predict_at(denoiser, x, s_next).x0 - x) / s_next**2
            z = noise_like(x, generator)
            step = 2 * (snr * z.flatten(1).norm(dim=1).mean() / grad.flatten(1).norm(dim=1).mean()) ** 2
            x = x + step * grad + (2 * step).sqrt() * z
        emit(callback, i, sigmas, x, x0)
    return x


def phi1(h: float) -> float:
    """phi_1(h) = (e^h - 1) / h (-> 1 as h -> 0), the phi-function of exponential integrators."""
    return math.expm1(h) / h if h != 0 else 1.0


def log_sigma_between(sigma: float, sigma_next: float, r: float) -> float:
    """The noise level at lambda = lambda_sigma + r h, lambda = -log sigma: sigma^(1 - r) sigma_next^r."""
    return sigma ** (1 - r) * sigma_next**r


def eps_at(denoiser: Denoiser, x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """The noise prediction eps = (x - D(x, sigma)) / sigma, which is also the probability-flow
    slope dx/dsigma, with D(x, sigma) (one evaluation)."""
    x0 = predict_at(denoiser, x, sigma).x0
    return (x - x0) / sigma, x0


def sample_dpm_solver_2(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator=None,
                        callback: StepCallback = None) -> Tensor:
    """Singlestep DPM-Solver-2 (Lu et al. 2022, "DPM-Solver", Alg. 1, r1 = 1/2) with noise prediction.

    In the VE view (lambda = -log sigma, step h = lambda_next - lambda) the exact solution is
    x_next = x - int e^(-lambda) eps d lambda, and sigma_next (e^h - 1) = sigma - sigma_next: the
    first-order update is an Euler step in sigma.  With s = sqrt(sigma sigma_next), the
    lambda-midpoint:  u = x + (s - sigma) eps(x, sigma),  x_next = x + (sigma_next - sigma) eps(u, s).
    The step to sigma = 0 (lambda = inf) is first order and returns D(x, sigma): the authors'
    implementation stops at a small sigma_min and, with ``denoise_to_zero``, ends on this data
    prediction.  NFE: 2 per step, 1 for the last.
    """
    for i, s, s_next in sigma_pairs(sigmas):
        eps, x0 = eps_at(denoiser, x, s)
        if s_next == 0:
            x = x0
        else:
            s_mid = log_sigma_between(s, s_next, 0.5)
            eps_mid, _ = eps_at(denoiser, x + (s_mid - s) * eps, s_mid)
            x = x + (s_next - s) * eps_mid
        emit(callback, i, sigmas, x, x0)
    return x


def sample_dpm_solver_3(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator=None,
                        callback: StepCallback = None) -> Tensor:
    """Singlestep DPM-Solver-3 (Lu et al. 2022, "DPM-Solver", Alg. 2, r1 = 1/3, r2 = 2/3) with
    noise prediction.

    In the VE view of :func:`sample_dpm_solver_2`, with s_k at lambda + r_k h,
    eps_0 = eps(x, sigma) and phi1 as in :func:`phi1`:

        u1 = x + (s1 - sigma) eps_0,                       D1 = eps(u1, s1) - eps_0,
        u2 = x + (s2 - sigma) eps_0 - s2 (r2 / r1) (phi1(r2 h) - 1) D1,   D2 = eps(u2, s2) - eps_0,
        x_next = x + (sigma_next - sigma) eps_0 - (sigma_next / r2) (phi1(h) - 1) D2.

    The step to sigma = 0 is first order and returns D(x, sigma), as for DPM-Solver-2.
    NFE: 3 per step, 1 for the last.
    """
    r1, r2 = 1 / 3, 2 / 3
    for i, s, s_next in sigma_pairs(sigmas):
        eps, x0 = eps_at(denoiser, x, s)
        if s_next == 0:
            x = x0
        else:
            h = math.log(s / s_next)
            s1, s2 = log_sigma_between(s, s_next, r1), log_sigma_between(s, s_next, r2)
            d1 = eps_at(denoiser, x + (s1 - s) * eps, s1)[0] - eps
            u2 = x + (s2 - s) * eps - s2 * (r2 / r1) * (phi1(r2 * h) - 1) * d1
            d2 = eps_at(denoiser, u2, s2)[0] - eps
            x = x + (s_next - s) * eps - (s_next / r2) * (phi1(h) - 1) * d2
        emit(callback, i, sigmas, x, x0)
    return x


def sample_dpm_solver_pp_2m(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator=None,
                            callback: StepCallback = None) -> Tensor:
    """Multistep DPM-Solver++(2M) (Lu et al. 2022b, "DPM-Solver++", Alg. 2) with data prediction.

    In the VE view the update of Alg. 2 divided by alpha_next is
    x_next = (sigma_next / sigma) x + (1 - sigma_next / sigma) D_hat, with
    D_hat = (1 + 1/(2r)) x0_i - (1/(2r)) x0_{i-1}, r = h_{i-1} / h_i, h = log(sigma / sigma_next):
    a DDIM step on an extrapolated x0.  The first step is first order (D_hat = x0_i); so is
    the step to sigma = 0, where h = inf and the update returns D(x, sigma) (the authors'
    implementation ends on lower-order steps, ``lower_order_final``, and with ``denoise_to_zero``
    on this data prediction).  NFE: 1 per step.
    """
    x0_prev, h_prev = None, None
    for i, s, s_next in sigma_pairs(sigmas):
        x0 = predict_at(denoiser, x, s).x0
        if s_next == 0:
            x = x0
        else:
            h = math.log(s / s_next)
            d_hat = x0 if x0_prev is None else x0 + (x0 - x0_prev) / (2 * h_prev / h)
            x = (s_next / s) * x + (1 - s_next / s) * d_hat
            x0_prev, h_prev = x0, h
        emit(callback, i, sigmas, x, x0)
    return x


def sample_langevin(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, steps_per_level: int = 5,
                    eps: Optional[float] = None, generator=None, callback: StepCallback = None) -> Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): T Langevin steps at each level of the
    grid, with step sizes alpha_i = eps sigma_i^2 / sigma_L^2.

    At each level sigma_i, ``steps_per_level`` (T) steps x <- x + (alpha_i / 2) s(x, sigma_i) +
    sqrt(alpha_i) z with the score s = (D(x, sigma_i) - x) / sigma_i^2; sigma_L is the smallest
    nonzero level, so alpha_i / sigma_i^2 = eps / sigma_L^2 on every level.  The paper
    uses eps / sigma_L^2 = 0.2 (2e-5 at sigma_L = 0.01) with T = 100; the default here,
    eps = 0.5 sigma_L^2 with T = 5, mixes faster in few steps (measured at 100 levels: on the
    Gaussian of tests/test_samplers.py 0.2 leaves the covariance 14% off, 0.5 9%; on the reference
    mixture at d = 80, 1.4-2.0x against 1.1-1.3x the exact-vs-exact floor over three seeds).

    The start ``x`` already is a draw at sigmas[0], so the levels of Alg. 1 are sigmas[1:-1]; step
    i ends at level sigmas[i + 1].  The step to sigma = 0 is the final denoising step
    x = D(x, sigma_L) (Jolicoeur-Martineau et al. 2021).  NFE: T per level, 1 for the last step.
    """
    if not (isinstance(steps_per_level, int) and steps_per_level >= 1):
        raise ValueError(f"steps_per_level must be an integer >= 1, got {steps_per_level!r}")
    sigma_last = float(sigmas[sigmas > 0].min())
    if eps is None:
        eps = 0.5 * sigma_last**2
    if not eps > 0:
        raise ValueError(f"the Langevin step eps must be > 0, got {eps}")
    for i, s, s_next in sigma_pairs(sigmas):
        if s_next == 0:
            x0 = predict_at(denoiser, x, s).x0
            x = x0
        else:
            alpha = eps * s_next**2 / sigma_last**2
            for _ in range(steps_per_level):
                x0 = predict_at(denoiser, x, s_next).x0
                x = x + (alpha / 2) * (x0 - x) / s_next**2 + math.sqrt(alpha) * noise_like(x, generator)
        emit(callback, i, sigmas, x, x0)
    return x


def sample_rk4(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator=None,
               callback: StepCallback = None) -> Tensor:
    """The classical fourth-order Runge-Kutta method on the probability-flow ODE
    dx/dsigma = f(x, sigma) = (x - D(x, sigma)) / sigma (Karras et al. 2022, Eq. 4).

    With step h = sigma_next - sigma, k1 = f(x, sigma), k2 = f(x + h k1 / 2, sigma + h / 2),
    k3 = f(x + h k2 / 2, sigma + h / 2), k4 = f(x + h k3, sigma_next),
    x_next = x + h (k1 + 2 k2 + 2 k3 + k4) / 6.  f is singular at sigma = 0, so the last step
    is an Euler step, which returns D(x, sigma).  NFE: 4 per step, 1 for the last.
    """
    def slope(x_at: Tensor, sigma: float) -> Tensor:
        return eps_at(denoiser, x_at, sigma)[0]

    for i, s, s_next in sigma_pairs(sigmas):
        k1, x0 = eps_at(denoiser, x, s)
        h = s_next - s
        if s_next == 0:
            x = x0
        else:
            k2 = slope(x + (h / 2) * k1, s + h / 2)
            k3 = slope(x + (h / 2) * k2, s + h / 2)
            k4 = slope(x + h * k3, s_next)
            x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        emit(callback, i, sigmas, x, x0)
    return x


SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler-maruyama": sample_euler_maruyama,
    "euler": sample_euler,
    "heun": sample_heun,
    "pc": sample_pc,
    "dpm-solver-2": sample_dpm_solver_2,
    "dpm-solver-3": sample_dpm_solver_3,
    "dpm-solver++2m": sample_dpm_solver_pp_2m,
    "langevin": sample_langevin,
    "rk4": sample_rk4,
}
