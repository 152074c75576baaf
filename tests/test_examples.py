"""The examples run and report a posterior far closer to the exact one than the prior."""
import re
import runpy
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_posterior_sampling_example(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["posterior_sampling.py", "--steps", "20", "--samples", "300"])
    runpy.run_path(str(EXAMPLES / "posterior_sampling.py"), run_name="__main__")
    out = capsys.readouterr().out
    pattern = r"posterior: ([\d.]+)  \(exact vs exact ([\d.]+), prior ([\d.]+)\)"
    sw, floor, prior = map(float, re.search(pattern, out).groups())
    assert "20 network evaluations" in out
    assert sw < prior / 10
