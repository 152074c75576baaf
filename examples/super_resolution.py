"""Super-resolution x4: a photo made small by the ``sr`` operator (bicubic, noise 0.01),
restored with the default method and compared with bicubic upsampling."""
import torch

import restore
from example_setup import arguments, photo, psnr
from restore.plugins import default_registry

args = arguments(__doc__)
x = photo(args)
op = default_registry().get("operator", "sr")(scale=4, noise={"kind": "gaussian", "sigma": 0.01})
small = op.measure(x, generator=torch.Generator().manual_seed(args.seed))
result = restore.restore(small, op, prior=args.prior, steps=args.steps, seed=args.seed)
bicubic = torch.nn.functional.interpolate(small, scale_factor=4, mode="bicubic")
print(f"bicubic PSNR {psnr(bicubic, x):5.2f} dB; restored PSNR {psnr(result.image, x):5.2f} dB "
      f"({result.provenance['strategy']['name']}, {result.nfe} NFE)")
