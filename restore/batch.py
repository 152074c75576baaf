r"""``restore batch``: restore a folder or a manifest of measurements, resumably, in one
process or sharded over many (torchrun, one or several nodes).

Inputs (:func:`discover`).  A folder: with an operator (``op``), every image file under it
(recursively) is a measurement of that operator; without one, every ``restore degrade``
sidecar (``*.json``) under it names a measurement and its exact operator.  A manifest
(``.csv`` with a header row, or ``.jsonl``, one object per line), one image per row:

    image    measurement file (relative to the manifest's folder)    | or from
    from     a ``restore degrade`` sidecar: measurement and exact operator
    op       operator name (default: the run's ``--op``)
    mask, kernel, scale    shortcuts for those operator parameters (paths relative to the manifest)
    params   further operator parameters, a JSON object
    output   output name under OUT_DIR (default: the image's path relative to the manifest)

An item's identity is its output name without suffix (its *key*, e.g. ``sub/a``); it is
restored to ``OUT_DIR/<key><suffix>`` (the input's format and bit depth; JPEG inputs are
written as PNG, never re-compressed) and its run record ``OUT_DIR/<key>.json``.  Reading,
running and writing are :mod:`restore.pipeline`'s, as for the Python API and the
restoration commands (the same measurement gives the same image and run record, the record's
``invocation`` naming the batch's settings and its ``seconds`` left null for byte-identical
reruns).  Masks and kernels are read in the commands' vocabulary
(:func:`restore.api.user_options`).

Determinism.  Item k's noise comes from its own generator (:class:`ItemGenerators`) seeded
with the first 8 bytes of SHA-256(f"{seed}:{key}") (big-endian, top bit cleared), so it
does not depend on which other images are in the run.  The batches are fixed by the input
list alone (:func:`plan`): items sorted by key, grouped by image size and operator, cut
into ``batch_size`` runs; rank r of a world of size n takes batches r, r + n, r + 2n, ...
A batch is always computed whole (a rerun recomputes a partly written batch and writes only
its missing files), so every item sees the same batched network calls whatever the number
of processes, the order of completion or an interruption: the files are bit-identical on
the same machine and thread count.  Changing ``batch_size`` changes which images share a
network call, and batched kernels round differently from unbatched ones (oneDNN / cuDNN
pick algorithms by shape), so results across batch sizes agree to float rounding, not bits.

Resumption.  Outputs are written atomically (:func:`restore.files.atomic_write`), the image
first and its run record last (one all-or-nothing unit); the record holds the SHA-256 of
the image, of the input (and its degrade sidecar), the operator (name, parameters, SHA-256 of
its tensors) and the run's settings.  An item is
complete when its sidecar parses, its image exists with that checksum and the settings and
operator match; complete items are skipped, so a run killed at any point
(``kill -9``) and rerun ends with exactly the files of an uninterrupted run.  Temporary files
a killed run left beside an item's outputs are removed before the item is written again.
An output made with other settings or another operator is not overwritten: the item fails,
naming what differs (a different batch size, channels_last or compile resumes: they change
rounding only).

Failures (unreadable input, an operator that cannot be built, a divergent run) fail their
item with the reason and the rest goes on; a batch that fails as a whole is retried one
image at a time, so one bad image does not take its batch-mates down.

Sharding: :func:`restore.distributed.init_world` (gloo on CPU, nccl on CUDA, one
GPU per local rank); rank 0 gathers the per-rank counts and writes the summary.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from restore import pipeline
from restore.accel import Acceleration, FastPath, accelerate, detached, resolve
from restore.diffusion.randomness import antithetic_seeds
from restore.files import atomic_write
from restore.operators import io as rio
from restore.measurement import Measurement, read_file, read_sidecar
from restore.pipeline import operator_record

SUMMARY_FILE = "summary.json"
MANIFEST_SUFFIXES = (".csv", ".jsonl")
MANIFEST_KEYS = ("image", "from", "op", "mask", "kernel", "scale", "params", "output")
#: Operator parameters that name files (resolved against the manifest's folder).
PATH_PARAMS = ("mask", "kernel")
#: Settings a rerun may change and still resume: they change only float rounding.
RESUMABLE_CHANGES = ("batch_size", "channels_last", "compile")
#: Input suffix -> output suffix (JPEG is restored to PNG: no second lossy compression).
OUTPUT_SUFFIX = {".png": ".png", ".jpg": ".png", ".jpeg": ".png", ".tif": ".tif", ".tiff": ".tiff", ".npy": ".npy"}

Report = Callable[[str], None]


class BatchInputError(ValueError):
    """The input folder or manifest cannot be turned into a list of items (exit status 2)."""


# ----------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Item:
    """One image to restore: its key, measurement file or sidecar, operator and params."""

    key: str
    image: Optional[Path] = None
    sidecar: Optional[Path] = None
    op: Optional[str] = None
    params: dict = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return self.sidecar if self.sidecar is not None else self.image

    def measurement_file(self) -> Path:
        """The measurement's file (for sidecar items, the one the sidecar names)."""
        if self.sidecar is None:
            return self.image
        entry = rio.read_sidecar(self.sidecar)["measurement"]
        return self.sidecar.parent / entry["file"]

    def output_suffix(self) -> str:
        name = self.measurement_file().suffix.lower()
        if name not in OUTPUT_SUFFIX:
            raise ValueError(f"{self.source}: unsupported measurement type {name!r}")
        return OUTPUT_SUFFIX[name]


def item_seed(seed: int, key: str) -> int:
    """The seed of item ``key`` in a run seeded ``seed``: SHA-256(f"{seed}:{key}"), first 8
    bytes big-endian, top bit cleared (a valid ``torch.Generator.manual_seed``)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def _key(relative: Path) -> str:
    return relative.with_suffix("").as_posix()


def discover(source: Path, *, op: Optional[str] = None, params: Optional[dict] = None,
             exclude: Optional[Path] = None) -> list[Item]:
    """The items of a folder or a manifest (module docstring), sorted by key; duplicate keys
    (``a.png`` and ``a.jpg``) are a :class:`BatchInputError`.  Files under ``exclude`` (the
    output folder, when it lies inside the input folder) are not inputs."""
    source = Path(source)
    params = dict(params or {})
    if source.is_dir():
        items = _folder_items(source, op, params, None if exclude is None else Path(exclude).resolve())
    elif source.is_file() and source.suffix.lower() in MANIFEST_SUFFIXES:
        items = _manifest_items(source, op, params)
    elif source.exists():
        raise BatchInputError(f"{source}: give a folder or a manifest ({', '.join(MANIFEST_SUFFIXES)})")
    else:
        raise BatchInputError(f"{source}: no such folder or manifest")
    seen: dict[str, Item] = {}
    for item in items:
        if item.key in seen:
            raise BatchInputError(f"{seen[item.key].source} and {item.source} would both be restored to "
                                  f"{item.key!r}; rename one or give an output column")
        seen[item.key] = item
    if not seen:
        what = "measurement sidecars (*.json; or give --op to restore its images)" if source.is_dir() and op is None \
            else "images" if source.is_dir() else "rows"
        raise BatchInputError(f"{source}: no {what} found")
    return sorted(seen.values(), key=lambda item: item.key)


def _folder_items(folder: Path, op: Optional[str], params: dict, exclude: Optional[Path]) -> list[Item]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and (exclude is None or not p.resolve().is_relative_to(exclude)))
    if op is not None:
        return [Item(_key(p.relative_to(folder)), image=p, op=op, params=params)
                for p in files if p.suffix.lower() in rio.READABLE_SUFFIXES]
    items = []
    for p in files:
        if p.suffix.lower() == ".json" and _is_measurement_sidecar(p):
            items.append(Item(_key(p.relative_to(folder)), sidecar=p, params=params))
    return items


def _is_measurement_sidecar(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == rio.SIDECAR_FORMAT
    except (ValueError, AttributeError, OSError):
        return False


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV (header row) or JSONL manifest as dicts, empty cells dropped; unknown
    columns are a :class:`BatchInputError` naming them."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"{path}: cannot read the manifest ({exc})") from None
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for row in reader:
            if None in row:
                raise BatchInputError(f"{path}, line {reader.line_num}: more cells than header columns")
            rows.append({k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()})
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BatchInputError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise BatchInputError(f"{path}, line {number}: each line must be a JSON object")
            rows.append({k: v for k, v in row.items() if v not in (None, "")})
    for number, row in enumerate(rows, 1):
        unknown = sorted(set(row) - set(MANIFEST_KEYS))
        if unknown:
            raise BatchInputError(f"{path}, row {number}: unknown column(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(MANIFEST_KEYS)}")
        if ("image" in row) == ("from" in row):
            raise BatchInputError(f"{path}, row {number}: give exactly one of 'image' and 'from'")
    return rows


def _manifest_items(path: Path, op: Optional[str], cli_params: dict) -> list[Item]:
    base = path.parent
    items = []
    for number, row in enumerate(read_manifest(path), 1):
        where = f"{path}, row {number}"
        params = dict(cli_params)
        extra = row.get("params", {})
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except json.JSONDecodeError as exc:
                raise BatchInputError(f"{where}: params is not a JSON object ({exc.msg})") from None
        if not isinstance(extra, dict):
            raise BatchInputError(f"{where}: params must be a JSON object, got {extra!r}")
        params.update(extra)
        for name in ("mask", "kernel", "scale"):
            if name in row:
                params[name] = row[name]
        for name in PATH_PARAMS:
            value = params.get(name)
            if isinstance(value, str) and (base / value).is_file():
                params[name] = str(base / value)
        if "scale" in params and isinstance(params["scale"], str):
            params["scale"] = _number(params["scale"], where)
        file = base / str(row.get("image") or row["from"])
        output = row.get("output")
        if output is None:
            try:
                output = file.resolve().relative_to(base.resolve())
            except ValueError:
                raise BatchInputError(f"{where}: {file} is outside the manifest's folder; give an output column") \
                    from None
        key = _key(Path(output))
        if key.startswith("../") or Path(output).is_absolute():
            raise BatchInputError(f"{where}: output {output!r} must be a relative path inside OUT_DIR")
        if "from" in row:
            items.append(Item(key, sidecar=file, params=params))
        else:
            items.append(Item(key, image=file, op=row.get("op", op), params=params))
    return items


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BatchInputError(f"{where}: scale {text!r} is not a number") from None
    return int(value) if value.is_integer() else value


# ----------------------------------------------------------------------------- plan


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image from its header (EXIF rotation applied), for grouping only;
    (0, 0) when the header cannot be read (the item then fails when it is loaded)."""
    try:
        if path.suffix.lower() == ".npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            return int(shape[-2]), int(shape[-1])
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            rotated = im.getexif().get(0x0112) in (5, 6, 7, 8)
        return (w, h) if rotated else (h, w)
    except Exception:  # any unreadable header: the item reports its error when loaded
        return 0, 0


def group_key(item: Item) -> str:
    """Items batched together share this: their image size and their operator description
    (files in it stand for their SHA-256)."""
    try:
        if item.sidecar is not None:
            sidecar = rio.read_sidecar(item.sidecar)
            size = tuple(sidecar["measurement"]["shape"])
            tensors = {k: _file_digest(item.sidecar.parent / v) for k, v in sidecar["tensors"].items()}
            operator = [sidecar["operator"], sidecar["params"], sidecar.get("noise"), tensors, item.params]
        else:
            size = image_size(item.image)
            operator = [item.op, {k: _file_digest(Path(v)) if k in PATH_PARAMS and isinstance(v, str)
                                  and Path(v).is_file() else v for k, v in item.params.items()}]
    except (ValueError, OSError, KeyError):
        size, operator = (0, 0), ["unreadable"]
    return json.dumps([list(size), operator], sort_keys=True, default=str)


@functools.lru_cache(maxsize=4096)
def _file_digest(path: Path) -> str:
    """A file's SHA-256, computed once per process (one mask file may serve thousands of items)."""
    return "sha256:" + rio.sha256_file(path)


def plan(items: Sequence[Item], batch_size: int) -> list[list[Item]]:
    """The run's batches: items grouped by :func:`group_key` (groups in order of their first
    key), each group cut into runs of ``batch_size`` in key order."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    groups: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda i: i.key):
        groups.setdefault(group_key(item), []).append(item)
    return [members[i:i + batch_size] for members in groups.values() for i in range(0, len(members), batch_size)]


def shard(batches: Sequence[list[Item]], rank: int, size: int) -> list[list[Item]]:
    """Rank ``rank``'s batches: every ``size``-th, starting at ``rank``."""
    return list(batches[rank::size])


# ----------------------------------------------------------------------------- settings and outputs


@dataclass(frozen=True)
class Settings:
    """Everything besides the input that determines an output (recorded in its sidecar)."""

    prior: str = "default"
    method: Optional[str] = None
    method_params: dict = field(default_factory=dict)
    steps: Optional[int] = None
    quality: str = "fast"
    target: str = "fidelity"
    seed: int = 0
    batch_size: int = 1
    noise: Optional[float] = None
    fast: FastPath = FastPath()

    def record(self) -> dict[str, Any]:
        """The settings as JSON, the fast path asked for (precision, channels_last, compile) at top
        level; the run records say what it resolved to (``fast_path``)."""
        data = {k: v for k, v in asdict(self).items() if k != "fast"}
        data.update(asdict(self.fast))
        return json.loads(json.dumps(data, default=str))


@dataclass
class Outputs:
    """Where item ``key`` is written under ``folder``."""

    folder: Path
    key: str
    suffix: str

    @property
    def image(self) -> Path:
        return self.folder / f"{self.key}{self.suffix}"

    @property
    def sidecar(self) -> Path:
        return self.folder / f"{self.key}.json"

    def remove_leftovers(self) -> None:
        """Delete temporary files a killed run left for these outputs (atomic_write's
        ``.<name>.XXXXXXXX<suffix>``)."""
        for path in (self.image, self.sidecar):
            pattern = re.compile(rf"^\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}{re.escape(path.suffix)}$")
            if path.parent.is_dir():
                for leftover in path.parent.iterdir():
                    if pattern.match(leftover.name):
                        leftover.unlink(missing_ok=True)


class StaleOutput(ValueError):
    """An existing output was made with other settings; the message names the differences."""


def is_complete(outputs: Outputs, expected: dict[str, Any]) -> bool:
    """True when the item's run record and image exist and agree (module docstring): the record
    holds ``expected``'s input checksums and the image's; a :class:`StaleOutput` when it was
    made with other settings or another operator (``expected["settings"]``, ``["operator"]``)."""
    try:
        record = json.loads(outputs.sidecar.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("format") != pipeline.RECORD_FORMAT \
            or record.get("schema_version") != pipeline.SCHEMA_VERSION:
        return False
    recorded = {**record.get("invocation", {}).get("settings", {}), "operator": record.get("operator")}
    wanted = {**expected["settings"], "operator": expected["operator"]}
    differ = sorted(k for k in set(recorded) | set(wanted)
                    if k not in RESUMABLE_CHANGES and recorded.get(k) != wanted.get(k))
    if differ:
        detail = ", ".join(f"{k}: {recorded.get(k)!r} there, {wanted.get(k)!r} now" for k in differ if k != "operator")
        if "operator" in differ:
            detail = ", ".join(filter(None, ["another operator or operator parameters", detail]))
        raise StaleOutput(f"{outputs.sidecar} holds a result made with other settings ({detail}); "
                          "use another output folder or remove it")
    given = record.get("input", {})
    if (given.get("sha256"), given.get("sidecar_sha256")) != expected["input"]:
        return False
    image = record.get("outputs", {}).get("image", {})
    return outputs.image.is_file() and image.get("sha256") == rio.sha256_file(outputs.image)


# ----------------------------------------------------------------------------- running


@dataclass
class Summary:
    """Counts of one rank, or of the whole run once merged."""

    done: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)  # [key, reason] pairs
    nfe: int = 0  # network evaluations seen per image, summed over images
    network_calls: int = 0  # batched network calls (one per evaluation of a whole batch)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = [{"item": k, "reason": r} for k, r in sorted(self.failed)]
        data["images_per_second"] = self.images_per_second
        return data

    @classmethod
    def merged(cls, parts: Sequence["Summary"]) -> "Summary":
        """Counts added; wall time is the slowest rank's (the ranks run side by side)."""
        return cls(sum(p.done for p in parts), sum(p.skipped for p in parts),
                   [f for p in parts for f in p.failed], sum(p.nfe for p in parts),
                   sum(p.network_calls for p in parts), max(p.seconds for p in parts))


@dataclass
class Loaded:
    """An item read back: its :class:`~restore.measurement.Measurement` and where it is written."""

    item: Item
    measurement: Measurement
    outputs: Outputs


class Runner:
    """Runs batches on one rank: prior loaded once, measurements and runs through
    :mod:`restore.pipeline` per batch."""

    def __init__(self, settings: Settings, out_dir: Path, registry: Any, device: torch.device,
                 report: Report = None, prior: Any = None) -> None:
        from restore.priors.spec import load_prior

        self.settings = settings
        self.out_dir = Path(out_dir)
        self.registry = registry
        self.device = device
        self.report = report or (lambda message: None)
        self.prior = prior if prior is not None else load_prior(settings.prior, device=device, registry=registry)
        resolve(settings.fast, self.prior, device, None)  # options the prior cannot take are refused before any image
        #: The prior under each acceleration the batches needed (:meth:`prior_for`).
        self.accelerated: dict[Acceleration, Any] = {}
        self.record = {**settings.record(), "prior_weights_sha256": pipeline.weights_sha256(self.prior)}
        if settings.method is not None:  # bad names and hyper-parameters are refused before any image
            pipeline.make_strategy(registry, settings.method, settings.method_params)
        self.summary = Summary()

    # -- loading

    def load(self, item: Item) -> Loaded:
        """Read the measurement (:func:`restore.measurement.read_sidecar` / :func:`~restore.measurement.read_file`);
        errors name the item's file."""
        if item.sidecar is not None:
            measurement = read_sidecar(item.sidecar, self.registry)
        else:
            if item.op is None:
                raise ValueError(f"{item.image}: no operator: give --op or an op column")
            measurement = read_file(item.image, item.op, options=item.params, noise=self.settings.noise,
                                    registry=self.registry)
        return Loaded(item, measurement, Outputs(self.out_dir, item.key, item.output_suffix()))

    # -- one batch

    def run_batch(self, batch: Sequence[Item]) -> None:
        loaded: list[Loaded] = []
        for item in batch:
            try:
                loaded.append(self.load(item))
            except Exception as exc:  # any failure to read one input fails that item only
                self.fail(item, exc)
        todo = []
        for entry in loaded:
            try:
                if is_complete(entry.outputs, self.expected(entry)):
                    self.summary.skipped += 1
                else:
                    todo.append(entry.item.key)
            except StaleOutput as exc:
                self.fail(entry.item, exc)
        for members in _subgroups(loaded):  # a sub-batch is computed whole, or not at all
            if any(m.item.key in todo for m in members):
                self.solve_and_write(members, set(todo))

    def solve_and_write(self, members: list[Loaded], todo: set[str]) -> None:
        try:
            done = self.solve(members)
        except Exception as exc:
            if len(members) == 1:
                if members[0].item.key in todo:
                    self.fail(members[0].item, exc)
                return
            for member in members:  # find the bad one: each image on its own
                self.solve_and_write([member], todo)
            return
        self.summary.network_calls += done.calls
        measurements = [m.measurement for m in members]
        for index, member in enumerate(members):
            if member.item.key not in todo:
                continue
            try:
                self.write(member, done, index, measurements)
            except Exception as exc:
                self.fail(member.item, exc)
                continue
            self.summary.done += 1
            self.summary.nfe += done.nfe
        record = done.records[0]
        self.report(f"{', '.join(m.item.key for m in members)}: {record['strategy']['name']}, {record['steps']} steps, "
                    f"NFE {done.nfe}" + "".join(f"; warning: {note}" for note in done.warnings))

    def prior_for(self, operator: Any, shape: tuple[int, int, int]) -> Any:
        """The prior with the fast path applied as the commands and the API apply it for
        ``operator`` on images of ``shape`` (``auto`` precision by its kind: :func:`restore.accel.resolve`),
        so a batch item restores as the same command would; one accelerated copy per distinct result."""
        from restore.strategies.catalog import operator_kind

        acceleration = resolve(self.settings.fast, self.prior, self.device, operator_kind(operator, shape), self.report)
        if acceleration not in self.accelerated:
            self.accelerated[acceleration] = self.prior if acceleration == Acceleration() else \
                accelerate(detached(self.prior), acceleration, warn=self.report)
        return self.accelerated[acceleration]

    def solve(self, members: list[Loaded]) -> pipeline.Run:
        """One run of :func:`restore.pipeline.run` on the batch, sample s of each item seeded
        :func:`item_seed` + s (the default run's samples: :func:`restore.pipeline.default_samples`;
        where it draws them in antithetic pairs, :func:`restore.pipeline.default_draws`, sample
        2j + 1 takes sample 2j's seed, as the commands' seeds do)."""
        first = members[0].measurement
        shape = first.image_shape  # a mask's default run depends on the depth of its holes at this size
        samples, pairs = pipeline.default_draws(first.operator, self.settings.method, self.settings.quality,
                                                self.settings.target, self.prior, shape)
        seeds = [item_seed(self.settings.seed, m.item.key) + s for s in range(samples) for m in members]
        prior = self.prior_for(first.operator, shape)
        return pipeline.run([m.measurement for m in members], prior, prior_spec=self.settings.prior,
                            method=self.settings.method, steps=self.settings.steps,
                            params=self.settings.method_params, quality=self.settings.quality,
                            target=self.settings.target, samples=samples, antithetic=pairs,
                            seeds=antithetic_seeds(seeds, samples) if pairs else seeds, device=self.device,
                            registry=self.registry, crop_to_mask=False)

    def write(self, member: Loaded, done: pipeline.Run, index: int, measurements: Sequence[Measurement]) -> None:
        """The item's image and run record (:func:`restore.pipeline.write_outputs`); the record's
        wall time is left out (null), so that reruns write the same bytes."""
        member.outputs.remove_leftovers()
        done.records[index]["seconds"] = None
        pipeline.write_outputs(member.outputs.image, done, index, measurements, tensors=False,
                               invocation={"interface": "batch", "key": member.item.key, "settings": self.record})

    def expected(self, entry: Loaded) -> dict[str, Any]:
        """What a complete output of ``entry`` records: settings, operator, input checksums."""
        m = entry.measurement
        return {"settings": self.record, "operator": operator_record(m.operator),
                "input": (m.sha256, m.sidecar_sha256)}

    def fail(self, item: Item, exc: BaseException) -> None:
        reason = str(exc).strip() or type(exc).__name__
        self.summary.failed.append([item.key, reason])
        self.report(f"{item.key}: failed: {reason}")


def _subgroups(loaded: Sequence[Loaded]) -> list[list[Loaded]]:
    """Members of a planned batch that can share one solve: same measurement shape and same
    operator (the plan groups by file headers; this checks what was actually read)."""
    groups: dict[tuple, list[Loaded]] = {}
    for entry in loaded:
        m = entry.measurement
        groups.setdefault((operator_record(m.operator)["sha256"], tuple(m.y.shape[1:])), []).append(entry)
    return list(groups.values())


# ----------------------------------------------------------------------------- the run


def run(items: Sequence[Item], out_dir: Path, settings: Settings, world, *, report: Report = None,
        prior: Any = None) -> Summary:
    """Restore this rank's shard of ``items`` (:func:`discover`) into ``out_dir``; returns the
    whole run's summary (gathered on every rank; rank 0 writes ``out_dir/summary.json``).
    ``world``: :func:`restore.distributed.init_world`'s; ``prior``: ``settings.prior`` already
    loaded on ``world.device`` (loaded here when None)."""
    from restore.plugins import default_registry

    start = time.perf_counter()
    runner = Runner(settings, out_dir, default_registry(), world.device, report, prior)
    for batch in shard(plan(items, settings.batch_size), world.rank, world.size):
        runner.run_batch(batch)
    runner.summary.seconds = time.perf_counter() - start
    summary = Summary.merged(gather(world, runner.summary))
    if world.main:
        data = {"items": len(items), "processes": world.size, **summary.to_json(), "settings": settings.record()}
        atomic_write(Path(out_dir) / SUMMARY_FILE, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))
    return summary


def gather(world, summary: Summary) -> list[Summary]:
    """Every rank's summary, on every rank (``all_gather_object``; one rank: itself)."""
    if world.size == 1:
        return [summary]
    import torch.distributed as dist

    parts: list[Optional[dict]] = [None] * world.size
    dist.all_gather_object(parts, asdict(summary))
    return [Summary(**part) for part in parts]


def format_summary(summary: Summary, items: Optional[int] = None) -> str:
    """The closing lines: counts, NFE, images per second, and each failure with its reason."""
    lines = [f"done {summary.done}, skipped {summary.skipped} (already complete), failed {len(summary.failed)}"
             + (f" of {items} images" if items is not None else "")
             + f"; NFE {summary.nfe} ({summary.network_calls} batched network calls); "
             f"{summary.images_per_second:.3g} images/s over {summary.seconds:.1f} s"]
    lines += [f"failed: {key}: {reason}" for key, reason in sorted(summary.failed)]
    return "\n".join(lines)


__all__ = ["Item", "Settings", "Summary", "discover", "plan", "shard", "item_seed", "run", "format_summary"]
