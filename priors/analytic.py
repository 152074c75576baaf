"""Analytic priors: Gaussian mixtures whose score, denoiser and posteriors are exact.

p(x0) = sum_k w_k N(x0; mu_k, Sigma_k), in any dimension d; samples may carry an
image shape (C, H, W) and are flattened internally.  Covariances are either
isotropic (Sigma_k = c_k I, fast in high dimension) or full.

Exact facts used (all standard Gaussian conditioning, e.g. Bishop 2006, Sec. 2.3):

* Noisy marginal: x = x0 + sigma eps ~ sum_k w_k N(mu_k, Sigma_k + sigma^2 I).
* Denoiser (Tweedie): E[x0 | x] = sum_k r_k(x) (mu_k + Sigma_k (Sigma_k + sigma^2 I)^-1 (x - mu_k)),
  r_k(x) the responsibilities under the noisy marginal (also the noisy class posterior
  p(k | x) that classifier guidance needs).
* Posterior of y = A x0 + sigma_y n: again a mixture, with
  C_k = (Sigma_k^-1 + A^T A / sigma_y^2)^-1,  m_k = C_k (Sigma_k^-1 mu_k + A^T y / sigma_y^2),
  w_k' proportional to w_k N(y; A mu_k, A Sigma_k A^T + sigma_y^2 I).

:func:`reference_mixture` is the benchmark mixture of Cardoso et al. 2024 (MCGdiff,
"Monte Carlo guided diffusion for Bayesian linear inverse problems", Sec. 4.1):
25 components with means (8i, 8j, 8i, 8j, ...) for i, j in {-2..2}, unit
covariances, weights proportional to squared standard normals.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from restore.diffusion.denoiser import Denoiser, Prediction
from restore.diffusion.schedules import VPDiscrete
from restore.priors.base import Prior


class GaussianMixture(Denoiser):
    """An exact mixture prior; the denoiser view uses ADM's linear VP schedule by default
    so that samplers run on it exactly as they do on ADM networks."""

    vp = True

    def __init__(self, weights: Tensor, means: Tensor, *, variances: Optional[Tensor] = None,
                 covariances: Optional[Tensor] = None, shape: Optional[tuple[int, ...]] = None,
                 schedule: Optional[VPDiscrete] = None) -> None:
        if (variances is None) == (covariances is None):
            raise ValueError("give exactly one of variances (isotropic, (K,)) or covariances (full, (K, d, d))")
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.dim() != 1 or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be a 1-D tensor of non-negative numbers with a positive sum")
        self.shape = tuple(shape) if shape is not None else tuple(means.shape[1:])
        self.weights = weights / weights.sum()
        self.means = torch.as_tensor(means, dtype=torch.float64).reshape(len(weights), -1)
        d = self.means.shape[1]
        if math.prod(self.shape) != d:
            raise ValueError(f"shape {self.shape} does not hold {d} values")
        if variances is not None:
            self.variances = torch.as_tensor(variances, dtype=torch.float64).reshape(len(weights))
            self.eigvals, self.eigvecs = None, None
        else:
            covariances = torch.as_tensor(covariances, dtype=torch.float64)
            if covariances.shape != (len(weights), d, d):
                raise ValueError(f"covariances must have shape ({len(weights)}, {d}, {d}), "
                                 f"got {tuple(covariances.shape)}")
            self.variances = None
            self.eigvals, self.eigvecs = torch.linalg.eigh((covariances + covariances.mT) / 2)
        self.schedule = schedule or VPDiscrete.linear()
        self.sigma_min, self.sigma_max = self.schedule.sigma_min, self.schedule.sigma_max

    # -- structure ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def covariances(self) -> Tensor:
        if self.variances is not None:
            eye = torch.eye(self.dim, dtype=torch.float64)
            return self.variances[:, None, None] * eye
        return self.eigvecs @ torch.diag_embed(self.eigvals) @ self.eigvecs.mT

    def to(self, device: torch.device | str) -> "GaussianMixture":
        """Move the parameters (float64 throughout) to ``device``; returns self."""
        for name in ("weights", "means", "variances", "eigvals", "eigvecs"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self

    def _flat(self, x: Tensor) -> Tensor:
        """x as float64 (B, d); the parameters follow x to its device on first use there."""
        if x.device != self.means.device:
            self.to(x.device)
        return x.reshape(x.shape[0], self.dim).to(torch.float64)

    # -- noisy marginal ----------------------------------------------------------------------
    def _noisy_terms(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Per component at noise level sigma (shape (B,)): log w_k N(x; mu_k, Sigma_k + sigma^2 I)
        (B, K), and the component denoisers mu_k + Sigma_k (Sigma_k + sigma^2 I)^-1 (x - mu_k) as
        (B, K, d), or for isotropic mixtures the gains c_k / (c_k + sigma^2) as (B, K)."""
        s2 = sigma.to(torch.float64).reshape(-1, 1) ** 2
        log_w = self.weights.log()
        if self.variances is not None:
            var = self.variances + s2  # (B, K)
            sq = (x**2).sum(1, keepdim=True) - 2 * x @ self.means.T + (self.means**2).sum(1)
            logp = log_w - 0.5 * self.dim * (2 * math.pi * var).log() - 0.5 * sq.clamp_min(0) / var
            return logp, self.variances / var
        lam = self.eigvals[None] + s2[:, :, None]  # (B, K, d)
        z = torch.einsum("bkd,kde->bke", x[:, None] - self.means[None], self.eigvecs)
        logp = log_w - 0.5 * ((2 * math.pi * lam).log().sum(-1) + (z**2 / lam).sum(-1))
        gain_z = z * self.eigvals[None] / lam
        return logp, self.means[None] + torch.einsum("bke,kde->bkd", gain_z, self.eigvecs)

    def class_log_posterior(self, x: Tensor, sigma: Tensor) -> Tensor:
        """log p(k | x) under the noisy marginal at sigma: the exact noisy classifier, (B, K)."""
        logp, _ = self._noisy_terms(self._flat(x), torch.as_tensor(sigma).expand(x.shape[0]))
        return logp.log_softmax(dim=1)

    def log_prob(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """log p_sigma(x), (B,)."""
        logp, _ = self._noisy_terms(self._flat(x), torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0]))
        return logp.logsumexp(dim=1)

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        flat = self._flat(x)
        logp, terms = self._noisy_terms(flat, torch.as_tensor(sigma).expand(x.shape[0]))
        r = logp.softmax(dim=1)
        if self.variances is not None:
            x0 = (r * (1 - terms)) @ self.means + (r * terms).sum(1, keepdim=True) * flat
        else:
            x0 = (r[:, :, None] * terms).sum(1)
        return Prediction(x0.to(x.dtype).reshape(x.shape))

    def score(self, x: Tensor, sigma: Tensor) -> Tensor:
        """grad_x log p_sigma(x) = (D(x, sigma) - x) / sigma^2 (Tweedie)."""
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return (self(x, torch.as_tensor(sigma)) - x) / s**2

    def sampling_sigmas(self, steps: int) -> Tensor:
        return self.schedule.sampling_sigmas(steps)

    # -- exact sampling and posteriors -------------------------------------------------------
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None, dtype=torch.float64) -> Tensor:
        """n exact draws, shape (n, *shape)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        if self.variances is not None:
            x = self.means[k] + self.variances[k, None].sqrt() * z
        else:
            root = self.eigvecs * self.eigvals.clamp_min(0).sqrt()[:, None, :]
            x = self.means[k] + torch.einsum("nde,ne->nd", root[k], z)
        return x.reshape(n, *self.shape).to(dtype)

    def posterior(self, A: Tensor, y: Tensor, sigma_y: float) -> "GaussianMixture":
        """The exact posterior p(x0 | y) for y = A x0 + sigma_y n, A of shape (m, d), y of shape (m,)."""
        if not sigma_y > 0:
            raise ValueError(f"sigma_y must be > 0 for an exact Gaussian posterior, got {sigma_y}")
        A = torch.as_tensor(A, dtype=torch.float64).reshape(-1, self.dim)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        cov = self.covariances  # (K, d, d)
        if self.variances is not None:
            prec = torch.eye(self.dim, dtype=torch.float64) / self.variances[:, None, None]
        else:
            prec = self.eigvecs @ torch.diag_embed(1 / self.eigvals) @ self.eigvecs.mT
        post_cov = torch.linalg.inv(prec + A.T @ A / sigma_y**2)
        post_cov = (post_cov + post_cov.mT) / 2
        rhs = (prec @ self.means[:, :, None]).squeeze(-1) + A.T @ y / sigma_y**2
        post_means = (post_cov @ rhs[:, :, None]).squeeze(-1)
        y_cov = A @ cov @ A.T + sigma_y**2 * torch.eye(A.shape[0], dtype=torch.float64)
        evidence = torch.distributions.MultivariateNormal(self.means @ A.T, covariance_matrix=y_cov).log_prob(y)
        log_w = self.weights.log() + evidence
        return GaussianMixture((log_w - log_w.max()).exp(), post_means, covariances=post_cov,
                               shape=self.shape, schedule=self.schedule)


def gaussian(mean: Tensor, covariance: Tensor | float) -> GaussianMixture:
    """A Gaussian prior N(mean, covariance): a scalar covariance means covariance * I."""
    mean = torch.as_tensor(mean, dtype=torch.float64)
    if isinstance(covariance, (int, float)) or torch.as_tensor(covariance).dim() == 0:
        return GaussianMixture(torch.ones(1), mean[None], variances=torch.tensor([float(covariance)]))
    return GaussianMixture(torch.ones(1), mean[None], covariances=torch.as_tensor(covariance)[None])


def reference_mixture(d: int, seed: int = 0) -> GaussianMixture:
    """The project's reference mixture in d dimensions (d even): see the module docstring."""
    if d < 2 or d % 2:
        raise ValueError(f"reference mixture needs an even dimension d >= 2, got {d}")
    grid = torch.tensor([-16.0, -8.0, 0.0, 8.0, 16.0], dtype=torch.float64)
    pairs = torch.cartesian_prod(grid, grid)  # (25, 2)
    means = pairs.repeat(1, d // 2)
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(25, generator=generator, dtype=torch.float64) ** 2
    return GaussianMixture(weights, means, variances=torch.ones(25, dtype=torch.float64))


def _load_gmm(spec: str, *, device=None, dtype=None) -> Prior:
    """``gmm:D[:SEED]``: the reference Gaussian mixture in D dimensions."""
    parts = spec.split(":")[1:]
    if not parts or not parts[0].isdigit():
        raise ValueError(f"prior spec {spec!r}: expected gmm:D[:SEED], e.g. gmm:8")
    seed = int(parts[1]) if len(parts) > 1 else 0
    mixture = reference_mixture(int(parts[0]), seed)
    return Prior(mixture, name=spec, shape=mixture.shape, data_range=(0.0, 1.0))


def _load_gaussian(spec: str, *, device=None, dtype=None) -> Prior:
    """``gaussian:SHAPE[:STD]``: N(0, STD^2 I) with SHAPE like 8 or 3x16x16 (STD default 1)."""
    parts = spec.split(":")[1:]
    try:
        shape = tuple(int(n) for n in parts[0].split("x"))
        std = float(parts[1]) if len(parts) > 1 else 1.0
    except (IndexError, ValueError):
        raise ValueError(f"prior spec {spec!r}: expected gaussian:SHAPE[:STD], e.g. gaussian:3x16x16:0.5") from None
    if not (math.isfinite(std) and std > 0) or min(shape) < 1:
        raise ValueError(f"prior spec {spec!r}: STD must be a finite number > 0 and SHAPE positive sizes")
    prior = gaussian(torch.zeros(math.prod(shape)), std**2)
    prior.shape = shape
    return Prior(prior, name=spec, shape=shape, data_range=(0.0, 1.0))


#: The analytic prior formats by spec scheme (registered by :mod:`restore.priors.plugin`).
PRIOR_FORMATS = {"gmm": _load_gmm, "gaussian": _load_gaussian}
