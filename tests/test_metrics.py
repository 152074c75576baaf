"""PSNR / SSIM conventions against scikit-image on real photographs (scikit-image's bundled
data images), and the registration of the built-in metrics."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

skimage = pytest.importorskip("skimage")
from scipy.ndimage import gaussian_filter  # noqa: E402
from skimage import color, data  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from restore.metrics.fidelity import luma_bt601, psnr, ssim  # noqa: E402
from restore.plugins import load_registry  # noqa: E402


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def pair():
    """A real photograph (300 x 451, RGB) on [0, 1] and a blurred, noisy, clipped version."""
    truth = data.chelsea().astype(np.float64) / 255
    rng = np.random.default_rng(0)
    pred = gaussian_filter(truth, sigma=(1.2, 1.2, 0)) + rng.normal(0, 0.03, truth.shape)
    return np.clip(pred, 0, 1), truth


def test_psnr_equals_scikit_image(pair):
    pred, truth = pair
    ours = psnr(as_tensor(pred), as_tensor(truth))
    assert ours.shape == (1,)
    assert abs(float(ours) - peak_signal_noise_ratio(truth, pred, data_range=1.0)) < 1e-9


def test_y_channel_is_scikit_images_bt601_luma(pair):
    pred, truth = pair
    y_pred, y_truth = color.rgb2ycbcr(pred)[..., 0], color.rgb2ycbcr(truth)[..., 0]  # Y on [16, 235]
    assert torch.allclose(luma_bt601(as_tensor(truth))[0, 0] * 255, torch.from_numpy(y_truth), atol=1e-9)
    ours = psnr(as_tensor(pred), as_tensor(truth), channel="y")
    assert abs(float(ours) - peak_signal_noise_ratio(y_truth, y_pred, data_range=255)) < 1e-9
    ours_ssim = ssim(as_tensor(pred), as_tensor(truth), channel="y")
    theirs = structural_similarity(y_truth, y_pred, data_range=255, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False)
    assert abs(float(ours_ssim) - theirs) < 1e-9


def test_border_crop_and_quantization(pair):
    pred, truth = pair
    cropped = psnr(as_tensor(pred), as_tensor(truth), crop=4)
    assert abs(float(cropped) - peak_signal_noise_ratio(truth[4:-4, 4:-4], pred[4:-4, 4:-4], data_range=1.0)) < 1e-9
    stored = np.round(np.clip(pred, 0, 1) * 255).astype(np.uint8)  # what a PNG of the prediction holds
    quantized = psnr(as_tensor(pred), as_tensor(truth), quantize=True)
    reference = peak_signal_noise_ratio(truth * 255, stored.astype(np.float64), data_range=255)
    assert abs(float(quantized) - reference) < 1e-9
    assert abs(float(quantized) - float(psnr(as_tensor(pred), as_tensor(truth)))) > 1e-4


def test_value_range_and_data_range(pair):
    pred, truth = (as_tensor(a) for a in pair)
    plain = float(psnr(pred, truth))
    assert abs(float(psnr(2 * pred - 1, 2 * truth - 1, value_range=(-1, 1))) - plain) < 1e-9
    assert abs(float(psnr(255 * pred, 255 * truth, value_range=(0, 255))) - plain) < 1e-9
    # The mistake of measuring [-1, 1] images with peak 1 costs 20 log10(2) dB.
    wrong = float(psnr(2 * pred - 1, 2 * truth - 1, value_range=(-1, 1), data_range=1.0))
    assert abs(plain - wrong - 20 * np.log10(2)) < 1e-9


def wang_ssim(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """SSIM from the formulas of Wang et al. (2004): Gaussian window std 1.5 (11 x 11),
    population moments, K1 = 0.01, K2 = 0.03, mean over the window-valid region."""
    blur = lambda z: gaussian_filter(z, 1.5, truncate=3.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    full = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(full[5:-5, 5:-5].mean())


def test_ssim_follows_wang_et_al(pair):
    pred, truth = pair
    reference = np.mean([wang_ssim(pred[..., c], truth[..., c]) for c in range(3)])
    assert abs(float(ssim(as_tensor(pred), as_tensor(truth))) - reference) < 1e-6
    assert float(ssim(as_tensor(truth), as_tensor(truth))) == pytest.approx(1.0, abs=1e-12)
    # scikit-image's defaults (7x7 uniform window, sample covariance) give another value.
    default = structural_similarity(truth, pred, data_range=1.0, channel_axis=2)
    assert abs(default - reference) > 1e-3


def test_batches_give_one_value_per_item(pair):
    pred, truth = (as_tensor(a) for a in pair)
    batch_pred, batch_truth = torch.cat([pred, truth]), torch.cat([truth, truth])
    values = ssim(batch_pred, batch_truth)
    assert values.shape == (2,) and float(values[1]) == pytest.approx(1.0)
    assert float(values[0]) == pytest.approx(float(ssim(pred, truth)), abs=1e-12)
    p = psnr(batch_pred, batch_truth)
    assert p[1] == float("inf") and float(p[0]) == pytest.approx(float(psnr(pred, truth)), abs=1e-12)


def test_bad_inputs_are_refused_with_the_reason(pair):
    pred, truth = (as_tensor(a) for a in pair)
    with pytest.raises(ValueError, match="equal-shape"):
        psnr(pred[..., :-1], truth)
    with pytest.raises(ValueError, match="3 channels"):
        psnr(pred[:, :1], truth[:, :1], channel="y")
    with pytest.raises(ValueError, match="crop"):
        ssim(pred, truth, crop=150)
    with pytest.raises(ValueError, match="channel must be"):
        psnr(pred, truth, channel="lab")


def test_metrics_are_registered_and_registration_imports_nothing_heavy():
    registry = load_registry()
    assert {"psnr", "ssim", "lpips-alex", "lpips-vgg", "sliced-wasserstein"} <= set(registry.names("metric"))
    code = ("import sys, restore, restore.cli; from restore.plugins import load_registry; load_registry();"
            "print(sorted(m for m in ('skimage', 'lpips', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
