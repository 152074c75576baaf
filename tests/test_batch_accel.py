"""The fast path (restore.accel): half-precision networks with float32 norms and sampler
state, the DPS gradient through a bf16 network, the torch.compile fallback."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from restore import accel
from restore.accel import Acceleration, Float32Norm, accelerate, parse_dtype
from restore.plugins import default_registry
from restore.priors.native import NativeConfig, save_native
from restore.priors.spec import load_prior
from restore.priors.unet import CompactUNet, UNetConfig
from restore.strategies.base import Problem
from restore.strategies.dps import DPS
from restore.strategies.engine import solve


@pytest.fixture(scope="module")
def registry():
    return default_registry()


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory):
    torch.manual_seed(0)
    arch = UNetConfig(base_channels=16, channel_mult=(1, 2), groups=4)
    net = CompactUNet(arch)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    return save_native(tmp_path_factory.mktemp("unet") / "tiny", net, NativeConfig(architecture=arch))


@pytest.fixture(scope="module")
def adm_spec(tmp_path_factory):
    """A tiny ADM UNet (attention at 8x8, learned sigma) saved as a state dict with its config."""
    from restore.priors.adm import ADMUNet

    config = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="8",
                  num_head_channels=16, learn_sigma=True, use_scale_shift_norm=True, resblock_updown=True)
    torch.manual_seed(1)
    net = ADMUNet.from_config(config)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    folder = tmp_path_factory.mktemp("adm")
    torch.save(net.state_dict(), folder / "tiny.pt")
    (folder / "tiny.json").write_text(json.dumps(config))
    return f"adm:{folder / 'tiny.pt'}:{folder / 'tiny.json'}"


def test_parse_dtype():
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("fp32") is torch.float32
    assert parse_dtype("bfloat16") is torch.bfloat16 and parse_dtype("float16") is torch.float16  # long spellings
    with pytest.raises(ValueError, match="unknown dtype 'half'; choose one of fp32, bf16, fp16"):
        parse_dtype("half")


def test_half_precision_keeps_norms_and_output_in_float32(unet_dir, registry):
    prior = accelerate(load_prior(f"unet:{unet_dir}", registry=registry), Acceleration(torch.bfloat16))
    _, _, network = accel.network_holder(prior)
    inner = network.network
    norms = [m for m in inner.modules() if isinstance(m, Float32Norm)]
    assert norms and all(p.dtype == torch.float32 for n in norms for p in n.parameters())
    convs = [m for m in inner.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    reference = load_prior(f"unet:{unet_dir}", registry=registry)
    x = torch.randn(2, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor(1.5)
    out, ref = prior.denoiser(x, sigma), reference.denoiser(x, sigma)
    assert out.dtype == torch.float32  # the sampler state stays float32
    assert (out - ref).norm() / ref.norm() < 2e-2
    assert prior.info["acceleration"] == {"dtype": "bf16", "channels_last": False, "compile": False}


def test_adm_uses_its_torso_dtype(adm_spec, registry):
    prior = accelerate(load_prior(adm_spec, registry=registry), Acceleration(torch.bfloat16))
    _, _, network = accel.network_holder(prior)
    assert network.dtype == torch.bfloat16  # ADMTrunk.set_torso_dtype
    assert network.out[-1].weight.dtype == torch.float32 and network.time_embed[0].weight.dtype == torch.float32


def dps_gradient(prior, y, op):
    problem = Problem(prior, op.bound_to((3, 16, 16)), y)
    x = 3.0 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    _, grad = DPS(zeta=0.5).guided_prediction(problem, prior.denoiser, x, 3.0)
    return grad


@pytest.mark.parametrize("kind", ["unet", "adm"])
def test_dps_gradient_through_bf16_network_is_finite_and_close(kind, unet_dir, adm_spec, registry):
    spec = f"unet:{unet_dir}" if kind == "unet" else adm_spec
    op = registry.get("operator", "inpaint")(mask="box")
    y = op(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)))
    exact = dps_gradient(load_prior(spec, registry=registry), y, op)
    half = dps_gradient(accelerate(load_prior(spec, registry=registry), Acceleration(torch.bfloat16)), y, op)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert not torch.equal(half, exact)  # the network did run in bf16
    assert (half - exact).norm() / exact.norm() < 5e-2


@pytest.mark.parametrize("name, params", [("dps", {"zeta": 0.5}), ("pigdm", {}), ("daps", {"langevin_steps": 5})])
def test_bf16_runs_of_gradient_strategies_stay_finite_and_near_fp32(name, params, unet_dir, registry):
    """DPS and PiGDM differentiate through the network, DAPS through the operator: with the network
    in bf16 every iterate stays finite (the engine's divergence guard would name the step) and
    the result stays near the fp32 one."""
    op = registry.get("operator", "inpaint")(mask="box", noise={"kind": "gaussian", "sigma": 0.05})
    y = op(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)))
    images = []
    for acceleration in (Acceleration(), Acceleration(torch.bfloat16)):
        prior = accelerate(load_prior(f"unet:{unet_dir}", registry=registry), acceleration)
        result = solve(Problem(prior, op, y), registry.get("strategy", name)(**params), steps=8, shape=(3, 16, 16),
                       generator=torch.Generator().manual_seed(0))
        images.append(result.image)
    assert torch.isfinite(images[1]).all()
    assert not torch.equal(images[1], images[0])
    assert (images[1] - images[0]).abs().max() < 1e-2


def test_analytic_priors_have_nothing_to_accelerate(registry):
    prior = load_prior("gmm:8", registry=registry)
    assert accelerate(prior, Acceleration()) is prior  # float32: untouched
    with pytest.raises(ValueError, match="has no neural network to accelerate"):
        accelerate(prior, Acceleration(torch.bfloat16))


def test_compile_falls_back_with_one_message(unet_dir, registry, monkeypatch):
    def unavailable(module, **kwargs):
        def broken(*args, **kw):
            raise RuntimeError("Compiler: cc not found\nmore detail")
        return broken

    monkeypatch.setattr(torch, "compile", unavailable)
    messages = []
    prior = accelerate(load_prior(f"unet:{unet_dir}", registry=registry), Acceleration(compile=True),
                       warn=messages.append)
    reference = load_prior(f"unet:{unet_dir}", registry=registry)
    x, sigma = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor(2.0)
    for _ in range(2):
        assert torch.equal(prior.denoiser(x, sigma), reference.denoiser(x, sigma))
    assert messages == ["note: --compile is unavailable here (RuntimeError: Compiler: cc not found); "
                        "running the network uncompiled"]


def test_compile_does_not_hide_the_network_s_own_errors(unet_dir, registry, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)  # "compiled" = the module itself
    messages = []
    prior = accelerate(load_prior(f"unet:{unet_dir}", registry=registry), Acceleration(compile=True),
                       warn=messages.append)
    with pytest.raises(ValueError, match="expects 3 input channels"):
        prior.denoiser(torch.zeros(1, 2, 8, 8), torch.tensor(1.0))
    assert messages == []


def test_channels_last_gives_the_same_network(unet_dir, registry):
    prior = accelerate(load_prior(f"unet:{unet_dir}", registry=registry), Acceleration(channels_last=True))
    reference = load_prior(f"unet:{unet_dir}", registry=registry)
    x, sigma = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor(2.0)
    assert torch.allclose(prior.denoiser(x, sigma), reference.denoiser(x, sigma), atol=1e-5)
