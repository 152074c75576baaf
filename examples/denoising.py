"""Denoising a photo whose noise level is not given: it is estimated from the image.

With ``--photo PATH`` the photo is taken as the noisy image (a real noisy photo of yours)
and the result is written to denoised.png; without it the example adds Gaussian noise
(sigma 0.1) to the test photo and reports PSNR."""
import torch

import restore
from example_setup import arguments, photo, psnr
from restore.measurement import estimate_sigma
from restore.operators.io import write_image

args = arguments(__doc__)
image = photo(args)
if args.photo is None:
    clean = image
    image = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(args.seed))).clamp(0, 1)
sigma = estimate_sigma(image)
result = restore.denoise(image, sigma, prior=args.prior, steps=args.steps, seed=args.seed)
print(f"estimated sigma {sigma:.4f}; {result.nfe} NFE, {result.seconds:.1f} s")
if args.photo is None:
    print(f"noisy PSNR {psnr(image, clean):5.2f} dB -> denoised {psnr(result.image, clean):5.2f} dB")
else:
    write_image("denoised.png", result.image)
    print("wrote denoised.png")
