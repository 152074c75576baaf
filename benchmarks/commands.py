"""Wall time, NFE and peak memory of each restoration command's default, per target, at two photo sizes.

    python benchmarks/commands.py [--prior default] [--sizes 256x256 768x512] [--device auto]
                                  [--cases inpaint sr ...] [--targets fidelity perceptual] [--quick]

Each case is a command and the measurement it is given, one per operator kind of
``restore.strategies.catalog.DEFAULTS`` (the benchmark's noise where it has one):
inpaint (a 70 % random dropout, no noise), inpaint-noisy (the dropout with --noise 0.025),
inpaint-hole (a centred box of half each side, no noise), inpaint-hole-noisy (the box with
--noise 0.025), sr x4 and
deblur gaussian:2 (--noise 0.025), denoise (sigma 0.05, estimated from the image) and
colorize.  For each case, target (``--target``) and output size WxH a degraded input is made
from scikit-image's ``chelsea`` photo, and the command runs with its default method, steps
and samples in a fresh Python process (so peak memory is that run's): wall time of the command
as the process measures it (prior loading included), NFE and samples from the sidecar, peak
resident memory of the process (``ru_maxrss``), on CUDA peak allocated device memory, and the
CPU threads the command ran on (the sidecar's ``fast_path.threads``: the commands choose it from
the idle cores, so a row measured on a busy machine, or a miscount, shows here).
``--quick`` uses 32x32 and 48x32 images and 2 steps, to check the script on a tiny prior.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

#: case -> (command, extra arguments): one case per operator kind of the catalog's DEFAULTS.
CASES = {"inpaint": ("inpaint", []), "inpaint-noisy": ("inpaint", ["--noise", "0.025"]),
         "inpaint-hole": ("inpaint-hole", []), "inpaint-hole-noisy": ("inpaint-hole", ["--noise", "0.025"]),
         "sr": ("sr", ["--noise", "0.025"]), "deblur": ("deblur", ["--noise", "0.025"]),
         "denoise": ("denoise", []), "colorize": ("colorize", [])}
TARGETS = ("fidelity", "perceptual")


def photo(width: int, height: int) -> torch.Tensor:
    """scikit-image's chelsea resized to (1, 3, height, width) on [0, 1]."""
    from skimage import data

    x = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float() / 255
    return torch.nn.functional.interpolate(x, size=(height, width), mode="area").clamp(0, 1)


def prepare(command: str, width: int, height: int, folder: Path) -> list[str]:
    """Write the degraded input (and mask) for ``command`` into ``folder``; its arguments
    (``inpaint``: a 70 % random dropout; ``inpaint-hole``: a centred box of half each side)."""
    from restore.operators.io import write_image
    from restore.operators.masks import random_mask
    from restore.plugins import default_registry

    x = photo(width, height)
    registry = default_registry()
    image = folder / "input.png"
    if command in ("inpaint", "inpaint-hole"):
        fill = torch.zeros(1, 1, height, width)
        if command == "inpaint":
            fill[0, 0] = (~random_mask(height, width, seed=0, ratio=0.7)).float()
        else:
            fill[..., height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1
        write_image(folder / "mask.png", fill)
        write_image(image, x * (1 - fill))
        return ["inpaint", str(image), "--mask", str(folder / "mask.png")]
    if command == "sr":
        write_image(image, registry.get("operator", "sr")(scale=4)(x))
        return ["sr", str(image), "--scale", "4"]
    if command == "deblur":
        write_image(image, registry.get("operator", "blur")("gaussian", size=13, std=2.0)(x))
        return ["deblur", str(image), "--kernel", "gaussian:2"]
    if command == "denoise":
        noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        write_image(image, noisy.clamp(0, 1))
        return ["denoise", str(image)]
    write_image(image, x.mean(dim=1, keepdim=True))
    return ["colorize", str(image)]


def run_one(args: list[str]) -> None:
    """Child process: run one command in-process, print wall time, NFE and peak memory as JSON."""
    from typer.testing import CliRunner

    from restore.cli import app

    output = Path(args[args.index("-o") + 1])
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    seconds = time.perf_counter() - started
    if result.exit_code != 0:
        print(json.dumps({"error": result.output.strip().splitlines()[-1]}))
        return
    sidecar = json.loads(output.with_suffix(".json").read_text())
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(json.dumps({"seconds": seconds, "nfe": sidecar["nfe"], "method": sidecar["strategy"]["name"],
                      "steps": sidecar["steps"], "samples": sidecar["samples"],
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "cuda_mib": cuda, "threads": sidecar["fast_path"]["threads"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="default")
    parser.add_argument("--sizes", nargs="+", default=["256x256", "768x512"], help="output sizes WxH")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="32x32 and 48x32 images, 2 steps")
    parser.add_argument("--one", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.one:
        return run_one(opts.one)
    sizes = ["32x32", "48x32"] if opts.quick else opts.sizes
    print(f"prior {opts.prior}, device {opts.device}")
    print(f"{'case':18s} {'target':10s} {'size':>8s} {'method':>8s} {'steps':>5s} {'samples':>7s} {'NFE':>5s} "
          f"{'wall s':>8s} {'peak RSS MiB':>12s} {'CUDA MiB':>9s} {'threads':>7s}")
    for case in opts.cases:
        command, extra = CASES[case]
        for target in opts.targets:
            for size in sizes:
                width, height = (int(v) for v in size.split("x"))
                with tempfile.TemporaryDirectory() as tmp:
                    folder = Path(tmp)
                    args = prepare(command, width, height, folder) + extra
                    args += ["--target", target, "--prior", opts.prior, "--device", opts.device, "--seed", "0",
                             "--quiet", "-o", str(folder / "out.png")]
                    args += ["--steps", "2"] if opts.quick else []
                    child = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True, text=True)
                    lines = child.stdout.strip().splitlines()
                    row = json.loads(lines[-1]) if lines else {"error": child.stderr.strip().splitlines()[-1:]}
                if "error" in row:
                    print(f"{case:18s} {target:10s} {size:>8s}  failed: {row['error']}")
                    continue
                cuda = "-" if row["cuda_mib"] is None else f"{row['cuda_mib']:.0f}"
                print(f"{case:18s} {target:10s} {size:>8s} {row['method']:>8s} {row['steps']:>5d} {row['samples']:>7d} "
                      f"{row['nfe']:>5d} {row['seconds']:>8.1f} {row['rss_mib']:>12.0f} {cuda:>9s} "
                      f"{row['threads']:>7d}", flush=True)


if __name__ == "__main__":
    main()
