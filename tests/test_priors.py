"""Priors as the engine sees them: spec strings, the any-size policy (reflect padding, blended
tiles), and ADM checkpoints wired into the VE denoiser view."""
import json
import pickle
import subprocess
import sys

import numpy as np
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from restore.plugins import UnknownItemError
from restore.priors.adm import ADMCheckpointError, ADMUNet
from restore.priors.sizing import PaddedNetwork, TiledNetwork, blend_window, reflect_indices, reflect_pad, tile_starts
from restore.priors.spec import load_prior, parse_spec


def pointwise(x, t):
    """A network whose output at a pixel depends only on that pixel: tiling must not change it."""
    return 2 * x + torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1, 1, 1)


def local(x, t):
    """A network with a 3x3 receptive field and zero padding: its output depends on the tile borders."""
    return F.avg_pool2d(x, 3, stride=1, padding=1) + t.reshape(-1, 1, 1, 1)


# -- spec strings ---------------------------------------------------------------------------

def test_parse_spec():
    spec = parse_spec("adm:/m/ffhq.pt:ffhq256-dps?class=3,4&overlap=32")
    assert (spec.scheme, spec.body) == ("adm", "/m/ffhq.pt:ffhq256-dps")
    assert spec.options == {"class": "3,4", "overlap": "32"}
    assert parse_spec("default").scheme == "default" and parse_spec("default").body == ""
    with pytest.raises(ValueError, match="option 'class' is not KEY=VALUE"):
        parse_spec("adm:x.pt?class")
    with pytest.raises(ValueError, match="non-empty string"):
        parse_spec("  ")


def test_scheme_errors_and_the_default_prior():
    with pytest.raises(UnknownItemError, match="unknown prior scheme 'nope'.*known schemes: adm, default, "
                                               "default-sr3x4, diffusers, gaussian, gmm, unet"):
        load_prior("nope:x")
    with pytest.raises(ValueError, match="'default' takes no argument"):
        load_prior("default:x")


def test_the_embedded_default_prior_ships_and_runs_at_any_size():
    """The embedded prior is in the package (weights, config and card) and restores any size."""
    prior = load_prior("default", channels=3)
    card = Path(prior.info["model_card"])
    assert card.is_file() and "non-commercial" in card.read_text()
    assert prior.shape is None and prior.data_range == (-1.0, 1.0)
    assert all(not p.requires_grad for p in prior.denoiser.network.network.parameters())
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 37), torch.linspace(0, 1, 53), indexing="ij")
    disc = ((yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.08).float()  # a piecewise-smooth picture
    x = torch.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.2 + 0.6 * disc])[None]
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x0 = prior.to_image(prior.denoiser(prior.to_prior(noisy), torch.tensor([0.2])))
    # a trained denoiser: the estimate is closer to the clean image than the noisy input is
    assert x0.shape == x.shape and ((x0 - x) ** 2).mean() < 0.5 * ((noisy - x) ** 2).mean()
    with pytest.raises(ValueError, match="models 3-channel images, the input has 1"):
        load_prior("default", channels=1)


def test_the_embedded_sr3_network_ships_and_serves_only_its_task():
    """default-sr3x4 is in the package (weights, config and card): a residual SR3 network for
    bicubic x4 super-resolution with Gaussian noise sigma 0.025, which super-resolves such a
    measurement closer to the truth than bicubic interpolation (measured: MSE 0.00159 for the
    mean of 4 samples against 0.00184) and refuses other operators and noise levels."""
    import restore
    from restore.diffusion.conditional import ConditionalNetwork
    from restore.plugins import default_registry
    from restore.strategies.base import StrategyNotApplicable

    prior = load_prior("default-sr3x4", channels=3)
    card = Path(prior.info["model_card"]).read_text()
    assert "non-commercial" in card and "sigma 0.025" in card
    assert isinstance(prior.denoiser, ConditionalNetwork) and prior.denoiser.residual
    assert prior.info["measurement_sigma"] == 0.025
    assert prior.info["measurement_operator"] == {"name": "sr", "scale": 4, "method": "bicubic"}
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    disc = ((yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.08).float()  # a piecewise-smooth picture
    x = torch.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.2 + 0.6 * disc])[None]
    sr = default_registry().get("operator", "sr")(scale=4, noise={"kind": "gaussian", "sigma": 0.025})
    y = sr.measure(x, generator=torch.Generator().manual_seed(0))
    run = dict(prior="default-sr3x4", method="conditional", steps=20, seed=0, precision="fp32")
    result = restore.sr(y, 4, noise=0.025, samples=4, **run)
    bicubic = F.interpolate(y, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    assert ((result.image - x) ** 2).mean() < 0.9 * ((bicubic - x) ** 2).mean()
    with pytest.raises(StrategyNotApplicable, match="the network was trained on sigma 0.025"):
        restore.sr(y, 4, noise=0.0, **run)
    with pytest.raises(StrategyNotApplicable,
                       match="trained for sr \\(scale 4, method bicubic\\), the operator has scale 2"):
        restore.sr(y, 2, noise=0.025, **run)


def test_analytic_priors_resolve_through_the_registry():
    prior = load_prior("gaussian:1x4x4:0.5", channels=1)
    assert prior.shape == (1, 4, 4)
    with pytest.raises(ValueError, match="models 1-channel images, the input has 3"):
        load_prior("gaussian:1x4x4", channels=3)


def test_importing_the_prior_plugins_does_not_import_diffusers():
    code = "import sys, restore.priors.plugin, restore.priors.spec; assert 'diffusers' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- any image size -------------------------------------------------------------------------

@pytest.mark.parametrize("length,before,after", [(5, 2, 3), (5, 0, 11), (3, 7, 4), (1, 2, 2), (8, 0, 0)])
def test_reflect_indices_match_numpy_reflect(length, before, after):
    expected = np.pad(np.arange(length), (before, after), mode="reflect")
    assert reflect_indices(length, before, after).tolist() == expected.tolist()


def test_padded_network_equals_the_network_on_the_reflect_padded_image():
    seen = {}

    def network(x, t):
        seen["shape"] = x.shape
        return local(x, t)

    x, t = torch.randn(2, 3, 13, 6), torch.tensor([1.0, 2.0])
    out = PaddedNetwork(network, 8)(x, t)
    assert seen["shape"] == (2, 3, 16, 8) and out.shape == x.shape
    padded = F.pad(x, (1, 1, 1, 2), mode="reflect")  # centred: top 1, bottom 2, left 1, right 1
    assert torch.equal(out, local(padded, t)[..., 1:14, 1:7])


def test_tile_layout_and_blend_window():
    assert tile_starts(512, 256, 64) == [0, 128, 256]
    assert tile_starts(256, 256, 64) == [0] and tile_starts(100, 256, 64) == [0]
    for length in (257, 300, 700, 1001):
        starts = tile_starts(length, 256, 64)
        assert starts[0] == 0 and starts[-1] == length - 256
        assert all(0 < b - a <= 256 - 64 for a, b in zip(starts, starts[1:]))
    window = blend_window(32, 8, dtype=torch.float64)
    assert (window > 0).all() and torch.equal(window, window.flip(0)) and (window[8:24] == 1).all()
    # ramps of neighbours overlapping by exactly `overlap` sum to one (sin^2 + cos^2)
    assert torch.allclose(window[-8:] + window[:8], torch.ones(8, dtype=torch.float64))
    with pytest.raises(ValueError, match="overlap must be in \\[0, 16\\]"):
        TiledNetwork(pointwise, (32, 32), overlap=17)


def test_tiled_network_on_a_larger_image():
    x, t = torch.randn(2, 3, 64, 64), torch.tensor([0.5, 1.5])
    tiled = TiledNetwork(local, (32, 32), overlap=8)
    out = tiled(x, t)
    assert out.shape == x.shape
    # tiles start at 0, 16, 32: pixels [0, 16) are covered by the first tile alone
    assert torch.allclose(out[..., :16, :16], local(x[..., :32, :32], t)[..., :16, :16], atol=1e-6)
    assert torch.allclose(out[..., 48:, 48:], local(x[..., 32:, 32:], t)[..., 16:, 16:], atol=1e-6)
    # away from tile borders every tile agrees with the whole-image network, so the blend does too
    assert torch.allclose(out[..., 20:28, 20:28], local(x, t)[..., 20:28, 20:28], atol=1e-6)
    assert torch.allclose(TiledNetwork(pointwise, (32, 32))(x, t), pointwise(x, t), atol=1e-6)


@pytest.mark.parametrize("size", [(37, 9), (70, 33), (32, 32), (20, 50)])
def test_tiled_network_odd_and_small_sizes(size):
    x = torch.randn(1, 2, *size, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.25], dtype=torch.float64)
    out = TiledNetwork(pointwise, (32, 32), overlap=8)(x, t)
    assert out.shape == x.shape and torch.allclose(out, pointwise(x, t))
    out.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 2.0))


def test_small_image_is_reflect_padded_to_the_tile():
    x, t = torch.randn(1, 3, 20, 32), torch.tensor([1.0])
    seen = {}

    def network(x, t):
        seen["shape"] = x.shape
        return local(x, t)

    out = TiledNetwork(network, (32, 32))(x, t)
    canvas, (top, left) = reflect_pad(x, 32, 32)
    assert seen["shape"] == (1, 3, 32, 32) and (top, left) == (6, 0)
    assert torch.equal(canvas, F.pad(x, (0, 0, 6, 6), mode="reflect"))
    assert torch.equal(out, local(canvas, t)[..., 6:26, :])


# -- ADM checkpoints ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_adm(shared_dir, tmp_path_factory):
    """The shared tiny ADM reference saved as a plain state dict plus its create_model config."""
    path = shared_dir / "reference" / "adm" / "tiny_unet_reference.pt"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    ref = torch.load(path, weights_only=True)
    folder = tmp_path_factory.mktemp("adm")
    torch.save(ref["state_dict"], folder / "tiny.pt")
    (folder / "tiny.json").write_text(json.dumps(ref["config"]))
    return folder, ref


def test_adm_prior_reproduces_guided_diffusion(tiny_adm, diffusion_reference):
    folder, _ = tiny_adm
    ref = diffusion_reference
    prior = load_prior(f"adm:{folder / 'tiny.pt'}:{folder / 'tiny.json'}", channels=3)
    assert prior.shape == (3, 32, 32) and prior.data_range == (-1.0, 1.0) and prior.info["size_policy"] == "tile"
    schedule = prior.denoiser.schedule
    assert torch.allclose(schedule.betas, ref["betas"].double(), rtol=1e-12, atol=0)
    sigma = schedule.sigmas[ref["t"]]
    x_ve = (ref["x_t"].double() * (1 + sigma**2).sqrt().reshape(-1, 1, 1, 1)).float()
    with torch.no_grad():
        pred = prior.denoiser.predict(x_ve, sigma)
    assert (pred.x0 - ref["pred_xstart"]).abs().max() <= 1e-5
    assert (pred.var_frac - (ref["model_output"][:, 3:] + 1) / 2).abs().max() <= 1e-5


def test_adm_prior_on_a_double_size_and_an_odd_size_image(tiny_adm):
    folder, ref = tiny_adm
    prior = load_prior(f"adm:{folder / 'tiny.pt'}:{folder / 'tiny.json'}?overlap=8")
    network = prior.denoiser.network.network  # the ADM UNet inside the tiling wrapper
    x, t = torch.randn(1, 3, 64, 32), torch.tensor([500.0])
    with torch.no_grad():
        out = prior.denoiser.network(x, t)  # three 32x32 tiles, at rows 0, 16, 32
        assert out.shape == (1, 6, 64, 32)
        assert torch.allclose(out[..., :16, :], network(x[..., :32, :], t)[..., :16, :], atol=1e-5)
        assert torch.allclose(out[..., 48:, :], network(x[..., 32:, :], t)[..., 16:, :], atol=1e-5)
        assert prior.denoiser(torch.randn(1, 3, 45, 20), torch.tensor([1.0])).shape == (1, 3, 45, 20)


def test_class_conditional_adm_takes_labels_from_the_spec(tmp_path):
    config = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="",
                  class_cond=True, learn_sigma=False)
    torch.manual_seed(0)
    net = ADMUNet.from_config(config)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    torch.save(net.state_dict(), tmp_path / "cond.pt")
    (tmp_path / "cond.json").write_text(json.dumps(config))
    base = f"adm:{tmp_path / 'cond.pt'}:{tmp_path / 'cond.json'}"
    prior = load_prior(base + "?class=7")
    assert prior.info["class_labels"].tolist() == [7]
    x, sigma = torch.randn(2, 3, 16, 16), torch.tensor([0.5, 0.5])
    schedule = prior.denoiser.schedule
    t = schedule.sigma_to_t(sigma.double()).float()
    with torch.no_grad():
        x_vp = x / (1 + 0.25) ** 0.5
        for labels in ([7, 7], [3, 900]):
            prior.info["class_labels"] = torch.tensor(labels)
            eps = net(x_vp, t, y=torch.tensor(labels))
            assert torch.allclose(prior.denoiser(x, sigma), (x - 0.5 * eps).clamp(-1, 1), atol=1e-5)
    with pytest.raises(ValueError, match="class-conditional: give labels with the spec option"):
        load_prior(base).denoiser(x, sigma)
    with pytest.raises(ValueError, match="3 class labels for a batch of 2"):
        load_prior(base + "?class=1,2,3").denoiser(x, sigma)


def test_adm_errors(tmp_path, tiny_adm):
    folder, _ = tiny_adm
    with pytest.raises(FileNotFoundError, match="ADM checkpoint not found: .*missing.pt"):
        load_prior(f"adm:{tmp_path / 'missing.pt'}:ffhq256-dps")
    with pytest.raises(ValueError, match="unknown ADM preset 'ffhq'"):
        load_prior(f"adm:{folder / 'tiny.pt'}:ffhq")
    with pytest.raises(ValueError, match="class= given but the model is not class-conditional"):
        load_prior(f"adm:{folder / 'tiny.pt'}:{folder / 'tiny.json'}?class=1")
    with pytest.raises(ValueError, match="unknown option\\(s\\) label; adm takes class, overlap"):
        load_prior(f"adm:{folder / 'tiny.pt'}?label=1")
    no_sigma = tmp_path / "no_sigma.json"
    no_sigma.write_text(json.dumps({**json.loads((folder / "tiny.json").read_text()), "learn_sigma": False}))
    with pytest.raises(ADMCheckpointError, match="wrong channel count: the checkpoint has 6 outputs"):
        load_prior(f"adm:{folder / 'tiny.pt'}:{no_sigma}")
    with pytest.raises(FileNotFoundError, match="ADM config not found: .*none.json"):
        load_prior(f"adm:{folder / 'tiny.pt'}:{tmp_path / 'none.json'}")
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Exploit(), protocol=2))
    with pytest.raises(ADMCheckpointError, match="refused"):
        load_prior(f"adm:{evil}")


class Exploit:
    """A pickle that would run code when unpickled without weights_only."""

    def __reduce__(self):
        return (print, ("pwned",))
