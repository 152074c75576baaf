"""Start-up of a command: from the process start to the first network evaluation.

    python benchmarks/startup.py [--size 256] [--repeats 3] [--threads 1] [--bytecode cached|off]

Runs ``restore denoise IMG --sigma 0.1`` (the embedded default prior) on a size x size PNG in a
fresh interpreter per repeat and prints, in seconds since the interpreter started (its
``time.time()`` at the first line; and the process's CPU time, which other jobs on a shared
machine do not inflate), when each phase ended: the ``restore`` command module
imported (typer, torch, the package), the prior loaded (plugin registry, weights read), the
engine entered (``solve``: planning done), and the first and second network evaluations
returned (the first includes the allocator's first-call costs).  Phases are found by wrapping
the functions that end them, nothing else changes.

``--bytecode cached`` (the default) runs the children as a user's installation runs: Python
may write and read the package's compiled bytecode (``__pycache__``), and one untimed run
first writes it; ``off`` sets ``PYTHONDONTWRITEBYTECODE=1``, as this project's build machine
does, so every process compiles the package's modules from source (torch's installed bytecode
is read either way).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
T0 = time.time()
marks = {}
def mark(name):
    marks.setdefault(name, [time.time() - T0, time.process_time()])
import torch
mark("import torch")
from restore.cli import app
mark("import restore.cli")
import restore.priors.spec as spec, restore.strategies.engine as engine
from restore.priors.unet import CompactUNet
load, solve, forward = spec.load_prior, engine.solve, CompactUNet.forward
def load_prior(*a, **k):
    out = load(*a, **k); mark("prior loaded"); return out
def solve_marked(*a, **k):
    mark("solve entered"); return solve(*a, **k)
calls = [0]
def forward_marked(self, *a, **k):
    out = forward(self, *a, **k); calls[0] += 1
    mark("first network call" if calls[0] == 1 else "second network call"); return out
spec.load_prior, engine.solve, CompactUNet.forward = load_prior, solve_marked, forward_marked
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    mark("done")
    print(json.dumps(marks))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bytecode", choices=("cached", "off"), default="cached",
                   help="cached: as an installed package (one untimed run writes it first); off: compile from source")
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if args.bytecode == "off":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "noisy.png"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(image)
        command = [sys.executable, "-c", CHILD, "denoise", str(image), "--sigma", "0.1", "-q", "--overwrite",
                   "--threads", str(args.threads), "-o", str(Path(tmp) / "out.png")]
        runs = args.repeats + (args.bytecode == "cached")
        rows = [json.loads(subprocess.run(command, capture_output=True, text=True, check=True, env=env)
                           .stdout.strip().splitlines()[-1]) for _ in range(runs)][runs - args.repeats:]
    names = list(rows[0])
    print(f"restore denoise on a {args.size}x{args.size} PNG, {args.threads} thread(s), {args.repeats} fresh "
          f"processes, bytecode {args.bytecode}: seconds since the interpreter started, wall (min / max) and the "
          "process's CPU time (min / max)")
    for name in names:
        wall, cpu = zip(*(row[name] for row in rows if name in row))
        print(f"  {name:22} wall {min(wall):6.2f} {max(wall):6.2f}   cpu {min(cpu):6.2f} {max(cpu):6.2f}")


if __name__ == "__main__":
    main()
