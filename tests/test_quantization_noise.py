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


def test_batch_adds_the_rounding_noise_of_each_files_bit_depth(tmp_path):
    """8- and 16-bit files of one size and operator: each gets its own q / sqrt(12), so they are
    solved apart; masks (unit gain) get none."""
    import torch

    from restore.operators.io import write_image

    source = tmp_path / "in"
    source.mkdir()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    write_image(source / "eight.png", x, bits=8)
    write_image(source / "sixteen.png", x, bits=16)
    common = ["--method", "ddrm", "--steps", "2", "--threads", "1", "--quiet"]
    done = CliRunner().invoke(app, ["batch", str(source), "-o", str(tmp_path / "sr"), "--op", "sr", "--scale", "2",
                                    "--noise", "0.01", "--prior", "gaussian:3x32x32:0.3", *common])
    assert done.exit_code == 0, done.output
    for name, bits in (("eight", 8), ("sixteen", 16)):
        sidecar = json.loads((tmp_path / "sr" / f"{name}.json").read_text())
        q = 1 / ((2**bits - 1) * math.sqrt(12))
        assert sidecar["quantization_sigma"] == q
        assert sidecar["operator"]["params"]["noise"]["sigma"] == math.hypot(0.01, q)
    masked = CliRunner().invoke(app, ["batch", str(source), "-o", str(tmp_path / "box"), "--op", "inpaint",
                                      "--mask", "box", "--noise", "0.01", "--prior", "gaussian:3x16x16:0.3", *common])
    assert masked.exit_code == 0, masked.output
    sidecar = json.loads((tmp_path / "box" / "eight.json").read_text())
    assert sidecar["quantization_sigma"] == 0 and sidecar["operator"]["params"]["noise"]["sigma"] == 0.01


def test_the_python_api_adds_it_for_integer_images_only():
    import restore

    small = np.asarray(Image.open(PHOTO))[96:112, 96:112]
    common = dict(prior="gaussian:3x32x32:0.3", method="ddrm", steps=2, seed=0, noise=0.0,
                  operator_options={"scale": 2})
    as_uint8 = restore.restore(small, "sr", **common)
    as_float = restore.restore(small.astype(np.float32) / 255, "sr", **common)
    assert as_uint8.provenance["operator"]["params"]["noise"]["sigma"] == 1 / (255 * math.sqrt(12))
    assert as_float.provenance["operator"]["params"]["noise"]["sigma"] == 0.0
