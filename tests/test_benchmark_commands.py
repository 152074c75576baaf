"""benchmarks/commands.py runs (--quick, a tiny random prior) and prints one row per case, target and size."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from restore.priors.native import NativeConfig, save_native
from restore.priors.unet import CompactUNet, UNetConfig
from restore.strategies.catalog import DEFAULTS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "commands.py"


def assert_nfe_per_image(default, steps: int, nfe: int) -> None:
    """The sidecar's NFE counts every sample of an image: a cold mean of S samples of ``steps``
    one-evaluation steps is S x steps (a warm start's shared estimate and shortened grid aside)."""
    if default.samples > 1 and "warm_start" not in dict(default.params):
        assert nfe == default.samples * steps, (default, nfe)


def test_benchmark_quick_run(tmp_path):
    torch.manual_seed(0)
    net = CompactUNet(UNetConfig(channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4))
    prior = f"unet:{save_native(tmp_path, net, NativeConfig(net.config))}"
    cases = ("inpaint", "inpaint-noisy", "inpaint-hole", "inpaint-hole-noisy")
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--prior", prior, "--cases", *cases,
                          "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("inpaint")]
    assert [tuple(r[:3]) for r in rows] == [(case, target, size) for case in cases
                                           for target in ("fidelity", "perceptual") for size in ("32x32", "48x32")]
    for case, target, _, method, steps, samples, nfe, seconds, *_, threads in rows:  # each the command's default run
        default = DEFAULTS[case][target]["fast"]
        assert (method, steps, samples) == (default.method, "2", str(default.samples)), out.stdout
        assert int(nfe) >= 2 and float(seconds) > 0 and 1 <= int(threads) <= os.cpu_count()
        assert_nfe_per_image(default, 2, int(nfe))


def test_network_speed_lists_every_fast_path_configuration_with_its_error():
    """benchmarks/network_speed.py: the four configurations, fp32 the reference, channels_last
    exact to float rounding, bf16 within its rounding of the denoised image."""
    script = SCRIPT.parent / "network_speed.py"
    out = subprocess.run([sys.executable, str(script), "--skip-adm", "--repeats", "1", "--size", "16"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = {line[:36].strip(): line[36:].split() for line in out.stdout.splitlines()
            if line.startswith(("fp32", "bf16 +"))}
    assert list(rows) == ["fp32", "fp32 + channels_last", "bf16 + channels_last, cast norms",
                          "bf16 + channels_last, mixed norms"]
    assert rows["fp32"][1:] == ["1.00", "0.00e+00"] and float(rows["fp32 + channels_last"][2]) < 1e-5
    assert all(0 < float(rows[name][2]) < 0.05 for name in list(rows)[2:])


def test_batch_speed_times_one_function_whole_and_in_chunks():
    """benchmarks/batch_speed.py: a row per size and batch within --max-pixels; the batch of two
    128 x 128 images is two calls in chunks, and its output is the whole call's to float rounding."""
    script = SCRIPT.parent / "batch_speed.py"
    out = subprocess.run([sys.executable, str(script), "--sizes", "16", "128", "--batches", "1", "2", "4",
                          "--repeats", "1", "--threads", "1", "--max-pixels", str(2 * 128 * 128)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [tuple(r[:2]) for r in rows] == [("16x16", "1"), ("16x16", "2"), ("16x16", "4"), ("128x128", "1"),
                                           ("128x128", "2")]
    for row in rows:  # the ratio agrees with the times within their printed rounding (0.05 ms, 0.005)
        whole, chunked, ratio, diff = map(float, row[2:])
        assert whole > 0.05 and chunked > 0 and diff < 1e-5, row
        assert (chunked - 0.05) / (whole + 0.05) - 0.005 <= ratio <= (chunked + 0.05) / (whole - 0.05) + 0.005, row


def test_startup_reports_every_phase_in_order():
    """benchmarks/startup.py: one timed process (after the untimed one that writes the bytecode
    cache) gives each phase's wall and CPU seconds, in the order the command reaches them."""
    script = SCRIPT.parent / "startup.py"
    out = subprocess.run([sys.executable, str(script), "--size", "16", "--repeats", "1"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "1 fresh processes, bytecode cached" in out.stdout
    rows = {line[:25].strip(): [float(v) for v in line[25:].split() if v not in ("wall", "cpu")]
            for line in out.stdout.splitlines()[1:]}
    assert list(rows) == ["import torch", "import restore.cli", "prior loaded", "solve entered", "first network call",
                          "second network call", "done"]
    walls = [row[0] for row in rows.values()]
    assert walls == sorted(walls) and all(row[0] == row[1] and row[2] == row[3] for row in rows.values())


@pytest.mark.parametrize("table", ["commands_cpu.txt", "commands_amx_cpu.txt"])
def test_every_default_command_is_within_the_budget(table):
    """benchmarks/results/commands_cpu.txt and commands_amx_cpu.txt, the committed measurements on
    the 2-core CPU (AMD EPYC with AVX2; Intel Xeon with AMX, where bf16 runs natively): at 256 x 256
    every case runs its kind's ``fast`` default of both targets (method and samples; colorize is
    the ``svd`` kind), each within issue 16's 60 s a command, on the two threads of the idle machine
    (the sidecar's count: a command that counted its own threads as busy ran on one), with the
    sidecar's NFE per image (:func:`assert_nfe_per_image`)."""
    text = (Path(__file__).resolve().parents[1] / "benchmarks" / "results" / table).read_text()
    rows = [line.split() for line in text.splitlines() if line.split()[2:3] == ["256x256"]]
    kinds = {"colorize": "svd"}
    assert {(r[0], r[1]) for r in rows} == {(case, target) for case in (*DEFAULTS.keys() - {"svd", "linear", "other"},
                                                                         "colorize")
                                            for target in ("fidelity", "perceptual")}
    for case, target, _, method, steps, samples, nfe, seconds, *_, threads in rows:
        default = DEFAULTS[kinds.get(case, case)][target]["fast"]
        assert (method, int(steps), int(samples)) == (default.method, default.steps, default.samples), (case, target)
        assert float(seconds) <= 60 and threads == "2", (case, target)
        assert_nfe_per_image(default, int(steps), int(nfe))


def test_the_amx_section_quotes_its_measurements():
    """docs/PERFORMANCE.md, 'On a CPU with AMX': the network's seconds and ratios are those of
    benchmarks/results/network_speed_amx_cpu.txt, the commands' range that of commands_amx_cpu.txt."""
    root = Path(__file__).resolve().parents[1]
    section = (root / "docs" / "PERFORMANCE.md").read_text().split("## On a CPU with AMX")[1].split("\n## ")[0]
    speed = (root / "benchmarks" / "results" / "network_speed_amx_cpu.txt").read_text()
    rows = {line[:36].strip(): line[36:].split() for line in speed.splitlines() if line.startswith(("fp32", "bf16 +"))}
    assert len(rows) == 4 and "AMX" in speed
    for name, (seconds, ratio, _) in rows.items():
        label = name + (" (the default)" if name.endswith("mixed norms") else "")
        row = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
        assert [c.strip().strip("*") for c in row.strip("|").split("|")][1:3] == [seconds, ratio], name
    commands = (root / "benchmarks" / "results" / "commands_amx_cpu.txt").read_text()
    flat = section.replace("\n", " ")
    for size in ("256x256", "768x512"):
        walls = [float(line.split()[7]) for line in commands.splitlines() if line.split()[2:3] == [size]]
        assert len(walls) == 16 and f"{min(walls):.1f} s to" in flat and f"{max(walls):.1f} s" in flat, size
