"""The training loop every ``restore train`` command shares.

A :class:`Task` says what is trained (its network, a batch, the loss, a validation and
an export); :func:`train` owns everything else:

* Adam with the learning rate a function of *images seen* (:class:`LRSchedule`: linear
  warm-up, constant, then a final anneal to ``anneal_factor`` x, the recipe that reached
  CBM3D's denoising level on a CPU here), gradient-norm clipping;
* a bias-corrected EMA of the weights (:mod:`restore.training.ema`), which is what is
  validated and exported;
* checkpoints (``OUT/checkpoint.pt``, read back with ``weights_only=True``) written
  atomically every few minutes and at the end: rerunning the same command continues
  where the last one stopped, step for step, because each step's random draws come from
  a generator seeded by (seed, rank, step) rather than from state that would need saving
  (on the training device: batches and noise are drawn there, so a GPU run does not wait
  on the CPU; the same seed draws other numbers on another kind of device);
* ``max_minutes``, a time box for one invocation; the schedule is in images, so a run
  stopped by the box and resumed follows the same schedule as an uninterrupted one;
* Ctrl-C (SIGINT) or SIGTERM stops after the current step with a checkpoint, so the
  rerun continues from there (:class:`StopRequest`; a second Ctrl-C stops at once);
* torch.distributed under torchrun (DistributedDataParallel; gloo on CPU, nccl on GPU):
  each rank draws its own batches, rank 0 validates, checkpoints and exports;
* no wait on the device in a step: the losses are summed where they are computed and read
  at each progress line, validation and checkpoint, where a non-finite one stops the run
  with FloatingPointError before the weights it spoiled are saved (:class:`_Log`);
* bf16 autocast on request (``precision="bf16"``) for the loss and the validation, the
  weights and optimiser in fp32: on GPUs, and on CPUs with bf16 instructions (AVX512-BF16,
  AMX, Arm BF16; :func:`restore.accel.fast_bf16`); elsewhere bf16 is slower than float32,
  so training runs in float32 and says so once.  The record states what ran.
"""
from __future__ import annotations

import copy
import json
import platform
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

import torch
from torch import Tensor, nn

from restore.distributed import World
from restore.files import atomic_write
from restore.training.ema import EMA

CHECKPOINT = "checkpoint.pt"
HISTORY = "training.json"


@dataclass(frozen=True)
class LRSchedule:
    """lr(n) for n images seen: lr * n / warmup below ``warmup`` images, ``lr`` until the last
    ``anneal_fraction`` of ``total`` images, then ``lr * anneal_factor``."""

    lr: float
    total: int
    warmup: int = 2000
    anneal_fraction: float = 0.15
    anneal_factor: float = 0.1

    def __post_init__(self) -> None:
        if not (self.lr > 0 and self.total > 0 and self.warmup >= 0 and 0 <= self.anneal_fraction < 1
                and self.anneal_factor > 0):
            raise ValueError(f"invalid learning-rate schedule {self}")

    def __call__(self, images: int) -> float:
        if self.warmup and images < self.warmup:
            return self.lr * max(images, 1) / self.warmup
        if images >= (1.0 - self.anneal_fraction) * self.total:
            return self.lr * self.anneal_factor
        return self.lr


@dataclass
class RunOptions:
    """How long and how to train; everything but the task."""

    out: Path
    images: int
    batch_size: int = 16
    lr: float = 1e-3
    warmup_images: int = 2000
    anneal_fraction: float = 0.15
    anneal_factor: float = 0.1
    ema_beta: float = 0.998
    grad_clip: float = 1.0
    seed: int = 0
    max_minutes: Optional[float] = None
    max_steps: Optional[int] = None     # stop this invocation after N steps (resumable), like max_minutes
    checkpoint_minutes: float = 5.0
    validate_images: int = 20000
    precision: str = "fp32"
    log_seconds: float = 30.0
    quiet: bool = False

    def schedule(self) -> LRSchedule:
        return LRSchedule(self.lr, self.images, self.warmup_images, self.anneal_fraction, self.anneal_factor)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast pays on ``device``; if not, say once that training runs in float32."""
    from restore import accel

    fast, why = accel.fast_bf16(device)
    if not fast:
        accel.say_once(f"note: {why}, where bf16 is slower than float32: training in float32")
    return fast


class Task(Protocol):
    """What :func:`train` trains."""

    network: nn.Module

    def identity(self) -> dict:
        """JSON facts a checkpoint must share to be resumed (architecture, data, ...)."""

    def batch(self, size: int, generator: torch.Generator) -> Tensor | tuple[Tensor, ...]:
        """One training batch on the CPU (a tensor, or a tuple such as images and labels)."""

    def loss(self, network: Callable, batch, generator: torch.Generator) -> Tensor:
        """The scalar loss of ``network`` (possibly DDP-wrapped) on ``batch``."""

    def validate(self, network: nn.Module) -> dict[str, float]:
        """Figures of merit of ``network`` (the EMA weights, eval mode, no grad)."""

    def export(self, out: Path, state: dict[str, Tensor], record: dict) -> None:
        """Write the shippable model (``state``: EMA weights) and its card into ``out``."""


@dataclass
class Progress:
    """Counters that survive resumption (saved in the checkpoint)."""

    step: int = 0
    images: int = 0
    seconds: float = 0.0          # training wall time over all invocations
    history: list = field(default_factory=list)


class TrainingInterrupted(Exception):
    """A run stopped by SIGINT / SIGTERM, its checkpoint written; ``signal`` names the signal."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.signal = signal_name


class StopRequest:
    """While active (a context manager, in the main thread), the first SIGINT or SIGTERM
    is recorded in ``signal`` instead of killing the process, so the loop can finish the
    step it is in and checkpoint; a second SIGINT raises KeyboardInterrupt at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: Optional[str] = None
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def step_generator(seed: int, rank: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator for one step's random draws, on the training device (a batch and its noise
    are drawn there, not copied from the CPU), a pure function of (seed, rank, step, device type)."""
    return torch.Generator(device=device).manual_seed(((seed * 1_000_003 + rank) * 10_000_019 + step) % (2**63 - 1))


def _load_checkpoint(path: Path, identity: dict) -> Optional[dict]:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    stored, current = _flat(state.get("identity") or {}), _flat(json.loads(json.dumps(identity)))
    if stored != current:
        differs = "; ".join(f"{key}: {stored.get(key)!r} there, {current.get(key)!r} here"
                            for key in sorted(set(stored) | set(current)) if stored.get(key) != current.get(key))
        raise ValueError(f"{path} was written by a different run ({differs}): rerun with the options it was "
                         "written with, use another output folder or delete the checkpoint")
    return state


def _flat(tree: dict, prefix: str = "") -> dict:
    """A nested dict as one level, keys joined by dots (``config.num_res_blocks``)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _to_device(batch, device: torch.device):
    """A batch (a tensor or a tuple of tensors, e.g. images and labels) on ``device``."""
    return tuple(b.to(device) for b in batch) if isinstance(batch, tuple) else batch.to(device)


def hardware(world: World) -> dict:
    device = world.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"device": str(device), "name": name, "processes": world.size, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}


class _Log:
    """Progress lines on stderr: step, images, loss, lr, images/s and ETA, for the first
    step and then every ``log_seconds``.

    The losses stay on the training device between lines (:meth:`add` sums them there), so a
    step does not wait for the device: :meth:`settle` reads the sum once (averaged over the
    ranks), at each line and before every validation and checkpoint, and raises
    FloatingPointError if any loss since the last read was not finite, before weights it
    spoiled are validated or saved (the checkpoint on disk stays the last good one)."""

    def __init__(self, options: RunOptions, world: World) -> None:
        self.enabled = world.main and not options.quiet
        self.world = world
        self.every = options.log_seconds
        self.last = -float("inf")
        self.total: Optional[Tensor] = None
        self.steps: list[int] = []
        self.lr = options.lr

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def add(self, progress: Progress, loss: Tensor) -> None:
        """The loss of step ``progress.step`` (the step just taken), added on its device."""
        loss = loss.detach().float()
        self.total = loss if self.total is None else self.total + loss
        self.steps.append(progress.step)

    def due(self) -> bool:
        """Whether a line is due (on every rank when one's clock says so)."""
        return self.world.any(time.monotonic() - self.last >= self.every)

    def settle(self) -> Optional[float]:
        """The mean loss since the last read (None when no step was taken), checked finite."""
        if self.total is None:
            return None
        mean = self.world.mean(float(self.total)) / len(self.steps)
        first, last = self.steps[0], self.steps[-1]
        self.total, self.steps = None, []
        if not torch.isfinite(torch.tensor(mean)):
            raise FloatingPointError(f"training loss is {mean} in steps {first} to {last}; lower --lr (now "
                                     f"{self.lr}) or check the data; the last checkpoint was kept")
        return mean

    def step(self, progress: Progress, lr: float, rate: float, eta: float) -> None:
        """A progress line if one is due."""
        if not self.due():
            return
        self.last = time.monotonic()
        mean = self.settle()
        self.line(f"step {progress.step}  images {progress.images}  loss {mean:.4f}  lr {lr:.2e}  "
                  f"{rate:.1f} img/s  eta {eta / 60:.1f} min")


def train(task: Task, options: RunOptions, world: World) -> dict:
    """Train ``task`` until ``options.images`` images are seen or the time box closes; returns
    the record (progress, validation history, hardware) also written to ``OUT/training.json``."""
    out = Path(options.out)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
    world.barrier()
    network = task.network.to(world.device)
    optimizer = torch.optim.Adam(network.parameters(), lr=options.lr)
    ema = EMA(network, options.ema_beta)
    progress = Progress()
    identity = {**task.identity(), "ema_beta": options.ema_beta, "batch_size": options.batch_size,
                "processes": world.size, "seed": options.seed}
    state = _load_checkpoint(out / CHECKPOINT, identity)
    log = _Log(options, world)
    if state is not None:
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        progress = Progress(int(state["step"]), int(state["images"]), float(state["seconds"]), list(state["history"]))
        log.line(f"resuming {out / CHECKPOINT} at step {progress.step} ({progress.images} images)")
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", options.lr)
    schedule = options.schedule()
    wrapped: Callable = network
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(network, device_ids=[world.device] if world.device.type == "cuda" else None)
    if options.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {options.precision!r}")
    autocast = options.precision == "bf16" and bf16_is_fast(world.device)

    def save() -> None:
        log.settle()
        if world.main:
            payload = {"identity": identity, "step": progress.step, "images": progress.images,
                       "seconds": progress.seconds, "history": progress.history, "network": network.state_dict(),
                       "optimizer": optimizer.state_dict(), "ema": ema.state_dict()}
            atomic_write(out / CHECKPOINT, lambda tmp: torch.save(payload, tmp))
            export()
        world.barrier()

    def record() -> dict:
        return {"images": progress.images, "steps": progress.step, "train_seconds": round(progress.seconds, 1),
                "schedule": asdict(schedule), "ema_beta": options.ema_beta, "ema_horizon_steps": ema.horizon,
                "batch_size": options.batch_size, "precision": "bf16" if autocast else "fp32",
                "hardware": hardware(world),
                "identity": identity, "validation": progress.history}

    def export() -> None:
        rec = record()
        task.export(out, ema.state_for(network), rec)
        atomic_write(out / HISTORY, lambda tmp: tmp.write_text(json.dumps(rec, indent=2) + "\n"))

    def validate() -> None:
        log.settle()
        if world.main:
            shadow = copy.deepcopy(network)
            shadow.load_state_dict(ema.state_for(network))
            shadow.to(world.device).eval()
            with torch.no_grad(), torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=autocast):
                figures = task.validate(shadow)
            entry = {"images": progress.images, "step": progress.step, **{k: round(v, 4) for k, v in figures.items()}}
            progress.history.append(entry)
            log.line("validation  " + "  ".join(f"{k} {v}" for k, v in entry.items()))
        world.barrier()

    start = time.monotonic()
    last_save = start
    next_validation = (progress.images // options.validate_images + 1) * options.validate_images
    stopped_by_time = interrupted = False
    first_step, first_images = progress.step, progress.images
    network.train()
    with StopRequest() as stop:
        log.line(f"training to {options.images} images from step {progress.step}; Ctrl-C stops with a checkpoint")
        while progress.images < options.images:
            elapsed = time.monotonic() - start
            out_of_time = options.max_minutes is not None and elapsed > 60 * options.max_minutes
            out_of_steps = options.max_steps is not None and progress.step - first_step >= options.max_steps
            interrupted = world.any(stop.signal is not None)  # every rank stops when one is signalled
            if interrupted or world.any(out_of_time or out_of_steps):
                stopped_by_time = not interrupted
                break
            tick = time.monotonic()
            generator = step_generator(options.seed, world.rank, progress.step, world.device)
            batch = _to_device(task.batch(options.batch_size, generator), world.device)
            lr = schedule(progress.images)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = task.loss(wrapped, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if options.grad_clip:
                nn.utils.clip_grad_norm_(network.parameters(), options.grad_clip)
            optimizer.step()
            ema.update(network)
            log.add(progress, loss)
            progress.step += 1
            progress.images += options.batch_size * world.size
            progress.seconds += time.monotonic() - tick
            rate = (progress.images - first_images) / max(time.monotonic() - start, 1e-9)
            log.step(progress, lr, rate, (options.images - progress.images) / max(rate, 1e-9))
            if progress.images >= next_validation:
                validate()
                network.train()
                next_validation += options.validate_images
            if time.monotonic() - last_save > 60 * options.checkpoint_minutes:
                save()
                last_save = time.monotonic()
        if interrupted:
            save()
            by = stop.signal or "a signal to another rank"
            message = (f"stopped by {by} at {progress.images} of {options.images} images, checkpoint "
                       f"saved; rerun the same command to continue")
            log.line(message)
            raise TrainingInterrupted(message, stop.signal or "SIGTERM")
    if not progress.history or progress.history[-1]["images"] != progress.images:
        validate()
    save()
    if stopped_by_time:
        log.line(f"stopped by the time box (--max-minutes / --max-steps) at {progress.images} of "
                 f"{options.images} images; rerun the same command to continue")
    else:
        log.line(f"done: {progress.images} images in {progress.seconds / 60:.1f} min of training")
    return record()
