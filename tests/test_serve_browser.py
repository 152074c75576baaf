"""``restore serve`` in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright
against ``restore serve`` started as a user would, on 127.0.0.1 and a free port.

The test opens the page, checks that the method offered by default follows the noise and the prior,
loads an image, draws a stroke with mouse events on the canvas (and
tries the rectangle, undo, redo, eraser and zoom), presses Restore, waits for the result and
checks its pixels (known pixels kept bit for bit, the painted stroke changed) and the downloaded
run record.  A 16 x 16 image on the exact Gaussian prior keeps it quick.

Run as a script it makes the README's screenshot and measures the latency from pressing Restore
to the result on the shipped default prior (``examples/data/chelsea_scribbled.png`` with
``chelsea_mask.png`` loaded through the page's mask button)::

    python tests/test_serve_browser.py --screenshot docs/images/serve.png
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def served(*options: str):
    """``restore serve --port 0 OPTIONS`` in a subprocess; yields the URL it prints."""
    command = [sys.executable, "-c", "from restore.cli import main; main()", "serve", "--port", "0", *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline, seen = time.monotonic() + 180, []
        while time.monotonic() < deadline:
            if selector.select(timeout=1):
                line = process.stdout.readline()
                seen.append(line)
                if line.startswith("restore serve: http://"):
                    yield line.split()[2]
                    return
                if not line and process.poll() is not None:
                    break
        raise RuntimeError(f"restore serve did not start: {''.join(seen)}")
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def browser(width: int = 1280, height: int = 900):
    """A fresh headless Chromium profile and one page."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, accept_downloads=True,
            viewport={"width": width, "height": height})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def open_image(page, url: str, image: Path) -> None:
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('#task option').length > 0")
    page.set_input_files("#image-file", str(image))
    page.wait_for_selector("#restore:not([disabled])")


def restore_and_wait(page, timeout_ms: int = 600_000) -> float:
    """Press Restore; the seconds until the result is shown."""
    started = time.perf_counter()
    page.click("#restore")
    page.wait_for_function("['shown', 'failed', 'cancelled'].includes(document.body.dataset.state)",
                           timeout=timeout_ms)
    seconds = time.perf_counter() - started
    state = page.evaluate("document.body.dataset.state")
    assert state == "shown", page.inner_text("#message")
    return seconds


def download(page, selector: str) -> bytes:
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_bytes()


def painted(page) -> int:
    """Pixels of the mask overlay that are painted (the mask itself lives in the page)."""
    return page.evaluate("""() => {
        const c = document.getElementById('mask-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) n += d[i] > 127;
        return n;
    }""")


def needs_browser() -> None:
    pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (pip install -e '.[test]')")
    pytest.importorskip("fastapi", reason="restore serve needs the web extra: pip install -e '.[web]'")
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium at /usr/bin/chromium: apt-get install -y chromium chromium-driver (.ci/run does)")


def test_paint_restore_download_in_chromium(tmp_path):
    needs_browser()
    from PIL import Image

    from restore.operators.io import decode_pixels

    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    with served("--prior", "gaussian:3x16x16", "--prior", "default-sr3x4") as url, browser() as page:
        open_image(page, url, path)
        page.evaluate("document.getElementById('brush-size').value = 2")
        page.fill("#steps", "4")
        page.fill("#seed", "3")
        default = "document.querySelector(\"#method option[value='']\").textContent"
        page.wait_for_function(f"{default}.startsWith('default (dpir')")  # a noiseless mask's default
        assert page.is_disabled("#samples")  # an estimate: one deterministic result
        for noise, method in (("0.05", "ddnm+"), ("", "dpir")):  # a noisy mask has its own
            page.fill("#noise", noise)
            page.dispatch_event("#noise", "change")
            page.wait_for_function(f"{default}.startsWith('default ({method}')")
            assert page.is_disabled("#samples") == (method == "dpir")  # the mean of ddnm+ samples takes samples
        page.select_option("#prior", "default-sr3x4")  # a prior's own defaults, and the measurements it serves
        page.wait_for_function(f"{default}.startsWith('default (conditional')")
        page.wait_for_function("document.getElementById('noise').value === '0.025'")
        assert [page.input_value(f"#{field}") for field in ("task", "scale")] == ["sr", "4"]
        assert page.text_content("#prior-note") == ("default-sr3x4 restores only sr (scale 4, method bicubic) "
                                                    "with noise sigma 0.025")
        page.select_option("#prior", "gaussian:3x16x16")
        page.wait_for_function("document.getElementById('prior-note').hidden")
        page.select_option("#task", "inpaint")
        page.fill("#noise", "")
        page.dispatch_event("#noise", "change")
        page.wait_for_function(f"{default}.startsWith('default (dpir')")
        box = page.locator("#mask-canvas").bounding_box()
        cell = box["width"] / 16  # screen pixels per image pixel

        def at(x: float, y: float) -> tuple[float, float]:
            return box["x"] + x * cell, box["y"] + y * cell

        def drag(start, end, steps=12):
            page.mouse.move(*at(*start))
            page.mouse.down()
            for t in np.linspace(0, 1, steps):
                page.mouse.move(*at(start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])))
            page.mouse.up()

        drag((3, 8.5), (13, 8.5))
        stroke = painted(page)
        assert 10 <= stroke <= 16 * 5
        page.click("[data-tool=rect]")
        drag((1, 1), (5, 4), steps=4)
        assert painted(page) == stroke + 12  # a 4 x 3 rectangle
        page.click("#undo")
        assert painted(page) == stroke
        page.click("#redo")
        assert painted(page) == stroke + 12
        page.click("[data-tool=eraser]")
        drag((0, 0), (6, 5), steps=8)
        assert painted(page) < stroke + 12
        page.click("#undo")
        page.click("#undo")
        assert painted(page) == stroke  # the stroke alone again
        page.click("[data-tool=brush]")
        zoom = page.inner_text("#zoom-level")
        page.click("#zoom-in")
        assert page.inner_text("#zoom-level") != zoom
        page.click("#zoom-fit")
        restore_and_wait(page, timeout_ms=120_000)
        result = decode_pixels(download(page, "#download-image"), "download")[0]
        record = json.loads(download(page, "#download-record"))
    assert result.shape == image.shape and result.dtype == np.uint8
    far = np.r_[0:6, 12:16]  # rows the 2-pixel brush on row 8 never reached
    assert np.array_equal(result[far], image[far])
    assert (result[8, 4:12] != image[8, 4:12]).any(axis=-1).all()  # the painted stroke was filled in
    assert record["seed"] == 3 and record["steps"] == 4 and record["operator"]["name"] == "inpaint"
    assert record["invocation"]["upload"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_default_follows_how_deep_the_masks_holes_are(tmp_path):
    """The page measures its mask's holes as catalog.hole_depth does: a painted band turns the
    perceptual default from the warm start (nothing painted yet, or a random dropout loaded
    from a file: a sparse sampling) to a cold-started sample (a hole, catalog.operator_kind),
    and undo turns it back.  It asks /api/defaults again only when a change crosses
    catalog.HOLE_DEPTH: widening the band (deeper, still a hole) asks nothing."""
    needs_browser()
    from PIL import Image

    import torch

    from restore.operators.masks import random_mask
    from restore.plugins import default_registry
    from restore.strategies.catalog import HOLE_DEPTH, hole_depth

    side = 40
    path, dropout = tmp_path / "photo.png", tmp_path / "dropout.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    known = random_mask(side, side, seed=0, ratio=0.3)
    Image.fromarray(((~known).numpy() * 255).astype("uint8")).save(dropout)  # white: fill
    band = torch.ones(1, side, side)
    band[:, :16] = 0
    inpaint = default_registry().get("operator", "inpaint")
    depths = [hole_depth(inpaint(mask=mask), (3, side, side)) for mask in (band, known[None].float())]
    assert depths[1] < HOLE_DEPTH <= depths[0] == 8.5  # rows 16 to 1 from the first kept row
    with served("--prior", f"gaussian:3x{side}x{side}") as url, browser() as page:
        asked = []
        page.on("request", lambda request: asked.append(request.url) if "/api/defaults" in request.url else None)
        open_image(page, url, path)
        page.select_option("#target", "perceptual")
        default = "document.querySelector(\"#method option[value='']\").textContent"
        warm, cold = "default (ddnm+, warm_start dpir, t0 0.2)", "default (ddnm+)"
        page.wait_for_function(f"{default} === {warm!r}")  # nothing hidden yet
        box = page.locator("#mask-canvas").bounding_box()
        cell = box["width"] / side

        def paint_rows(top: int, bottom: int) -> None:  # whole rows top to bottom - 1
            page.mouse.move(box["x"] + 0.1, box["y"] + top * cell + 0.1)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] - 0.1, box["y"] + bottom * cell + 0.1, steps=4)
            page.mouse.up()

        page.click("[data-tool=rect]")
        before = len(asked)
        paint_rows(0, 16)
        page.wait_for_function(f"{default} === {cold!r}")
        assert page.evaluate("state.depth") == depths[0] and len(asked) == before + 1
        paint_rows(16, 18)  # a deeper hole, the same kind: nothing to ask
        page.wait_for_function(f"state.depth > {depths[0]}")
        page.wait_for_timeout(300)
        assert len(asked) == before + 1 and page.evaluate(default) == cold
        page.click("#undo")
        page.wait_for_function(f"state.depth === {depths[0]}")
        page.click("#undo")
        page.wait_for_function(f"{default} === {warm!r}")
        assert len(asked) == before + 2
        page.set_input_files("#mask-file", str(dropout))
        page.wait_for_function(f"state.depth > 0 && {default} === {warm!r}")
        assert page.evaluate("state.depth") == pytest.approx(depths[1], abs=1e-12)


def screenshot(target: Path) -> None:
    """The README's screenshot and the Restore-to-result latency on the default prior."""
    data = ROOT / "examples" / "data"
    with served() as url, browser(1400, 1000) as page:
        open_image(page, url, data / "chelsea_scribbled.png")
        page.set_input_files("#mask-file", str(data / "chelsea_mask.png"))
        page.wait_for_timeout(500)
        page.fill("#seed", "0")
        seconds = restore_and_wait(page)
        page.screenshot(path=str(target), full_page=True)
        record = json.loads(download(page, "#download-record"))
    print(f"Restore to result: {seconds:.1f} s ({record['strategy']['name']}, {record['steps']} steps, "
          f"{record['nfe']} NFE, {record['samples']} sample(s), target {record.get('target')}, "
          f"solver {record['seconds']:.1f} s); screenshot {target}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshot", type=Path, required=True)
    screenshot(parser.parse_args().screenshot)
