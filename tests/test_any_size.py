"""The image's shape is the problem's shape (issue 8): every registered strategy restores a
37 x 53 image (odd, not the prior's size) with a fixed-size prior (a 16 x 16 network,
tiled) and with an any-size prior (a fully convolutional network, padded)."""
from __future__ import annotations

import pytest
import torch

from restore.diffusion.classifier import ADMClassifierGuide
from restore.diffusion.conditional import ConditionalNetwork, LeadingChannels
from restore.diffusion.denoiser import VPNetworkDenoiser
from restore.diffusion.schedules import VPDiscrete
from restore.operators.noise import GaussianNoise
from restore.plugins import load_registry
from restore.priors.base import Prior
from restore.priors.sizing import PaddedNetwork, TiledNetwork
from restore.priors.unet import CompactUNet, UNetConfig
from restore.strategies.base import Problem
from restore.strategies.engine import solve

REGISTRY = load_registry()
IMAGE = (3, 37, 53)
SCHEDULE = VPDiscrete.linear(1000)


def unet(in_channels: int = 3) -> CompactUNet:
    torch.manual_seed(0)
    network = CompactUNet(UNetConfig(channels=in_channels, base_channels=8, channel_mult=(1, 2), groups=4))
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0, 0.05)
    return network.eval().requires_grad_(False)


def sized(network, kind: str):
    if kind == "fixed":
        return TiledNetwork(network, (16, 16)), (3, 16, 16)
    return PaddedNetwork(network, 2), None


def prior(kind: str) -> Prior:
    network, shape = sized(unet(), kind)
    return Prior(VPNetworkDenoiser(network, SCHEDULE, clip=(-1.0, 1.0)), name=f"{kind}-unet", shape=shape,
                 data_range=(-1.0, 1.0))


def conditional_prior(kind: str) -> Prior:
    """A conditional network trained (as it says) for the test's measurement noise, sigma 0.05."""
    network, shape = sized(LeadingChannels(unet(6), 3), kind)
    return Prior(ConditionalNetwork(network, SCHEDULE, condition="pinv", measurement_sigma=0.05),
                 name=f"{kind}-conditional", shape=shape, data_range=(-1.0, 1.0))


def mean_classifier(x_vp, t):
    """Two classes, bright and dark, at any image size."""
    m = x_vp.mean(dim=(1, 2, 3))
    return torch.stack([m, -m], dim=1)


PARAMS = {
    "classifier-guidance": lambda: {"strategy": REGISTRY.get("strategy", "dps")(zeta=0.5),
                                    "classifier": ADMClassifierGuide(mean_classifier), "labels": 0},
    "daps": lambda: {"ode_steps": 1, "langevin_steps": 1},
    "repaint": lambda: {"jump_length": 1, "jump_n_sample": 1},
}


@pytest.mark.parametrize("kind", ["fixed", "any"])
@pytest.mark.parametrize("name", REGISTRY.names("strategy"))
def test_every_strategy_restores_an_odd_size_image(name, kind):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, *IMAGE, generator=g)
    if REGISTRY.get("strategy", name).only_task == "denoise":
        op = REGISTRY.get("operator", "denoise")(noise=GaussianNoise(0.05))
    else:
        op = REGISTRY.get("operator", "inpaint")(mask="box", noise=GaussianNoise(0.0 if name in ("ddnm", "repaint")
                                                                                 else 0.05))
    problem = Problem(conditional_prior(kind) if name == "conditional" else prior(kind), op, op.measure(x, generator=g))
    strategy = REGISTRY.get("strategy", name)(**PARAMS.get(name, dict)())
    result = solve(problem, strategy, steps=3, shape=IMAGE, generator=g, registry=REGISTRY)
    assert result.image.shape == (1, *IMAGE) and torch.isfinite(result.image).all()


def test_a_bound_operator_gives_the_shape():
    # An operator bound to the image's size gives the shape; no shape= needed, and the SVD
    # strategies read the measurement at that size, not at the prior's 16 x 16.
    mask = (torch.rand(1, 37, 53, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    op = REGISTRY.get("operator", "inpaint")(mask=mask, noise=GaussianNoise(0.05), shape=list(IMAGE))
    y = op.measure(torch.rand(2, *IMAGE))
    for name in ("ddrm", "ddnm+", "pigdm", "diffpir"):
        result = solve(Problem(prior("fixed"), op, y), REGISTRY.get("strategy", name)(), steps=2, registry=REGISTRY)
        assert result.image.shape == (2, *IMAGE)
