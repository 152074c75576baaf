"""bf16 against fp32 for each task's default method: the measurement behind ``--precision auto``.

    python benchmarks/precision.py [--tasks denoise,sr4,...] [--targets fidelity,perceptual] [--images 10]
        [--skip 0] [--size 256] [--data ../shared/data/test/cbsd68] [--emulate]
    python benchmarks/precision.py --summarize LOG [LOG ...]

For each task of ``benchmarks/restoration_tasks.json`` and each of the first N images of
``--data`` (default CBSD68)
(centre crops, measurements exactly as the restoration benchmark makes them), the task's
default run per target (:func:`restore.restore` with no method, fast quality; ``--targets``,
default the fidelity target only) with the network in fp32 and in bf16, both with
channels_last, the same seed; prints per task and target the
mean and the per-image spread (min / max) of PSNR(bf16) - PSNR(fp32) and LPIPS(bf16) -
LPIPS(fp32), and the verdict of the rule of docs/PERFORMANCE.md (PSNR loss at most 0.05 dB and
LPIPS change at most 0.002).  Results are printed as each image finishes (image-major, so
every task gets the same count when stopped early).  ``--skip N`` starts after the first N
images, so two processes can share the set; ``--summarize`` prints the table of the per-image
lines of the given logs together (a line seen twice counts once).

``--emulate``: on a CPU without bf16 instructions, where bf16 convolutions run 6.6x slower
than fp32, run bf16's rounding in fp32 arithmetic instead: convolution and linear weights,
every leaf module's inputs and outputs are rounded to bf16 (bf16 operands with float32
accumulation and a bf16 result, as the native kernels compute); operations written inside a
module's forward (additions, functional activations) stay unrounded, so the emulation
reproduces the size of bf16's error rather than its exact values.  The
script first prints the largest difference between the emulated and the native bf16 network
on one small input next to the bf16-fp32 difference, so the emulation's fidelity is on record.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
RULE_PSNR, RULE_LPIPS = 0.05, 0.002
#: One image's line as :func:`main` prints it.
LINE = re.compile(r"^(?P<image>\S+) (?P<row>\S.*?) +fp32 +\S+ dB \S+ +dPSNR (?P<dpsnr>\S+) +dLPIPS (?P<dlpips>\S+)$",
                  re.MULTILINE)


def restoration_module() -> Any:
    spec = importlib.util.spec_from_file_location("restoration_benchmark", HERE / "restoration.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def to_bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(t.dtype)


def emulate_bf16(network: nn.Module) -> nn.Module:
    """Round every conv / linear layer's weights and inputs, and every leaf module's output, to
    bf16, in place (float32 storage; norms compute in float32 on bf16 inputs, as natively)."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():
                module.weight.copy_(to_bf16(module.weight))
                if module.bias is not None:
                    module.bias.copy_(to_bf16(module.bias))
        if not list(module.children()):
            module.register_forward_pre_hook(lambda m, inputs: tuple(to_bf16(i) for i in inputs))
            module.register_forward_hook(lambda m, inputs, out: to_bf16(out))
    return network


def prior_in(precision: str, emulate: bool) -> Any:
    """The default prior with channels_last and the network in ``precision``."""
    from restore import accel
    from restore.priors.spec import load_prior

    prior = load_prior("default")
    acceleration = accel.Acceleration(accel.DTYPES["fp32" if emulate else precision], channels_last=True)
    prior = accel.accelerate(prior, acceleration)
    if precision == "bf16" and emulate:
        emulate_bf16(accel.network_holder(prior)[2])
        prior.info["acceleration"] = {**acceleration.describe(), "precision": "bf16 (emulated)"}
    return prior


def emulation_check() -> str:
    """max |emulated - native bf16| and max |native bf16 - fp32| of the denoiser on one 64x64 input."""
    from restore import accel
    from restore.priors.spec import load_prior

    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor(0.5)
    with torch.no_grad():
        fp32 = load_prior("default").denoiser(x, sigma)
        native = accel.accelerate(load_prior("default"), accel.Acceleration(torch.bfloat16, True)).denoiser(x, sigma)
        emulated = prior_in("bf16", True).denoiser(x, sigma)
    gap, error = float((emulated - native).abs().max()), float((native - fp32).abs().max())
    return f"emulation check (64x64, sigma 0.5): max|emulated - native bf16| {gap:.2e}, |native - fp32| {error:.2e}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="denoise,sr4,deblur-gaussian,deblur-motion,inpaint-box,inpaint-random")
    p.add_argument("--targets", default="fidelity", help="fidelity, perceptual or both (comma-separated)")
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--emulate", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", type=int, default=0, help="start after the first N images")
    p.add_argument("--data", type=Path, default=None, help="folder of test PNGs (default: CBSD68)")
    p.add_argument("--summarize", nargs="+", type=Path, metavar="LOG", help="tabulate the per-image lines of logs")
    args = p.parse_args()
    if args.summarize:
        print_summary(read_deltas("\n".join(log.read_text() for log in args.summarize)))
        print(f"# command: python benchmarks/precision.py {' '.join(sys.argv[1:])}")
        return
    torch.set_num_threads(args.threads)
    import restore
    from restore.plugins import default_registry

    bench = restoration_module()
    registry = default_registry()
    doc = bench.load_tasks()
    metrics = {"psnr": registry.get("metric", "psnr"), "lpips": registry.get("metric", "lpips-alex")}
    if args.emulate:
        print(emulation_check(), flush=True)
    priors = {precision: prior_in(precision, args.emulate) for precision in ("fp32", "bf16")}
    files = sorted((args.data or bench.DEFAULT_DATA).glob("*.png"))[args.skip:args.skip + args.images]
    deltas: dict[str, list[tuple[float, float]]] = {}
    for path in files:
        from restore.operators.io import load_image

        x = bench.centre_crop(load_image(path).image, args.size, path)
        for task in args.tasks.split(","):
            op = bench.build_operator(registry, doc, task, args.size)
            y = bench.measurement(op, x, bench.item_seed(0, task, path.name), 8)
            for target in args.targets.split(","):
                scores = {}
                for precision, prior in priors.items():
                    run = restore.restore(y, op, prior=prior, seed=0, registry=registry, target=target).tensors
                    out = run["mean"] if target == "fidelity" else run["samples"][0]
                    scores[precision] = {name: float(fn(out.clamp(0, 1), x)) for name, fn in metrics.items()}
                delta = tuple(scores["bf16"][k] - scores["fp32"][k] for k in ("psnr", "lpips"))
                row = task if args.targets == "fidelity" else f"{task} {target}"
                deltas.setdefault(row, []).append(delta)
                print(f"{path.name} {row:36} fp32 {scores['fp32']['psnr']:6.2f} dB {scores['fp32']['lpips']:.4f}  "
                      f"dPSNR {delta[0]:+.4f}  dLPIPS {delta[1]:+.5f}", flush=True)
    print_summary(deltas)
    print(f"# command: python benchmarks/precision.py {' '.join(sys.argv[1:])}")


def read_deltas(text: str) -> dict[str, list[tuple[float, float]]]:
    """Per task (and target) row, the (PSNR, LPIPS) changes of the per-image lines in ``text``
    (a line seen twice counts once)."""
    rows = {(m["image"], m["row"]): (float(m["dpsnr"]), float(m["dlpips"])) for m in LINE.finditer(text)}
    deltas: dict[str, list[tuple[float, float]]] = {}
    for (_, row), delta in rows.items():
        deltas.setdefault(row, []).append(delta)
    return deltas


def print_summary(deltas: dict[str, list[tuple[float, float]]]) -> None:
    """Per task (and target): the images, the mean and spread of the changes, the rule's verdict."""
    print(f"\n{'task':36} {'images':>6} {'dPSNR mean':>10} {'min':>8} {'max':>8} {'dLPIPS mean':>11} {'min':>8} "
          f"{'max':>8}  bf16 by default")
    for task, values in deltas.items():
        dp, dl = zip(*values)
        mean_p, mean_l = sum(dp) / len(dp), sum(dl) / len(dl)
        ok = -mean_p <= RULE_PSNR and abs(mean_l) <= RULE_LPIPS
        print(f"{task:36} {len(values):6d} {mean_p:+10.4f} {min(dp):+8.4f} {max(dp):+8.4f} {mean_l:+11.5f} "
              f"{min(dl):+8.5f} {max(dl):+8.5f}  {'yes' if ok else 'no'}")


if __name__ == "__main__":
    main()
