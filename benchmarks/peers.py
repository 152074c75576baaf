"""Side by side with deepinv: the same ADM-256 weights, the same tasks and step counts.

    python benchmarks/peers.py [--size 256] [--runs dps:10,ddrm:20,diffpir:20] [--tasks sr4,deblur]
                               [--repeats 1] [--threads 1] [--device cpu|cuda] [--table PATH]

deepinv 0.5.0 is an optional benchmark extra (``pip install deepinv==0.5.0``), never a
dependency of the package.  One state dict of the ``ffhq256-dps`` architecture (DPS's
``ffhq_10m.pt``: 93.6 M parameters) with random but fixed weights (seed 0; no real
checkpoint is available offline; the cost of a network evaluation does not depend on the
weights' values) is saved once and loaded unchanged by both libraries: the toolkit's
``adm:PATH:ffhq256-dps`` and deepinv's ``DiffUNet(large_model=False)`` (its two extra
buffers are its noise schedule, not weights).

Tasks at SIZE x SIZE on a CBSD68 centre crop (``../shared/data/test/cbsd68``; a fixed random
image where it is missing), Gaussian noise sigma_y = 0.025 on [0, 1] (DPS's 0.05 on [-1, 1]):
``sr4`` (bicubic x4: the toolkit's ``sr``, deepinv's ``Downsampling``) and ``deblur``
(Gaussian blur, std 3, circular: the toolkit's ``blur``, deepinv's ``BlurFFT``).  Methods at
equal network evaluations: DPS (one forward and one backward per step), DDRM and DiffPIR
(one forward per step).  deepinv 0.5.0's DDRM needs a ``DecomposablePhysics``, which its
``Downsampling`` is not: that cell is marked n/a.

Every (task, method, library) runs in its own child process, interleaved (for each repeat,
task and method: deepinv, then the toolkit), so that the peak memory is the child's own:
the growth of its peak resident set size over its value once the model and data exist (CUDA:
``max_memory_allocated`` over the allocation before the run).  CPU time is the child's
``time.process_time`` around the run (all threads; robust to other jobs on a shared
machine), wall time ``time.perf_counter``.  The toolkit runs with its fast path at its
defaults (``restore.accel``: ``--precision auto``, ``--channels-last``), which the table
states as resolved on the machine.  ``|diff|``: mean absolute difference of the two
libraries' outputs; PSNR of each against the clean crop.  On CUDA the script also times
DPS with 1000 steps on a batch of 4 (``--gpu-batch``).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
CBSD68 = HERE.parents[1] / "shared" / "data" / "test" / "cbsd68"
SIGMA_Y = 0.025
BLUR_STD = 3.0
PRESET = "ffhq256-dps"
TASKS = ("sr4", "deblur")
RUNS = "dps:10,ddrm:20,diffpir:20"


def config(size: int) -> dict[str, Any]:
    """The preset's architecture for size x size images: the same weights (attention stays at
    1/16 of the image side), so that the toolkit runs a smaller image without tiling it."""
    from restore.priors.adm import get_preset

    return dict(get_preset(PRESET), image_size=size, attention_resolutions=str(max(size // 16, 1)),
                channel_mult="1,1,2,2,4,4")


def state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random but fixed weights of the preset's architecture: PyTorch's default initialisation,
    with the zero-initialised output convolutions (guided-diffusion's ``zero_module``) drawn
    small instead, so that the network's output depends on its input."""
    from restore.priors.adm import ADMUNet

    torch.manual_seed(seed)
    network = ADMUNet.from_config(config(256))
    with torch.no_grad():
        for parameter in network.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.01)
    return network.state_dict()


def clean_image(size: int) -> torch.Tensor:
    """A (1, 3, size, size) image on [0, 1]: the first CBSD68 image's centre crop, else seeded noise."""
    files = sorted(CBSD68.glob("*.png")) if CBSD68.is_dir() else []
    if files:
        from restore.operators.io import load_image

        x = load_image(files[0]).image
        if min(x.shape[-2:]) >= size:
            top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
            return x[..., top:top + size, left:left + size].contiguous()
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- one run (child)


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def deepinv_run(task: str, method: str, steps: int, weights: Path, x: torch.Tensor, device: torch.device):
    """deepinv's model, physics and sampler; returns the callable that restores."""
    import deepinv as dinv

    model = dinv.models.DiffUNet(large_model=False, pretrained=None)
    missing, unexpected = model.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    assert not unexpected and set(missing) == {"sqrt_1m_alphas_cumprod", "sqrt_alphas_cumprod"}, (missing, unexpected)
    model = model.to(device).eval()
    size = tuple(x.shape[1:])
    noise = dinv.physics.GaussianNoise(SIGMA_Y, rng=torch.Generator(device).manual_seed(0))
    if task == "sr4":
        physics = dinv.physics.Downsampling(img_size=size, filter="bicubic", factor=4, noise_model=noise,
                                            padding="circular", device=device)
    else:
        physics = dinv.physics.BlurFFT(img_size=size, filter=dinv.physics.blur.gaussian_blur(sigma=BLUR_STD),
                                       noise_model=noise, device=device)
    y = physics(x.to(device))
    calls = [0]
    model.register_forward_pre_hook(lambda module, inputs: calls.__setitem__(0, calls[0] + 1))
    if method == "dps":  # its ancestral solver skips the network at the last of its time points
        sampler = dinv.sampling.DPS(model, num_steps=steps + 1, device=device, dtype=torch.float32,
                                    rng=torch.Generator(device).manual_seed(0))
    elif method == "ddrm":
        if not isinstance(physics, dinv.physics.DecomposablePhysics):
            return None
        sampler = dinv.sampling.DDRM(denoiser=model, sigmas=np.linspace(1, 0, steps))
    else:
        sampler = dinv.sampling.DiffPIR(model, data_fidelity=dinv.optim.L2(), sigma=SIGMA_Y, max_iter=steps,
                                        device=device)
    return lambda: sampler(y, physics, seed=0), lambda: calls[0]


def toolkit_run(task: str, method: str, steps: int, weights: Path, x: torch.Tensor, device: torch.device):
    """The toolkit's prior (fast path at its defaults, resolved for the task), operator and
    strategy through :func:`restore.restore`; returns the callable that restores and the fast path used."""
    import restore
    from restore.accel import FastPath, prepare
    from restore.plugins import default_registry
    from restore.priors.spec import load_prior
    from restore.strategies.catalog import operator_kind

    registry = default_registry()
    if task == "sr4":
        name, options = "sr", {"scale": 4, "method": "bicubic"}
    else:
        name, options = "blur", {"kernel": "gaussian", "std": BLUR_STD, "size": 2 * math.ceil(4 * BLUR_STD) + 1}
    operator = registry.get("operator", name)(**options, noise={"kind": "gaussian", "sigma": SIGMA_Y})
    architecture = weights.with_suffix(f".{x.shape[-1]}.json")
    architecture.write_text(json.dumps(config(x.shape[-1])))
    prior, used = prepare(f"adm:{weights}:{architecture}",
                          lambda spec: load_prior(spec, device=device, registry=registry), FastPath(), device,
                          operator_kind(operator, tuple(x.shape[1:])))
    y = operator.measure(x.to(device), generator=torch.Generator(device).manual_seed(0))

    nfe = [0]

    def run() -> torch.Tensor:
        result = restore.restore(y, operator, prior=prior, method=method, steps=steps, seed=0, samples=1,
                                 device=device, registry=registry)
        nfe[0] = result.nfe
        return result.tensors["mean"]

    return run, lambda: nfe[0], used.describe()


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One run as ``spec`` says; its timings, peak memory and output file."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    x = clean_image(spec["size"]).repeat(spec.get("batch", 1), 1, 1, 1)
    weights = Path(spec["weights"])
    fast = None
    if spec["library"] == "deepinv":
        made = deepinv_run(spec["task"], spec["method"], spec["steps"], weights, x, device)
        if made is None:
            return {"skipped": "deepinv's DDRM needs a DecomposablePhysics; its Downsampling is not one"}
        run, nfe = made
    else:
        run, nfe, fast = toolkit_run(spec["task"], spec["method"], spec["steps"], weights, x, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = peak_bytes(device) if device.type == "cpu" else torch.cuda.memory_allocated(device)
    cpu, wall = time.process_time(), time.perf_counter()
    out = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    out = out.detach().float().cpu().clamp(0, 1)
    np.save(spec["output"], out.numpy())
    mse = float(((out - x.cpu()) ** 2).mean())  # NaN where a sampler diverged
    psnr = 10 * math.log10(1 / mse) if math.isfinite(mse) and mse > 0 else float("inf" if mse == 0 else "nan")
    return {"cpu_s": cpu, "wall_s": wall, "peak_mib": (peak_bytes(device) - before) / 2**20, "psnr": psnr,
            "fast_path": fast, "nfe": nfe()}


# ----------------------------------------------------------------------------- the table (parent)


def parse_runs(text: str) -> list[tuple[str, int]]:
    runs = []
    for item in text.split(","):
        method, _, steps = item.partition(":")
        if method not in ("dps", "ddrm", "diffpir") or not steps.isdigit():
            raise SystemExit(f"--runs: expected method:steps with method dps, ddrm or diffpir, got {item!r}")
        runs.append((method, int(steps)))
    return runs


def spawn(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    weights = workdir / "adm256.pt"
    torch.save(state_dict(), weights)
    rows = []
    for repeat in range(args.repeats):
        for task in args.tasks.split(","):
            for method, steps in parse_runs(args.runs):
                row = {"task": task if args.batch == 1 else f"{task}x{args.batch}", "method": method, "steps": steps,
                       "repeat": repeat}
                for library in ("deepinv", "restore"):  # interleaved
                    output = workdir / f"{task}-{method}-{library}-{repeat}.npy"
                    row[library] = spawn({"library": library, "task": task, "method": method, "steps": steps,
                                          "size": args.size, "threads": args.threads, "device": args.device,
                                          "weights": str(weights), "output": str(output), "batch": args.batch})
                    row[library + "_output"] = output
                a, b = row["deepinv_output"], row["restore_output"]
                if a.is_file() and b.is_file():
                    row["diff"] = float(np.abs(np.load(a) - np.load(b)).mean())
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def cell(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"{'n/a':>8} {'':>4} {'':>8} {'':>8} {'':>6}"
    if "error" in result:
        return f"{'error':>8} {'':>4} {'':>8} {'':>8} {'':>6}"
    return (f"{result['cpu_s']:8.1f} {result['nfe']:4d} {result['wall_s']:8.1f} {result['peak_mib']:8.0f} "
            f"{result['psnr']:6.2f}")


def format_row(row: dict[str, Any]) -> str:
    ours, theirs = row["restore"], row["deepinv"]
    both = "cpu_s" in ours and "cpu_s" in theirs and ours["nfe"] and theirs["nfe"]
    ratio = f"{(ours['cpu_s'] / ours['nfe']) / (theirs['cpu_s'] / theirs['nfe']):6.2f}" if both else f"{'n/a':>6}"
    diff = f"{row['diff']:7.4f}" if "diff" in row else f"{'':>7}"
    return (f"{row['task']:7} {row['method']:8} {row['steps']:5} {row['repeat']:3}  {cell(theirs)}  {cell(ours)}"
            f"  {ratio} {diff}")


HEADER = (f"{'task':7} {'method':8} {'steps':>5} {'rep':>3}  {'deepinv: cpu s':>14} {'NFE':>4} {'wall s':>8} "
          f"{'peak MiB':>8} {'PSNR':>6}  {'restore: cpu s':>14} {'NFE':>4} {'wall s':>8} {'peak MiB':>8} {'PSNR':>6}  "
          f"{'ratio':>6} {'|diff|':>7}")


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--runs", default=RUNS, help="method:steps, comma-separated (default %(default)s)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--gpu-batch", type=int, default=4, help="CUDA only: also DPS-1000 on a batch of this many")
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--table", type=Path, default=None, help="also write the table here")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    import deepinv

    head = [f"# restore vs deepinv {deepinv.__version__}: ADM {PRESET} (random fixed weights, one state dict), "
            f"{args.size}x{args.size}, sigma_y {SIGMA_Y}",
            f"# torch {torch.__version__}, {platform.machine()}, device {args.device}, {args.threads} thread(s); "
            "cpu s = process_time of the run; ratio = restore's CPU s per NFE / deepinv's",
            f"# command: python benchmarks/peers.py {' '.join(argv if argv is not None else sys.argv[1:])}", HEADER]
    print("\n".join(head), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args, Path(tmp))
        if args.device.startswith("cuda"):
            args.runs, args.tasks, args.repeats, args.batch = "dps:1000", "sr4", 1, args.gpu_batch
            rows += measure(args, Path(tmp))
    fast = {r["task"]: r["restore"]["fast_path"] for r in rows if r["restore"].get("fast_path")}
    lines = head + [format_row(r) for r in rows] + [f"# restore's fast path as resolved here, per task: {fast}"]
    print(lines[-1])
    if args.table is not None:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
