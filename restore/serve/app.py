"""The ASGI application of ``restore serve`` (FastAPI): the page and the REST API under ``/api``.

    GET  /                              the page (static/index.html; app.js, style.css under /static/)
    GET  /api/options                   tasks, the server's priors, methods, the CLI's defaults, limits,
                                        the hole depth from which a mask takes the hole defaults
    GET  /api/defaults                  the method, steps and samples of a task, target, quality and prior;
                                        what a conditional prior was trained for
    POST /api/preview                   an image file -> its size, bit depth and an 8-bit PNG to show
    POST /api/jobs                      image + mask / truth files + options -> job id and seed (202)
    GET  /api/jobs/{id}                 state, progress (step, total, NFE, elapsed, ETA), error, links
    GET  /api/jobs/{id}/events          the same as server-sent events, one per change, until it ends
    GET  /api/jobs/{id}/preview.png     the latest denoised estimate
    GET  /api/jobs/{id}/result          the restored image (PNG; TIFF for float input); result.png: 8-bit
    GET  /api/jobs/{id}/std.png         the per-pixel standard deviation (samples > 1)
    GET  /api/jobs/{id}/record          the run record (JSON)
    POST /api/jobs/{id}/cancel          stop the job (between two steps)
    GET  /api/docs, /api/openapi.json   the API's OpenAPI page (assets served from here, offline)

Safe by default (:class:`Guard`): a request whose ``Host`` is not one of the server's names is
refused (DNS rebinding; not when bound to every address, 0.0.0.0 or ::), so is one from another
origin (``Origin`` other than the page's own, or ``Sec-Fetch-Site`` other than same-origin /
none, except when opening the page or its static files from a link) and an upload over the byte
limit (told by ``Content-Length``, before it is read).  Files come from the package only (static
files are read once at start, never looked up by a request's path); priors are the ones the
server was started with, named by their spec.  Every refusal is a 4xx with one message:
``{"detail": "..."}``.
"""
from __future__ import annotations

import asyncio
import base64
import json
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, AsyncIterator, Mapping, Optional
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from restore.serve.jobs import TASKS, JobQueue, Options, new_job
from restore.serve.uploads import Limits, Picture, Refused, png_preview, read_fill_mask, read_picture

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
#: Bound to every address: any name may reach it, so the Host check is off (the command warns).
WILDCARD = ("0.0.0.0", "::", "")
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
SWAGGER = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
#: Seconds between checks of a job for the event stream.
POLL = 0.1


@dataclass
class Settings:
    """How the server runs: ``priors`` (spec -> loaded prior; the first is the page's default),
    upload ``limits``, queue ``size``, ``workers``, ``device`` and the ``host`` it is bound to."""

    priors: Mapping[str, Any]
    limits: Limits = field(default_factory=Limits)
    size: int = 32
    workers: int = 1
    device: Optional[str] = None
    host: str = "127.0.0.1"


def _hostname(host: str) -> str:
    """``name:port`` -> ``name``; ``[v6]:port`` -> ``[v6]``."""
    if host.startswith("["):
        return host[:host.index("]") + 1] if "]" in host else host
    return host.split(":")[0]


class Guard:
    """ASGI middleware: the host, origin and upload-size checks of the module docstring."""

    def __init__(self, app: Any, hosts: Optional[tuple[str, ...]], max_bytes: int) -> None:
        self.app, self.hosts, self.max_bytes = app, hosts, max_bytes

    def refusal(self, scope: Mapping[str, Any]) -> Optional[tuple[int, str]]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.hosts is not None and _hostname(host) not in self.hosts:
            return 403, (f"host {host!r} is not this server's name ({', '.join(self.hosts)}); open the page at "
                         f"http://{self.hosts[0]}:PORT/")
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != host:
            return 403, f"requests from another origin ({origin}) are refused; use the page this server serves"
        site = headers.get("sec-fetch-site")
        opening = scope.get("method") == "GET" and not scope.get("path", "").startswith("/api/")
        if site is not None and site not in ("same-origin", "none") and not opening:  # a link to the page is fine
            return 403, f"requests from another site (Sec-Fetch-Site: {site}) are refused"
        if scope.get("method") == "POST":
            length = headers.get("content-length", "0")
            if "transfer-encoding" in headers or not length.isdigit():
                return 411, "send the upload with a Content-Length header"
            if int(length) > self.max_bytes:
                return 413, (f"the upload is {int(length):,} bytes, over this server's limit of {self.max_bytes:,} "
                             "(restore serve --max-upload-mb)")
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refused = self.refusal(scope)
            if refused is not None:
                await JSONResponse({"detail": refused[1]}, status_code=refused[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _package_files(folder: Any, names: Mapping[str, str]) -> dict[str, tuple[bytes, str]]:
    return {name: ((folder / name).read_bytes(), media) for name, media in names.items()}


#: How deep the holes of DPS's 128 x 128 box in a 256 x 256 image are
#: (:func:`restore.strategies.catalog.hole_depth`): ``/api/defaults``' mask when none is given.
DPS_BOX_DEPTH = 21.84


def example_operator(task: str) -> Any:
    """An operator of ``task`` other than inpainting as a job builds it (default parameters), to
    ask the catalog for the task's defaults (a mask's kind comes from its noise and the depth of
    its holes: :func:`restore.strategies.catalog.mask_kind`)."""
    from restore.plugins import default_registry
    from restore.serve.jobs import deblur_kernel

    get = default_registry().get
    if task == "sr":
        return get("operator", "sr")(scale=Options.scale)
    if task == "deblur":
        return get("operator", "blur")(**deblur_kernel(Options.kernel))
    if task == "denoise":
        return get("operator", "denoise")(noise={"kind": "gaussian", "sigma": 0.1})
    return get("operator", "colorize")()


def create_app(settings: Settings) -> FastAPI:
    """The application: its job queue starts now and stops with the application's lifespan
    (or ``app.state.jobs.close()``)."""
    import swagger_ui_bundle
    from pathlib import Path

    jobs = JobQueue(settings.priors, size=settings.size, workers=settings.workers, device=settings.device)
    files = {**_package_files(resources.files("restore.serve") / "static", STATIC),
             **_package_files(Path(swagger_ui_bundle.swagger_ui_path), SWAGGER)}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.close()

    app = FastAPI(title="restore serve", summary="Image restoration with diffusion priors: jobs, progress, results.",
                  docs_url=None, redoc_url=None, openapi_url="/api/openapi.json", lifespan=lifespan)
    app.state.jobs = jobs
    hosts = None if settings.host in WILDCARD else \
        tuple(dict.fromkeys((*LOOPBACK, settings.host if ":" not in settings.host else f"[{settings.host}]")))
    app.add_middleware(Guard, hosts=hosts, max_bytes=settings.limits.max_bytes)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=400)

    def static(name: str) -> Response:
        data, media = files[name]
        return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return static("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in files:
            return JSONResponse({"detail": f"no static file {name!r}"}, status_code=404)
        return static(name)

    @app.get("/api/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/api/openapi.json", title="restore serve API",
                                   swagger_js_url="/static/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui.css",
                                   swagger_favicon_url="data:,")

    @app.get("/api/options")
    def options() -> dict[str, Any]:
        """What the page offers: tasks, the server's priors, methods, the CLI's defaults and
        ``hole_depth`` (:data:`restore.strategies.catalog.HOLE_DEPTH`: the page asks
        ``/api/defaults`` again only when its painted mask crosses it)."""
        from restore.plugins import default_registry
        from restore.strategies.catalog import DEFAULTS, HOLE_DEPTH, TARGETS

        return {"tasks": list(TASKS), "targets": list(TARGETS), "priors": list(settings.priors),
                "methods": default_registry().names("strategy"),
                "defaults": DEFAULTS, "task_defaults": {"scale": Options.scale, "kernel": Options.kernel},
                "hole_depth": HOLE_DEPTH,
                "limits": {"max_bytes": settings.limits.max_bytes, "max_pixels": settings.limits.max_pixels},
                "queue": {"size": settings.size, "workers": settings.workers}}

    @app.get("/api/defaults")
    def defaults(task: str = "inpaint", quality: str = "fast", target: str = "fidelity",
                 method: Optional[str] = None, noise: Optional[float] = None,
                 prior: Optional[str] = None, depth: float = DPS_BOX_DEPTH) -> dict[str, Any]:
        """The method, its parameters, steps and samples a job of ``task`` with measurement noise
        ``noise`` under ``prior`` (one of the server's; None: the first) gets when it names none
        (samples: with ``method`` when it names one); for inpainting, ``depth``: how deep the
        mask's holes are (:func:`restore.strategies.catalog.hole_depth`, as the page measures
        its painted mask; by default DPS's 128 x 128 box in a 256 x 256 image).  The CLI's
        (:func:`restore.strategies.catalog.default_run`, :func:`restore.pipeline.default_samples`);
        ``trained_for``: the operator (registry name and attributes) and noise sigma that a
        conditional prior's network serves, the only measurements it restores (None for an
        unconditional prior); ``estimator``: whether the job's method (``method``, else the
        default) is a deterministic estimate of the posterior mean, which takes one sample and
        the fidelity target only (:func:`restore.pipeline.refuse_an_estimate_as_samples`)."""
        from restore.plugins import default_registry
        from restore.strategies.catalog import QUALITIES, TARGETS, is_conditional, kind_run, mask_kind, operator_kind

        if task not in TASKS or quality not in QUALITIES or target not in TARGETS:
            raise Refused(f"defaults: task must be one of {', '.join(TASKS)}, quality {' or '.join(QUALITIES)}, "
                          f"target {' or '.join(TARGETS)}")
        if noise is not None and not 0 <= noise <= 1:
            raise Refused(f"defaults: noise must be a sigma in [0, 1], got {noise}")
        if not 0 <= depth < float("inf"):
            raise Refused(f"defaults: depth must be a number of pixels, at least 0, got {depth}")
        if prior is not None and prior not in settings.priors:
            raise Refused(f"defaults: prior must be one of the server's: {', '.join(settings.priors)}")
        loaded = settings.priors[prior or next(iter(settings.priors))]
        network = loaded.denoiser if is_conditional(loaded) else None
        kind = (None if network is not None else mask_kind(depth, not noise) if task == "inpaint"
                else operator_kind(example_operator(task)))
        chosen = kind_run(kind, quality, target)
        strategies = default_registry()
        runs = method if method in strategies.names("strategy") else chosen.method
        return {"method": chosen.method, "params": dict(chosen.params), "steps": chosen.steps,
                "estimator": bool(strategies.get("strategy", runs).posterior_mean),
                "samples": chosen.samples if method is None else 1,
                "trained_for": None if network is None else {"operator": network.measurement_operator,
                                                             "noise": network.measurement_sigma}}

    async def read(upload: Optional[UploadFile], field_name: str) -> Optional[Picture]:
        if upload is None:
            return None
        return read_picture(await upload.read(), field_name, settings.limits)

    @app.post("/api/preview")
    async def preview(image: UploadFile = File(..., description="PNG, JPEG or TIFF")) -> dict[str, Any]:
        """Decode an image as a job would and return its size, bit depth and an 8-bit PNG preview."""
        picture = await read(image, "image")
        return {"width": picture.size[1], "height": picture.size[0], "channels": int(picture.pixels.shape[-1]),
                "bits": picture.bits, "grey": picture.grey,
                "png": "data:image/png;base64," + base64.b64encode(png_preview(picture)).decode()}

    @app.post("/api/jobs", status_code=202)
    async def submit(
        image: UploadFile = File(..., description="The image to restore: PNG, JPEG or TIFF, 8/16-bit, grey/RGB/RGBA."),
        mask: Optional[UploadFile] = File(None, description="Inpainting: white = fill, the image's size."),
        truth: Optional[UploadFile] = File(None, description="Ground truth, for PSNR / SSIM of the result."),
        task: str = Form("inpaint", description=", ".join(TASKS)),
        prior: Optional[str] = Form(None, description="One of the server's priors (GET /api/options)."),
        method: Optional[str] = Form(None, description="Strategy; default: the CLI's for the task."),
        steps: Optional[int] = Form(None, ge=1, le=10000),
        quality: str = Form("fast", pattern="^(fast|high)$"),
        target: Optional[str] = Form(None, pattern="^(fidelity|perceptual)$",
                                     description="fidelity (best PSNR: posterior mean) or perceptual (one sample)"),
        seed: Optional[int] = Form(None, ge=0, lt=2**31, description="Default: drawn and recorded."),
        samples: Optional[int] = Form(None, ge=1, le=16, description="Posterior samples; default: the CLI's."),
        scale: int = Form(Options.scale, ge=1, le=8, description="sr"),
        kernel: str = Form(Options.kernel, description="deblur: gaussian[:STD[:SIZE]] or motion[:SEED[:SIZE]]"),
        sigma: Optional[float] = Form(None, ge=0, le=1, description="denoise: noise sigma on [0, 1]; empty: estimated"),
        noise: Optional[float] = Form(None, ge=0, le=1, description="measurement noise sigma on [0, 1]"),
        crop_to_mask: Optional[bool] = Form(None, description="inpaint: restore boxes around the holes only"),
    ) -> dict[str, Any]:
        """Queue a restoration; its id and seed come back at once (follow /api/jobs/{id}/events)."""
        data = await image.read()
        picture = read_picture(data, "image", settings.limits)
        fill = None
        if mask is not None:
            fill = read_fill_mask(await mask.read(), settings.limits, picture.size)
        if method is not None and method not in options()["methods"]:
            raise Refused(f"method: unknown strategy {method!r}; GET /api/options lists them")
        chosen = Options(task=task, prior=prior or next(iter(settings.priors)),
                         seed=secrets.randbelow(2**31) if seed is None else seed, method=method or None, steps=steps,
                         quality=quality, samples=samples, target=target, scale=scale, kernel=kernel, sigma=sigma,
                         noise=noise, crop_to_mask=crop_to_mask)
        job = jobs.submit(new_job(chosen, picture, data, image.filename, fill=fill, truth=await read(truth, "truth")))
        return job.status()

    def find(job_id: str) -> Any:
        job = jobs.get(job_id)
        if job is None:
            raise Refused(f"no job {job_id!r} (finished jobs are kept for a while, then forgotten)", 404)
        return job

    def finished(job_id: str) -> Any:
        job = find(job_id)
        if job.state != "done":
            raise Refused(f"job {job_id} is {job.state}, it has no result" +
                              (f": {job.error}" if job.error else ""), 409)
        return job

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str) -> dict[str, Any]:
        """The job's state, seed, progress (step, total, NFE, elapsed and ETA in seconds), error and links."""
        return find(job_id).status()

    @app.get("/api/jobs/{job_id}/events")
    async def events(job_id: str) -> StreamingResponse:
        """Server-sent events: the job's status (as GET /api/jobs/{id}) at each change, until it ends."""
        job = find(job_id)

        async def stream() -> AsyncIterator[str]:
            seen = -1
            while True:
                current = job.status()
                if current["version"] != seen:
                    seen = current["version"]
                    yield f"data: {json.dumps(current)}\n\n"
                if current["state"] in ("done", "failed", "cancelled"):
                    return
                await asyncio.sleep(POLL)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/api/jobs/{job_id}/preview.png")
    def preview_png(job_id: str) -> Response:
        job = find(job_id)
        if job.preview is None:
            raise Refused(f"job {job_id} has no preview yet", 404)
        return Response(job.preview, media_type="image/png")

    @app.get("/api/jobs/{job_id}/result")
    def result(job_id: str) -> Response:
        outputs = finished(job_id).outputs
        return Response(outputs["image"], media_type=outputs["media_type"],
                        headers={"Content-Disposition": f'attachment; filename="{outputs["filename"]}"'})

    @app.get("/api/jobs/{job_id}/result.png")
    def result_png(job_id: str) -> Response:
        """The restored image as an 8-bit PNG, for showing."""
        return Response(finished(job_id).outputs["display"], media_type="image/png")

    @app.get("/api/jobs/{job_id}/std.png")
    def std(job_id: str) -> Response:
        outputs = finished(job_id).outputs
        if "std" not in outputs:
            raise Refused(f"job {job_id} drew one sample: there is no std map (ask for samples > 1)", 404)
        return Response(outputs["std"], media_type="image/png")

    @app.get("/api/jobs/{job_id}/record")
    def record(job_id: str) -> Response:
        outputs = finished(job_id).outputs
        name = outputs["filename"].rsplit(".", 1)[0] + ".json"
        return Response(json.dumps(outputs["record"], indent=2) + "\n", media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        """Stop the job: a waiting one never starts, a running one stops after its current step."""
        job = find(job_id)
        jobs.cancel(job)
        return job.status()

    return app
