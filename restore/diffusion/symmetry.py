r"""A denoiser averaged over the image symmetries its prior was trained to have.

If the data distribution p(x0) is invariant under a finite group G of orthogonal pixel
maps (flips, 90-degree rotations: a prior trained with that augmentation), so is the
noisy marginal, and the exact denoiser is equivariant: D*(g x, sigma) = g D*(x, sigma).
A learned D is equivariant only approximately; its group average

    D_G(x, sigma) = (1 / |G|) sum_{g in G} g^{-1} D(g x, sigma)

is equivariant exactly and is never further from D* in expected squared error:
since D* is the posterior mean, E||f(y) - x0||^2 = E||f(y) - D*(y)||^2 + const, and by
convexity of the squared norm (Jensen), equivariance of D* and invariance of the law of y,

    E||D_G(y) - D*(y)||^2 <= (1 / |G|) sum_g E||D(g y) - D*(g y)||^2 = E||D(y) - D*(y)||^2.

In image restoration this is the geometric self-ensemble (Timofte et al. 2016, "Seven
ways to improve example-based single image super resolution", Sec. 2.4; Lim et al.
2017, EDSR, Sec. 4.2).  Cost: |G| network evaluations per call.  Every strategy can average
its denoiser this way through the common ``symmetry`` parameter (:mod:`restore.strategies.base`).  The groups:
``none`` (identity), ``hflip`` (identity and the left-right mirror: photos of upright
scenes, faces) and ``dihedral`` (the eight rotations by multiples of 90 degrees, with and
without the mirror: the augmentation of ``restore train prior``).
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from restore.diffusion.denoiser import DelegatingDenoiser, Denoiser, Prediction

#: Group name -> its elements as (quarter turns k, mirrored first).
GROUPS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "hflip": ((0, False), (0, True)),
    "dihedral": tuple((k, mirror) for mirror in (False, True) for k in range(4)),
}


def check_group(name: str) -> str:
    if name not in GROUPS:
        raise ValueError(f"unknown symmetry group {name!r}; known: {', '.join(GROUPS)}")
    return name


def act(x: Tensor, k: int, mirror: bool) -> Tensor:
    """g x for g = (rotate by k quarter turns) o (mirror left-right if ``mirror``)."""
    if mirror:
        x = x.flip(-1)
    return x.rot90(k, dims=(-2, -1)) if k else x


def act_inverse(x: Tensor, k: int, mirror: bool) -> Tensor:
    """g^{-1} x for the g of :func:`act`."""
    if k:
        x = x.rot90(-k, dims=(-2, -1))
    return x.flip(-1) if mirror else x


class SymmetrizedDenoiser(DelegatingDenoiser):
    """D_G(x, sigma) = mean over g in ``GROUPS[group]`` of g^{-1} D(g x, sigma); the
    learned-range fraction, when the network has one, is averaged the same way."""

    def __init__(self, inner: Denoiser, group: str) -> None:
        super().__init__(inner)
        self.elements = GROUPS[check_group(group)]

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        x0: Optional[Tensor] = None
        frac: Optional[Tensor] = None
        for k, mirror in self.elements:
            pred = self.inner.predict(act(x, k, mirror), sigma)
            term = act_inverse(pred.x0, k, mirror)
            x0 = term if x0 is None else x0 + term
            if pred.var_frac is not None:
                f = act_inverse(pred.var_frac, k, mirror)
                frac = f if frac is None else frac + f
        n = len(self.elements)
        return Prediction(x0 / n, None if frac is None else frac / n)
