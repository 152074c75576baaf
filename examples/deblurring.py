"""Deblurring a photo blurred by a Gaussian (std 2 px) and a seeded camera-shake kernel."""
import torch

import restore
from example_setup import arguments, photo, psnr
from restore.plugins import default_registry

args = arguments(__doc__)
x = photo(args)
blur = default_registry().get("operator", "blur")
for name, options in (("gaussian", {"size": 13, "std": 2.0}), ("motion", {"size": 15, "seed": 3})):
    op = blur(name, noise={"kind": "gaussian", "sigma": 0.01}, **options)
    y = op.measure(x, generator=torch.Generator().manual_seed(args.seed))
    result = restore.deblur(y, name, kernel_options=options, noise=0.01, prior=args.prior, steps=args.steps,
                            seed=args.seed)
    print(f"{name:8s} blurred PSNR {psnr(y, x):5.2f} dB -> restored {psnr(result.image, x):5.2f} dB "
          f"({result.nfe} NFE, {result.seconds:.1f} s)")
