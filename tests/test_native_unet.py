"""The compact UNet and its safetensors + JSON format: exact save/load round trips, the EDM and
VP denoiser views computed by hand, any image size, and clear errors."""
import json
import math

import pytest
import torch

from restore.diffusion.denoiser import EDMDenoiser, VPNetworkDenoiser
from restore.diffusion.schedules import VEContinuous, VPDiscrete
from restore.priors.native import CONFIG, WEIGHTS, NativeConfig, load_native, native_prior, save_native
from restore.priors.spec import load_prior
from restore.priors.unet import CompactUNet, UNetConfig

ARCH = UNetConfig(channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4)
VP = {"type": "vp", "beta_schedule": "linear", "num_timesteps": 1000}


def random_unet(arch=ARCH, seed=0):
    """A UNet with every parameter random (the default init zeroes the output layers)."""
    torch.manual_seed(seed)
    net = CompactUNet(arch)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net.eval()


def test_unet_runs_at_multiples_and_rejects_other_sizes():
    net = random_unet(UNetConfig(channels=1, base_channels=8, channel_mult=(1, 2, 2), groups=4))
    assert net.multiple == 4
    assert net(torch.randn(2, 1, 12, 20), torch.tensor([0.1, 0.2])).shape == (2, 1, 12, 20)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 1, 10, 12), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="expects 1 input channels"):
        net(torch.randn(1, 3, 12, 12), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="groups=3"):
        UNetConfig(base_channels=8, groups=3)


@pytest.mark.parametrize("parametrization,schedule", [("edm", None), ("v", VP)])
def test_save_load_round_trip_is_exact(tmp_path, parametrization, schedule):
    config = NativeConfig(ARCH, parametrization, schedule or NativeConfig().schedule, data_range=(0.0, 1.0))
    net = random_unet()
    save_native(tmp_path, net, config)
    loaded, loaded_config = load_native(tmp_path)
    assert loaded_config == config
    assert json.loads((tmp_path / CONFIG).read_text()) == config.to_json()
    x, noise = torch.randn(2, 3, 8, 12), torch.tensor([-1.0, 3.0])
    with torch.no_grad():
        assert torch.equal(loaded(x, noise), net(x, noise))
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_edm_denoiser_follows_karras_table_1():
    seen = {}

    def network(x_in, c_noise):
        seen["x_in"], seen["c_noise"] = x_in, c_noise
        return torch.full_like(x_in, 2.0)

    sd = 0.5
    denoiser = EDMDenoiser(network, VEContinuous(0.002, 80.0), sigma_data=sd)
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    sigma = torch.tensor([0.1, 7.0], dtype=torch.float64)
    x0 = denoiser(x, sigma)
    s = sigma.reshape(-1, 1, 1, 1)
    assert torch.allclose(seen["c_noise"], sigma.log() / 4)
    assert torch.allclose(seen["x_in"], x / (s**2 + sd**2).sqrt())
    expected = sd**2 / (s**2 + sd**2) * x + s * sd / (s**2 + sd**2).sqrt() * 2.0
    assert torch.allclose(x0, expected)


def test_edm_with_zero_network_is_the_gaussian_posterior_mean():
    # For x0 ~ N(0, sd^2 I), E[x0 | x0 + sigma n = x] = sd^2 / (sd^2 + sigma^2) x = c_skip x.
    sd, sigma = 0.7, torch.tensor([1.3], dtype=torch.float64)
    denoiser = EDMDenoiser(lambda x, c: torch.zeros_like(x), VEContinuous(), sigma_data=sd)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    assert torch.allclose(denoiser(x, sigma), sd**2 / (sd**2 + 1.69) * x)


def test_native_prior_edm_view_pads_odd_sizes_and_matches_the_network(tmp_path):
    net = random_unet()
    save_native(tmp_path, net, NativeConfig(ARCH))
    prior = load_prior(f"unet:{tmp_path}")
    assert prior.shape is None and prior.data_range == (-1.0, 1.0) and prior.info["channels"] == 3
    assert isinstance(prior.denoiser, EDMDenoiser) and prior.denoiser.sigma_max == 80.0
    x, sigma = torch.randn(1, 3, 8, 10), torch.tensor([2.0])
    with torch.no_grad():
        expected = 0.25 / 4.25 * x + 2.0 * 0.5 / math.sqrt(4.25) * net(x / math.sqrt(4.25), sigma.log() / 4)
        assert torch.allclose(prior.denoiser(x, sigma), expected, atol=1e-6)
        odd = torch.randn(2, 3, 13, 7)
        assert prior.denoiser(odd, torch.tensor([0.5, 5.0])).shape == odd.shape


def test_native_prior_vp_view_uses_the_timestep(tmp_path):
    net = random_unet()
    save_native(tmp_path, net, NativeConfig(ARCH, "epsilon", VP))
    prior = native_prior(tmp_path, dtype=torch.float64)
    assert isinstance(prior.denoiser, VPNetworkDenoiser)
    schedule = VPDiscrete.linear(1000)
    t = 250
    sigma = schedule.sigmas[t]
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    net64 = net.double()
    with torch.no_grad():
        eps = net64(x / (1 + sigma**2).sqrt(), torch.tensor([float(t)], dtype=torch.float64))
        assert torch.allclose(prior.denoiser(x, sigma.reshape(1)), x - sigma * eps, atol=1e-9)


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory not found: .*nowhere"):
        load_prior(f"unet:{tmp_path / 'nowhere'}")
    net = random_unet()
    save_native(tmp_path, net, NativeConfig(ARCH))
    (tmp_path / WEIGHTS).rename(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="model.safetensors.*model.pt: only safetensors is read"):
        load_native(tmp_path)
    (tmp_path / "model.pt").rename(tmp_path / WEIGHTS)

    config = json.loads((tmp_path / CONFIG).read_text())
    for change, message in [
        ({"channels": 1}, "channels=1 but the architecture has 3"),
        ({"learned_sigma": True}, "learned_sigma is true"),
        ({"format": "other"}, "not a restore-unet v1 config"),
        ({"parametrization": "epsilon"}, "VE networks use 'edm'"),
        ({"parametrization": "v", "schedule": {"type": "vp", "beta_schedule": "linear"}},
         "missing keys \\['num_timesteps'\\]"),
        ({"schedule": {"type": "sde"}}, "schedule type must be 'vp' or 've'"),
        ({"architecture": {**config["architecture"], "width": 3}}, "unknown UNet architecture keys \\['width'\\]"),
    ]:
        (tmp_path / CONFIG).write_text(json.dumps({**config, **change}))
        with pytest.raises(ValueError, match=message):
            load_native(tmp_path)
    gray = {**config, "channels": 1, "architecture": {**config["architecture"], "channels": 1}}
    (tmp_path / CONFIG).write_text(json.dumps(gray))
    with pytest.raises(ValueError, match="weights take 3 input channels, config says 1"):
        load_native(tmp_path)
    (tmp_path / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="wrong channel count: .* models 3-channel images, the input has 1"):
        load_prior(f"unet:{tmp_path}", channels=1)
    with pytest.raises(ValueError, match="unet takes no options"):
        load_prior(f"unet:{tmp_path}?class=3")
