"""README's first command: a real photo restored with the embedded default prior."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from restore.cli import app

ROOT = Path(__file__).resolve().parents[1]


def main_job() -> list[str]:
    """The arguments of ``.venv/bin/restore ...`` in README's first command block."""
    readme = (ROOT / "README.md").read_text()
    line = next(row for row in readme.splitlines() if "pip install" in row and ".venv/bin/restore " in row)
    return shlex.split(re.sub(r".*\.venv/bin/restore ", "", line))


def test_readme_main_job_restores_the_shipped_photo_with_the_default_prior(tmp_path, monkeypatch):
    args = main_job()
    assert args[0] == "inpaint" and "--prior" not in args  # the default prior, nothing to download
    monkeypatch.chdir(ROOT)
    out = tmp_path / "restored.png"
    args[args.index("-o") + 1] = str(out)
    result = CliRunner().invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["prior"]["spec"] == "default" and len(sidecar["prior"]["weights_sha256"]) == 64
    photo = np.asarray(Image.open(ROOT / args[1]), dtype=float)
    fill = np.asarray(Image.open(ROOT / args[args.index("--mask") + 1])) > 127
    restored = np.asarray(Image.open(out), dtype=float)
    assert restored.shape == photo.shape
    # the known pixels are kept (noiseless measurement: up to 8-bit rounding) ...
    assert np.abs(restored[~fill] - photo[~fill]).max() <= 1.0
    # ... and the white scribbles are replaced by picture: far darker than the paint, close to
    # the neighbouring colours
    assert restored[fill].mean() < 200 and abs(restored[fill].mean() - photo[~fill].mean()) < 40
