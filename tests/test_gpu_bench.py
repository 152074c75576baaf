"""benchmarks/gpu.py runs on CPU in quick, tiny mode and prints every section."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_gpu_benchmark_quick_tiny_on_cpu():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--tiny", "--modes", "fp32,bf16",
                           "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    number = r"\s+\d+\.\d+"
    for mode in ("fp32", "bf16"):
        for batch in (1, 2):  # fwd ms, /image, MiB ("-" on CPU), fwd+bwd ms, /image, MiB
            assert re.search(rf"^tiny\s+{mode}\s+{batch}{number}{number}\s+-{number}{number}\s+-$", out, re.M), out
    assert re.search(r"dps-1000\s+inpaint\s+batch\s+1\s+\d+\.\d+ s/image\s+\(2 of 1000 steps timed\)", out), out
    assert re.search(r"ddrm-20\s+sr\s+batch\s+\d+\s+\d+\.\d+ images/s", out), out
    assert re.search(r"ddnm-100\s+inpaint\s+batch\s+\d+\s+\d+\.\d+ images/s", out), out
    assert "peer skipped: DiffUNet has only the 256x256 architectures" in out


def test_gpu_benchmark_refuses_unknown_modes():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--modes", "int8"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown mode(s) int8" in proc.stderr


def test_compiled_rows_come_last(monkeypatch, capsys):
    """With torch.compile stubbed (compiling for real takes minutes on a CPU), the compiled
    mode is measured in its own last section."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(torch, "compile", lambda network, **kwargs: network)
    module.main(["--device", "cpu", "--quick", "--tiny", "--modes", "bf16,bf16+compile", "--no-peer"])
    out = capsys.readouterr().out
    compiled = out.split("4. one network evaluation, compiled")[1]
    assert re.search(r"^tiny\s+bf16\+compile\s+2\s+\d+\.\d+", compiled, re.M), out
    assert "bf16+compile" not in out.split("4. one network evaluation, compiled")[0].split("2. strategies")[0]
