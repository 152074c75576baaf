"""The two targets of every restoration (docs/STRATEGIES.md): ``fidelity`` gives a posterior-mean
estimate, ``perceptual`` one posterior sample; the defaults follow the catalog, the run record
keeps the target, and a bad target is one clear error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import restore
from restore.api import RestoreError
from restore.cli import app
from restore.operators import io as rio
from restore.plugins import default_registry
from restore.strategies.catalog import (CONDITIONAL_DEFAULTS, DEFAULTS, QUALITIES, TARGETS, Default, default_run,
                                       defaults_table, hole_depth, operator_kind)

runner = CliRunner()


def test_fidelity_on_a_gaussian_prior_is_the_exact_posterior_mean():
    std, sigma = 0.5, 0.2
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * std
    y = (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).float()
    result = restore.denoise(y, sigma, prior=f"gaussian:3x4x4:{std}", seed=0, target="fidelity")
    # N(0, std^2 I) prior, y = x + sigma n: E[x | y] = std^2 / (std^2 + sigma^2) y (an estimator: one run)
    assert result.provenance["strategy"]["name"] == default_run(_denoise_op(sigma), "fast", "fidelity").method
    assert torch.allclose(result.image, std**2 / (std**2 + sigma**2) * y, atol=1e-5)
    assert result.provenance["target"] == "fidelity" and result.provenance["samples"] == 1


def _denoise_op(sigma: float):
    return default_registry().get("operator", "denoise")(noise={"kind": "gaussian", "sigma": sigma})


def test_perceptual_is_a_sample_and_fidelity_the_mean_of_the_samples():
    std, sigma = 0.5, 0.2
    y = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    common = dict(prior=f"gaussian:3x4x4:{std}", seed=3, method="ddrm", steps=10, samples=64)
    fidelity = restore.denoise(y, sigma, target="fidelity", **common)
    perceptual = restore.denoise(y, sigma, target="perceptual", **common)
    # Same seeds, same samples; the estimate is their mean, or the first of them.
    assert torch.equal(fidelity.tensors["samples"], perceptual.tensors["samples"])
    assert torch.equal(fidelity.image, fidelity.tensors["samples"].mean(dim=0))
    assert torch.equal(perceptual.image, perceptual.tensors["samples"][0])
    exact = std**2 / (std**2 + sigma**2) * y
    # A sample's squared error to E[x | y] is about the posterior variance std^2 sigma^2 / (std^2 +
    # sigma^2) per pixel; the mean of the samples is much closer (DDRM's own bias remains).
    variance = std**2 * sigma**2 / (std**2 + sigma**2)
    sample_error = float(((perceptual.image - exact) ** 2).mean())
    mean_error = float(((fidelity.image - exact) ** 2).mean())
    assert 0.3 * variance < sample_error < 3 * variance
    assert mean_error < 0.5 * sample_error
    assert perceptual.provenance["target"] == "perceptual"
    with pytest.raises(RestoreError, match="target must be fidelity or perceptual"):
        restore.denoise(y, sigma, prior="gaussian:3x4x4", target="best")


def test_a_mean_of_warm_samples_computes_the_estimate_once(monkeypatch):
    """The noisy-mask fidelity default is the mean of warm-started samples: the pipeline runs the
    samples as copies of one measurement (Problem.copies), so the warm start's DPIR estimate is
    computed for one copy only, not once per sample."""
    from restore.strategies import warm

    estimated: list[int] = []
    original = warm.initial_estimate

    def counted(kind, problem, denoiser, like):
        estimated.append(problem.y.shape[0])
        return original(kind, problem, denoiser, like)

    monkeypatch.setattr(warm, "initial_estimate", counted)
    y = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    result = restore.inpaint(y, mask, prior="gaussian:3x8x8:0.5", noise=0.05, seed=0, samples=3)
    choice = default_run(result_operator(mask, 0.05), "fast", "fidelity", shape=(3, 8, 8))
    assert dict(choice.params).get("warm_start") == "dpir" and result.provenance["samples"] == 3
    assert estimated == [1] and tuple(result.tensors["samples"].shape) == (3, 1, 3, 8, 8)


def result_operator(mask, sigma):
    return default_registry().get("operator", "inpaint")(mask=mask, noise={"kind": "gaussian", "sigma": sigma})


def test_the_defaults_table_serves_every_kind_target_and_quality():
    registry = default_registry()
    for kind, rows in {**DEFAULTS, "conditional prior": CONDITIONAL_DEFAULTS}.items():
        assert set(rows) == set(TARGETS), kind
        for target, by_quality in rows.items():
            assert set(by_quality) == set(QUALITIES), (kind, target)
            for choice in by_quality.values():
                strategy = registry.get("strategy", choice.method)
                # fidelity: an estimator of E[x | y], or the mean of several samples; perceptual: one sample
                if target == "fidelity":
                    assert strategy.posterior_mean or choice.samples > 1 or kind == "other", (kind, choice)
                else:
                    assert not strategy.posterior_mean and choice.samples == 1, (kind, choice)
                strategy(**dict(choice.params))  # the hyperparameters are the strategy's


def test_the_docs_table_is_the_catalogs():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "STRATEGIES.md").read_text()
    assert defaults_table() in doc


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rio.write_image(tmp_path / "img.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    return tmp_path


@pytest.mark.parametrize("target", ["fidelity", "perceptual"])
def test_the_run_record_keeps_the_target(work, target):
    out = runner.invoke(app, ["sr", "img.png", "--scale", "2", "--prior", "gaussian:3x32x32", "--steps", "3",
                              "--seed", "0", "--target", target, "-o", "up.png", "-q"])
    assert out.exit_code == 0, out.output
    record = json.loads((work / "up.json").read_text())
    assert record["target"] == target
    operator = default_registry().get("operator", "sr")(scale=2)
    chosen = default_run(operator, "fast", target)
    assert record["strategy"]["name"] == chosen.method
    for name, value in chosen.params:  # the default's hyperparameters reach the run (SR: DPIR's lambda)
        assert record["strategy"]["params"][name] == value, name


def test_a_bad_target_is_one_line_exit_2(work):
    for argv in (["sr", "img.png", "--scale", "2"], ["batch", ".", "-o", "out", "--op", "sr", "--scale", "2"]):
        out = runner.invoke(app, [*argv, "--prior", "gaussian:3x32x32", "--target", "best"])
        assert out.exit_code == 2, out.output
        lines = [line for line in out.output.splitlines() if line.strip()]
        assert lines == ["error: --target must be fidelity or perceptual, got 'best'"], out.output
    assert not (work / "img_restored.png").exists() and not (work / "out").exists()


def test_masks_with_noise_get_their_own_defaults():
    """A mask's default follows its noise and how deep its holes are (catalog.operator_kind):
    sparse noiseless masks (as a mask read from a file is) DPIR, noisy ones the mean of two
    warm-started DDNM+ samples, where the benchmark's rule picked it (docs/STRATEGIES.md); a
    mask whose holes are at least catalog.HOLE_DEPTH deep is a hole kind (the mean of 8 cold
    samples, 4 with noise, a cold perceptual sample) however little or much of the image it hides, a random
    dropout is not however sparse, and a generated mask's depth depends on the image size."""
    get = default_registry().get
    image, small = (3, 256, 256), (3, 6, 6)
    box = get("operator", "inpaint")(mask="box")  # half of each side: 128 x 128, or 3 x 3 in 6 x 6
    noisy_box = get("operator", "inpaint")(mask="box", noise={"kind": "gaussian", "sigma": 0.025})
    cases = [(box, image, "inpaint-hole"),
             (box, small, "inpaint"),
             (get("operator", "inpaint")(mask="random"), image, "inpaint"),
             (noisy_box, image, "inpaint-hole-noisy"),
             (noisy_box, small, "inpaint-noisy"),
             (get("operator", "inpaint")(mask="random", noise={"kind": "poisson", "rate": 100.0}), image,
              "inpaint-noisy"),
             (get("operator", "inpaint")(mask="random", ratio=0.3), image, "inpaint"),  # hides little, sparsely
             (get("operator", "inpaint")(mask="outpaint", fraction=0.6), image, "inpaint-hole"),  # hides much, in one
             (get("operator", "inpaint")(mask="box", size=[16, 16], margin=[120, 120]), image, "inpaint-hole"),
             (get("operator", "inpaint")(mask="box", size=[8, 8], margin=[124, 124]), image, "inpaint")]  # 1.875
    for op, shape, kind in cases:
        assert operator_kind(op, shape) == kind, (op, shape)
        assert operator_kind(op.bound_to(shape)) == kind, (op, shape)  # a bound operator knows its shape
    with pytest.raises(ValueError, match="give the image shape"):
        operator_kind(cases[0][0])
    for hole in (box, noisy_box):
        assert default_run(hole, shape=image) == Default("ddnm+", 20, 8, antithetic=True)
    assert default_run(box, shape=small).method == "dpir"
    noisy = default_run(cases[5][0], shape=image)
    assert (noisy.method, noisy.samples, dict(noisy.params), noisy.antithetic) == \
        ("ddnm+", 2, {"warm_start": "dpir", "t0": 0.2}, True)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(16, 16)
    mask[4:12, 4:12] = 1  # the hole
    result = restore.inpaint(x, mask, noise=0.025, prior="gaussian:3x16x16", steps=3, seed=0)
    assert result.provenance["strategy"]["name"] == "ddnm+" and result.provenance["samples"] == 2
    assert result.provenance["antithetic"] is True and result.provenance["seeds"] == [0, 0]
    assert torch.equal(result.image, result.tensors["samples"].mean(dim=0))
    clean = restore.inpaint(x, mask, prior="gaussian:3x16x16", steps=3, seed=0)
    assert clean.provenance["strategy"]["name"] == "dpir" and clean.provenance["samples"] == 1


def test_the_depth_of_a_masks_holes_counts_from_the_nearest_kept_pixel_of_its_channel():
    """catalog.hole_depth: the mean chessboard distance of a hidden entry to the nearest kept
    entry of its channel; a channel that keeps nothing counts max(H, W) an entry."""
    get = default_registry().get
    box8 = get("operator", "inpaint")(mask="box", size=[8, 8], margin=[124, 124])
    assert hole_depth(box8, (3, 256, 256)) == (28 * 1 + 20 * 2 + 12 * 3 + 4 * 4) / 64  # rings 1 to 4 deep
    mask = torch.ones(3, 6, 7)
    mask[0, 2:4, 2:4] = 0  # four entries next to kept ones
    mask[1] = 0  # nothing kept: 42 entries, 7 each
    assert hole_depth(get("operator", "inpaint")(mask=mask), (3, 6, 7)) == (4 * 1 + 42 * 7) / (4 + 42)
    assert hole_depth(get("operator", "inpaint")(mask=torch.ones(1, 6, 7)), (3, 6, 7)) == 0
    diagonal = torch.ones(1, 5, 5)
    diagonal[0, 1:4, 1:4] = 0
    diagonal[0, 2, 2] = 1  # a ring around one kept pixel: every hidden entry touches it or the outside
    assert hole_depth(get("operator", "inpaint")(mask=diagonal), (1, 5, 5)) == 1


def test_a_run_measures_its_masks_holes_once(monkeypatch):
    """The pipeline asks for the mask's kind more than once (the fast path's precision, the
    default run, its samples): the distance transform runs once per operator and image shape."""
    import scipy.ndimage

    calls = []
    transform = scipy.ndimage.distance_transform_cdt
    monkeypatch.setattr(scipy.ndimage, "distance_transform_cdt", lambda *a, **k: calls.append(1) or transform(*a, **k))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(16, 16)
    mask[2:14, 2:14] = 1  # the hole: 12 x 12, one mask shared by the three channels
    result = restore.inpaint(x, mask, prior="gaussian:3x16x16", steps=2, seed=0, precision="auto")
    assert len(calls) == 1 and result.provenance["samples"] == 8  # a noiseless hole's fidelity run: the mean of 8


@pytest.mark.parametrize("mask_kind, options, warm", [("box", {"size": [12, 12], "margin": [2, 2]}, False),
                                                     ("box", {"size": [8, 8], "margin": [4, 4]}, True),
                                                     ("random", {}, True)])
def test_the_three_front_doors_take_the_masks_perceptual_run_from_its_holes(work, mask_kind, options, warm):
    """The API, ``restore inpaint`` and ``restore batch`` run the same perceptual default on the same
    image and mask file: a cold DDNM+ sample where the mask's holes are at least
    catalog.HOLE_DEPTH deep (a 12 x 12 box, 2.53 deep), the warm start where they are shallower
    (an 8 x 8 box, 1.875; a 70 % random dropout)."""
    from PIL import Image

    from restore.operators.masks import GENERATORS

    known = GENERATORS[mask_kind](16, 16, seed=0, **options)
    Image.fromarray(((~known).numpy() * 255).astype("uint8")).save(work / "mask.png")  # white: fill
    common = ["--prior", "gaussian:3x16x16", "--steps", "2", "--seed", "0", "--target", "perceptual", "-q"]
    assert runner.invoke(app, ["inpaint", "img.png", "--mask", "mask.png", "-o", "out.png", *common]).exit_code == 0
    (work / "in").mkdir()
    (work / "img.png").rename(work / "in" / "img.png")
    out = runner.invoke(app, ["batch", "in", "-o", "batch", "--op", "inpaint", "--mask", "mask.png", *common])
    assert out.exit_code == 0, out.output
    api = restore.inpaint(work / "in" / "img.png", work / "mask.png", prior="gaussian:3x16x16", steps=2, seed=0,
                          target="perceptual")
    records = [json.loads((work / name).read_text())["strategy"] for name in ("out.json", "batch/img.json")]
    for strategy in (*records, api.provenance["strategy"]):
        assert strategy["name"] == "ddnm+" and ("warm_start" in strategy["params"]) == warm, strategy
