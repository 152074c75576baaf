"""benchmarks/defaults_summary.py: every shipped default has its measured row on both whole
test sets, and the summary tables in docs/STRATEGIES.md and benchmarks/results are its output."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from restore.strategies import catalog
from restore.strategies.catalog import Default

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def summary():
    path = ROOT / "benchmarks" / "defaults_summary.py"
    spec = importlib.util.spec_from_file_location("defaults_summary", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


@pytest.fixture(scope="module")
def entries(summary):
    return summary.collect()


def test_every_shipped_default_has_its_row_on_both_whole_sets(summary, entries):
    tasks = summary.bench.load_tasks()["tasks"]
    expected = {(prior, task, target) for prior, only in summary.PRIORS.items() for task in (only or tasks)
                for target in ("fidelity", "perceptual")}
    assert set(summary.EVIDENCE) == expected
    assert set(entries) == {(*key, s) for key in expected for s in ("kodak24", "cbsd68")}
    for (prior, task, target, s), e in entries.items():
        assert e["row"]["images"] == e["classical_row"]["images"] == summary.SETS[s][1]
        assert e["row"]["target"] == target and e["classical_row"]["target"] == "-"
    # the labels are the catalog's runs: the deblurrings' mean of 8 in pairs, the sparse noiseless mask's DPIR
    assert entries["default", "deblur-motion", "fidelity", "cbsd68"]["label"] == \
        "ddrm mean of 8 in antithetic pairs, 20 NFE each"
    assert entries["default", "inpaint-random-noiseless", "fidelity", "kodak24"]["label"] == "dpir, 40 NFE"
    assert entries["default-sr3x4", "sr4", "perceptual", "kodak24"]["label"] == "conditional, 20 NFE"


def test_the_best_classical_method_is_chosen_by_each_targets_metric(entries):
    # motion blur: Wiener has the better PSNR, Richardson-Lucy the better LPIPS, on both sets
    for s in ("kodak24", "cbsd68"):
        fidelity = entries["default", "deblur-motion", "fidelity", s]
        perceptual = entries["default", "deblur-motion", "perceptual", s]
        assert fidelity["classical"].startswith("wiener") and perceptual["classical"].startswith("richardson-lucy")
        assert fidelity["classical_row"]["psnr"] > perceptual["classical_row"]["psnr"]
        assert perceptual["classical_row"]["lpips-alex"] < fidelity["classical_row"]["lpips-alex"]
    # denoising: FFDNet given the default's EM passes over the clipped samples beats plain FFDNet and
    # CBM3D with or without them on both metrics; its rows are in the fidelity table alone, and the
    # perceptual target finds them there too
    for s in ("kodak24", "cbsd68"):
        for target in ("fidelity", "perceptual"):
            assert entries["default", "denoise", target, s]["classical"] == "ffdnet:clipped_passes=4", (s, target)


def test_the_docs_and_the_results_file_are_the_generated_summary(summary, entries):
    docs = (ROOT / "docs" / "STRATEGIES.md").read_text()
    for target in ("fidelity", "perceptual"):
        assert "\n" + summary.target_table(entries, target) + "\n\n" in docs, target
    stored = (ROOT / "benchmarks" / "results" / "defaults_summary_cpu.md").read_text()
    header, _, body = stored.partition("\n\n")
    assert header.splitlines() == ["# benchmarks/defaults_summary.py --out benchmarks/results/defaults_summary_cpu.md",
                                   f"# {summary.HEADER}"]
    assert body == summary.summary()


def test_a_default_changed_without_its_measurement_is_an_error(summary, monkeypatch):
    changed = {**catalog.DEFAULTS, "sr": {**catalog.DEFAULTS["sr"],
                                          "fidelity": {"fast": Default("dpir", 30), "high": Default("dpir", 30)}}}
    monkeypatch.setattr(catalog, "DEFAULTS", changed)
    with pytest.raises(SystemExit, match=r"restoration_targets_kodak24_cpu\.md has no fidelity row 'dpir, 30 NFE' "
                                         r"of sr4 on all 24 images"):
        summary.collect()


def test_a_missing_table_is_an_error_naming_it(summary, tmp_path):
    with pytest.raises(SystemExit, match="restoration_targets_kodak24_cpu.md is missing"):
        summary.collect(tmp_path)


def test_the_readme_quotes_every_fidelity_gain_of_the_summary(entries):
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    assert "benchmarks/results/defaults_summary_cpu.md" in readme
    for key, e in entries.items():
        if key[2] == "fidelity":
            assert f"{e['row']['psnr'] - e['classical_row']['psnr']:+.2f}" in readme, key
