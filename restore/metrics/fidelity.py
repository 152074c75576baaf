"""PSNR and SSIM with their conventions stated and selectable.

Papers disagree on how these are measured; each choice is a keyword:

* ``value_range=(lo, hi)``: the intensities of black and white in the inputs ((0, 1) at
  the project's API boundary, (-1, 1) for ADM-space tensors, (0, 255) for 8-bit arrays).
  Images are mapped to [0, 1] by (x - lo) / (hi - lo) before anything else.
* ``data_range``: the peak L in PSNR = 10 log10(L^2 / MSE) and in SSIM's constants
  C1 = (0.01 L)^2, C2 = (0.03 L)^2, on the inputs' own scale; default hi - lo (the
  correct value; a smaller one reproduces papers that used L = 1 on [-1, 1] images).
* ``channel``: ``"rgb"`` measures all channels as given; ``"y"`` measures the luma of
  ITU-R BT.601 as MATLAB's ``rgb2ycbcr`` computes it (the SR convention),
  Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 with R, G, B on [0, 1].
* ``crop``: pixels removed from every border before measuring (SR papers crop ``scale``).
* ``quantize``: round the *prediction* to 8 bits, round(clip(x, 0, 1) * 255) / 255 on
  the [0, 1] scale, as if it had been saved as a PNG (the reference is left as given).

PSNR is computed here (float64, one value per batch item, +inf for identical images).
SSIM is scikit-image's ``structural_similarity`` with the settings of Wang et al. (2004)
"Image quality assessment: from error visibility to structural similarity": an 11 x 11
Gaussian window of std 1.5 (truncated at 3.5 std), population covariances, K1 = 0.01,
K2 = 0.03; over channels the mean.  scikit-image is imported when SSIM is first called.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

CHANNELS = ("rgb", "y")
#: BT.601 luma weights on [0, 1] RGB giving Y on the 8-bit scale [16, 235] (MATLAB rgb2ycbcr).
BT601_Y = (65.481, 128.553, 24.966)
BT601_OFFSET = 16.0


def luma_bt601(x: Tensor) -> Tensor:
    """Y of (B, 3, H, W) RGB images on [0, 1], as (B, 1, H, W) on [0, 1] (see module docstring)."""
    if x.shape[1] != 3:
        raise ValueError(f"the Y channel needs RGB images (3 channels), got {x.shape[1]}")
    weights = torch.tensor(BT601_Y, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    return (BT601_OFFSET + (x * weights).sum(dim=1, keepdim=True)) / 255.0


def quantize_8bit(x: Tensor) -> Tensor:
    """round(clip(x, 0, 1) * 255) / 255: an image on [0, 1] as an 8-bit file stores it."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def prepare(x: Tensor, reference: Tensor, *, value_range: Sequence[float] = (0.0, 1.0),
            data_range: Optional[float] = None, channel: str = "rgb", crop: int = 0,
            quantize: bool = False) -> tuple[Tensor, Tensor, float]:
    """The prediction and reference as float64 (B, C, H, W) on [0, 1] after the conventions,
    and the peak on that scale."""
    if x.shape != reference.shape or x.ndim != 4:
        raise ValueError(f"prediction and reference must be equal-shape (B, C, H, W) images, "
                         f"got {tuple(x.shape)} and {tuple(reference.shape)}")
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (lo, hi) with hi > lo, got {tuple(value_range)}")
    peak = 1.0 if data_range is None else float(data_range) / (hi - lo)
    if not peak > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    h, w = x.shape[-2:]
    if not isinstance(crop, int) or crop < 0 or 2 * crop >= min(h, w):
        raise ValueError(f"crop must be an integer >= 0 leaving pixels of a {h}x{w} image, got {crop!r}")
    pred = (x.detach().to(torch.float64) - lo) / (hi - lo)
    ref = (reference.detach().to(device=pred.device, dtype=torch.float64) - lo) / (hi - lo)
    if quantize:
        pred = quantize_8bit(pred)
    if channel == "y":
        pred, ref = luma_bt601(pred), luma_bt601(ref)
    if crop:
        pred, ref = pred[..., crop:h - crop, crop:w - crop], ref[..., crop:h - crop, crop:w - crop]
    return pred, ref, peak


def psnr(x: Tensor, reference: Tensor, *, value_range: Sequence[float] = (0.0, 1.0),
         data_range: Optional[float] = None, channel: str = "rgb", crop: int = 0, quantize: bool = False) -> Tensor:
    """PSNR in dB, 10 log10(L^2 / MSE), one value per batch item (conventions: module docstring)."""
    pred, ref, peak = prepare(x, reference, value_range=value_range, data_range=data_range, channel=channel,
                              crop=crop, quantize=quantize)
    mse = ((pred - ref) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(peak**2 / mse)


def ssim(x: Tensor, reference: Tensor, *, value_range: Sequence[float] = (0.0, 1.0),
         data_range: Optional[float] = None, channel: str = "rgb", crop: int = 0, quantize: bool = False) -> Tensor:
    """SSIM of Wang et al. (2004) via scikit-image, one value per batch item (module docstring)."""
    from skimage.metrics import structural_similarity

    pred, ref, peak = prepare(x, reference, value_range=value_range, data_range=data_range, channel=channel,
                              crop=crop, quantize=quantize)
    values = []
    for a, b in zip(pred.cpu().numpy(), ref.cpu().numpy()):
        multichannel = a.shape[0] > 1
        values.append(structural_similarity(
            a if multichannel else a[0], b if multichannel else b[0], data_range=peak,
            channel_axis=0 if multichannel else None, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, K1=0.01, K2=0.03))
    return torch.tensor(values, dtype=torch.float64)


METRICS = {"psnr": psnr, "ssim": ssim}
