"""Inpainting one photo with DPS, RePaint and DDNM: PSNR, network evaluations and time of each."""
import torch

import restore
from example_setup import arguments, photo, psnr

args = arguments(__doc__)
x = photo(args)
h, w = x.shape[-2:]
fill = torch.zeros(h, w)
fill[h // 4: h // 2, w // 4: 3 * w // 4] = 1  # a box to fill (1 = fill, as white in a mask file)
y = x * (1 - fill)
for method in ("dps", "repaint", "ddnm"):
    result = restore.inpaint(y, fill, prior=args.prior, method=method, steps=args.steps, seed=args.seed)
    print(f"{method:8s} PSNR {psnr(result.image, x):5.2f} dB   {result.nfe:4d} NFE   {result.seconds:6.1f} s")
