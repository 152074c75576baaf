"""Schedules and respacing equal guided-diffusion's (../shared/reference/adm/diffusion_reference.pt)."""
import math

import pytest
import torch

from restore.diffusion.schedules import VEContinuous, VPDiscrete, karras_sigmas, space_timesteps

SPECS = ["ddim50", "ddim25", "250", "100", "10,10,10", "50,30,20"]


def test_linear_and_cosine_betas_match_reference(diffusion_reference):
    assert torch.allclose(VPDiscrete.linear().betas, diffusion_reference["betas"], rtol=0, atol=1e-12)
    assert torch.allclose(VPDiscrete.cosine().betas, diffusion_reference["cosine_betas"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("spec", SPECS)
def test_respacing_matches_reference(diffusion_reference, spec):
    ref = diffusion_reference["respacing"][spec]
    kept, betas = VPDiscrete.linear().respace(spec)
    assert kept == sorted(ref["timesteps"])
    assert betas.dtype == torch.float64
    assert (betas - ref["betas"]).abs().max() <= 1e-6


def test_respacing_errors_are_clear():
    with pytest.raises(ValueError, match="ddim999"):
        space_timesteps(1000, "ddim999")
    with pytest.raises(ValueError, match="cannot take 600"):
        space_timesteps(1000, "600,600")


def test_sampling_grid_is_the_kept_sigmas_descending():
    schedule = VPDiscrete.linear()
    grid = schedule.sampling_sigmas("ddim50")
    kept, _ = schedule.respace("ddim50")
    assert grid[-1] == 0 and torch.all(grid[:-1].diff() < 0)
    abar = schedule.alphas_cumprod[kept].flip(0)
    assert torch.allclose(grid[:-1], ((1 - abar) / abar).sqrt())


def test_sigma_to_t_inverts_the_schedule_and_interpolates():
    schedule = VPDiscrete.cosine()
    t = torch.tensor([0.0, 1.0, 17.0, 998.0, 999.0], dtype=torch.float64)
    assert torch.allclose(schedule.sigma_to_t(schedule.sigmas[t.long()]), t, atol=1e-9)
    mid = (schedule.sigmas[10].log() + schedule.sigmas[11].log()) / 2
    assert math.isclose(float(schedule.sigma_to_t(mid.exp())), 10.5, abs_tol=1e-9)


def test_ve_grids():
    grid = karras_sigmas(10, 0.002, 80.0)
    assert grid[0] == pytest.approx(80.0) and grid[-2] == pytest.approx(0.002) and grid[-1] == 0
    geometric = VEContinuous(0.01, 50.0, rho=None).sampling_sigmas(5)
    ratios = geometric[:-1][:-1] / geometric[:-1][1:]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))
