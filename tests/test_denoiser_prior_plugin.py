"""The restore-denoiser-prior example distribution (plugins/restore-denoiser-prior): a user's
Gaussian denoiser f(x, sigma) as a score prior by Tweedie's formula, valid only on its noise
range, loaded through the registry and sampled through `restore sample`.

The denoisers live in a small user module written for each test: the exact MMSE denoiser of
images with i.i.d. N(MEAN, VAR) pixels, D(x, sigma) = MEAN + VAR / (VAR + sigma^2) (x - MEAN),
whose noisy marginal N(MEAN, VAR + sigma^2) gives the score in closed form, and a tiny torch
network."""
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

import restore.plugins as plugins
from plugin_install import installed
from restore.cli import app
from restore.priors.spec import load_prior

MEAN, VAR = 0.5, 0.01
USER_MODULE = f'''
import torch

MEAN, VAR = {MEAN}, {VAR}


def gaussian_pixels(x, sigma):
    """The exact MMSE denoiser of images with i.i.d. N(MEAN, VAR) pixels."""
    s2 = sigma.to(x.dtype).reshape(-1, 1, 1, 1) ** 2
    return MEAN + VAR / (VAR + s2) * (x - MEAN)


gaussian_pixels.sigma_min, gaussian_pixels.sigma_max = 0.002, 80.0


def no_range(x, sigma):
    return x


def wrong_shape(x, sigma):
    return x[:, :1]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, sigma):
        return x + self.conv(x)


tiny = Tiny()
not_callable = 3
'''


@pytest.fixture
def denoiser_prior(tmp_path, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    (user / "user_denoisers.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(user))
    yield from installed("restore-denoiser-prior", tmp_path / "site", monkeypatch)
    for name in ("user_denoisers", "skimage_adapter"):
        sys.modules.pop(name, None)


def load(spec):
    return load_prior(spec, registry=plugins.load_registry())


def test_scheme_is_registered_by_the_plugin(denoiser_prior):
    registry = plugins.load_registry()
    assert registry.failures == {}
    assert registry.entries["prior"]["denoiser"].plugin == "denoiser-prior"


def test_tweedie_score_is_the_exact_score_of_the_noisy_marginal(denoiser_prior):
    prior = load("denoiser:user_denoisers:gaussian_pixels?shape=1x4x4")
    assert prior.shape == (1, 4, 4) and prior.data_range == (0.0, 1.0)
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.3, 5.0], dtype=torch.float64)
    exact = -(x - MEAN) / (VAR + sigma.reshape(-1, 1, 1, 1) ** 2)
    assert torch.allclose(prior.denoiser.score(x, sigma), exact, rtol=1e-12, atol=0)


def test_the_noise_range_is_enforced(denoiser_prior):
    prior = load("denoiser:user_denoisers:gaussian_pixels?sigma_min=0.01&sigma_max=1")
    denoiser = prior.denoiser
    grid = denoiser.sampling_sigmas(10)
    assert float(grid[0]) == pytest.approx(1.0) and float(grid[-2]) == pytest.approx(0.01) and grid[-1] == 0
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    denoiser(x, grid[:1].expand(2))  # the ends of the grid are inside
    for outside in (0.005, 1.5):
        with pytest.raises(ValueError, match=r"valid for noise levels sigma in \[0.01, 1\].*asked for sigma = "
                                             + str(outside)):
            denoiser(x, torch.full((2,), outside, dtype=torch.float64))
    euler = plugins.load_registry().get("sampler", "euler")
    with pytest.raises(ValueError, match="valid for noise levels"):  # a sampler run on a grid beyond the range
        euler(denoiser, x, torch.tensor([3.0, 0.5, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("spec, message", [
    ("denoiser:user_denoisers:gaussian_pixels?sigma_max=100", r"declares it was trained for sigma in \[0.002, 80\]"),
    ("denoiser:user_denoisers:no_range", "state the noise range the denoiser was trained for"),
    ("denoiser:user_denoisers:no_range?sigma_min=0.5&sigma_max=0.1", "need 0 < sigma_min < sigma_max"),
    ("denoiser:user_denoisers:not_callable?sigma_min=0.1&sigma_max=1", "is not callable"),
    ("denoiser:user_denoisers:missing", "has no attribute 'missing'"),
    ("denoiser:no_such_module_here:f", "no module named 'no_such_module_here'"),
    ("denoiser:user_denoisers", "expected denoiser:MODULE:FUNCTION"),
    ("denoiser:user_denoisers:gaussian_pixels?shape=4x4", "shape='4x4' must be CxHxW"),
    ("denoiser:user_denoisers:gaussian_pixels?steps=3", "unknown option"),
])
def test_bad_specs_are_clear_errors(denoiser_prior, spec, message):
    with pytest.raises(ValueError, match=message):
        load(spec)


def test_a_denoiser_that_returns_the_wrong_shape_is_refused(denoiser_prior):
    prior = load("denoiser:user_denoisers:wrong_shape?sigma_min=0.1&sigma_max=1")
    with pytest.raises(ValueError, match="must return a tensor of the input's shape"):
        prior.denoiser(torch.rand(1, 3, 4, 4), torch.tensor([0.5]))


def test_a_torch_denoiser_is_frozen_and_differentiable_in_x(denoiser_prior):
    prior = load("denoiser:user_denoisers:tiny?sigma_min=0.01&sigma_max=1")
    network = prior.denoiser.function
    assert not network.training and not any(p.requires_grad for p in network.parameters())
    x = torch.rand(2, 1, 5, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(prior.denoiser(x, torch.tensor([0.5, 0.5])).sum(), x)
    assert grad.shape == x.shape and bool(torch.isfinite(grad).all())


def test_sampling_through_the_cli_reaches_the_gaussian_it_denoises_for(denoiser_prior, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and "[denoiser-prior]  denoiser:MODULE:FUNCTION" in listed.output
    out = tmp_path / "samples.pt"
    spec = "denoiser:user_denoisers:gaussian_pixels?shape=1x4x4"
    result = runner.invoke(app, ["sample", "--prior", spec, "--sampler", "heun", "--steps", "40", "-n", "500",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    samples = torch.load(out, weights_only=True)
    assert samples.shape == (500, 1, 4, 4)
    # 8000 i.i.d. pixels: standard errors 0.0011 (mean) and 1.6 % (variance)
    assert float(samples.mean()) == pytest.approx(MEAN, abs=0.006)
    assert float(samples.var()) == pytest.approx(VAR, rel=0.08)
    wide = runner.invoke(app, ["sample", "--prior", spec + "&sigma_max=100", "-n", "2"])
    assert wide.exit_code == 2 and "trained for sigma in [0.002, 80]" in wide.output


SKIMAGE_ADAPTER = '''
import numpy as np
import torch
from skimage.restoration import denoise_wavelet


def wavelet(x, sigma):
    """scikit-image's BayesShrink wavelet denoiser, one image at a time."""
    out = [denoise_wavelet(img.detach().cpu().numpy(), sigma=float(s), channel_axis=0, rescale_sigma=True)
           for img, s in zip(x, sigma)]
    return torch.from_numpy(np.stack(out)).to(x)
'''


def test_a_denoiser_from_another_package(denoiser_prior, tmp_path, monkeypatch):
    """scikit-image's wavelet denoiser (BSD) behind a three-line adapter: a heuristic score, not an
    MMSE one, but the range is enforced all the same and it does denoise."""
    pytest.importorskip("skimage", reason="scikit-image is an optional extra (restore[metrics])")
    (tmp_path / "user" / "skimage_adapter.py").write_text(SKIMAGE_ADAPTER)
    prior = load("denoiser:skimage_adapter:wavelet?sigma_min=0.02&sigma_max=0.3&shape=3x32x32")
    rows = torch.linspace(0, 1, 32, dtype=torch.float64)
    clean = (0.5 + 0.4 * torch.sin(6 * rows)[:, None] * torch.cos(4 * rows)[None, :]).expand(1, 3, 32, 32)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    denoised = prior.denoiser(noisy, torch.tensor([0.1]))
    assert float((denoised - clean).pow(2).mean()) < 0.5 * float((noisy - clean).pow(2).mean())
    with pytest.raises(ValueError, match=r"valid for noise levels sigma in \[0.02, 0.3\]"):
        prior.denoiser(noisy, torch.tensor([0.5]))
