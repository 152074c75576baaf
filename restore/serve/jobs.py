"""Restoration jobs of ``restore serve``: a bounded queue, worker threads, progress, cancel.

* A job holds its uploads as decoded arrays and its options; its seed is fixed when it is
  submitted (drawn when none was given), so the same request with the same seed gives the
  same bytes.  Jobs run through the public API (:func:`restore.restore` and the per-task
  helpers), so a page run is a Python API run.
* The queue holds at most ``size`` waiting jobs (a submission beyond that is refused, not
  dropped later); ``workers`` threads run them.  A run's observers belong to that run only
  (``listeners=``), so two concurrent runs never hear each other's steps.
* Progress, previews and cancel are one observer plugin per run (:class:`Observer`):
  ``restore_step`` records step, NFE, elapsed time and ETA, encodes a preview of the
  denoised estimate every few steps, and raises :class:`Cancelled` once cancel was asked,
  which ends the run between two steps (the engine calls observers after each step).
* Results (image, std map, run record) stay in memory; the ``keep`` most recent finished
  jobs are kept.  The server writes no file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import queue
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from restore.hookspecs import hookimpl
from restore.serve.uploads import Picture, Refused, png_preview

TASKS = ("inpaint", "sr", "deblur", "denoise", "colorize")
#: Previews per run (about).
PREVIEWS = 8
FINAL = ("done", "failed", "cancelled")


class Cancelled(Exception):
    """Raised by a run's observer after cancel was asked: stops the engine between two steps."""


@dataclass(frozen=True)
class Options:
    """What a job restores and how: the task and its parameters (``scale`` for sr, ``kernel``
    ``gaussian[:STD[:SIZE]]`` or ``motion[:SEED[:SIZE]]`` for deblur, ``sigma`` for denoise, None:
    estimated), the prior (one of the server's), target (fidelity or perceptual), method,
    steps, quality, seed, samples, measurement noise and crop to mask (None: automatic).
    Target, method, steps and samples left None are the API's defaults, which are the CLI's."""

    task: str
    prior: str
    seed: int
    method: Optional[str] = None
    steps: Optional[int] = None
    quality: str = "fast"
    samples: Optional[int] = None
    target: Optional[str] = None
    scale: int = 2
    kernel: str = "gaussian:2"
    sigma: Optional[float] = None
    noise: Optional[float] = None
    crop_to_mask: Optional[bool] = None


@dataclass
class Job:
    """One restoration request and what became of it (``state``: queued, running, done,
    failed, cancelled)."""

    options: Options
    image: Optional[Picture]
    name: str
    sha256: str
    fill: Optional[np.ndarray] = None
    truth: Optional[Picture] = None
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    state: str = "queued"
    progress: dict[str, Any] = field(default_factory=dict)
    preview: Optional[bytes] = None
    error: Optional[str] = None
    outputs: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    cancel_asked: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, **changes: Any) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, value)
            self.version += 1

    def status(self) -> dict[str, Any]:
        """What the page and the API report: state, seed, progress, error, metrics and links."""
        with self.lock:
            out = {"id": self.id, "state": self.state, "seed": self.options.seed, "task": self.options.task,
                   "progress": dict(self.progress), "error": self.error, "version": self.version,
                   "preview": f"/api/jobs/{self.id}/preview.png?v={self.version}" if self.preview else None}
            if self.state == "done":
                out["metrics"] = self.outputs.get("metrics")
                out["result"] = f"/api/jobs/{self.id}/result"
                out["display"] = f"/api/jobs/{self.id}/result.png"
                out["record"] = f"/api/jobs/{self.id}/record"
                out["std"] = f"/api/jobs/{self.id}/std.png" if "std" in self.outputs else None
                out["filename"] = self.outputs["filename"]
            return out


def safe_name(filename: Optional[str]) -> str:
    """An upload's file name as a label only (never a path): its last part, other characters
    than letters, digits, ``.``, ``_`` and ``-`` replaced, at most 80 characters."""
    last = re.split(r"[\\/]", filename or "")[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", last)[:80] or "image"


def new_job(options: Options, image: Picture, data: bytes, filename: Optional[str], *,
            fill: Optional[np.ndarray] = None, truth: Optional[Picture] = None) -> Job:
    """A job, its inputs checked against its task (mask for inpainting, blur kernel, a grey image
    to colorize, ground truth size)."""
    if options.task not in TASKS:
        raise Refused(f"task: unknown task {options.task!r}; choose one of {', '.join(TASKS)}")
    if options.task == "inpaint":
        if fill is None:
            raise Refused("mask: inpainting needs a mask; paint the region to fill or upload a mask file")
        if not fill.any():
            raise Refused("mask: the mask marks no pixel to fill (white = fill), so there is nothing to restore")
        if fill.all():
            raise Refused("mask: the mask covers the whole image: no pixel is known, so this is not inpainting")
    if options.task == "deblur":
        deblur_kernel(options.kernel)  # refused now, not when the job runs
    colour = image.pixels[..., :3]
    if options.task == "colorize" and not image.grey and not (colour == colour[..., :1]).all():
        raise Refused("image: colorize takes a grey image (or three equal channels); this one's channels differ")
    if truth is not None:
        factor = options.scale if options.task == "sr" else 1
        want = (image.size[0] * factor, image.size[1] * factor)
        if truth.size != want:
            raise Refused(f"truth: the ground truth is {truth.size[1]}x{truth.size[0]} pixels but the result will "
                          f"be {want[1]}x{want[0]}")
    return Job(options, image, safe_name(filename), hashlib.sha256(data).hexdigest(), fill=fill, truth=truth)


class Observer:
    """The observer plugin of one job's run: progress, previews, cancel (module docstring)."""

    def __init__(self, job: Job, prior: Any) -> None:
        self.job, self.prior = job, prior
        self.started = time.perf_counter()
        self.run_started = self.started
        self.runs = 0

    @hookimpl
    def restore_run_start(self, info: Mapping[str, Any]) -> None:
        self.runs += 1  # crop to mask: one run per box
        self.run_started = time.perf_counter()
        self.job.update(progress={"step": 0, "total": info.get("steps"), "nfe": 0, "run": self.runs,
                                  "elapsed": round(self.run_started - self.started, 2), "eta": None})

    @hookimpl
    def restore_step(self, event: Any) -> None:
        if self.job.cancel_asked.is_set():
            raise Cancelled()
        now = time.perf_counter()
        done = event.step + 1
        eta = (now - self.run_started) / done * (event.total - done)
        progress = {"step": done, "total": event.total, "nfe": event.nfe, "run": self.runs,
                    "elapsed": round(now - self.started, 2), "eta": round(eta, 2)}
        every = max(1, event.total // PREVIEWS)
        if done % every == 0 or done == event.total:
            self.job.update(progress=progress, preview=self.encode(event.x0[:1]))
        else:
            self.job.update(progress=progress)

    def encode(self, x0: Any) -> bytes:
        from restore.operators.io import encode_pixels, to_pixels

        image = self.prior.to_image(self.prior.decode(x0.detach())).float().clamp(0, 1)
        return encode_pixels(to_pixels(image, 8), "png")


class JobQueue:
    """The bounded queue and its workers (module docstring).  ``priors``: spec -> loaded prior,
    the only priors a job may name."""

    def __init__(self, priors: Mapping[str, Any], *, size: int = 32, workers: int = 1, keep: int = 100,
                 device: Optional[str] = None) -> None:
        if size < 1 or workers < 1 or keep < 1:
            raise ValueError("the queue size, the workers and the jobs kept must each be at least 1")
        self.priors, self.device, self.keep = dict(priors), device, keep
        self.waiting: queue.Queue[Job] = queue.Queue(maxsize=size)
        self.stopping = threading.Event()
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, name=f"restore-worker-{k}", daemon=True)
                        for k in range(workers)]
        for thread in self.threads:
            thread.start()

    def submit(self, job: Job) -> Job:
        if job.options.prior not in self.priors:
            raise Refused(f"prior: {job.options.prior!r} is not one of this server's priors "
                          f"({', '.join(self.priors)}); start restore serve with --prior to add one")
        with self.lock:
            try:
                self.waiting.put_nowait(job)
            except queue.Full:
                raise Refused(f"the queue is full ({self.waiting.maxsize} jobs waiting); try again when one has "
                              "finished (restore serve --queue N)", 503) from None
            self.jobs[job.id] = job
            self._forget_old()
        return job

    def _forget_old(self) -> None:
        finished = [key for key, job in self.jobs.items() if job.state in FINAL]
        for key in finished[:max(0, len(finished) - self.keep)]:
            del self.jobs[key]

    def get(self, job_id: str) -> Optional[Job]:
        with self.lock:
            return self.jobs.get(job_id)

    def cancel(self, job: Job) -> None:
        """Ask ``job`` to stop: a waiting job never starts, a running one stops after its current step."""
        job.cancel_asked.set()
        with job.lock:
            waiting = job.state == "queued"
        if waiting:
            job.update(state="cancelled")

    def close(self) -> None:
        """Cancel everything and stop the workers (waiting at most a few seconds for each)."""
        with self.lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            self.cancel(job)
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)

    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.waiting.get(timeout=0.2)
            except queue.Empty:
                continue
            if job.cancel_asked.is_set():
                job.update(state="cancelled")
            else:
                job.update(state="running")
                try:
                    job.update(state="done", outputs=run_job(job, self.priors[job.options.prior], self.device))
                except Cancelled:
                    job.update(state="cancelled")
                except Exception as exc:  # a run's failure is the job's, never the server's
                    job.update(state="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            job.update(image=None, fill=None, truth=None)  # the inputs' memory; the results stay


def run_job(job: Job, prior: Any, device: Optional[str]) -> dict[str, Any]:
    """Run ``job`` through the public API; the encoded result, std map, metrics and run record."""
    import restore

    options = job.options
    observer = Observer(job, prior)
    chosen = {"method": options.method, "steps": options.steps, "samples": options.samples, "target": options.target}
    common = dict(prior=prior, seed=options.seed, quality=options.quality, device=device, listeners=[observer],
                  **{key: value for key, value in chosen.items() if value is not None})
    pixels = job.image.pixels
    if options.task == "inpaint":
        result = restore.inpaint(pixels, job.fill.astype(np.float64), noise=options.noise,  # 1 = fill
                                 crop_to_mask=options.crop_to_mask, **common)
    elif options.task == "sr":
        result = restore.sr(pixels, options.scale, noise=options.noise, **common)
    elif options.task == "deblur":
        kernel = deblur_kernel(options.kernel)
        result = restore.deblur(pixels, kernel.pop("kernel"), kernel_options=kernel, noise=options.noise, **common)
    elif options.task == "denoise":  # sigma None: estimated by the API, recorded with the operator's noise
        result = restore.denoise(pixels, options.sigma, **common)
    else:
        grey = pixels if job.image.grey else pixels[..., :1]  # three equal channels (checked by new_job)
        result = restore.colorize(grey, noise=options.noise, **common)
    return encode_outputs(job, result)


def deblur_kernel(spec: str) -> dict[str, Any]:
    """The blur parameters of ``gaussian[:STD[:SIZE]]`` or ``motion[:SEED[:SIZE]]``
    (:func:`restore.operators.kernels.kernel_params`); a kernel file is never read from a request."""
    from restore.operators.kernels import kernel_params

    if not re.fullmatch(r"(gaussian|motion)(:[0-9.]*(:[0-9]+)?)?", spec or ""):
        raise Refused(f"kernel: {spec!r} is not gaussian[:STD[:SIZE]] or motion[:SEED[:SIZE]]")
    try:
        return kernel_params(spec)
    except ValueError as exc:
        raise Refused(str(exc)) from None


def encode_outputs(job: Job, result: Any) -> dict[str, Any]:
    """The result image in the input's format family (PNG for 8 / 16-bit integers, TIFF for
    float or 16-bit grey + alpha) and as an 8-bit PNG to show, the std map figure, metrics
    against the ground truth and the run record."""
    from restore.operators.io import encode_pixels
    from restore.pipeline import std_figure

    image = np.asarray(result.image)
    image = image[..., None] if image.ndim == 2 else image
    kind = "png" if image.dtype in (np.uint8, np.uint16) and not (image.shape[-1] == 2 and image.dtype == np.uint16) \
        else "tiff"
    filename = f"{job.name.rsplit('.', 1)[0]}_restored.{'png' if kind == 'png' else 'tif'}"
    outputs: dict[str, Any] = {"image": encode_pixels(image, kind), "filename": filename,
                               "media_type": "image/png" if kind == "png" else "image/tiff",
                               "display": png_preview(Picture(image, job.image.grey or image.shape[-1] < 3))}
    mean = result.tensors["mean"]
    if len(result.samples) > 1:
        outputs["std"] = encode_pixels(std_figure(result.tensors["std"][0]), "png")
    if job.truth is not None:
        outputs["metrics"] = metrics(mean, job.truth)
    outputs["record"] = run_record(job, result, filename, outputs.get("metrics"))
    return outputs


def metrics(mean: Any, truth: Picture) -> dict[str, Any]:
    """PSNR and SSIM of the result against the ground truth (:mod:`restore.metrics.fidelity`)."""
    import torch

    from restore.metrics.fidelity import psnr, ssim

    reference = torch.from_numpy(truth.colour).permute(2, 0, 1)[None]
    if reference.shape[1] != mean.shape[1]:
        return {"error": f"the ground truth has {reference.shape[1]} channels, the result {mean.shape[1]}"}
    return {"psnr": round(float(psnr(mean, reference)[0]), 3), "ssim": round(float(ssim(mean, reference)[0]), 4)}


def run_record(job: Job, result: Any, filename: str, scores: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The run record of the API's result (the schema every front door writes), with this
    front door's ``invocation`` (the job, its options and the upload: name, SHA-256 of its
    bytes, bits) and ``outputs`` (file name, metrics against the ground truth)."""
    return {**result.provenance,
            "invocation": {"interface": "serve", "job": job.id, "options": dataclasses.asdict(job.options),
                           "upload": {"name": job.name, "sha256": job.sha256, "bits": job.image.bits}},
            "outputs": {"image": filename, "metrics": scores}}
