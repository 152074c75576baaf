"""The restoration examples run as written (a tiny random prior, 2 steps, a 32 x 32 photo)."""
import runpy
import sys
from pathlib import Path

import pytest
import torch

from restore.priors.native import NativeConfig, save_native
from restore.priors.unet import CompactUNet, UNetConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script, expected", [
    ("inpaint_methods.py", ["dps ", "repaint ", "ddnm "]),
    ("super_resolution.py", ["bicubic PSNR", "restored PSNR"]),
    ("deblurring.py", ["gaussian blurred PSNR", "motion   blurred PSNR"]),
    ("denoising.py", ["estimated sigma 0.", "denoised"]),
    ("custom_operator.py", ["PSNR"]),
])
def test_example_runs(tmp_path, monkeypatch, capsys, script, expected):
    torch.manual_seed(0)
    net = CompactUNet(UNetConfig(channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4))
    prior = f"unet:{save_native(tmp_path / 'prior', net, NativeConfig(net.config))}"
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setattr(sys, "argv", [script, "--prior", prior, "--steps", "2", "--size", "32"])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    out = capsys.readouterr().out
    assert all(text in out for text in expected), out
