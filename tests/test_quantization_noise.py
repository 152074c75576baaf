"""An 8-bit measurement file carries rounding noise: deblurring a 'noiseless' blurred PNG must
not divide it by near-zero singular values (it gave 5.5 dB on a photo before, 24.5 after)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from restore.cli import app

PHOTO = Path(__file__).resolve().parents[1] / "examples" / "data" / "chelsea_scribbled.png"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def test_a_noiseless_blurred_png_deblurs_with_its_rounding_noise(tmp_path):
    truth = np.asarray(Image.open(PHOTO))[96:160, 96:160]  # a crop without scribbles
    Image.fromarray(truth).save(tmp_path / "x.png")
    runner = CliRunner()
    made = runner.invoke(app, ["degrade", str(tmp_path / "x.png"), "--op", "blur", "--param", "kernel=gaussian",
                               "--param", "boundary=circular", "-o", str(tmp_path / "y.png")])
    assert made.exit_code == 0, made.output
    done = runner.invoke(app, ["run", "--from", str(tmp_path / "y.json"), "-o", str(tmp_path / "r.png"),
                               "--seed", "0", "--quiet"])
    assert done.exit_code == 0, done.output
    sidecar = json.loads((tmp_path / "r.json").read_text())
    assert sidecar["quantization_sigma"] == 1 / (255 * math.sqrt(12))
    blurred = np.asarray(Image.open(tmp_path / "y.png"))
    restored = np.asarray(Image.open(tmp_path / "r.png"))
    assert psnr(restored, truth) > psnr(blurred, truth) + 1  # trusting the rounding exactly: ~5 dB
