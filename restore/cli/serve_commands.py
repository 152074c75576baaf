"""``restore serve``: the local web page and REST API (:mod:`restore.serve`; ``pip install -e ".[web]"``)."""
from __future__ import annotations

from typing import List, Optional

import typer

from restore.cli.app import app, fail

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_warning(host: str) -> str:
    """The one-line warning for a ``--host`` other than this machine's loopback ('' for loopback)."""
    if host in LOOPBACK_HOSTS:
        return ""
    return f"warning: listening on {host}: other machines can reach this server and use its CPU/GPU; there is no login"


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Default: this machine only; any other "
                             "address lets other machines reach the server (a warning says so)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free port; the URL is printed)."),
    prior: Optional[List[str]] = typer.Option(None, "--prior", help="A prior the page may use (repeatable; the first "
                                              "is the page's default): default, unet:DIR, adm:PATH[:PRESET], "
                                              "gaussian:SHAPE, ... Requests choose among these only."),
    queue: int = typer.Option(32, "--queue", min=1, help="Jobs that may wait; a submission beyond that is refused."),
    workers: int = typer.Option(1, "--workers", min=1, help="Jobs run at the same time."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda, cuda:N."),
    max_upload_mb: float = typer.Option(64.0, "--max-upload-mb", min=0.001, help="Largest request (image + mask + "
                                        "ground truth), in MiB."),
    max_pixels: int = typer.Option(40_000_000, "--max-pixels", min=1, help="Largest image, in pixels (larger ones, "
                                   "and decompression bombs, are refused before decoding)."),
) -> None:
    """Serve a web page to paint a mask, restore, compare and download, and its REST API (/api, docs at /api/docs).

    Example: restore serve   (then open the printed URL)"""
    import socket

    try:
        import uvicorn

        from restore.serve.app import Settings, create_app
        from restore.serve.uploads import Limits
    except ImportError as exc:
        raise fail(f"restore serve needs the web extra ({exc.name} is missing): pip install -e \".[web]\"")
    from restore.api import pick_device
    from restore.priors.spec import load_prior

    specs = list(dict.fromkeys(prior or ["default"]))
    try:
        priors = {spec: load_prior(spec, device=pick_device(device)) for spec in specs}
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise fail(str(exc).splitlines()[0])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port (0: any free one)")
    bound = sock.getsockname()[1]
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own decompression-bomb check, at this server's limit
    settings = Settings(priors=priors, size=queue, workers=workers, device=device, host=host,
                        limits=Limits(max_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels))
    warning = host_warning(host)
    if warning:
        typer.secho(warning, fg=typer.colors.YELLOW, err=True)
    name = f"[{host}]" if ":" in host else host
    typer.echo(f"restore serve: http://{name}:{bound}/  (API docs: /api/docs; Ctrl-C stops)", err=False)
    config = uvicorn.Config(create_app(settings), log_level="warning", timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
