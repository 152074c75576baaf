r"""A linear problem seen in the SVD basis of its operator, shared by the SVD strategies
(DDRM, DDNM / DDNM+, PiGDM); the operator computes each part (:meth:`SVDOperator.spectrum`).

With A = U diag(s) V^T (:class:`restore.operators.base.SVDOperator`) acting on prior-space
pixels and the measurement y = A x + sigma_y n in prior units (:meth:`Problem.y_prior`,
:attr:`Problem.sigma_y`), the spectral coordinates are x_bar = V^T x (N = x[0].numel()
entries) and U^T y.  The first k = len(s) coordinates pair with s; a coordinate with
s_i above the numerical cutoff is *observed*, one below it (or i >= k) is not.  The cutoff
is the pseudo-inverse's rule, s_i > max(dims) eps s_max with eps the working dtype's machine
epsilon (Golub & Van Loan, Sec. 5.5.8; numpy.linalg.pinv's rcond): below it U^T y / s_i is
rounding error divided by s_i (a 61x61 Gaussian blur has singular values down to 1e-30,
and dividing by them turned noiseless deblurring into noise).  On an observed coordinate
the measurement reads

    y_bar_i = (U^T y)_i / s_i = x_bar_i + (sigma_y / s_i) n_i,

a direct noisy observation of x_bar_i with noise level sigma_y / s_i (Kawar et al. 2022,
"Denoising Diffusion Restoration Models", Sec. 3.2 and Eq. 5).  The strategies differ only
in how far they move the denoised estimate's observed coordinates toward y_bar
(:meth:`Spectrum.pull`) and in how they spend the noise of each step.
"""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from restore.strategies.base import Problem


class Spectrum:
    """The measurement of ``problem`` in spectral coordinates, in the dtype and device of ``like``
    (a batch of denoiser-space points (B, ...), B the measurement's batch size); the operator
    computes each part (:meth:`SVDOperator.spectrum`, :meth:`SVDOperator.measured_coordinates`):

    * ``singulars``: s padded with zeros to N entries, (N,);
    * ``observed``: s_i above the numerical cutoff (module docstring), (N,) bool;
    * ``y_bar``: U^T y / s on observed coordinates, 0 elsewhere, (B, N);
    * ``y_noise``: sigma_y / s_i on observed coordinates, inf elsewhere, (N,);
    * ``sigma_y``: the measurement noise in prior units.
    """

    def __init__(self, problem: Problem, like: Tensor) -> None:
        self.operator = problem.operator
        self.sigma_y = problem.sigma_y
        self.singulars, self.observed = self.operator.spectrum(like)
        self.y_bar = self.operator.measured_coordinates(problem.y_prior(tuple(like.shape[1:])), self.singulars,
                                                        self.observed)
        if self.y_bar.shape[0] != like.shape[0]:
            raise ValueError(f"spectrum: the measurement has batch size {self.y_bar.shape[0]}, "
                             f"the samples {like.shape[0]}")
        safe = torch.where(self.observed, self.singulars, torch.ones_like(self.singulars))
        self.y_noise = torch.where(self.observed, self.sigma_y / safe, torch.full_like(safe, float("inf")))

    def vt(self, x: Tensor) -> Tensor:
        """V^T x, (B, N)."""
        return self.operator.vt(x)

    def v(self, c: Tensor) -> Tensor:
        """V c, back in the shape of the samples."""
        return self.operator.v(c)

    def pull(self, x0: Tensor, weight: Union[float, Tensor]) -> Tensor:
        """V diag(w) (y_bar - V^T x0) with w = ``weight`` (a number or (N,)) on observed
        coordinates and 0 elsewhere: adding it to x0 moves each observed spectral coordinate
        the fraction w_i of the way to the measurement (:meth:`SVDOperator.spectral_pull`)."""
        return self.operator.spectral_pull(x0, self.y_bar, weight, self.observed)
