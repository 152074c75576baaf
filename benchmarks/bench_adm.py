"""Time one ADM UNet evaluation at 256x256 with random weights.

    python benchmarks/bench_adm.py [--device cpu|cuda|all] [--repeats N] [--quick] [--channels-last]

Architectures: ``ffhq256-dps`` (DPS ``ffhq_10m.pt``) and ``imagenet256-uncond``
(``256x256_diffusion_uncond.pt``); dtypes fp32 and bf16 (bf16 = the torso converted as
``load_adm(dtype=torch.bfloat16)`` does); batches 1 and 4.  ``fwd`` is a no-grad forward;
``fwd+bwd`` a forward plus the gradient of sum(output**2) with respect to the input, weights
frozen (what DPS-style guidance needs).  Times are the best (minimum) seconds per call
(one network evaluation of the whole batch) of ``--repeats`` timed calls, each mode after
one warm-up call; the minimum is the least disturbed by other jobs on a shared machine.
Weights are random (PyTorch's default initialisation, done in place after the torso dtype
is set, so that no float32 copy inflates the memory baseline).

Every (device, architecture, dtype, batch) runs in a fresh child process so that peak
memory can be attributed: on CPU it is the growth of the child's peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over its value once the model and input
exist; on CUDA ``torch.cuda.max_memory_allocated()`` minus the memory allocated before the
evaluation.  Both exclude the weights.  ``fwd`` runs before ``fwd+bwd`` in the same child;
the CPU high-water mark therefore reports ``fwd+bwd`` correctly only because it needs
more memory than ``fwd``.

``--quick``: one timed call per mode, no warm-up call before ``fwd+bwd`` (its first-call
overheads are included; ``fwd`` is still warmed up), and ``imagenet256-uncond`` only at batch 1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch

from restore.priors.adm import ADMUNet, get_preset

ARCHS = ("ffhq256-dps", "imagenet256-uncond")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BATCHES = (1, 4)
SIZE = 256
TIMESTEP = 500.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory_start(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _memory_peak(device: torch.device, start: int) -> float:
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return (peak - start) / 2**20


def measure(spec: dict) -> dict:
    """Time fwd and fwd+bwd for one configuration (runs inside the child process)."""
    device = torch.device(spec["device"])
    torch.backends.cudnn.benchmark = True
    with torch.device("meta"):
        model = ADMUNet.from_config(get_preset(spec["arch"])).set_torso_dtype(DTYPES[spec["dtype"]])
    model.to_empty(device=device).eval().requires_grad_(False)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    if spec["channels_last"]:
        model.to(memory_format=torch.channels_last)
    x = torch.randn(spec["batch"], 3, SIZE, SIZE, device=device)
    t = torch.full((spec["batch"],), TIMESTEP, device=device)

    def fwd() -> None:
        with torch.no_grad():
            model(x, t)

    def fwd_bwd() -> None:
        xg = x.clone().requires_grad_(True)
        model(xg, t).square().sum().backward()

    result = {"params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    for mode, step in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
        if mode == "fwd" or device.type == "cuda":
            start = _memory_start(device)
        for _ in range(spec["warmup"][mode]):
            step()
        times = []
        for _ in range(spec["repeats"]):
            _sync(device)
            tic = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - tic)
        result[mode] = {"s": min(times), "peak_mib": _memory_peak(device, start)}
    return result


def _run_child(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True
    )
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(spec: dict, res: dict) -> str:
    head = f"{spec['arch']:<19} {spec['device']:<5} {spec['dtype']:<5} {spec['batch']:>5}"
    if "error" in res:
        return f"{head}  failed: {res['error']}"
    cells = []
    for mode in ("fwd", "fwd+bwd"):
        r = res[mode]
        cells.append(f"{r['s']:>9.3f} {r['s'] / spec['batch']:>9.3f} {r['peak_mib']:>9.0f}")
    return f"{head} {res['params_m']:>7.1f}  " + "   ".join(cells)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="all", choices=("cpu", "cuda", "all"),
                        help="'all' = cpu, plus cuda when available")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed calls per mode and configuration (the best is reported)")
    parser.add_argument("--quick", action="store_true",
                        help="1 timed call (overrides --repeats), no fwd+bwd warm-up, ImageNet net at batch 1 only")
    parser.add_argument("--channels-last", action="store_true", help="channels_last conv weights")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    if not devices:
        parser.error("CUDA is not available")
    print(f"ADM UNet, one network evaluation at {SIZE}x{SIZE}, random weights, t={TIMESTEP:g}")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else "")
          + (", channels_last" if args.channels_last else "")
          + ", load average %.1f (shared machine: other jobs inflate CPU times)" % os.getloadavg()[0])
    print("s/call = best seconds per call (whole batch); s/img = s/call / batch; peak MiB = extra memory")
    print("over weights+input (CPU: ru_maxrss growth in a fresh process; CUDA: max_memory_allocated)")
    print(f"{'arch':<19} {'dev':<5} {'dtype':<5} {'batch':>5} {'Mparam':>7}  "
          f"{'fwd s/call':>9} {'s/img':>9} {'peak MiB':>9}   {'f+b s/call':>9} {'s/img':>9} {'peak MiB':>9}")
    for device in devices:
        warmup = {"fwd": 1, "fwd+bwd": 0 if args.quick else 1}
        for arch in ARCHS:
            for dtype in DTYPES:
                for batch in BATCHES:
                    if args.quick and arch == "imagenet256-uncond" and batch > 1:
                        continue
                    spec = dict(device=device, arch=arch, dtype=dtype, batch=batch, warmup=warmup,
                                repeats=1 if args.quick else args.repeats,
                                channels_last=args.channels_last)
                    print(_row(spec, _run_child(spec)), flush=True)
    print("load average at the end: %.1f" % os.getloadavg()[0])


if __name__ == "__main__":
    main()
