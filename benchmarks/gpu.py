"""The GPU fast path, measured: network evaluations, strategies and the peer implementation.

    python benchmarks/gpu.py                       # on a GPU machine: one call, under 8 minutes
    python benchmarks/gpu.py --device cpu --quick --tiny   # a smoke run in seconds (tested)

What it prints, for the ``ffhq256-dps`` and ``imagenet256-uncond`` ADM architectures with random
weights at 256x256 (``--tiny``: a 32x32 ADM of 32 channels instead), loaded through the product
path (a safetensors file and the ``adm:PATH:PRESET`` prior spec, then
:func:`restore.accel.accelerate`):

1. Network: ms per network evaluation (one call of the denoiser on the whole batch, and that
   divided by the batch) for a no-grad forward and for a forward plus the gradient with respect
   to the input (what DPS needs), at batch 1 / 8 / 32 (``--quick``: 1 / 2) in fp32, bf16 and
   bf16 + torch.compile (``--modes``; the compiled rows come last, as section 4, since compiling
   takes minutes), with the peak GPU memory of the evaluation
   (``torch.cuda.max_memory_allocated`` minus the memory held before it; "-" on CPU).  Best of
   ``--repeats`` timed calls after one warm-up call (compilation happens in the warm-up).
2. Strategies through the engine (:func:`restore.strategies.engine.solve`): DPS seconds per image
   at 1000 NFE on box inpainting, batch 1 and the batch with the best forward+
   backward time per image; DDRM 20 steps on 4x super-resolution and DDNM 100 steps on box
   inpainting, images per second.  Noise is drawn as ``restore batch`` draws it (one CPU generator
   per image, :class:`restore.diffusion.randomness.ItemGenerators`, moved to the GPU), so the
   figures include that cost.  Each run is timed for ``--timed-steps`` steps and stopped
   there (a step callback); the full-length figure is extrapolated as (time to the first step,
   which includes set-up) + (steps - 1) x (mean time of the later steps).  Stated in the table.
3. Peer: deepinv's ``DiffUNet`` (the same ADM architectures; ``large_model`` for ImageNet) loads
   the project's state dict unchanged (every weight by name and shape; only DiffUNet's own two
   noise-schedule buffers are not in it, :data:`PEER_SCHEDULE_BUFFERS`); the table gives the largest absolute
   difference of its output from ours on the same input and the ratio of its times to ours in
   fp32 and fp16 (deepinv's half precision is fp16 ``use_fp16``), per network evaluation and for
   DPS-1000 (batch 1) and DDRM-20 (batch 8) with its network in place of ours in the same prior.
   Skipped, saying so, when deepinv cannot be imported.

A time budget (``--budget`` seconds, default 420, leaving room under 8 minutes for the last
measurement) is checked before each measurement; what no longer fits is listed as skipped
rather than overrunning.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors.torch import save_file

from restore.accel import Acceleration, accelerate, network_holder
from restore.diffusion.randomness import ItemGenerators
from restore.plugins import default_registry
from restore.priors.adm import ADMUNet, get_preset
from restore.priors.spec import load_prior
from restore.strategies.base import Problem
from restore.strategies.engine import solve

ARCHS = ("ffhq256-dps", "imagenet256-uncond")
TINY = dict(get_preset("ffhq256-dps"), image_size=32, num_channels=32, channel_mult="1,2", num_head_channels=16,
            attention_resolutions="16")
MODES = {"fp32": Acceleration(), "bf16": Acceleration(torch.bfloat16),
         "bf16+compile": Acceleration(torch.bfloat16, compile=True)}
#: DiffUNet's own noise-schedule buffers (for its denoiser mode), not weights: absent from ADM state dicts.
PEER_SCHEDULE_BUFFERS = ("sqrt_alphas_cumprod", "sqrt_1m_alphas_cumprod")
SIGMA = 2.0  # the noise level of the timed evaluations (VE view; timestep ~ 600 of 1000)


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class Stop(Exception):
    """Raised by the step callback once the timed steps are done."""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_checkpoint(config: dict, folder: Path, name: str) -> str:
    """Random ADM weights (PyTorch's default initialisation, zero-initialised layers included)
    saved as safetensors with the config; returns the prior spec."""
    import json

    with torch.device("meta"):
        model = ADMUNet.from_config(config)
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    weights = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    (folder / f"{name}.json").write_text(json.dumps(config))
    return f"adm:{weights}:{folder / f'{name}.json'}"


def best_time(call: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Best seconds of ``repeats`` calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        sync(device)
        tic = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - tic)
    return min(times)


def peak_mib(call: Callable[[], None], device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    call()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def evaluations(network: Callable, x: torch.Tensor, t: torch.Tensor) -> tuple[Callable, Callable]:
    """(forward, forward + input gradient) of ``network(x, t)`` as no-argument calls."""
    def forward() -> None:
        with torch.no_grad():
            network(x, t)

    def forward_backward() -> None:
        xg = x.detach().requires_grad_(True)
        grad, = torch.autograd.grad(network(xg, t).float().square().sum(), xg)

    return forward, forward_backward


def network_rows(args, spec: str, arch: str, mode: str, size: int, device: torch.device, budget: Budget,
                 registry, per_image: dict) -> None:
    """Section 1 for one architecture and mode; fills ``per_image[(arch, mode, batch)]`` with the
    fwd+bwd ms per image (DPS's best batch is chosen from it)."""
    acceleration = dataclasses.replace(MODES[mode], channels_last=device.type == "cuda")
    prior = accelerate(load_prior(spec, device=device, registry=registry), acceleration,
                       warn=lambda message: print(f"  {message}"))
    for batch in args.batches:
        reserve = args.reserve * (4 if acceleration.compile else 1)  # compiling may take minutes
        if budget.left() < reserve:
            print(f"{arch:<19} {mode:<13} {batch:>5}  skipped: time budget")
            continue
        x = torch.randn(batch, 3, size, size, device=device)
        sigma = torch.tensor(SIGMA, device=device)
        try:
            forward, forward_backward = evaluations(prior.denoiser, x, sigma)
            fwd = best_time(forward, device, args.repeats)
            mem_f = peak_mib(forward, device)
            both = best_time(forward_backward, device, args.repeats)
            mem_b = peak_mib(forward_backward, device)
        except torch.OutOfMemoryError:
            print(f"{arch:<19} {mode:<13} {batch:>5}  out of memory")
            torch.cuda.empty_cache()
            continue
        per_image[(arch, mode, batch)] = 1000 * both / batch
        print(f"{arch:<19} {mode:<13} {batch:>5} {1000 * fwd:>10.2f} {1000 * fwd / batch:>9.2f} {_mib(mem_f):>8}"
              f" {1000 * both:>10.2f} {1000 * both / batch:>9.2f} {_mib(mem_b):>8}", flush=True)
    del prior
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _mib(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f}"


def timed_solve(prior, operator, strategy, steps: int, batch: int, size: int, device: torch.device,
                timed_steps: int) -> float:
    """Seconds for ``steps`` steps of ``strategy`` on a batch, extrapolated from ``timed_steps``."""
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    y = operator.measure(x.cpu(), generator=torch.Generator().manual_seed(1)).to(device)
    stamps: list[float] = []
    last = min(steps, timed_steps) - 1

    def stamp(event) -> None:
        sync(device)
        stamps.append(time.perf_counter())
        if event.step >= last:
            raise Stop

    sync(device)
    start = time.perf_counter()
    try:
        solve(Problem(prior, operator, y), strategy, steps=steps, shape=(3, size, size),
              generator=ItemGenerators.from_seeds(range(batch)), callback=stamp)
    except Stop:
        pass
    first = stamps[0] - start
    later = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else first
    return first + (steps - 1) * later


def bench_operators(registry) -> tuple:
    """Box inpainting (noiseless) and 4x super-resolution with sigma_y = 0.025 (DPS's 0.05 on [-1, 1])."""
    return (registry.get("operator", "inpaint")(mask="box"),
            registry.get("operator", "sr")(scale=4, noise={"kind": "gaussian", "sigma": 0.025}))


def strategy_table(args, spec: str, arch: str, size: int, device: torch.device, budget: Budget, registry,
                   per_image: dict) -> None:
    """Section 2 (bf16 when measured, else the first mode)."""
    mode = "bf16" if "bf16" in args.modes else args.modes[0]
    fitted = [b for (a, m, b) in per_image if (a, m) == (arch, mode)]
    best = min(fitted, key=lambda b: per_image[(arch, mode, b)]) if fitted else 1
    prior = accelerate(load_prior(spec, device=device, registry=registry),
                       dataclasses.replace(MODES[mode], channels_last=device.type == "cuda"))
    inpaint, sr = bench_operators(registry)
    runs = [("dps", inpaint, 1000, batch, {"zeta": 0.5}) for batch in sorted({1, best})]
    runs += [("ddrm", sr, 20, best, {}), ("ddnm", inpaint, 100, best, {})]
    for name, operator, steps, batch, params in runs:
        if budget.left() < args.reserve:
            print(f"{arch:<19} {name}-{steps:<6} batch {batch:>3}  skipped: time budget")
            continue
        try:
            seconds = timed_solve(prior, operator, registry.get("strategy", name)(**params), steps, batch, size,
                                  device, args.timed_steps)
        except torch.OutOfMemoryError:
            print(f"{arch:<19} {name}-{steps:<6} batch {batch:>3}  out of memory")
            continue
        rate = f"{seconds / batch:>9.2f} s/image" if name == "dps" else f"{batch / seconds:>9.2f} images/s"
        print(f"{arch:<19} {mode:<5} {name + '-' + str(steps):<9} {operator.name:<8} batch {batch:>3}  {rate}"
              f"   ({min(steps, args.timed_steps)} of {steps} steps timed)", flush=True)


def peer_table(args, spec: str, arch: str, size: int, device: torch.device, budget: Budget, registry) -> None:
    """Section 3: deepinv's DiffUNet with our state dict."""
    try:
        from deepinv.models import DiffUNet
    except Exception as exc:  # absent, or its own dependencies missing
        print(f"{arch:<19} peer skipped: deepinv is not importable here ({type(exc).__name__}: {exc})")
        return
    ours = load_prior(spec, device=device, registry=registry)
    _, _, network = network_holder(ours)
    for dtype_name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        peer = DiffUNet(large_model=arch == "imagenet256-uncond", use_fp16=dtype == torch.float16, pretrained=None)
        keys = peer.load_state_dict(network.state_dict(), strict=False)
        extra = [k for k in keys.missing_keys if k not in PEER_SCHEDULE_BUFFERS] + list(keys.unexpected_keys)
        if extra:
            print(f"{arch:<19} peer skipped: DiffUNet does not take our state dict ({', '.join(extra[:5])})")
            return
        peer = peer.to(device).eval().requires_grad_(False)
        if dtype == torch.float16:
            peer.convert_to_fp16()
            network.set_torso_dtype(torch.float16)
        for batch in args.batches[:2]:
            if budget.left() < args.reserve:
                print(f"{arch:<19} peer {dtype_name} batch {batch}: skipped: time budget")
                continue
            x = torch.randn(batch, 3, size, size, device=device)
            t = torch.full((batch,), 600.0, device=device)
            with torch.no_grad():
                diff = (peer.forward_diffusion(x, t).float() - network(x, t).float()).abs().max().item()
            theirs = [best_time(c, device, args.repeats) for c in evaluations(peer.forward_diffusion, x, t)]
            mine = [best_time(c, device, args.repeats) for c in evaluations(network, x, t)]
            print(f"{arch:<19} {dtype_name:<5} batch {batch:>3}  max |peer - ours| {diff:.3g}"
                  f"{' (bit-identical)' if diff == 0 else ''}   peer/ours time: fwd {theirs[0] / mine[0]:.2f}x, "
                  f"fwd+bwd {theirs[1] / mine[1]:.2f}x", flush=True)
        peer_strategies(args, spec, arch, size, device, budget, registry, peer, dtype_name, dtype)
        del peer


class PeerNetwork:
    """deepinv's DiffUNet as a prior's network callable: (x, timesteps) -> epsilon and variance."""

    def __init__(self, peer) -> None:
        self.peer = peer

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.peer.forward_diffusion(x, t)


def peer_strategies(args, spec: str, arch: str, size: int, device: torch.device, budget: Budget, registry, peer,
                    dtype_name: str, dtype: torch.dtype) -> None:
    """DPS-1000 at batch 1 and DDRM-20 at the second batch size, with our network and with the
    peer's in its place (the same prior otherwise): the peer's time over ours."""
    ours = accelerate(load_prior(spec, device=device, registry=registry), Acceleration(dtype))
    theirs = load_prior(spec, device=device, registry=registry)
    holder, attribute, _ = network_holder(theirs)
    setattr(holder, attribute, PeerNetwork(peer))
    inpaint, sr = bench_operators(registry)
    for name, operator, steps, batch, params in (("dps", inpaint, 1000, 1, {"zeta": 0.5}),
                                                 ("ddrm", sr, 20, args.batches[1], {})):
        if budget.left() < 2 * args.reserve:
            print(f"{arch:<19} peer {dtype_name} {name}-{steps}: skipped: time budget")
            continue
        seconds = [timed_solve(prior, operator, registry.get("strategy", name)(**params), steps, batch, size, device,
                               args.timed_steps) for prior in (theirs, ours)]
        print(f"{arch:<19} {dtype_name:<5} {name + '-' + str(steps):<9} batch {batch:>3}  peer/ours time "
              f"{seconds[0] / seconds[1]:.2f}x  (ours {seconds[1] / batch:.2f} s/image)", flush=True)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="batches 1 and 2, 1 timed call, 2 timed steps")
    parser.add_argument("--tiny", action="store_true", help="a 32x32 ADM of 32 channels instead of the 256x256 ones")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timed-steps", type=int, default=10)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run")
    parser.add_argument("--no-peer", action="store_true", help="skip the deepinv comparison")
    parser.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    args.batches = (1, 2) if args.quick else (1, 8, 32)
    if args.quick:
        args.repeats, args.timed_steps = 1, 2
    args.reserve = 5.0 if args.tiny else 20.0  # seconds a measurement may need at least
    device = torch.device(args.device)
    budget = Budget(args.budget)
    registry = default_registry()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    archs = {"tiny": TINY} if args.tiny else {name: get_preset(name) for name in ARCHS}

    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} CPU threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", load average {os.getloadavg()[0]:.1f}; random weights; fp32 matmuls "
          + ("may use TF32" if device.type == "cuda" else "in fp32"))
    with tempfile.TemporaryDirectory() as tmp:
        specs = {name: random_checkpoint(config, Path(tmp), name) for name, config in archs.items()}
        header = (f"{'arch':<19} {'mode':<13} {'batch':>5} {'fwd ms':>10} {'/image':>9} {'MiB':>8}"
                  f" {'fwd+bwd ms':>10} {'/image':>9} {'MiB':>8}")
        eager = [m for m in args.modes if not MODES[m].compile]
        compiled = [m for m in args.modes if MODES[m].compile]
        print("\n1. one network evaluation (denoiser call): ms per call / per image, peak MiB over the weights")
        print(header)
        per_image: dict = {}
        for mode in eager:
            for name, spec in specs.items():
                network_rows(args, spec, name, mode, archs[name]["image_size"], device, budget, registry, per_image)
        print("\n2. strategies through the engine (full-length time extrapolated from the timed steps)")
        for name, spec in specs.items():
            strategy_table(args, spec, name, archs[name]["image_size"], device, budget, registry, per_image)
        print("\n3. peer implementation: deepinv DiffUNet with the same state dict")
        for name, spec in specs.items():
            if args.no_peer or args.tiny:
                why = "--no-peer" if args.no_peer else "DiffUNet has only the 256x256 architectures"
                print(f"{name:<19} peer skipped: {why}")
                continue
            peer_table(args, spec, name, archs[name]["image_size"], device, budget, registry)
        if compiled:  # last: compiling takes minutes, so it gets the budget the rest left
            print("\n4. one network evaluation, compiled (compilation in the warm-up call, not timed)")
            print(header)
            for mode in compiled:
                for name, spec in specs.items():
                    network_rows(args, spec, name, mode, archs[name]["image_size"], device, budget, registry,
                                 per_image)
    if device.type == "cuda":
        flops = 1.2e12  # ffhq_10m forward + backward at 256x256 (the estimate)
        print(f"\nphysical floor for reference: ffhq256-dps fwd+bwd ~{flops / 1e12:.1f} TFLOP per evaluation, "
              f"{1000 * flops / 800e12:.1f} ms at 800 TFLOP/s")
    print(f"total {args.budget - budget.left():.0f} s")


if __name__ == "__main__":
    sys.exit(main())
