"""The fast path of a loaded prior: network precision, channels_last, torch.compile, and threads.

One vocabulary for every command and the API (``--precision``, ``--channels-last``,
``--compile``, ``--threads``; ``precision=``, ``channels_last=``, ``compile=``, ``threads=``):
:class:`FastPath` is what was asked, :func:`resolve` turns it into the :class:`Acceleration`
actually applied (recorded in the run record), :func:`prepare` applies it to a prior.

Only the network changes; the sampler state, the strategies' arithmetic (data-consistency
steps, gradients' use) and the operators stay in float32 (the start draw and y are float32,
so every iterate is).  Reduced precision follows guided-diffusion's ``use_fp16`` convention
(Dhariwal & Nichol 2021, code release):

* the weights of convolutions, linear layers and attention run in bfloat16 / float16;
* normalisation layers (GroupNorm, LayerNorm, BatchNorm) compute in float32;
* the network's input is cast down at its entrance and its output back to float32.

ADM networks (:class:`restore.priors.adm.ADMUNet`) implement this themselves
(``set_torso_dtype``: torso convolutions in half precision, time embedding, norms and the
output head in float32); any other ``nn.Module`` network (the compact UNet, diffusers
UNets) gets it from :func:`to_half_precision`.  Attention in ADM and diffusers goes through
``torch.nn.functional.scaled_dot_product_attention`` already (fused kernels on GPU).

``--precision auto`` (the default) is bf16 only for the operator kinds in :data:`AUTO_BF16_KINDS`
(:func:`restore.strategies.catalog.operator_kind`: the rows the benchmark measures),
chosen by the rule of docs/PERFORMANCE.md (PSNR loss at most 0.05 dB and LPIPS change at
most 0.002 against fp32 on the restoration benchmark), and only on hardware with fast bf16
(:func:`fast_bf16`): a CUDA device that supports it, or a CPU with bf16 instructions
(AVX512-BF16 or AMX-BF16 on x86, the BF16 extension on Arm).  Elsewhere bf16 convolutions
run on emulated kernels, several times slower than float32 (6.6x for the default prior on
an AVX2 CPU: docs/PERFORMANCE.md), so bf16 falls back to float32 and says so once per
process.  The instruction-set flags are read from ``torch.cpu.get_capabilities()`` rather
than timed: a timing probe costs start-up time and is unreliable on a loaded machine.

``channels_last`` stores conv weights and inputs NHWC: on by default for networks (exact to
float rounding, 3e-6 on the default prior; faster on GPUs and on CPU).  ``compile`` wraps
the network in ``torch.compile``; compilation happens on the first call, and when the
compiler is unavailable or fails there, :class:`CompiledNetwork` prints one line saying so
and runs the network uncompiled from then on.  A compiled prior loaded from a spec is kept
for later calls in the same process (:func:`prepare`), so the compilation is paid once.

Batches on a CPU: a network call on a batch of more than :data:`CPU_CHUNK_PIXELS` pixels
(batch x height x width) runs as chunks of at most that many, one after another
(:class:`ChunkedNetwork`): the same function, since a diffusion network treats each image of a
batch alone (group norms and attention act within one image), and on a CPU faster per image
than one large call from 128 x 128 up (measured: docs/PERFORMANCE.md,
``benchmarks/batch_speed.py``).  The mean of N samples and the symmetry average run their
images as one batch, so they gain; a GPU runs the whole batch at once.

Threads: :func:`default_threads` (measured: docs/PERFORMANCE.md) and :func:`threads`.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Union

import torch
from torch import Tensor, nn

from restore.priors.base import Prior
from restore.priors.norms import normalize_in_float32

#: Network precisions (``--precision``, ``precision=``); ``auto`` is resolved by :func:`resolve`.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("auto", *DTYPES)
#: Operator kinds (:func:`restore.strategies.catalog.operator_kind`) whose default runs keep the
#: rule in bf16 (docs/PERFORMANCE.md, measured with ``benchmarks/precision.py`` on every benchmark
#: task of the kind, both targets): ``auto`` runs their network in bf16 where bf16 is fast.  Two
#: defaults came after that measurement and keep their kind's verdict unmeasured in bf16 (no bf16
#: machine since): ``reverse-from-y`` (denoise) and the cold DDNM+ sample of the hole kinds.
AUTO_BF16_KINDS: frozenset[str] = frozenset({"denoise", "deblur", "inpaint", "inpaint-noisy", "inpaint-hole",
                                             "inpaint-hole-noisy", "sr"})
#: The most pixels (batch x height x width) one network call computes on a CPU (module docstring;
#: at least one image per call).  On the project's 2-core VM (AVX2, 2 threads, the default prior,
#: ``benchmarks/results/batch_speed_cpu.txt``) a call's time per image grows with the batch from
#: 128 x 128 up and shrinks with it only below.
CPU_CHUNK_PIXELS = 128 * 128
NORMS = (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._BatchNorm)
#: Attributes through which priors reach their network (denoiser.network, sizing and label
#: wrappers' .network, the diffusers adapter's .unet).
NETWORK_ATTRIBUTES = ("network", "unet")
#: The messages :func:`say_once` has printed in this process.
SAID: set[str] = set()


def parse_precision(name: str) -> str:
    """``auto`` / ``fp32`` / ``bf16`` / ``fp16``; a ValueError naming the choices otherwise."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    return name


def dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


@dataclass(frozen=True)
class FastPath:
    """The fast path asked for: ``precision`` (:data:`PRECISIONS`), ``channels_last`` (None:
    on for networks), ``compile``.  Checked on construction (a ValueError naming the choices)."""

    precision: str = "auto"
    channels_last: Optional[bool] = None
    compile: bool = False

    def __post_init__(self) -> None:
        parse_precision(self.precision)


@dataclass(frozen=True)
class Acceleration:
    """What :func:`accelerate` applies: network dtype, channels_last, torch.compile, and
    ``chunk_pixels`` (None: every call on its whole batch; else :class:`ChunkedNetwork`'s limit)."""

    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    compile: bool = False
    chunk_pixels: Optional[int] = None

    def describe(self) -> dict[str, Any]:
        """The run record's entry: what was actually used."""
        return {"precision": dtype_name(self.dtype), "channels_last": self.channels_last, "compile": self.compile,
                "chunk_pixels": self.chunk_pixels}


def say_once(message: str, warn: Optional[Callable[[str], None]] = None) -> None:
    """Print ``message`` (to stderr, or through ``warn``) the first time in this process only."""
    if message not in SAID:
        SAID.add(message)
        (warn or (lambda m: print(m, file=sys.stderr)))(message)


def fast_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 convolutions natively (module docstring), and if not,
    why (one phrase)."""
    if device.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ok, f"{device} does not support bfloat16"
    if device.type != "cpu":
        return False, f"bfloat16 speed on {device.type} is unknown"
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    if caps.get("avx512_bf16") or caps.get("amx_bf16"):
        return True, ""
    if platform.machine().lower() in ("aarch64", "arm64") and "bf16" in cpu_features():
        return True, ""
    name = caps.get("cpu_name") or platform.processor() or "this CPU"
    return False, (f"this CPU ({name}, {torch.backends.cpu.get_cpu_capability()}) has no bfloat16 instructions "
                   "(AVX512-BF16, AMX-BF16 or Arm BF16)")


def cpu_features() -> set[str]:
    """The Arm CPU's feature flags (``Features`` in /proc/cpuinfo; empty where unreadable)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.lower().startswith("features") for flag in line.split()[2:]}


def has_network(prior: Prior) -> bool:
    try:
        network_holder(prior)
    except ValueError:
        return False
    return True


def resolve(fast: FastPath, prior: Prior, device: torch.device, kind: Optional[str],
            warn: Optional[Callable[[str], None]] = None) -> Acceleration:
    """The :class:`Acceleration` that ``fast`` means for ``prior`` on ``device`` for an operator
    of ``kind`` (module docstring; None: no particular one, as in a batch of mixed operators):
    ``auto`` -> bf16 for :data:`AUTO_BF16_KINDS`, else fp32;
    bf16 without fast hardware -> fp32 (said once when bf16 was asked for; silently for auto, whose
    choice the run record shows); fp16 only on CUDA; channels_last by default
    on for networks; on a CPU, batches in chunks of :data:`CPU_CHUNK_PIXELS`.  A prior without
    a network (analytic) runs as it is; asking it for reduced precision or compile is a ValueError."""
    if not has_network(prior):
        if fast.precision in ("bf16", "fp16") or fast.compile:
            raise ValueError(f"prior {prior.name!r} has no neural network: --precision {fast.precision} and "
                             "--compile apply to networks; use --precision auto or fp32")
        return Acceleration()
    precision = fast.precision
    if precision == "auto":
        precision = "bf16" if kind in AUTO_BF16_KINDS and fast_bf16(device)[0] else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 runs on a GPU only; on a CPU use bf16 or auto")
    if precision == "bf16":
        ok, why = fast_bf16(device)
        if not ok:
            say_once(f"note: {why}, where bf16 is slower than float32: running the network in float32", warn)
            precision = "fp32"
    channels_last = True if fast.channels_last is None else fast.channels_last
    chunk = CPU_CHUNK_PIXELS if device.type == "cpu" else None
    return Acceleration(DTYPES[precision], channels_last, fast.compile, chunk)


class Float32Norm(nn.Module):
    """A normalisation layer computed in float32 whatever its input dtype; returns the input dtype
    (:func:`restore.priors.norms.normalize_in_float32`)."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: Tensor) -> Tensor:
        return normalize_in_float32(self.norm, x)


class CastNetwork(nn.Module):
    """``network(x.to(dtype), *rest)`` with the output cast back to x's dtype (optionally NHWC input)."""

    def __init__(self, network: nn.Module, dtype: torch.dtype, channels_last: bool = False) -> None:
        super().__init__()
        self.network = network
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        inner = x.to(self.dtype)
        if self.channels_last and inner.ndim == 4:
            inner = inner.contiguous(memory_format=torch.channels_last)
        return self.network(inner, *args, **kwargs).to(x.dtype)


class ChunkedNetwork(nn.Module):
    """``network`` called on chunks of the batch of at most ``pixels`` pixels each (batch x
    height x width; at least one image per call), the outputs concatenated along the batch.
    The arguments after x that are tensors with x's batch size (the time or noise level per
    image, class labels) are cut with it; the others pass whole.  ``network`` may be any
    callable (a :class:`CompiledNetwork` too)."""

    def __init__(self, network: Callable[..., Tensor], pixels: int) -> None:
        super().__init__()
        if pixels < 1:
            raise ValueError(f"pixels must be >= 1, got {pixels}")
        self.network = network
        self.pixels = pixels

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        batch = x.shape[0]
        per_call = max(1, self.pixels // math.prod(x.shape[2:]))
        if batch <= per_call:
            return self.network(x, *args, **kwargs)

        def cut(value: Any, part: slice) -> Any:
            aligned = isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == batch
            return value[part] if aligned else value

        outputs = []
        for start in range(0, batch, per_call):
            part = slice(start, start + per_call)
            outputs.append(self.network(x[part], *[cut(a, part) for a in args],
                                        **{k: cut(v, part) for k, v in kwargs.items()}))
        return torch.cat(outputs)


def to_half_precision(network: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Convert ``network`` in place to ``dtype`` except its normalisation layers, which are
    wrapped in :class:`Float32Norm`; returns it.  (ADM networks use their own ``set_torso_dtype``.)"""
    for module in list(network.modules()):
        for name, child in list(module._modules.items()):
            if isinstance(child, NORMS):
                module._modules[name] = Float32Norm(child)
    for module in network.modules():
        if not isinstance(module, (Float32Norm, *NORMS)):
            for param in module.parameters(recurse=False):
                param.data = param.data.to(dtype)
            for name, buffer in module.named_buffers(recurse=False):
                if buffer.is_floating_point():
                    module._buffers[name] = buffer.to(dtype)
    return network


class CompiledNetwork:
    """``torch.compile(network)``, falling back to ``network`` (with one line on stderr) when
    compiling fails on the first call: no compiler, an unsupported platform or operator.  A call
    that fails uncompiled too is the network's own error and is raised as such."""

    def __init__(self, network: nn.Module, warn: Callable[[str], None] = None) -> None:
        self.network = network
        self.warn = warn or (lambda message: print(message, file=sys.stderr))
        self.compiled: Optional[Callable[..., Tensor]] = None
        self.failed: Optional[str] = None
        try:
            self.compiled = torch.compile(network)
        except Exception as exc:  # torch.compile refuses some platforms / Python versions up front
            self.fall_back(exc)

    def fall_back(self, exc: BaseException) -> None:
        self.failed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        self.compiled = None
        self.warn(f"note: --compile is unavailable here ({self.failed}); running the network uncompiled")

    def __call__(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x, *args, **kwargs)
            except Exception as exc:
                out = self.network(x, *args, **kwargs)  # a failure of the network itself is raised here
                self.fall_back(exc)
                return out
        return self.network(x, *args, **kwargs)


def network_holder(prior: Prior) -> tuple[Any, str, nn.Module]:
    """The object holding the prior's network module, the attribute name, and the module:
    followed from ``prior.denoiser`` through :data:`NETWORK_ATTRIBUTES`."""
    holder: Any = prior.denoiser
    for _ in range(16):
        attribute = next((a for a in NETWORK_ATTRIBUTES if hasattr(holder, a)), None)
        if attribute is None:
            break
        inner = getattr(holder, attribute)
        if isinstance(inner, nn.Module):
            return holder, attribute, inner
        holder = inner
    raise ValueError(f"prior {prior.name!r} has no neural network to accelerate "
                     "(analytic priors run as they are; use --precision auto or fp32)")


def accelerate(prior: Prior, acceleration: Acceleration, *, warn: Callable[[str], None] = None) -> Prior:
    """Apply ``acceleration`` to the prior's network in place (see the module docstring); returns the prior.

    float32 without channels_last, compile or chunks leaves the prior untouched (any prior,
    analytic ones included)."""
    if acceleration == Acceleration():
        return prior
    holder, attribute, network = network_holder(prior)
    if acceleration.channels_last:
        network.to(memory_format=torch.channels_last)
    if hasattr(network, "set_torso_dtype"):  # ADM: its own use_fp16 convention, casts x itself
        network.set_torso_dtype(acceleration.dtype)
        wrapped: Any = network
    else:
        to_half_precision(network, acceleration.dtype)
        wrapped = CastNetwork(network, acceleration.dtype, acceleration.channels_last)
    if acceleration.compile:
        wrapped = CompiledNetwork(wrapped, warn)
    if acceleration.chunk_pixels is not None:
        wrapped = ChunkedNetwork(wrapped, acceleration.chunk_pixels)
    setattr(holder, attribute, wrapped)
    prior.info["acceleration"] = acceleration.describe()
    return prior


def detached(prior: Prior) -> Prior:
    """A copy of ``prior`` sharing nothing on the path to its network, the network deep-copied:
    accelerating it leaves the caller's prior as it was."""
    out = copy.copy(prior)
    out.info = dict(prior.info)
    node = out.denoiser = copy.copy(prior.denoiser)
    while True:
        attribute = next(a for a in NETWORK_ATTRIBUTES if hasattr(node, a))
        inner = getattr(node, attribute)
        if isinstance(inner, nn.Module):
            setattr(node, attribute, copy.deepcopy(inner))
            return out
        inner = copy.copy(inner)
        setattr(node, attribute, inner)
        node = inner


#: Compiled priors loaded from a spec, kept for later calls in this process (at most
#: :data:`KEEP_COMPILED`): (spec, device, fast path, kind's auto precision) -> (prior, acceleration).
COMPILED: dict[tuple, tuple[Prior, Acceleration]] = {}
KEEP_COMPILED = 2


def prepare(prior: Union[str, Prior], load: Callable[[str], Prior], fast: FastPath, device: torch.device,
            kind: Optional[str], warn: Optional[Callable[[str], None]] = None) -> tuple[Prior, Acceleration]:
    """The prior to run (``load(spec)`` for a spec) with ``fast`` applied (:func:`resolve`), and
    the :class:`Acceleration` used.  A loaded prior given by the caller is never changed: it runs
    as it is under the default ``FastPath()``, and otherwise the accelerated one is a
    :func:`detached` copy.  With ``compile``, a prior loaded from a spec is kept in
    :data:`COMPILED`, so a later call in this process reuses the compiled network."""
    if not isinstance(prior, str) and fast == FastPath():
        return prior, Acceleration()
    key = (prior, str(device), fast, kind in AUTO_BF16_KINDS) if isinstance(prior, str) and fast.compile else None
    if key in COMPILED:
        return COMPILED[key]
    loaded = load(prior) if isinstance(prior, str) else prior
    acceleration = resolve(fast, loaded, device, kind, warn)
    if acceleration != Acceleration():
        loaded = accelerate(loaded if isinstance(prior, str) else detached(loaded), acceleration, warn=warn)
    if key is not None:
        while len(COMPILED) >= KEEP_COMPILED:
            COMPILED.pop(next(iter(COMPILED)))
        COMPILED[key] = (loaded, acceleration)
    return loaded, acceleration


def default_threads(cores: Optional[int] = None, busy: Optional[int] = None) -> int:
    """CPU threads of a command when ``--threads`` is not given: the cores this process may use
    that no other process is running on as it starts, at least 1 (docs/PERFORMANCE.md, issue 19:
    on the idle 2-core machine two threads finished the README's main job in 10.0 s against
    16.1 s; beside busy cores, an OpenMP team waits for its slowest thread and two threads
    took 2-3x as long as one).

    ``cores``: ``os.sched_getaffinity`` (else ``os.cpu_count``).  ``busy``: :func:`busy_cores`.
    Reruns are bit-identical only at the same thread count (the count is in the run record)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if busy is None:
        busy = busy_cores()
    return max(1, min(cores, cores - busy))


def busy_cores(samples: int = 3, interval_s: float = 0.005) -> int:
    """How many cores other processes keep busy now: on Linux the fewest, over ``samples`` reads,
    of the runnable tasks in /proc/loadavg's fourth field (an instantaneous count, where the
    1-minute load average would still count a run that just ended) less this process's own
    runnable threads (:func:`own_runnable`: after a parallel region torch's OpenMP workers
    spin, runnable, for a while, so a command that has already read its image counted one or
    two of its own threads as another process's and took 1 thread on an idle 2-core machine);
    elsewhere the 1-minute load average, rounded; 0 where neither is available."""
    try:
        counts = []
        for k in range(samples):
            with open("/proc/loadavg") as f:
                runnable = int(f.read().split()[3].split("/")[0])
            counts.append(runnable - own_runnable())
            if k + 1 < samples:
                time.sleep(interval_s)
        return max(0, min(counts))
    except (OSError, ValueError, IndexError):
        pass
    try:
        return max(0, round(os.getloadavg()[0]))
    except (AttributeError, OSError):
        return 0


def own_runnable(tasks: str = "/proc/self/task") -> int:
    """This process's threads in state R (running or runnable) by /proc/self/task/*/stat, at
    least 1 (the calling thread); 1 where the folder cannot be read."""
    running = 0
    try:
        names = os.listdir(tasks)
    except OSError:
        return 1
    for name in names:
        try:
            with open(f"{tasks}/{name}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended
            continue
        running += stat[stat.rindex(")") + 2:].startswith("R")
    return max(1, running)


@contextlib.contextmanager
def threads(count: Optional[int]) -> Iterator[int]:
    """Run the block with ``count`` torch intra-op threads (None: as set), restored afterwards."""
    before = torch.get_num_threads()
    if count is not None:
        if count < 1:
            raise ValueError(f"threads must be >= 1, got {count}")
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
