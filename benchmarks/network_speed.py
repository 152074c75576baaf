"""Seconds per network evaluation in each precision and layout of the fast path, on this CPU.

    python benchmarks/network_speed.py [--repeats 3] [--threads 1] [--size 256] [--skip-adm]

Networks: the embedded ``default`` prior (the 1 M-parameter compact UNet, through
``prior.denoiser`` at sigma 0.2, as the strategies call it) and an ADM ``ffhq256-dps`` UNet
(DPS's FFHQ architecture, 93.6 M parameters, random weights with PyTorch's default
initialisation, t = 500; forward, and forward plus the input gradient of sum(out^2), what DPS
needs).  Configurations, as :func:`restore.accel.accelerate` applies them: fp32; fp32 +
channels_last; bf16 + channels_last with the normalisation layers' input copied to float32
and back (``cast norms``, the generic path); bf16 + channels_last with the CPU's mixed-type
norm kernels taking the bf16 input (``mixed norms``, :func:`restore.priors.norms.normalize_in_float32`,
the default).  Each configuration is warmed up once, then the repeats are interleaved across
configurations; the table gives the best CPU time (``time.process_time``: robust to other
processes) per call, its ratio to fp32, and the largest absolute difference of the output from
fp32's (for ADM with random weights the output's scale is about 1).  Prints whether torch sees
bf16 instructions: without them bf16 runs on emulated kernels and ``--precision auto`` keeps fp32.
"""
from __future__ import annotations

import argparse
import copy
import platform
import time
from typing import Callable

import torch
import torch.nn.functional as F

from restore import accel
from restore.priors.adm import ADMUNet, get_preset
from restore.priors.spec import load_prior

CONFIGS = (("fp32", torch.float32, False, "mixed"), ("fp32 + channels_last", torch.float32, True, "mixed"),
           ("bf16 + channels_last, cast norms", torch.bfloat16, True, "cast"),
           ("bf16 + channels_last, mixed norms", torch.bfloat16, True, "mixed"))


def cast_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The generic float32 norm: the input copied to float32, the output back to its dtype."""
    if isinstance(norm, torch.nn.GroupNorm):
        return F.group_norm(x.float(), norm.num_groups, norm.weight.float(), norm.bias.float(), norm.eps).to(x.dtype)
    return norm(x.float()).to(x.dtype)


def use_norms(kind: str) -> None:
    """Route the two callers of :func:`restore.priors.norms.normalize_in_float32` to ``kind``."""
    from restore.priors import norms
    from restore.priors.adm import blocks

    function = norms.normalize_in_float32 if kind == "mixed" else cast_norm
    blocks.normalize_in_float32 = accel.normalize_in_float32 = function


def timed(call: Callable[[], torch.Tensor], repeats: list[float]) -> torch.Tensor:
    tic = time.process_time()
    out = call()
    repeats.append(time.process_time() - tic)
    return out


def default_prior_calls(size: int) -> dict[str, Callable[[], torch.Tensor]]:
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sigma = torch.tensor([0.4])
    calls = {}
    for name, dtype, channels_last, _ in CONFIGS:
        prior = accel.accelerate(load_prior("default"), accel.Acceleration(dtype, channels_last))
        calls[name] = (lambda p=prior: p.denoiser(x, sigma))
    return calls


def adm_calls(size: int) -> tuple[dict[str, Callable], dict[str, Callable]]:
    torch.manual_seed(0)
    base = ADMUNet.from_config(get_preset("ffhq256-dps")).eval().requires_grad_(False)
    for module in base.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    t = torch.full((1,), 500.0)
    forward, backward = {}, {}
    for name, dtype, channels_last, _ in CONFIGS:
        model = copy.deepcopy(base).set_torso_dtype(dtype)
        if channels_last:
            model.to(memory_format=torch.channels_last)

        def grad(m=model) -> torch.Tensor:
            xg = x.clone().requires_grad_(True)
            m(xg, t).square().sum().backward()
            return xg.grad

        forward[name] = (lambda m=model: m(x, t))
        backward[name] = grad
    return forward, backward


def table(title: str, calls: dict[str, Callable], repeats: int, grad: bool = False) -> None:
    times: dict[str, list[float]] = {name: [] for name in calls}
    outputs = {}
    kinds = {name: kind for name, _, _, kind in CONFIGS}
    with torch.set_grad_enabled(grad):
        for name, call in calls.items():  # warm-up
            use_norms(kinds[name])
            call()
        for _ in range(repeats):
            for name, call in calls.items():
                use_norms(kinds[name])
                outputs[name] = timed(call, times[name]).detach().float()
    use_norms("mixed")
    reference = min(times["fp32"])
    print(f"\n{title}\n{'configuration':36} {'CPU s/call':>10} {'vs fp32':>8} {'max|out - fp32|':>16}")
    for name in calls:
        diff = float((outputs[name] - outputs["fp32"]).abs().max())
        print(f"{name:36} {min(times[name]):10.3f} {min(times[name]) / reference:8.2f} {diff:16.2e}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--skip-adm", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fast, why = accel.fast_bf16(torch.device("cpu"))
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} thread(s), {args.size}x{args.size}, best of {args.repeats} interleaved calls")
    print("bf16 instructions: " + ("yes" if fast else f"no ({why})"))
    table("default prior (compact UNet), denoiser call", default_prior_calls(args.size), args.repeats)
    if not args.skip_adm:
        forward, backward = adm_calls(args.size)
        table("ADM ffhq256-dps, forward", forward, args.repeats)
        table("ADM ffhq256-dps, forward + input gradient (DPS)", backward, args.repeats, grad=True)
    print(f"# command: python benchmarks/network_speed.py {' '.join(__import__('sys').argv[1:])}")


if __name__ == "__main__":
    main()
