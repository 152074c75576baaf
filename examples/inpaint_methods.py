"""Inpainting one photo with DPS, RePaint and DDNM: PSNR, network evaluations and time of each."""
import torch

import restore
from example_setup import arguments, photo, psnr

args = arguments(__doc__)
x = photo(args)
h, w = x.shape[-2:]
known = torch.ones(h, w)
known[h // 4: h // 2, w // 4: 3 * w // 4] = 0  # a box to fill
y = x * known
for method in ("dps", "repaint", "ddnm"):
    result = restore.inpaint(y, known, prior=args.prior, method=method, steps=args.steps, seed=args.seed)
    print(f"{method:8s} PSNR {psnr(result.image, x):5.2f} dB   {result.nfe:4d} NFE   {result.seconds:6.1f} s")
