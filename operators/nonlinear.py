"""Nonlinear measurement operators: Fourier phase retrieval, saturation (HDR clipping)
and a nonlinear blur.

All of them are differentiable functions of the image (B, C, H, W) for any batch,
channel count and size, on any device, in float32, float64 and bfloat16.  Steps
without reduced-precision kernels (the FFT) run in float32 for bfloat16 / float16
inputs and cast the result back (:func:`restore.operators.linalg.working_dtype`).

The JPEG-like codec lives in :mod:`restore.operators.jpeg`; the nonlinear blur builds
on :mod:`restore.operators.blur`.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from restore.operators.base import NoiseSpec, Operator
from restore.operators.linalg import working_dtype
from restore.operators.validation import ArraySource, check_choice, check_number
from restore.operators.blur import blur


class PhaseRetrieval(Operator):
    r"""Fourier phase retrieval: y = |F P x|, per channel.

    P zero-pads each H x W channel to n_H x n_W, n_H = round(oversample H) and
    n_W = round(oversample W) (halves up), the image centred; F is the orthonormal 2-D DFT
    (``norm="ortho"``, so Parseval gives ||y||^2 = ||x||^2), the zero frequency shifted to
    the centre (``fftshift``).  The magnitude is invariant to circular shifts of the padded
    canvas and to its point reflection, the trivial ambiguities of the problem.

    Source: Chung et al. 2023, "Diffusion Posterior Sampling for General Noisy Inverse
    Problems" (DPS), phase retrieval experiments, and its released code
    (``guided_diffusion/measurements.py``), which uses the same centred orthonormal FFT.
    DPS applies it to images on [-1, 1]; here x is on [0, 1].  ``oversample`` is the
    ratio of padded to original side (2.0 doubles each side, the usual oversampling
    ratio); DPS's code pads (oversample / 8) * 256 pixels on each side of its 256-pixel
    images, a ratio of 1.5 for its oversample = 2.0, which is ``oversample=1.5`` here.

    The gradient of |z| is Re(conj(z) dz) / |z|, and 0 where z = 0.
    The measurement is not an image on [0, 1]: ``image_measurement = False`` tells
    ``restore degrade`` to store it as ``.npy``.
    """

    name = "phase-retrieval"
    task = "phase-retrieval"
    example = {"oversample": 2.0}
    image_measurement = False

    def __init__(self, oversample: float = 2.0, noise: NoiseSpec = None, shape: Optional[Sequence[int]] = None) -> None:
        super().__init__(noise, shape)
        self.oversample = check_number(self.name, "oversample", oversample, low=1.0)

    def padded_size(self, n: int) -> int:
        return int(math.floor(self.oversample * n + 0.5))

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        h, w = x.shape[-2:]
        ph, pw = self.padded_size(h) - h, self.padded_size(w) - w
        padded = F.pad(x.to(working_dtype(x)), (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        spectrum = torch.fft.fftshift(torch.fft.fft2(padded, norm="ortho"), dim=(-2, -1))
        return spectrum.abs().to(x.dtype)

    def params(self) -> dict[str, Any]:
        return {"oversample": self.oversample, **super().params()}


def soft_clip(z: Tensor, softness: float) -> Tensor:
    r"""clip(z, 0, 1) = max(0, z) - max(0, z - 1), with each max(0, u) replaced by
    tau * softplus(u / tau) for ``softness`` tau > 0.

    Since 0 <= tau softplus(u / tau) - max(0, u) <= tau log 2, the result differs from
    clip(z, 0, 1) by at most tau log 2, lies in (0, 1), and its derivative
    sigmoid(z / tau) - sigmoid((z - 1) / tau) is in (0, 1) (in exact arithmetic).
    """
    return softness * (F.softplus(z / softness) - F.softplus((z - 1) / softness))


class Saturation(Operator):
    r"""Sensor saturation / HDR clipping: y = clip(gain * x, 0, 1), or a smooth clip.

    With ``softness`` tau = 0 the clip is hard: dy/dx = gain where 0 <= gain x <= 1
    (torch.clamp passes the gradient at the bounds) and exactly 0 in saturated pixels,
    so gradient guidance learns nothing there.  With tau > 0 the clip is
    :func:`soft_clip`: y = tau [softplus(gain x / tau) - softplus((gain x - 1) / tau)],
    within tau log 2 of the hard clip, with dy/dx = gain [sigmoid(gain x / tau) -
    sigmoid((gain x - 1) / tau)] > 0: near the clip points saturated pixels still pass
    a gradient, which decays like exp(-d / tau) at a distance d beyond them (and rounds
    to 0 in floating point some 20 tau out, where softplus is linear).

    Source: the clipped (saturated) exposure model of single-image HDR reconstruction,
    e.g. Eilertsen et al. 2017, "HDR image reconstruction from a single exposure using
    deep CNNs"; softplus as the smooth max(0, u) is from Dugas et al. 2001.
    """

    name = "saturation"
    example = {"gain": 2.0}

    def __init__(
        self, gain: float = 2.0, softness: float = 0.0, noise: NoiseSpec = None, shape: Optional[Sequence[int]] = None
    ) -> None:
        super().__init__(noise, shape)
        self.gain = check_number(self.name, "gain", gain, low=0.0, low_inclusive=False)
        self.softness = check_number(self.name, "softness", softness, low=0.0)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        z = self.gain * x
        return z.clamp(0, 1) if self.softness == 0 else soft_clip(z, self.softness)

    def params(self) -> dict[str, Any]:
        return {"gain": self.gain, "softness": self.softness, **super().params()}


def srgb_response(u: Tensor) -> Tensor:
    """The sRGB transfer curve (IEC 61966-2-1): 12.92 u for u <= 0.0031308, else
    1.055 u^(1/2.4) - 0.055.  Continuous with a finite slope everywhere (the linear toe
    extends to u < 0), so its gradient never blows up at black."""
    knee = 0.0031308
    return torch.where(u <= knee, 12.92 * u, 1.055 * u.clamp_min(knee) ** (1 / 2.4) - 0.055)


class NonlinearBlur(Operator):
    r"""Nonlinear blur: y = g(k * x), a blur followed by a pointwise camera response g.

    DPS (Chung et al. 2023, nonlinear deblurring) uses the learned blur model of Tran et
    al. 2021, "Explore Image Deblurring via Encoded Blur Kernel Space" (CVPR): a network
    F(x, z) with a random kernel code z.  Its weights cannot be shipped, so this is a
    stand-in with the same character (a blur that is not a linear map of the image): a
    Wiener system, the linear blur of :func:`restore.operators.blur.blur` (``kernel`` and
    its ``**options``, ``boundary``) followed by a monotone static nonlinearity:

    * ``response="srgb"`` (default): the sRGB transfer curve :func:`srgb_response`, a
      camera response mapping linear irradiance to display values;
    * ``response="tanh"``: g(u) = tanh(s u) / tanh(s), s = ``strength`` (default 2.0), a
      soft saturation that fixes 0 and 1.

    dy/dx = g'(k * x) applied before the adjoint blur, i.e. the vector-Jacobian product
    is k^T (g'(k * x) . v); g' > 0 everywhere for both responses.
    """

    name = "nonlinear-blur"
    task = "deblur"
    example = {"kernel": "gaussian"}
    RESPONSES = ("srgb", "tanh")

    def __init__(
        self,
        kernel: Union[str, ArraySource] = "gaussian",
        *,
        boundary: str = "reflect",
        response: str = "srgb",
        strength: Optional[float] = None,
        noise: NoiseSpec = None,
        shape: Optional[Sequence[int]] = None,
        **options: Any,
    ) -> None:
        super().__init__(noise, shape)
        self.response = check_choice(self.name, "response", response, self.RESPONSES)
        if response == "srgb" and strength is not None:
            raise ValueError(f"{self.name}: strength applies to response 'tanh' only, got strength={strength!r}")
        if response == "tanh":
            strength = check_number(self.name, "strength", 2.0 if strength is None else strength, low=0,
                                    low_inclusive=False)
        self.strength = strength
        self.blur = blur(kernel, boundary=boundary, shape=shape, **options)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        u = self.blur(x).to(working_dtype(x))
        if self.response == "srgb":
            return srgb_response(u).to(x.dtype)
        return (torch.tanh(self.strength * u) / math.tanh(self.strength)).to(x.dtype)

    @property
    def kernel(self) -> Tensor:
        """The normalized blur kernel in use (float64, 2-D)."""
        return self.blur.kernel

    def params(self) -> dict[str, Any]:
        blur_params = {key: value for key, value in self.blur.params().items() if key != "noise"}
        return {**blur_params, "response": self.response, "strength": self.strength, **super().params()}

    def tensors(self) -> dict[str, Tensor]:
        return self.blur.tensors()


OPERATORS = {
    PhaseRetrieval.name: PhaseRetrieval,
    Saturation.name: Saturation,
    NonlinearBlur.name: NonlinearBlur,
}
