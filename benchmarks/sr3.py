"""SR x4 PSNR of an SR3-style conditional network against bicubic on centre crops.

    .venv/bin/python benchmarks/sr3.py DIR [--data ../shared/data/test/set5] [--images N]
        [--crop 128] [--steps 50]

DIR is a ``restore train sr3`` output (a conditional ``unet:DIR``).  Each crop x is measured
with the project's ``sr`` operator (MATLAB-style bicubic, no noise), restored with the
``conditional`` strategy (ancestral DDPM, x0 clipped to the data range) seeded by its index,
and compared with bicubic upsampling of the same measurement (PSNR on [0, 1], clipped).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(((a.clamp(0, 1) - b) ** 2).mean()))


def main() -> None:
    from restore.priors.spec import load_prior
    from restore.strategies.base import Problem
    from restore.strategies.conditional import Conditional
    from restore.strategies.engine import solve
    from restore.training.data import load_validation
    from restore.training.sr3 import sr_operator

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "test" / "set5")
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior, op = load_prior(f"unet:{args.model}"), sr_operator(args.scale)
    crops = load_validation(args.data, 3, args.images, args.crop)
    ours = bicubic = 0.0
    for i, x in enumerate(crops):
        x = x[..., : x.shape[-2] // args.scale * args.scale, : x.shape[-1] // args.scale * args.scale]
        y = op.measure(x)
        result = solve(Problem(prior, op, y), Conditional(), steps=args.steps, shape=tuple(x.shape[1:]),
                       generator=torch.Generator().manual_seed(i))
        ours += psnr(result.image, x)
        bicubic += psnr(F.interpolate(y, size=x.shape[-2:], mode="bicubic", align_corners=False), x)
    n = len(crops)
    print(f"{args.data.name}: {n} images, centre {args.crop}: SR3 (DDPM {args.steps}) {ours / n:.2f} dB, "
          f"bicubic {bicubic / n:.2f} dB")


if __name__ == "__main__":
    main()
