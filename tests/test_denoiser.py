"""The VE denoiser view of a VP network reproduces guided-diffusion's posterior (learned-range
variance included), and parametrization conversions round-trip."""
import math

import pytest
import torch

from restore.diffusion.denoiser import VPNetworkDenoiser
from restore.diffusion.parametrization import PARAMETRIZATIONS, from_x0, to_x0
from restore.diffusion.samplers import ddpm_posterior
from restore.diffusion.schedules import VPDiscrete


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_learned_range_posterior_matches_guided_diffusion(diffusion_reference, dtype):
    """x0 (clipped), posterior mean and learned-range log-variance at t = 10 and 900.

    The reference tensors are float32 and were computed in float32, so a float64
    computation differs from them by their own rounding: the log-variance (about -8.2,
    where a float32 ulp is 9.5e-7) is held to two float32 ulps, everything else to 1e-6.
    """
    ref = diffusion_reference
    schedule = VPDiscrete(ref["betas"])
    t = ref["t"]
    sigma = schedule.sigmas[t]
    seen = {}

    def network(x_vp, timesteps):
        seen["x"], seen["t"] = x_vp, timesteps
        return ref["model_output"].to(dtype)

    denoiser = VPNetworkDenoiser(network, schedule, parametrization="epsilon", learned_sigma=True, clip=(-1, 1))
    x_ve = (ref["x_t"].double() * (1 + sigma**2).sqrt().reshape(-1, 1, 1, 1)).to(dtype)
    pred = denoiser.predict(x_ve, sigma)
    assert torch.allclose(seen["t"].double(), t.double(), atol=1e-4)
    assert (seen["x"] - ref["x_t"]).abs().max() <= 1e-6
    assert (pred.x0 - ref["pred_xstart"]).abs().max() <= 1e-6
    for i in range(len(t)):
        s, s_next = float(sigma[i]), float(schedule.sigmas[t[i] - 1])
        item = type(pred)(pred.x0[i:i + 1], pred.var_frac[i:i + 1])
        mean, log_var = ddpm_posterior(x_ve[i:i + 1], item, s, s_next)
        assert (mean / math.sqrt(1 + s_next**2) - ref["mean"][i:i + 1]).abs().max() <= 1e-6
        err = (log_var - math.log(1 + s_next**2) - ref["log_variance"][i:i + 1]).abs()
        ulp = torch.finfo(torch.float32).eps * ref["log_variance"][i:i + 1].abs()
        assert (err <= torch.clamp(2 * ulp, min=1e-6)).all()


@pytest.mark.parametrize("kind", PARAMETRIZATIONS)
def test_parametrizations_round_trip(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64) * 3
    x0 = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.5, 3.0, 80.0], dtype=torch.float64)
    out = from_x0(kind, x0, x, sigma)
    assert torch.allclose(to_x0(kind, out, x, sigma), x0, atol=1e-9)


def test_v_prediction_matches_its_definition():
    # Salimans & Ho 2022: x_vp = alpha x0 + s eps, v = alpha eps - s x0.
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 8, generator=g, dtype=torch.float64), torch.randn(2, 8, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.3, 4.0], dtype=torch.float64)
    alpha, s = (1 + sigma**2).rsqrt()[:, None], (sigma * (1 + sigma**2).rsqrt())[:, None]
    x_ve = x0 + sigma[:, None] * eps
    assert torch.allclose(to_x0("v", alpha * eps - s * x0, x_ve, sigma), x0, atol=1e-12)
    assert torch.allclose(to_x0("epsilon", eps, x_ve, sigma), x0, atol=1e-12)
    assert torch.allclose(to_x0("score", -eps / sigma[:, None], x_ve, sigma), x0, atol=1e-12)


def test_unknown_parametrization_is_refused():
    with pytest.raises(ValueError, match="unknown parametrization 'eps'"):
        VPNetworkDenoiser(lambda x, t: x, VPDiscrete.linear(), parametrization="eps")
