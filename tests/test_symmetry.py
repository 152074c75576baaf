"""Group-averaged denoisers (restore.diffusion.symmetry) and their use by ``tweedie``."""
from __future__ import annotations

import pytest
import torch

from restore.diffusion.denoiser import Denoiser, Prediction
from restore.diffusion.symmetry import GROUPS, SymmetrizedDenoiser, act, act_inverse
from restore.plugins import default_registry
from restore.priors.native import NativeConfig
from restore.priors.spec import load_prior
from restore.strategies.base import Problem, StrategyNotApplicable
from restore.strategies.engine import solve


@pytest.fixture(scope="module")
def registry():
    return default_registry()


class Lopsided(Denoiser):
    """A deliberately non-equivariant denoiser: the exact one of an N(0, I) pixel prior,
    y / (1 + sigma^2), plus ``bias`` and a position-dependent quadratic term ``weight * y^2``."""

    def __init__(self, bias: torch.Tensor, weight: torch.Tensor | float = 0.0) -> None:
        self.bias, self.weight = bias, weight

    def predict(self, x, sigma):
        exact = x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)
        return Prediction(exact + self.bias + self.weight * x**2)


def test_every_element_is_inverted_and_the_groups_have_their_sizes():
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    for name, elements in GROUPS.items():
        images = {act(x, k, m).flatten().numpy().tobytes() for k, m in elements}
        assert len(images) == len(elements), name  # distinct maps on an asymmetric image
        for k, m in elements:
            assert torch.equal(act_inverse(act(x, k, m), k, m), x)
    assert [len(GROUPS[g]) for g in ("none", "hflip", "dihedral")] == [1, 2, 8]


def test_the_group_average_is_exactly_equivariant():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 6, 6, generator=gen, dtype=torch.float64)
    inner = Lopsided(torch.randn(1, 3, 6, 6, generator=gen, dtype=torch.float64),
                     torch.randn(1, 3, 6, 6, generator=gen, dtype=torch.float64))
    sym = SymmetrizedDenoiser(inner, "dihedral")
    sigma = torch.tensor([0.3], dtype=torch.float64)
    for k, m in GROUPS["dihedral"]:
        assert torch.allclose(sym(act(x, k, m), sigma), act(sym(x, sigma), k, m), atol=1e-12)
        if (k, m) != (0, False):
            assert not torch.allclose(inner(act(x, k, m), sigma), act(inner(x, sigma), k, m), atol=1e-3)


def test_the_group_average_shrinks_the_error_as_jensen_says():
    # D = D* + b with D* equivariant: D_G - D* = mean_g g^{-1} b, never longer than b.
    gen = torch.Generator().manual_seed(2)
    bias = torch.randn(1, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randn(1, 3, 8, 8, generator=gen, dtype=torch.float64)
    sigma = torch.tensor([0.5], dtype=torch.float64)
    exact = y / 1.25
    for name, elements in GROUPS.items():
        error = SymmetrizedDenoiser(Lopsided(bias), name)(y, sigma) - exact
        expected = sum(act_inverse(bias, k, m) for k, m in elements) / len(elements)
        assert torch.allclose(error, expected, atol=1e-12)
        if name != "none":
            assert error.norm() < 0.8 * bias.norm()


def test_an_unknown_group_is_refused():
    with pytest.raises(ValueError, match="unknown symmetry group 'mirror'.*dihedral"):
        SymmetrizedDenoiser(Lopsided(torch.zeros(1)), "mirror")


def test_tweedie_averages_over_the_group_and_counts_every_evaluation(registry):
    std, sigma = 0.5, 0.2
    prior = load_prior(f"gaussian:3x4x4:{std}", registry=registry)
    assert prior.symmetry == "none"
    op = registry.get("operator", "denoise")(noise={"kind": "gaussian", "sigma": sigma})
    y = op.measure(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * std,
                   generator=torch.Generator().manual_seed(1))
    expected = std**2 / (std**2 + sigma**2) * y  # isotropic prior: already equivariant
    tweedie = registry.get("strategy", "tweedie")
    for symmetry, nfe in (("prior", 1), ("none", 1), ("hflip", 2), ("dihedral", 8)):
        result = solve(Problem(prior, op, y), tweedie(symmetry=symmetry))
        assert result.nfe == nfe, symmetry
        assert torch.allclose(result.image.double(), expected, atol=1e-6)
    prior.symmetry = "hflip"  # what the prior records is what "prior" uses
    assert solve(Problem(prior, op, y), tweedie()).nfe == 2


def test_tweedie_refuses_quarter_turns_on_a_fixed_non_square_prior(registry):
    prior = load_prior("gaussian:3x4x6:0.5", registry=registry)
    op = registry.get("operator", "denoise")(noise={"kind": "gaussian", "sigma": 0.1})
    tweedie = registry.get("strategy", "tweedie")
    with pytest.raises(StrategyNotApplicable, match=r"turns images by 90 degrees.*\(3, 4, 6\).*hflip"):
        solve(Problem(prior, op, torch.zeros(1, 3, 4, 6)), tweedie(symmetry="dihedral"))
    assert solve(Problem(prior, op, torch.zeros(1, 3, 4, 6)), tweedie(symmetry="hflip")).nfe == 2
    with pytest.raises(ValueError, match="symmetry must be 'prior' or one of none, hflip, dihedral"):
        tweedie(symmetry="rotations")


def test_the_native_format_records_the_symmetry():
    config = NativeConfig(symmetry="dihedral")
    data = config.to_json()
    assert data["symmetry"] == "dihedral"
    assert NativeConfig.from_json(data) == config
    assert "symmetry" not in NativeConfig().to_json()
    assert NativeConfig.from_json(NativeConfig().to_json()).symmetry == "none"
    with pytest.raises(ValueError, match="unknown symmetry group 'upright'"):
        NativeConfig(symmetry="upright")


def test_the_embedded_prior_declares_its_training_augmentation():
    from restore.training.data import AUGMENTATION

    assert load_prior("default").symmetry == AUGMENTATION == "dihedral"


def test_the_denoising_benchmark_reports_both_tweedie_rows(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    root = Path(__file__).resolve().parents[1]
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(skdata.astronaut()[100:196, 180:276]).save(folder / "astronaut.png")
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "denoising.py"), "--data", str(folder),
                          "--sigmas", "25", "--methods", "prior,prior-sym", "--cache", str(tmp_path / "cache")],
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in out.splitlines()
            if line.startswith("| default")}
    one, eight = rows["default (Tweedie, 1 NFE)"], rows["default (Tweedie, 8 NFE, dihedral average)"]
    noisy = 20 * np.log10(255 / 25)  # PSNR of the noisy input: 20.17 dB
    assert one > noisy + 5 and eight > noisy + 5
    assert one < eight < one + 1.0  # the same estimator, averaged: 31.94 and 32.04 dB for the shipped default


def test_restore_denoise_runs_the_average_and_the_param_turns_it_off(tmp_path):
    import json

    from PIL import Image
    from skimage import data as skdata
    from typer.testing import CliRunner

    from restore.cli import app

    Image.fromarray(skdata.astronaut()[100:132, 180:212]).save(tmp_path / "noisy.png")
    runner = CliRunner()
    for extra, nfe in (((), 8), (("--param", "symmetry=none"), 1)):
        out = tmp_path / f"out{nfe}.png"
        done = runner.invoke(app, ["denoise", str(tmp_path / "noisy.png"), "--sigma", "0.05", "-o", str(out), *extra])
        assert done.exit_code == 0, done.output
        assert json.loads(out.with_suffix(".json").read_text())["nfe"] == nfe
    bad = runner.invoke(app, ["denoise", str(tmp_path / "noisy.png"), "--sigma", "0.05", "-o", str(tmp_path / "b.png"),
                              "--param", "symmetry=mirror"])
    assert bad.exit_code == 2 and "symmetry must be 'prior' or one of none, hflip, dihedral" in bad.output
