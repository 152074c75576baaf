"""``restore serve``'s REST API through the framework's test client, on the exact Gaussian prior:
every task end to end, image kinds, bad uploads, cancel, 20 concurrent jobs, reproducibility."""
import hashlib
import io
import json
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="restore serve needs the web extra: pip install -e '.[web]'")
from fastapi.testclient import TestClient  # noqa: E402

import restore  # noqa: E402
from restore.cli.serve_commands import host_warning  # noqa: E402
from restore.operators.io import decode_pixels  # noqa: E402
from restore.pipeline import RECORD_FORMAT, SCHEMA_VERSION  # noqa: E402
from restore.priors.native import NativeConfig, save_native  # noqa: E402
from restore.priors.unet import CompactUNet, UNetConfig  # noqa: E402
from restore.serve.app import Settings, create_app  # noqa: E402
from restore.serve.jobs import JobQueue, Options, new_job  # noqa: E402
from restore.serve.uploads import Picture  # noqa: E402
from restore.serve.uploads import Limits  # noqa: E402

PRIOR = "gaussian:3x16x16"
BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def settings():
    return Settings(priors={PRIOR: restore.load_prior(PRIOR)}, size=32, workers=2,
                    limits=Limits(max_bytes=200_000, max_pixels=5_000))


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


def encode(array, fmt="PNG"):
    if fmt == "TIFF":
        out = io.BytesIO()
        tifffile.imwrite(out, array, photometric="rgb" if array.ndim == 3 and array.shape[-1] >= 3 else "minisblack")
        return out.getvalue()
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def photo(seed=0, size=(16, 16), dtype=np.uint8, channels=3):
    top = 65535 if dtype == np.uint16 else 255
    shape = (*size, channels) if channels > 1 else size
    return np.random.default_rng(seed).integers(0, top + 1, shape, dtype=dtype)


def hole(size=(16, 16)):
    fill = np.zeros(size, bool)
    fill[4:9, 3:12] = True
    return fill


def submit(client, image, *, mask=None, truth=None, expect=202, **fields):
    files = {"image": ("photo.png", image)}
    if mask is not None:
        files["mask"] = ("mask.png", encode((mask * 255).astype(np.uint8)))
    if truth is not None:
        files["truth"] = ("truth.png", truth)
    response = client.post("/api/jobs", files=files, data={k: str(v) for k, v in fields.items()})
    assert response.status_code == expect, response.text
    return response.json()


def wait(client, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def decode(data):
    """Samples as the CLI reads them (Pillow would drop 8 bits of 16-bit colour PNGs)."""
    return decode_pixels(data, "result")[0]


def result_of(client, job_id):
    response = client.get(f"/api/jobs/{job_id}/result")
    assert response.status_code == 200, response.text
    return decode(response.content), response.content


def record_of(client, job_id):
    return client.get(f"/api/jobs/{job_id}/record").json()


def test_inpaint_end_to_end_keeps_known_pixels_with_samples_std_and_metrics(client):
    image, fill = photo(1), hole()
    job = submit(client, encode(image), mask=fill, truth=encode(photo(2)), task="inpaint", method="ddnm+", steps=3,
                 seed=5, samples=2)  # a sampler: the std map is the samples' spread
    status = wait(client, job["id"])
    assert status["state"] == "done", status["error"]
    out, _ = result_of(client, job["id"])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~fill], image[~fill]) and not np.array_equal(out[fill], image[fill])
    assert set(status["metrics"]) == {"psnr", "ssim"} and np.isfinite(status["metrics"]["psnr"])
    std = Image.open(io.BytesIO(client.get(status["std"]).content))
    assert std.size[1] >= 16
    record = record_of(client, job["id"])
    assert (record["format"], record["schema_version"]) == (RECORD_FORMAT, SCHEMA_VERSION)  # the CLI's record
    assert record["invocation"]["interface"] == "serve"
    assert record["seed"] == 5 and record["samples"] == 2 and record["steps"] == 3
    assert record["operator"]["name"] == "inpaint"
    assert record["invocation"]["upload"]["sha256"] == hashlib.sha256(encode(image)).hexdigest()
    events = client.get(f"/api/jobs/{job['id']}/events").text
    assert json.loads(events.strip().split("data: ")[-1])["state"] == "done"
    # the default (dpir) is a deterministic estimate: samples of it are refused, the reason shown
    job = submit(client, encode(image), mask=fill, task="inpaint", steps=3, samples=2)
    status = wait(client, job["id"])
    assert status["state"] == "failed" and "'dpir' estimates the posterior mean" in status["error"]


@pytest.mark.parametrize("task, fields, image, shape", [
    ("sr", {"scale": 2, "steps": 3}, photo(3, (8, 8)), (16, 16, 3)),
    ("deblur", {"kernel": "gaussian:1:5", "steps": 3}, photo(4), (16, 16, 3)),
    ("denoise", {"sigma": 0.1}, photo(5), (16, 16, 3)),
    ("denoise", {}, photo(6), (16, 16, 3)),  # sigma estimated
    ("colorize", {"steps": 3}, photo(7, channels=1), (16, 16, 3)),
    ("colorize", {"steps": 3}, photo(7, channels=1)[..., None].repeat(3, axis=-1), (16, 16, 3)),  # 3 equal channels
])
def test_every_other_task_end_to_end(client, task, fields, image, shape):
    job = submit(client, encode(image), task=task, seed=1, **fields)
    status = wait(client, job["id"])
    assert status["state"] == "done", status["error"]
    out, _ = result_of(client, job["id"])
    assert out.shape == shape
    record = record_of(client, job["id"])
    assert record["seed"] == 1 and record["invocation"]["options"]["task"] == task
    if task == "denoise":
        assert record["operator"]["params"]["noise"]["sigma"] > 0


@pytest.mark.parametrize("image, fmt", [
    (photo(8, dtype=np.uint16), "TIFF"),
    (photo(9, channels=1), "PNG"),
    (photo(10, channels=4), "PNG"),
    (photo(11), "JPEG"),
])
def test_image_kinds_come_back_as_the_cli_reads_them(client, image, fmt):
    """Crop to mask on: it pastes the filled pixels into the input, so even 16-bit known pixels are exact."""
    data, fill = encode(image, fmt), hole()
    job = submit(client, data, mask=fill, task="inpaint", steps=2, seed=0, crop_to_mask="true")
    assert wait(client, job["id"])["state"] == "done"
    out, _ = result_of(client, job["id"])
    source = decode(data)
    assert out.dtype == source.dtype and out.shape == source.shape
    assert np.array_equal(out[~fill], source[~fill]) and not np.array_equal(out[fill], source[fill])
    shown = decode(client.get(f"/api/jobs/{job['id']}/result.png").content)
    assert shown.dtype == np.uint8 and shown.shape == source.shape


def test_preview_sends_an_8_bit_png(client):
    response = client.post("/api/preview", files={"image": ("a.tif", encode(photo(12, dtype=np.uint16), "TIFF"))})
    info = response.json()
    assert (info["width"], info["height"], info["bits"], info["channels"]) == (16, 16, 16, 3)
    preview = Image.open(io.BytesIO(__import__("base64").b64decode(info["png"].split(",", 1)[1])))
    assert preview.mode == "RGB" and preview.size == (16, 16)


def png_claiming(width, height):
    """A PNG whose header claims width x height pixels, with almost no data (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("files, data, headers, status, message", [
    ({"image": ("a.png", encode(photo(0))[:60])}, {}, {}, 400, "damaged, truncated"),
    ({"image": ("a.txt", b"hello, this is text")}, {}, {}, 400, "not a PNG, JPEG or TIFF"),
    ({"image": ("a.png", b"")}, {}, {}, 400, "empty"),
    ({"image": ("a.png", np.random.default_rng(0).bytes(300_000))}, {}, {}, 413, "over this server's limit"),
    ({"image": ("a.png", encode(photo(0, (100, 100))))}, {}, {}, 413, r"10,000 pixels, over this server's limit"),
    ({"image": ("a.png", png_claiming(60_000, 60_000))}, {}, {}, 413, "decompression bomb"),
    ({"image": ("a.png", encode(photo(0))), "mask": ("m.png", encode(np.zeros((8, 8), np.uint8)))}, {}, {}, 400,
     "mask: it is 8x8 pixels but the image is 16x16"),
    ({"image": ("a.png", encode(photo(0)))}, {}, {}, 400, "inpainting needs a mask"),
    ({"image": ("a.png", encode(photo(0)))}, {"task": "deblur", "kernel": "/etc/passwd"}, {}, 400, "kernel"),
    ({"image": ("a.png", encode(photo(0)))}, {"task": "colorize"}, {}, 400, "colorize takes a grey image"),
    ({"image": ("a.png", encode(photo(0)))}, {"task": "sr", "prior": "unet:/tmp"}, {}, 400,
     "not one of this server's priors"),
    ({"image": ("a.png", encode(photo(0)))}, {"task": "sr", "steps": "0"}, {}, 400, "steps"),
    ({"image": ("a.png", encode(photo(0)))}, {"task": "sr"}, {"Origin": "http://elsewhere.example"}, 403,
     "another origin"),
    ({"image": ("a.png", encode(photo(0)))}, {"task": "sr"}, {"Sec-Fetch-Site": "cross-site"}, 403, "another site"),
    ({"image": ("a.png", encode(photo(0)))}, {"task": "sr"}, {"Host": "attacker.example:8000"}, 403, "not this server"),
])
def test_bad_requests_get_a_4xx_with_one_clear_message(client, files, data, headers, status, message):
    response = client.post("/api/jobs", files=files, data=data, headers=headers)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and re.search(message, detail), detail


def test_cancel_stops_a_running_job_between_steps_and_a_waiting_one_before_it_starts(tmp_path):
    """A small UNet (a step takes milliseconds, so 10,000 steps outlast the test) on one worker."""
    torch.manual_seed(0)
    net = CompactUNet(UNetConfig(channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4))
    unet = restore.load_prior(f"unet:{save_native(tmp_path, net, NativeConfig(net.config))}")
    with TestClient(create_app(Settings(priors={"unet": unet}, size=1, workers=1)), base_url=BASE) as client:
        image, fill = encode(photo(13)), hole()
        running = submit(client, image, mask=fill, task="inpaint", steps=10_000, seed=0)
        deadline = time.monotonic() + 60
        while client.get(f"/api/jobs/{running['id']}").json()["progress"].get("step", 0) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        waiting = submit(client, image, mask=fill, task="inpaint", steps=2, seed=0)
        full = submit(client, image, mask=fill, task="inpaint", steps=2, seed=0, expect=503)
        assert "the queue is full (1 jobs waiting)" in full["detail"]
        assert client.post(f"/api/jobs/{waiting['id']}/cancel").json()["state"] == "cancelled"
        client.post(f"/api/jobs/{running['id']}/cancel")
        status = wait(client, running["id"])
        assert status["state"] == "cancelled" and status["progress"]["step"] < 10_000
        assert wait(client, waiting["id"])["progress"] == {}  # never started
        assert client.get(f"/api/jobs/{running['id']}/result").status_code == 409


def test_finished_jobs_are_forgotten_beyond_keep():
    jobs = JobQueue({PRIOR: restore.load_prior(PRIOR)}, size=8, workers=1, keep=2)
    try:
        ids = [jobs.submit(new_job(Options("sr", PRIOR, seed=0, steps=1), Picture(photo(k, (8, 8)), False), b"x",
                                   "a.png")).id for k in range(4)]
        deadline = time.monotonic() + 60
        while any(jobs.get(i) is not None and jobs.get(i).state != "done" for i in ids):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        jobs.submit(new_job(Options("sr", PRIOR, seed=0, steps=1), Picture(photo(9, (8, 8)), False), b"x", "a.png"))
        assert [jobs.get(i) is None for i in ids] == [True, True, False, False]
        assert jobs.get(ids[-1]).image is None and jobs.get(ids[-1]).outputs["image"]  # inputs dropped, result kept
    finally:
        jobs.close()


def test_twenty_concurrent_jobs_none_lost_or_mixed_up(client):
    fill = hole()
    images = [photo(100 + k) for k in range(20)]

    def one(k):
        return submit(client, encode(images[k]), mask=fill, task="inpaint", steps=2, seed=k)["id"]

    with ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(one, range(20)))
    assert len(set(ids)) == 20
    for k, job_id in enumerate(ids):
        assert wait(client, job_id)["state"] == "done"
        out, _ = result_of(client, job_id)
        assert np.array_equal(out[~fill], images[k][~fill])  # its own image, nobody else's
        record = record_of(client, job_id)
        assert record["seed"] == k and record["invocation"]["job"] == job_id


def test_the_same_request_with_the_same_seed_gives_the_same_bytes_and_a_drawn_seed_is_recorded(client):
    image, fill = encode(photo(14)), hole()
    first, second = (submit(client, image, mask=fill, task="inpaint", steps=3, seed=7) for _ in range(2))
    other = submit(client, image, mask=fill, task="inpaint", steps=3)
    for job in (first, second, other):
        assert wait(client, job["id"])["state"] == "done"
    assert result_of(client, first["id"])[1] == result_of(client, second["id"])[1]
    assert isinstance(other["seed"], int) and record_of(client, other["id"])["seed"] == other["seed"]


def test_uploads_leave_no_file_behind(client, tmp_path, monkeypatch):
    """Uploads over Starlette's 1 MB spool limit go to an anonymous temporary file; nothing stays."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    big = encode(photo(15, (30, 30)))  # under the pixel limit
    padding = b"\0" * 1_100_000
    with TestClient(create_app(Settings(priors={PRIOR: restore.load_prior(PRIOR)},
                                        limits=Limits(max_bytes=4_000_000))), base_url=BASE) as c:
        response = c.post("/api/preview", files={"image": ("a.png", big), "extra": ("x.bin", padding)})
        assert response.status_code == 200, response.text
    assert list(tmp_path.iterdir()) == []


def test_hosts_the_server_answers_to(settings):
    named = TestClient(create_app(Settings(priors=settings.priors, host="10.1.2.3")), base_url="http://10.1.2.3:8000")
    everywhere = TestClient(create_app(Settings(priors=settings.priors, host="0.0.0.0")), base_url="http://box:8000")
    with named, everywhere:
        assert named.get("/api/options").status_code == 200
        assert named.get("/api/options", headers={"Host": "localhost:8000"}).status_code == 200
        assert named.get("/api/options", headers={"Host": "box:8000"}).status_code == 403
        assert everywhere.get("/api/options").status_code == 200


def test_a_link_from_elsewhere_opens_the_page_but_reaches_no_api(client):
    elsewhere = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert client.get("/", headers=elsewhere).status_code == 200
    assert client.get("/api/options", headers=elsewhere).status_code == 403


def test_openapi_page_and_page_files_are_served_from_here_only(client):
    spec = client.get("/api/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/cancel"} <= set(spec["paths"])
    docs = client.get("/api/docs").text
    assert "/static/swagger-ui-bundle.js" in docs
    for path in ("/", "/static/app.js", "/static/style.css", "/api/docs"):
        text = client.get(path).text
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text) and "https://" not in text.replace(
            "https://swagger.io", ""), path
    assert client.get("/static/..%2Fapp.py").status_code == 404


def test_defaults_are_the_clis(client):
    from restore.serve.app import DPS_BOX_DEPTH
    from restore.strategies.catalog import HOLE_DEPTH, default_run, hole_depth

    assert DPS_BOX_DEPTH == round(hole_depth(restore.operators.inpaint.Inpaint(mask="box"), (3, 256, 256)), 2)

    for task in ("inpaint", "sr", "deblur", "denoise", "colorize"):
        chosen = client.get(f"/api/defaults?task={task}").json()
        assert chosen["method"] in client.get("/api/options").json()["methods"]
    inpaint = restore.operators.inpaint.Inpaint(mask="box")
    for target in ("fidelity", "perceptual"):
        for noise in (0, 0.025):
            operator = restore.operators.inpaint.Inpaint(mask="box", noise={"kind": "gaussian", "sigma": noise})
            expected = default_run(operator, "high", target, shape=(3, 256, 256))  # DPS's box, the default
            chosen = client.get(f"/api/defaults?task=inpaint&quality=high&target={target}&noise={noise}").json()
            assert (chosen["method"], chosen["params"], chosen["steps"], chosen["samples"]) == \
                (expected.method, dict(expected.params), expected.steps, expected.samples), (target, noise)
    # a mask with shallower holes (a sparse sampling) has its own: the warm start; the page learns the line
    assert client.get("/api/options").json()["hole_depth"] == HOLE_DEPTH
    cold, warm = (client.get(f"/api/defaults?task=inpaint&target=perceptual&depth={depth}").json()["params"]
                  for depth in (HOLE_DEPTH, HOLE_DEPTH - 0.01))
    assert warm == {"warm_start": "dpir", "t0": 0.2} and cold == {}
    assert default_run(inpaint, "fast", "perceptual", shape=(3, 256, 256)).params == ()
    for bad in ("-1", "inf", "nan"):
        assert client.get(f"/api/defaults?task=inpaint&depth={bad}").status_code == 400, bad
    assert client.get("/api/defaults?task=inpaint&method=ddrm").json()["samples"] == 1  # a named method: one sample
    # an estimate (the noiseless default dpir of a sparse mask, or a named tweedie) takes no samples; a sampler
    # (the mean of 8 cold samples of a noiseless box) does
    assert client.get("/api/defaults?task=inpaint&depth=1").json()["estimator"] is True
    assert {key: value for key, value in client.get("/api/defaults?task=inpaint").json().items()
            if key in ("method", "samples", "estimator")} == {"method": "ddnm+", "samples": 8, "estimator": False}
    assert client.get("/api/defaults?task=inpaint&method=ddrm").json()["estimator"] is False
    assert client.get("/api/defaults?task=inpaint&target=perceptual").json()["estimator"] is False
    assert client.get("/api/defaults?task=denoise&method=tweedie").json()["estimator"] is True
    assert client.get("/api/defaults?task=inpaint&target=best").status_code == 400
    # A mask's defaults follow its noise, as the CLI's do (a sparse mask's: a box gets the same fidelity run).
    noisy = restore.operators.inpaint.Inpaint(mask="random", noise={"kind": "gaussian", "sigma": 0.05})
    expected = default_run(noisy, "fast", "fidelity", shape=(3, 256, 256))
    chosen = client.get("/api/defaults?task=inpaint&noise=0.05&depth=1").json()
    assert (chosen["method"], chosen["steps"], chosen["samples"]) == (expected.method, expected.steps, expected.samples)
    assert chosen != client.get("/api/defaults?task=inpaint&noise=0&depth=1").json()
    assert client.get("/api/defaults?task=inpaint&noise=2").status_code == 400
    assert client.get("/api/defaults?task=sr&prior=nosuch").status_code == 400


def test_a_conditional_priors_defaults_are_its_own():
    from restore.strategies.catalog import CONDITIONAL_DEFAULTS

    priors = {PRIOR: restore.load_prior(PRIOR), "default-sr3x4": restore.load_prior("default-sr3x4")}
    with TestClient(create_app(Settings(priors=priors, size=1, workers=1)), base_url=BASE) as client:
        for target in ("fidelity", "perceptual"):
            expected = CONDITIONAL_DEFAULTS[target]["fast"]
            chosen = client.get(f"/api/defaults?task=sr&target={target}&prior=default-sr3x4").json()
            assert (chosen["method"], chosen["steps"], chosen["samples"]) == ("conditional", 20, expected.samples)
            trained = {"operator": {"name": "sr", "scale": 4, "method": "bicubic"}, "noise": 0.025}
            assert chosen["trained_for"] == trained
        unconditional = client.get("/api/defaults?task=sr").json()  # the first prior's
        assert unconditional["method"] != "conditional" and unconditional["trained_for"] is None


def test_the_target_reaches_the_record(client):
    job = submit(client, encode(photo(16)), mask=hole(), task="inpaint", steps=2, seed=0, target="perceptual")
    assert wait(client, job["id"])["state"] == "done"
    record = record_of(client, job["id"])
    assert record["target"] == "perceptual" and record["samples"] == 1


def test_serve_command_defaults_to_loopback_and_refuses_an_unknown_prior():
    import inspect

    from typer.testing import CliRunner

    from restore.cli import app
    from restore.cli.serve_commands import serve

    assert inspect.signature(serve).parameters["host"].default.default == "127.0.0.1"
    result = CliRunner().invoke(app, ["serve", "--port", "0", "--prior", "nosuch:thing"])
    assert result.exit_code == 2 and "error:" in result.output and "nosuch" in result.output


def test_host_warning_and_light_imports():
    assert host_warning("127.0.0.1") == "" and host_warning("localhost") == ""
    assert "other machines can reach" in host_warning("0.0.0.0")
    code = ("import sys, restore, restore.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
