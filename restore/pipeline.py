"""One restoration pipeline behind the Python API, the restoration commands and ``restore batch``.

    Measurement  ->  run(...)  ->  Run (images, samples, std, one run record per measurement)
                                   -> write_outputs (image files + the run record as a sidecar)

* :class:`~restore.measurement.Measurement`: what is restored, read once by one of the
  readers of :mod:`restore.measurement` (an image file, a ``restore degrade`` sidecar, an array).
* :func:`run`: plans (image shape, channel spreading, default method and steps:
  :func:`plan_run`), seeds (item k of the run draws from its own generator seeded
  ``seeds[k]``; by default ``seed + k``), solves through the engine
  (:func:`restore.strategies.engine.solve`, box by box around the holes where
  :mod:`restore.cropping` says so) and assembles the run records (:func:`run_record`), one
  schema for every front door, documented key by key in ``docs/RUN_RECORD.md``.
* :func:`write_outputs`: the image (input format and bit depth where it holds it), samples
  and std maps, operator tensors and the record, all or nothing.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import platform
import secrets
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

import restore as _package
from restore import accel
from restore.api import RestoreError, load, pick_device, pick_dtype, with_noise
from restore.diffusion.randomness import ItemGenerators, antithetic_pairs, antithetic_seeds
from restore.measurement import Measurement, clip_step, image_shape
from restore.operators import io as rio
from restore.operators.noise import GaussianNoise, NoiseModel, PoissonNoise
from restore.priors.base import Prior

#: The run record's ``format`` and ``schema_version`` (docs/RUN_RECORD.md).
RECORD_FORMAT = "restore-run"
SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------- planning


def spread_channels(operator: Any, y: Tensor, shape: tuple[int, int, int], have: int) -> tuple[Any, Tensor]:
    """A grey image with a ``have``-channel prior: when the operator acts on each channel alike
    (checked: A(x replicated) = A(x) replicated), y is used in all ``have`` channels with its
    noise variance multiplied by ``have`` (``have`` copies of one measurement carry the
    information of one); other channel mismatches are a :class:`RestoreError`."""
    channels, size = shape[0], shape[1:]
    if channels != 1:
        raise RestoreError(f"wrong channel count: the prior models {have}-channel images, the image has {channels}; "
                           f"use a {channels}-channel prior")
    probe = torch.rand((1, 1, *size), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        try:
            alike = torch.allclose(operator(probe.expand(1, have, *size)), operator(probe).expand(1, have, -1, -1))
        except (ValueError, RuntimeError):
            alike = False
    if not alike:
        raise RestoreError(f"wrong channel count: the prior models {have}-channel images, the image is grey, and "
                           f"operator {operator.name!r} does not act on each channel alike; use a 1-channel prior")
    noise = operator.noise
    if isinstance(noise, PoissonNoise):
        scaled: NoiseModel = PoissonNoise(noise.rate / have)
    elif isinstance(noise, GaussianNoise):
        scaled = GaussianNoise(noise.sigma * math.sqrt(have))
    else:
        raise RestoreError(f"a grey image with a {have}-channel prior needs Gaussian or Poisson noise, "
                           f"not {type(noise).__name__}; use a 1-channel prior")
    return with_noise(operator, scaled), y.expand(-1, have, -1, -1)


@dataclass(frozen=True)
class Plan:
    """How one run is set up: the operator and measurement as run (channels spread or not),
    the image shape of a sample, the strategy with its name and steps."""

    operator: Any
    y: Tensor
    shape: tuple[int, int, int]
    strategy: Any
    method: str
    steps: Optional[int]
    spread: bool

    def gather(self, images: Tensor) -> Tensor:
        """Samples of the run back in the input's channels (averaged back when spread)."""
        return images.mean(dim=-3, keepdim=True) if self.spread else images


def plan_run(operator: Any, y: Tensor, prior: Prior, *, method: Optional[str], steps: Optional[int],
             params: Optional[Mapping[str, Any]], quality: str, registry: Any, choice: Any) -> Plan:
    """The image shape behind ``y`` (:func:`image_shape`), channel spreading for a grey
    image with a colour prior (:func:`spread_channels`), and the strategy: ``method`` or the
    default run ``choice`` (:func:`restore.strategies.catalog.default_run` for ``quality``, the
    target and the prior, decided by :func:`run` on the whole image, so that every crop around
    a hole keeps the image's run, whatever the holes in the crop alone), whose hyperparameters (overridden
    by ``params``) apply when no ``method`` is given, and whose steps apply when neither
    ``method`` nor ``steps`` is given (else the strategy's own default)."""
    from restore.priors.spec import prior_channels

    shape = image_shape(operator, y)
    run_op, run_y = operator, y
    have = prior_channels(prior)
    if have is not None and have != shape[0]:
        run_op, run_y = spread_channels(operator, y, shape, have)
        shape = (have, *shape[1:])
    if method is None:
        params = {**dict(choice.params), **dict(params or {})}
        steps = choice.steps if steps is None else steps
    elif quality != "fast" and steps is None:  # quality chooses among the default runs only: said, not silent
        warnings.warn(f"quality {quality!r} chooses the default run ({choice.method}, {choice.steps} steps); with the "
                      f"method {method!r} given it changes nothing: give the steps")
    strategy = make_strategy(registry, method or choice.method, params)
    steps = strategy.default_steps if steps is None else steps
    if not strategy.takes_steps and steps != strategy.default_steps:  # recorded as run, and said
        warnings.warn(f"strategy {strategy.name!r} is one evaluation at the measurement's noise level: {steps} steps "
                      "ignored (a sampler that takes steps: choose its method, e.g. ddrm, or the perceptual target)")
        steps = strategy.default_steps
    return Plan(run_op, run_y, shape, strategy, method or choice.method, steps, run_op is not operator)


def valid_target(target: str) -> str:
    """``target`` when it is one of :data:`restore.strategies.catalog.TARGETS`, else a
    :class:`RestoreError` naming them."""
    from restore.strategies.catalog import TARGETS

    if target not in TARGETS:
        raise RestoreError(f"target must be {' or '.join(TARGETS)}, got {target!r}")
    return target


def default_samples(operator: Any, method: Optional[str], quality: str, target: str, prior: Any = None,
                    shape: Optional[tuple[int, ...]] = None) -> int:
    """The number of samples when none is given: the default run's for ``prior`` on images of
    ``shape`` (the fidelity target's mean of samples, where its default is a sampler) without a
    ``method``, else 1."""
    from restore.strategies.catalog import default_run

    return default_run(operator, quality, target, prior, shape).samples if method is None else 1


def in_pairs(antithetic: Optional[bool], choice: Any, method: Optional[str], samples: int) -> bool:
    """Whether the samples are drawn in antithetic pairs (sample 2j + 1 the negation of sample
    2j's noise: :func:`restore.diffusion.randomness.antithetic_pairs`): as ``antithetic`` asks,
    else (None) as the default run ``choice`` draws them where no ``method`` is given, else not;
    never for one sample."""
    wanted = (method is None and choice.antithetic) if antithetic is None else antithetic
    return bool(wanted) and samples > 1


def default_draws(operator: Any, method: Optional[str], quality: str, target: str, prior: Any = None,
                  shape: Optional[tuple[int, ...]] = None) -> tuple[int, bool]:
    """The samples of :func:`default_samples` and whether they are drawn in antithetic pairs
    (:func:`in_pairs` when nothing is asked), from one choice of the default run."""
    from restore.strategies.catalog import default_run

    choice = default_run(operator, quality, target, prior, shape)
    samples = choice.samples if method is None else 1
    return samples, in_pairs(None, choice, method, samples)


def refuse_an_estimate_as_samples(registry: Any, method: str, samples: int, target: str) -> None:
    """A :class:`RestoreError` when an estimator of the posterior mean (``Strategy.posterior_mean``:
    deterministic) is asked for what only a sampler gives: ``samples`` > 1 (that many copies of
    one result, with a standard deviation of 0, not the posterior's spread) or the
    ``perceptual`` target (a posterior sample)."""
    if method not in registry.names("strategy") or not registry.get("strategy", method).posterior_mean:
        return
    sampler = "choose a sampler as the method (ddrm, ddnm+, ...)"
    if samples > 1:
        raise RestoreError(f"strategy {method!r} estimates the posterior mean and is deterministic: {samples} samples "
                           f"would be {samples} copies of one result, with a standard deviation of 0; ask for one "
                           f"sample, or for posterior samples {sampler} or the perceptual target")
    if target == "perceptual":
        raise RestoreError(f"strategy {method!r} estimates the posterior mean (the fidelity target); the perceptual "
                           f"target is a posterior sample: {sampler}, or ask for the fidelity target")


def make_strategy(registry: Any, name: str, params: Optional[Mapping[str, Any]]) -> Any:
    """The strategy ``name`` built with ``params``; a :class:`RestoreError` naming a bad one."""
    factory = registry.get("strategy", name)
    try:
        return factory(**dict(params or {}))
    except TypeError as exc:
        raise RestoreError(f"strategy {name!r}: {exc}") from None


# ----------------------------------------------------------------------------- the run


@dataclass
class Run:
    """A finished run: ``mean`` (B, C, H, W; the estimate of the target: the mean of the
    samples for ``fidelity``, the first sample for ``perceptual``), ``samples`` (S, B, C, H, W)
    and ``std`` (B, C, H, W) as float32 CPU tensors over the items of all measurements in order; ``nfe``
    (network evaluations per image, every sample counted), ``seconds``, ``warnings`` (first lines, once
    each), ``records``: one run record per measurement (docs/RUN_RECORD.md), ``invocation`` and
    ``outputs`` left for the front door, and ``calls``: the network calls on the run's batches."""

    mean: Tensor
    samples: Tensor
    std: Tensor
    nfe: int
    seconds: float
    warnings: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0

    def items(self, index: int, measurements: Sequence[Measurement]) -> slice:
        """The batch items of measurement ``index``."""
        start = sum(m.y.shape[0] for m in measurements[:index])
        return slice(start, start + measurements[index].y.shape[0])


def run(measurements: Union[Measurement, Sequence[Measurement]], prior: Union[str, Prior], *,
        method: Optional[str] = None, steps: Optional[int] = None, params: Optional[Mapping[str, Any]] = None,
        quality: str = "fast", seed: Optional[int] = None, seeds: Optional[Sequence[int]] = None,
        samples: Optional[int] = None, device: Any = None, dtype: Any = None, listeners: Iterable[Any] = (),
        registry: Any = None, crop_to_mask: Optional[bool] = None, prior_spec: Optional[str] = None,
        target: str = "fidelity", fast: Any = None, threads: Optional[int] = None,
        antithetic: Optional[bool] = None) -> Run:
    """Restore ``measurements`` (one, or several sharing one operator and size: solved as
    one batch) under ``prior`` (a spec or a loaded prior; ``prior_spec``: the spec a loaded
    one was loaded from, for the record) in one engine run.

    Seeds: item k (sample-major: item s * B + b is sample s of batch item b) draws from a
    generator seeded ``seeds[k]``; by default ``seed + k`` (``seed=None``: a random seed).
    ``antithetic`` (:func:`in_pairs`; None: as the default run draws them, where no ``method``
    is given): sample 2j + 1 draws the negation of sample 2j's noise, from sample 2j's seed (by
    default the seeds of sample 2j + 1 are sample 2j's; given ``seeds`` must be so).
    ``listeners``: observer plugins of this run only (passed to ``solve``).  Inpainting with a user mask
    runs box by box around the holes when :func:`restore.cropping.wants_crop` says so
    (``crop_to_mask``; not with explicit ``seeds``).  Warnings raised during the run are
    collected into the records.

    ``target`` (docs/STRATEGIES.md): ``fidelity`` (the default method is a posterior-mean
    estimate; the result is the mean of the samples) or ``perceptual`` (the default method is
    a sampler; the result is the first sample).  ``samples``: None for
    :func:`default_samples` (of the loaded prior: a conditional network's default run is its own).

    ``fast``: a :class:`restore.accel.FastPath` (network precision, channels_last, compile),
    applied to the prior by :func:`restore.accel.prepare`; None runs the prior as it is (a
    caller that accelerated it once, as ``restore batch`` does).  ``threads``: CPU threads for
    this run (None: the process's setting).  The record's ``fast_path`` says what was used."""
    from restore.cropping import restore_around_mask
    from restore.plugins import default_registry
    from restore.strategies.catalog import default_run, operator_kind

    group = [measurements] if isinstance(measurements, Measurement) else list(measurements)
    valid_target(target)
    if samples is not None and (not isinstance(samples, int) or samples < 1):
        raise RestoreError(f"samples must be an integer >= 1, got {samples!r}")
    registry = registry or default_registry()
    device, dtype = pick_device(device), pick_dtype(dtype)
    y = torch.cat([m.y for m in group])
    operator = group[0].operator
    shape = image_shape(operator, y)
    if fast is None:
        loaded = load(prior, registry, device, dtype)
    else:
        loaded = accel.prepare(prior, lambda spec: load(spec, registry, device, dtype), fast, device,
                               operator_kind(operator, shape))[0]
    choice = default_run(operator, quality, target, loaded, shape)  # of the whole image, crops or not
    if samples is None:  # default_samples, from the choice made once
        samples = 1 if method is not None else choice.samples
    if method is not None or samples > 1:  # the defaults are estimators only for fidelity, of one sample
        refuse_an_estimate_as_samples(registry, method or choice.method, samples, target)
    count = samples * y.shape[0]
    if seeds is not None and len(seeds) != count:
        raise ValueError(f"{len(seeds)} seeds for {count} items (samples x batch)")
    pairs = in_pairs(antithetic, choice, method, samples)
    if pairs and seeds is not None:
        antithetic_pairs(seeds, samples)  # given seeds must pair: say which one does not, before the run

    steps_of_data = [clip_step(m.bits) for m in group]  # integer data was clipped: the coarsest rounding
    clipped_at = None if None in steps_of_data else max(steps_of_data)

    def solve_once(part: Tensor, op: Any, base: Optional[int]) -> dict[str, Any]:
        item_seeds = list(seeds) if seeds is not None else [base + k for k in range(count)]
        if pairs and seeds is None:
            item_seeds = antithetic_seeds(item_seeds, samples)
        return solve_items(part, op, loaded, item_seeds, samples=samples, device=device, dtype=dtype, method=method,
                           steps=steps, params=params, quality=quality, registry=registry, listeners=listeners,
                           target=target, choice=choice, clip_step=clipped_at, antithetic=pairs)

    with warnings.catch_warnings(record=True) as caught, accel.threads(threads) as used_threads:
        warnings.simplefilter("always")
        # the garbage collector's, at any moment, about objects the run did not make: not the run's
        warnings.simplefilter("ignore", ResourceWarning)
        if seeds is not None:
            out = solve_once(y, operator, None)
        else:
            base = secrets.randbelow(2**31) if seed is None else int(seed)
            out = restore_around_mask(y, operator, solve_once, base, crop_to_mask)
    notes = list(dict.fromkeys(str(w.message).splitlines()[0] for w in caught))
    result = Run(out["mean"], out["samples"], out["std"], out["nfe"], out["seconds"], notes, calls=out["calls"])
    spec = prior if isinstance(prior, str) else prior_spec or prior.name
    for index, measurement in enumerate(group):
        items = result.items(index, group)
        mine = [s for s_index, s in enumerate(out["provenance"]["seeds"]) if s_index % y.shape[0] in
                range(items.start, items.stop)]
        result.records.append(run_record(measurement, out["provenance"], prior=loaded, spec=spec, seeds=mine,
                                          samples=samples, quality=quality, device=device, dtype=dtype,
                                          warnings=notes, target=target))
        result.records[-1]["fast_path"] = {**loaded.info.get("acceleration", accel.Acceleration().describe()),
                                           "threads": used_threads}
    return result


def solve_items(y: Tensor, operator: Any, prior: Prior, seeds: Sequence[int], *, samples: int, device: torch.device,
                dtype: torch.dtype, method: Optional[str], steps: Optional[int], params: Optional[Mapping[str, Any]],
                quality: str, registry: Any, choice: Any, listeners: Iterable[Any] = (),
                target: str = "fidelity", clip_step: Optional[float] = None,
                antithetic: bool = False) -> dict[str, Any]:
    """One engine run on the (B, C, H, W) measurement ``y``, item k seeded ``seeds[k]``, with the
    default run ``choice`` where no ``method`` is given (:func:`plan_run`): a dict
    with ``mean``, ``samples`` (S, B, C, H, W), ``std``, ``nfe`` (per image, each of its S samples
    counted), ``calls`` (on the batch), ``seconds`` and
    ``provenance`` (strategy, steps, nfe, seeds, channels_spread, seconds), tensors on the CPU
    in float32 (the contract :mod:`restore.cropping` runs box by box).  ``clip_step``: the
    rounding step of integer data, clipped to [0, 1] (``Problem.clip_step``); None for floats.
    ``antithetic``: the samples in antithetic pairs (``seeds`` paired: :func:`antithetic_pairs`)."""
    from restore.strategies.base import Problem
    from restore.strategies.engine import solve

    batch = y.shape[0]
    plan = plan_run(operator, y, prior, method=method, steps=steps, params=params, quality=quality, registry=registry,
                    choice=choice)
    problem = Problem(prior, plan.operator, plan.y.to(device=device, dtype=dtype).repeat(samples, 1, 1, 1), samples,
                      clip_step)
    started = time.perf_counter()
    result = solve(problem, plan.strategy, steps=plan.steps, shape=None if prior.latent else plan.shape,
                   generator=antithetic_pairs(seeds, samples) if antithetic else ItemGenerators.from_seeds(seeds),
                   registry=registry, listeners=listeners)
    seconds = time.perf_counter() - started
    images = plan.gather(result.image.detach().to("cpu", torch.float32))
    draws = images.reshape(samples, batch, *images.shape[1:])
    mean = draws.mean(dim=0) if target == "fidelity" else draws[0]  # the estimate of the target
    std = draws.std(dim=0, correction=0) if samples > 1 else torch.zeros_like(mean)
    provenance = {"strategy": {"name": plan.method, "params": jsonable(plan.strategy.params())}, "steps": plan.steps,
                  "nfe": result.nfe, "seeds": [int(s) for s in seeds], "antithetic": antithetic,
                  "channels_spread": plan.spread,
                  "seconds": round(seconds, 3)}
    return {"mean": mean, "samples": draws, "std": std, "nfe": result.nfe, "calls": result.calls,
            "seconds": seconds, "provenance": provenance}


# ----------------------------------------------------------------------------- the run record


def run_record(measurement: Measurement, solved: Mapping[str, Any], *, prior: Prior, spec: str,
               seeds: Sequence[int], samples: int, quality: str, device: torch.device, dtype: torch.dtype,
               warnings: Sequence[str], target: str = "fidelity") -> dict[str, Any]:
    """The run record of one measurement (docs/RUN_RECORD.md, every key): what was restored,
    how, with what, and what it cost; ``invocation`` and ``outputs`` are filled by the front
    door that writes it."""
    record = {
        "format": RECORD_FORMAT, "schema_version": SCHEMA_VERSION,
        "versions": {"restore": _package.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "prior": {"spec": spec, "weights_sha256": weights_sha256(prior)},
        "input": measurement.describe(),
        "operator": operator_record(measurement.operator),
        "quantization_sigma": measurement.quantization_sigma,
        "sigma_estimated": measurement.sigma_estimated,
        "strategy": solved["strategy"], "steps": solved["steps"], "nfe": solved["nfe"], "quality": quality,
        "target": target, "samples": samples, "seed": int(seeds[0]), "seeds": [int(s) for s in seeds],
        "antithetic": solved["antithetic"],
        "channels_spread": solved["channels_spread"],
        "warnings": list(warnings),
        "seconds": solved["seconds"],
        "invocation": {},
        "outputs": {},
    }
    if "crop_to_mask" in solved:
        record["crop_to_mask"] = solved["crop_to_mask"]
    return record


def operator_record(operator: Any) -> dict[str, Any]:
    """The operator's name, parameters (noise included), the SHA-256 of each tensor (masks and
    kernels, which are not parameters) and one SHA-256 of its class, parameters and tensors."""
    params = jsonable(operator.params())
    digest = hashlib.sha256(json.dumps([type(operator).__qualname__, params], sort_keys=True).encode())
    tensors = {}
    for name, tensor in sorted(operator.tensors().items()):
        data = tensor.detach().cpu().contiguous().numpy().tobytes()
        tensors[name] = hashlib.sha256(data).hexdigest()
        digest.update(name.encode())
        digest.update(data)
    return {"name": operator.name, "params": params, "tensors": tensors, "sha256": digest.hexdigest()}


def jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every value JSON can not hold (a network, a tensor) as its repr."""

    def one(value: Any) -> Any:
        try:
            json.dumps(value)
            return value
        except (TypeError, ValueError):
            return repr(value)

    return {key: one(value) for key, value in params.items()}


def weights_sha256(prior: Prior) -> Optional[str]:
    """SHA-256 of the prior's weight file (``info['path']``: a file, or a directory's
    ``*.safetensors`` / ``*.pt`` files hashed in name order), None for analytic priors."""
    path = prior.info.get("path")
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return _file_sha256(path)
    files = sorted(p for p in path.glob("*") if p.suffix in (".safetensors", ".pt", ".pth", ".bin", ".ckpt"))
    if not files:
        return None
    if len(files) == 1:
        return _file_sha256(files[0])
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}:{_file_sha256(f)}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    """A file's SHA-256, computed once per process for each (path, size, modification time)."""
    stat = path.stat()
    return _cached_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return rio.sha256_file(path)


# ----------------------------------------------------------------------------- files


def output_bits(path: Path, bits: int) -> int:
    """Bits per sample of an output file for input data of ``bits``: the input's where the
    format holds it, else the most it holds (PNG 16, JPEG 8; ``.npy`` and float TIFF: 32)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return 32
    _, depths = rio.WRITABLE.get(suffix, (None, (8, 16, 32)))
    return max(d for d in depths if d <= bits)


def sibling(output: Path, tag: str, suffix: Optional[str] = None) -> Path:
    """``out.png`` -> ``out.<tag><suffix or .png>``."""
    return output.with_name(f"{output.stem}.{tag}{suffix or output.suffix}")


def write_outputs(output: Path, result: Run, index: int, measurements: Sequence[Measurement], *,
                  tensors: bool = True, invocation: Optional[Mapping[str, Any]] = None,
                  extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Write measurement ``index``'s result, all or nothing: the mean as ``output`` (bit depth:
    :func:`output_bits`; the alpha channel put back), with more than one sample each sample
    (``OUT.sample-K``), the std map (``OUT.std.npy``) and its figure (``OUT.std.png``), the
    operator's tensors (``OUT.NAME.npy``, when ``tensors``), and last the run record
    ``OUT.json`` with ``invocation``, ``outputs`` (and ``extra`` outputs) filled in.  Returns
    the record."""
    from restore.files import all_or_nothing

    measurement = measurements[index]
    items = result.items(index, measurements)
    bits = output_bits(output, measurement.bits)

    def write(path: Path, x: Tensor) -> dict[str, Any]:
        npy = path.suffix.lower() == ".npy"
        data = rio.array_bytes(x) if npy else rio.image_bytes(path, x, bits=bits, alpha=measurement.alpha)
        rio.atomic_write_bytes(path, data)
        return {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "shape": list(x.shape), "bits": bits}

    record = {**result.records[index], "invocation": dict(invocation or {})}
    with all_or_nothing():
        files: dict[str, Any] = {"image": write(output, result.mean[items])}
        draws = result.samples[:, items]
        if len(draws) > 1:
            files["samples"] = [write(sibling(output, f"sample-{k}"), draw)["file"] for k, draw in enumerate(draws)]
            std = result.std[items][0]
            files["std"] = rio.write_array(sibling(output, "std", ".npy"), std).name
            figure = torch.from_numpy(std_figure(std).copy()).permute(2, 0, 1)[None].float() / 255
            files["std_figure"] = rio.write_image(sibling(output, "std", ".png"), figure).name
        if tensors:
            files["tensors"] = {name: rio.write_array(sibling(output, name, ".npy"), t).name
                                for name, t in measurement.operator.tensors().items()}
        record["outputs"] = {**files, **(extra or {})}
        rio.write_json(output.with_suffix(".json"), record)
    return record


def std_figure(std: Tensor) -> np.ndarray:
    """The channel mean of a (C, H, W) standard-deviation map coloured (viridis anchor
    colours, linear between them, 0 at the bottom of the scale and the map's maximum at the
    top) with a labelled colour bar on the right: an RGB uint8 array (H', W', 3)."""
    from PIL import Image, ImageDraw

    anchors = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64)
    values = std.double().mean(dim=0).numpy()
    top = float(values.max())
    scale = values / top if top > 0 else values

    def colour(v: Any) -> Any:
        position = np.clip(v, 0, 1) * (len(anchors) - 1)
        low = np.minimum(position.astype(int), len(anchors) - 2)
        t = (position - low)[..., None]
        return (anchors[low] * (1 - t) + anchors[low + 1] * t).round().astype(np.uint8)

    h, w = values.shape
    bar_h = max(h, 64)
    canvas = np.full((bar_h, w + 70, 3), 255, np.uint8)
    canvas[:h, :w] = colour(scale)
    ramp = np.linspace(1, 0, bar_h)[:, None].repeat(12, axis=1)
    canvas[:, w + 6:w + 18] = colour(ramp)
    figure = Image.fromarray(canvas)
    draw = ImageDraw.Draw(figure)
    draw.text((w + 22, 0), f"{top:.3g}", fill=(0, 0, 0))
    draw.text((w + 22, bar_h - 11), "0", fill=(0, 0, 0))
    draw.text((w + 22, bar_h // 2 - 5), "std", fill=(0, 0, 0))
    return np.asarray(figure)
