"""`restore eval` and `restore compare` end to end: scores, CSV / JSON, figures, and the
one-line errors (exit status 2)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restore.cli.app import app
from restore.metrics.fidelity import psnr, ssim
from restore.operators.io import read_image, write_image

pytest.importorskip("skimage")


def image(seed: int, size=(3, 48, 64)) -> torch.Tensor:
    """A smooth random image (a low-resolution draw enlarged), quantized to 8 bits."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, size[0], size[1] // 8, size[2] // 8, generator=g)
    return torch.round(torch.nn.functional.interpolate(low, size=size[1:], mode="bilinear") * 255) / 255


@pytest.fixture()
def folders(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for i, name in enumerate(("a", "b")):
        truth = image(i)
        noisy = (truth + 0.05 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(10 + i))).clamp(0, 1)
        write_image(gt / f"{name}.png", truth)
        write_image(pred / f"{name}.png", noisy)
    return pred, gt


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_folders_give_per_image_and_mean_scores_in_table_csv_and_json(folders, tmp_path):
    pred, gt = folders
    result = run("eval", str(pred), str(gt), "--metrics", "psnr,ssim", "--csv", str(tmp_path / "s.csv"),
                 "--json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    expected = {n: (float(psnr(read_image(pred / f"{n}.png"), read_image(gt / f"{n}.png"))),
                    float(ssim(read_image(pred / f"{n}.png"), read_image(gt / f"{n}.png")))) for n in "ab"}
    lines = result.output.strip().splitlines()
    assert lines[0].split() == ["image", "psnr", "ssim"] and [row.split()[0] for row in lines[1:]] == ["a", "b", "mean"]
    assert lines[1].split()[1] == f"{expected['a'][0]:.2f}"
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["image"] for r in rows] == ["a", "b", "mean"]
    assert float(rows[1]["ssim"]) == pytest.approx(expected["b"][1], abs=1e-12)
    assert float(rows[2]["psnr"]) == pytest.approx((expected["a"][0] + expected["b"][0]) / 2, abs=1e-9)
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["conventions"]["channel"] == "rgb" and doc["conventions"]["metrics"] == ["psnr", "ssim"]
    assert doc["images"][0]["psnr"] == pytest.approx(expected["a"][0], abs=1e-12)


def test_conventions_reach_the_metrics(folders):
    pred, gt = folders
    result = run("eval", str(pred / "a.png"), str(gt / "a.png"), "--metrics", "psnr", "--channel", "y", "--crop", "4")
    assert result.exit_code == 0, result.output
    value = psnr(read_image(pred / "a.png"), read_image(gt / "a.png"), channel="y", crop=4)
    assert result.output.split()[-1] == f"{float(value):.2f}"


def test_lpips_uses_the_given_weights(folders, tmp_path):
    pytest.importorskip("lpips")
    from torchvision.models import alexnet

    from restore.metrics.lpips_weights import save_backbone
    from restore.metrics.perceptual import lpips_alex

    torch.manual_seed(1)
    weights = save_backbone({k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")},
                            tmp_path / "w.safetensors", source="test")
    pred, gt = folders
    result = run("eval", str(pred / "b.png"), str(gt / "b.png"), "--metrics", "lpips-alex",
                 "--lpips-weights", str(weights), "--json", str(tmp_path / "l.json"))
    assert result.exit_code == 0, result.output
    expected = float(lpips_alex(read_image(pred / "b.png"), read_image(gt / "b.png"), weights=weights))
    score = json.loads((tmp_path / "l.json").read_text())["images"][0]["lpips-alex"]
    assert score == pytest.approx(expected, abs=1e-12)


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert text.startswith("error:") and "\n" not in text and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


def test_errors_are_one_line_with_exit_status_2(folders, tmp_path, monkeypatch):
    pred, gt = folders
    one_line_error(run("eval", str(tmp_path / "missing.png"), str(gt / "a.png")), "no such file")
    write_image(tmp_path / "small.png", image(0, (3, 24, 32)))
    one_line_error(run("eval", str(tmp_path / "small.png"), str(gt / "a.png"), "--metrics", "psnr"), "size mismatch")
    write_image(pred / "c.png", image(2))
    one_line_error(run("eval", str(pred), str(gt), "--metrics", "psnr"), "unmatched names: c only in")
    one_line_error(run("eval", str(pred), str(gt / "a.png")), "two files or two folders")
    one_line_error(run("eval", str(pred / "a.png"), str(gt / "a.png"), "--metrics", "psnr,nope"),
                   "unknown metric 'nope'")
    one_line_error(run("metrics", "install-lpips", "--from", str(gt / "a.png")), "sha256")


def test_eval_on_a_fresh_install_scores_psnr_ssim_and_says_how_to_add_lpips(folders, tmp_path, monkeypatch):
    """No LPIPS weights anywhere (the caches point at empty folders): PSNR and SSIM are printed
    and written, LPIPS is left out with one line naming `restore metrics install-lpips`."""
    pred, gt = folders
    for variable, folder in (("XDG_CACHE_HOME", "cache"), ("TORCH_HOME", "torch")):
        (tmp_path / folder).mkdir()
        monkeypatch.setenv(variable, str(tmp_path / folder))
    monkeypatch.delenv("RESTORE_LPIPS_WEIGHTS", raising=False)
    result = CliRunner().invoke(app, ["eval", str(pred), str(gt), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("note: lpips-alex not computed") and "install-lpips" in notes[0]
    assert result.stdout.split("\n")[0].split() == ["image", "psnr", "ssim"]
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["conventions"]["metrics"] == ["psnr", "ssim"] and set(scores["mean"]) == {"image", "psnr", "ssim"}
    expected = float(psnr(read_image(pred / "a.png"), read_image(gt / "a.png")))
    assert scores["images"][0]["psnr"] == pytest.approx(expected)
    only = CliRunner().invoke(app, ["eval", str(pred), str(gt), "--metrics", "lpips-alex"])
    assert only.exit_code == 2 and "none of the metrics lpips-alex can run here" in only.stderr


def test_compare_writes_the_side_by_side_figure_with_zoom(folders, tmp_path):
    from PIL import Image

    pred, gt = folders
    truth = read_image(gt / "a.png")
    write_image(tmp_path / "y.png", truth[..., ::4, ::4])  # an SR x4 measurement
    out = tmp_path / "fig.png"
    plain = run("compare", str(gt / "a.png"), str(pred / "a.png"), str(pred / "b.png"), "--metrics", "psnr",
                "--measurement", str(tmp_path / "y.png"), "-o", str(out))
    assert plain.exit_code == 0, plain.output
    width, height = Image.open(out).size
    zoomed = run("compare", str(gt / "a.png"), str(pred / "a.png"), "--metrics", "psnr", "--zoom", "8,8,16",
                 "-o", str(tmp_path / "zoom.png"))
    assert zoomed.exit_code == 0, zoomed.output
    z_width, z_height = Image.open(tmp_path / "zoom.png").size
    # five panels (measurement, two restorations, truth, error), then three, each 64 px wide
    # shown three times enlarged (panels are at least 192 px); the zoom adds a row
    assert width == 5 * (192 + 6) + 6 and z_width == 3 * (192 + 6) + 6
    assert z_height - height >= 144
    figure = np.asarray(Image.open(tmp_path / "zoom.png").convert("RGB"))
    assert (figure == [255, 0, 0]).all(-1).any()  # the zoom box outline
    one_line_error(run("compare", str(gt / "a.png"), str(pred / "a.png"), "--metrics", "psnr", "--zoom", "40,40,30",
                       "-o", str(tmp_path / "bad.png")), "not inside")


def test_eval_figure_per_image_for_folders(folders, tmp_path):
    pred, gt = folders
    result = run("eval", str(pred), str(gt), "--metrics", "psnr", "--figure", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["a.png", "b.png"]
    one_line_error(run("eval", str(pred), str(gt), "--metrics", "psnr", "--figure", str(tmp_path / "f.png")),
                   "a folder for two folders")


def test_compare_shows_a_posterior_std_map_instead_of_the_error(folders, tmp_path):
    from PIL import Image

    from restore.figures import HEAT, heat

    assert torch.equal(heat(torch.tensor([[[[0.0, 2.0, 9.0]]]]), 2.0)[0, :, 0, 0], torch.zeros(3))
    top = heat(torch.tensor([[[[0.0, 2.0, 9.0]]]]), 2.0)[0, :, 0, 1:]
    assert torch.allclose(top, torch.tensor(HEAT[-1] / 255).float()[:, None].expand(3, 2))  # top and above
    pred, gt = folders
    std = torch.zeros(1, 3, 48, 64)
    std[..., :8, :8] = 0.2  # a corner of high posterior spread
    np.save(tmp_path / "std.npy", std[0].numpy())
    out = tmp_path / "std.png"
    result = run("compare", str(gt / "a.png"), str(pred / "a.png"), "--metrics", "psnr", "--std",
                 str(tmp_path / "std.npy"), "-o", str(out))
    assert result.exit_code == 0, result.output
    figure = np.asarray(Image.open(out).convert("RGB"))
    assert figure.shape[1] == 3 * (192 + 6) + 6  # restoration, truth, std (in place of the error map)
    last = figure[:, 2 * (192 + 6) + 6:]
    assert (last == HEAT[-1]).all(-1).sum() >= (8 * 3) ** 2  # the corner, enlarged 3x, at the top colour


def test_eval_without_the_lpips_package_says_how_to_install_it(folders, monkeypatch):
    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'lpips'")

    monkeypatch.setattr("restore.metrics.perceptual.lpips_model", missing)
    pred, gt = folders
    result = CliRunner().invoke(app, ["eval", str(pred / "a.png"), str(gt / "a.png")])
    assert result.exit_code == 0, result.output
    assert "note: lpips-alex not computed: No module named 'lpips'; install it with pip install " \
           "'diffusion-restore[metrics]'" in result.stderr
    assert result.stdout.split()[:3] == ["image", "psnr", "ssim"]
