"""``restore batch``: discovery, the plan, resumption after kill -9, determinism across
processes (torchrun, gloo) and batch sizes, failures, manifests and sidecars."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restore.batch import (BatchInputError, Item, Outputs, Settings, discover, item_seed, plan, read_manifest,
                           shard)
from restore.cli import app
from restore.operators.io import sha256_file, write_image
from restore.priors.native import NativeConfig, save_native
from restore.priors.unet import CompactUNet, UNetConfig

runner = CliRunner()
BIN = Path(sys.executable).parent
#: (name, height, width): three of one size (a batch of 2 and one of 1), two others.
IMAGES = (("a", 16, 16), ("b", 16, 16), ("sub/c", 24, 20), ("d", 16, 16), ("e", 32, 32))


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory) -> Path:
    """A tiny random compact UNet saved as a native prior (unet:DIR)."""
    torch.manual_seed(0)
    arch = UNetConfig(base_channels=8, channel_mult=(1, 2), groups=4)
    net = CompactUNet(arch)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    return save_native(tmp_path_factory.mktemp("prior") / "tiny", net, NativeConfig(architecture=arch))


def make_inputs(folder: Path, suffix: str = ".png") -> Path:
    g = torch.Generator().manual_seed(0)
    for name, h, w in IMAGES:
        x = torch.rand(1, 3, h, w, generator=g)
        path = folder / f"{name}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".npy":
            np.save(path, x.numpy())
        else:
            write_image(path, x)
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def args(source, out, prior_dir, *extra, steps: int = 6) -> list[str]:
    return ["batch", str(source), "-o", str(out), "--op", "inpaint", "--mask", "box", "--prior", f"unet:{prior_dir}",
            "--method", "dps", "--param", "zeta=0.5", "--steps", str(steps), "--threads", "1", "--quiet", *extra]


def outputs_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` except the run summary (which holds timings), by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


@pytest.fixture(scope="module")
def reference(inputs, prior_dir, tmp_path_factory) -> dict[str, bytes]:
    """One uninterrupted single-process run at batch size 2."""
    out = tmp_path_factory.mktemp("reference") / "out"
    result = runner.invoke(app, args(inputs, out, prior_dir, "--batch-size", "2"))
    assert result.exit_code == 0, result.output
    return outputs_of(out)


# ----------------------------------------------------------------------------- items and plan


def test_item_seed_is_sha256_of_seed_and_key():
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"7:sub/c").digest()[:8], "big") & (2**63 - 1)
    assert item_seed(7, "sub/c") == expected
    assert item_seed(7, "sub/c") != item_seed(8, "sub/c") != item_seed(8, "sub/d")


def test_discover_folder_keys_and_duplicates(inputs, tmp_path):
    items = discover(inputs, op="inpaint", params={"mask": "box"})
    assert [i.key for i in items] == ["a", "b", "d", "e", "sub/c"]
    (tmp_path / "x.png").write_bytes((inputs / "a.png").read_bytes())
    (tmp_path / "x.npy").write_bytes(b"")
    with pytest.raises(BatchInputError, match="would both be restored to 'x'"):
        discover(tmp_path, op="inpaint")
    with pytest.raises(BatchInputError, match="no measurement sidecars"):
        discover(inputs)  # no --op and no sidecars


def test_an_output_folder_inside_the_input_folder_is_not_read(prior_dir, tmp_path):
    source = make_inputs(tmp_path / "in")
    cli = args(source, source / "restored", prior_dir, "--json")
    assert runner.invoke(app, cli).exit_code == 0
    again = runner.invoke(app, cli)
    assert again.exit_code == 0 and json.loads(again.stdout)["items"] == len(IMAGES)


def test_plan_groups_by_size_and_shards_cover_it_once(inputs):
    items = discover(inputs, op="inpaint", params={"mask": "box"})
    batches = plan(items, 2)
    assert [[i.key for i in b] for b in batches] == [["a", "b"], ["d"], ["e"], ["sub/c"]]
    for size in (1, 2, 3, 5):
        shards = [shard(batches, r, size) for r in range(size)]
        flat = [b for s in shards for b in s]
        assert sorted(map(id, flat)) == sorted(map(id, batches))  # a partition of the plan
    # the plan does not depend on the order items are given in
    assert plan(list(reversed(items)), 2) == batches


def test_plan_separates_operators(tmp_path, inputs):
    items = [Item("a", image=inputs / "a.png", op="inpaint", params={"mask": "box"}),
             Item("b", image=inputs / "b.png", op="inpaint", params={"mask": "random"})]
    assert len(plan(items, 4)) == 2


def test_manifest_errors(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("image,colour\na.png,red\n")
    with pytest.raises(BatchInputError, match="unknown column.*colour"):
        read_manifest(bad)
    both = tmp_path / "n.jsonl"
    both.write_text('{"image": "a.png", "from": "a.json"}\n')
    with pytest.raises(BatchInputError, match="exactly one of 'image' and 'from'"):
        read_manifest(both)
    broken = tmp_path / "o.jsonl"
    broken.write_text('{"image": "a.png"\n')
    with pytest.raises(BatchInputError, match="line 1: not valid JSON"):
        read_manifest(broken)


# ----------------------------------------------------------------------------- runs


def test_run_writes_images_and_sidecars_then_skips(inputs, prior_dir, reference, tmp_path):
    assert sorted(reference) == sorted([f"{n}.png" for n, _, _ in IMAGES] + [f"{n}.json" for n, _, _ in IMAGES])
    sidecar = json.loads(reference["sub/c.json"])
    assert sidecar["format"] == "restore-run" and sidecar["invocation"]["key"] == "sub/c"
    assert sidecar["outputs"]["image"]["sha256"] == __import__("hashlib").sha256(reference["sub/c.png"]).hexdigest()
    assert sidecar["input"]["sha256"] == sha256_file(inputs / "sub/c.png")
    assert sidecar["seed"] == item_seed(0, "sub/c")
    assert sidecar["strategy"]["name"] == "dps" and sidecar["steps"] == 6 and sidecar["nfe"] == 6
    assert sidecar["operator"]["name"] == "inpaint" and sidecar["operator"]["params"]["mask"] == "box"
    out = tmp_path / "out"
    assert runner.invoke(app, args(inputs, out, prior_dir, "--batch-size", "2")).exit_code == 0
    assert outputs_of(out) == reference  # same command, same bytes
    again = runner.invoke(app, args(inputs, out, prior_dir, "--batch-size", "2", "--json"))
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 5, [])
    assert json.loads((out / "summary.json").read_text())["skipped"] == 5


def test_incomplete_outputs_are_redone_and_leftovers_removed(inputs, prior_dir, reference, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"partial")  # an image whose sidecar never came
    (out / "d.png").write_bytes(reference["d.png"])
    (out / "d.json").write_bytes(reference["d.json"].replace(b'"sha256": "', b'"sha256": "0', 1))  # wrong checksum
    (out / ".e.png.abcd1234.png").write_bytes(b"left by a killed run")
    result = runner.invoke(app, args(inputs, out, prior_dir, "--batch-size", "2"))
    assert result.exit_code == 0, result.output
    assert outputs_of(out) == reference


def test_kill_9_then_rerun_gives_the_uninterrupted_files(inputs, prior_dir, tmp_path):
    """A subprocess killed as soon as the first sidecar appears, then rerun, ends with
    exactly the files of an uninterrupted run (batch size 2, so a batch may be half written)."""
    killed, full = tmp_path / "killed", tmp_path / "full"
    cli = args(inputs, killed, prior_dir, "--batch-size", "2", steps=80)  # long enough to land mid-run
    proc = subprocess.Popen([str(BIN / "restore"), *cli], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(killed.rglob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    at_kill = outputs_of(killed)
    assert 1 <= sum(name.endswith(".json") for name in at_kill) < len(IMAGES), "the run was not interrupted mid-way"
    assert not (killed / "summary.json").exists()
    rerun = runner.invoke(app, cli)
    assert rerun.exit_code == 0, rerun.output
    uninterrupted = runner.invoke(app, args(inputs, full, prior_dir, "--batch-size", "2", steps=80))
    assert uninterrupted.exit_code == 0, uninterrupted.output
    assert outputs_of(tmp_path / "killed") == outputs_of(tmp_path / "full")
    assert not list(killed.rglob(".*")), "temporary files were left behind"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_torchrun_equal_one(inputs, prior_dir, reference, tmp_path):
    """torchrun --nproc-per-node 2 (gloo on CPU): each rank writes its shard, rank 0 the summary;
    the union of the files is byte-identical to the single-process run."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run([str(BIN / "torchrun"), "--nproc-per-node", "2", "--master-port", str(free_port()),
                           str(BIN / "restore"), *args(inputs, out, prior_dir, "--batch-size", "2", "--json")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert outputs_of(out) == reference
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["processes"], summary["done"], summary["failed"]) == (2, 5, [])
    assert summary["nfe"] == 5 * 6 and summary["network_calls"] == 4 * 6


def test_batch_size_changes_rounding_only(prior_dir, tmp_path):
    """Per-item noise: batch size 1 and 2 give the same images up to float rounding (.npy
    inputs give exact float outputs); batch size 2 run twice gives the same bits."""
    source = make_inputs(tmp_path / "in", ".npy")
    runs = {}
    for name, size in (("one", "1"), ("two", "2"), ("two-again", "2")):
        out = tmp_path / name
        assert runner.invoke(app, args(source, out, prior_dir, "--batch-size", size)).exit_code == 0
        runs[name] = {key: np.load(out / f"{key}.npy") for key, _, _ in IMAGES}
    for key, _, _ in IMAGES:
        assert np.array_equal(runs["two"][key], runs["two-again"][key])
        assert np.abs(runs["one"][key] - runs["two"][key]).max() < 1e-4
    # and different seeds do give different images
    other = tmp_path / "seed1"
    assert runner.invoke(app, args(source, other, prior_dir, "--seed", "1")).exit_code == 0
    assert np.abs(np.load(other / "a.npy") - runs["one"]["a"]).max() > 1e-2


def test_a_failing_image_is_reported_and_the_rest_done(inputs, prior_dir, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for name in ("a.png", "b.png"):
        (source / name).write_bytes((inputs / name).read_bytes())
    (source / "broken.png").write_text("not an image")
    out = tmp_path / "out"
    result = runner.invoke(app, args(source, out, prior_dir, "--batch-size", "3", "--json"))
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["done"] == 2 and [f["item"] for f in summary["failed"]] == ["broken"]
    reason = summary["failed"][0]["reason"]
    assert "broken.png" in reason and "not a PNG, JPEG or TIFF" in reason
    assert sorted(outputs_of(out)) == ["a.json", "a.png", "b.json", "b.png"]


def test_alpha_is_put_back_or_refused_when_the_size_changes(prior_dir, tmp_path):
    from restore.operators.io import load_image

    source = tmp_path / "in"
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    alpha = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    write_image(source / "rgba.png", x, alpha=alpha)
    out = tmp_path / "out"
    assert runner.invoke(app, args(source, out, prior_dir)).exit_code == 0
    restored = load_image(out / "rgba.png")
    assert restored.alpha is not None and torch.equal(restored.alpha, load_image(source / "rgba.png").alpha)
    cli = ["batch", str(source), "-o", str(tmp_path / "sr"), "--op", "sr", "--scale", "2", "--prior",
           f"unet:{prior_dir}", "--steps", "2", "--quiet", "--json"]
    result = runner.invoke(app, cli)
    assert result.exit_code == 1
    reason = json.loads(result.stdout)["failed"][0]["reason"]
    assert "alpha channel, which cannot be put back on the 32x32 result" in reason


def test_a_divergent_run_fails_its_images_naming_the_step(inputs, prior_dir, tmp_path):
    cli = args(inputs, tmp_path / "out", prior_dir, "--batch-size", "2", "--precision", "bf16", "--json")
    cli[cli.index("zeta=0.5")] = "zeta=1e30"
    result = runner.invoke(app, cli)
    assert result.exit_code == 1
    failed = json.loads(result.stdout)["failed"]
    assert len(failed) == len(IMAGES) and all("sampling diverged at step" in f["reason"] for f in failed)
    assert not list((tmp_path / "out").glob("*.png"))


def test_other_settings_are_not_overwritten(inputs, prior_dir, reference, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, args(inputs, out, prior_dir, "--batch-size", "2")).exit_code == 0
    result = runner.invoke(app, [*args(inputs, out, prior_dir), "--seed", "3"])
    assert result.exit_code == 1
    assert "made with other settings (seed: 0 there, 3 now)" in result.output
    assert outputs_of(out) == reference
    other_mask = runner.invoke(app, [*args(inputs, out, prior_dir), "--mask", "random"])
    assert other_mask.exit_code == 1 and "another operator or operator parameters" in other_mask.output
    assert outputs_of(out) == reference
    # a different batch size resumes (it changes rounding only): everything is skipped
    resumed = runner.invoke(app, [*args(inputs, out, prior_dir, "--batch-size", "1"), "--json"])
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["skipped"] == 5


def test_manifest_rows_with_masks_and_degrade_sidecars(inputs, prior_dir, tmp_path):
    """A CSV manifest with a per-row mask image, and a JSONL manifest of `restore degrade`
    measurements restored with the exact operator their sidecars record."""
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1  # white = fill
    write_image(tmp_path / "m.png", mask)
    (tmp_path / "a.png").write_bytes((inputs / "a.png").read_bytes())
    (tmp_path / "list.csv").write_text("image,mask,output\na.png,m.png,restored/a\n")
    out = tmp_path / "out"
    base = ["--prior", f"unet:{prior_dir}", "--method", "dps", "--param", "zeta=0.5", "--steps", "4",
            "--threads", "1", "--quiet"]
    result = runner.invoke(app, ["batch", str(tmp_path / "list.csv"), "-o", str(out), "--op", "inpaint", *base])
    assert result.exit_code == 0, result.output
    sidecar = json.loads((out / "restored/a.json").read_text())
    assert sidecar["operator"]["name"] == "inpaint" and sidecar["invocation"]["key"] == "restored/a"

    degraded = tmp_path / "degraded"
    for name in ("a", "b"):
        made = runner.invoke(app, ["degrade", str(inputs / f"{name}.png"), "--op", "sr", "--scale", "2",
                                   "--noise", "0.01", "--seed", "1", "-o", str(degraded / f"{name}.png")])
        assert made.exit_code == 0, made.output
    (tmp_path / "m.jsonl").write_text('{"from": "degraded/a.json"}\n{"from": "degraded/b.json", "output": "bee"}\n')
    out2 = tmp_path / "out2"
    result = runner.invoke(app, ["batch", str(tmp_path / "m.jsonl"), "-o", str(out2), *base])
    assert result.exit_code == 0, result.output
    first = json.loads((out2 / "degraded/a.json").read_text())
    # the recorded sigma 0.01 plus the rounding of the 8-bit PNG the measurement is stored in
    q = 1 / (255 * 12**0.5)
    assert first["operator"]["name"] == "sr" and first["quantization_sigma"] == q
    assert first["operator"]["params"]["noise"]["sigma"] == pytest.approx((0.01**2 + q**2) ** 0.5, rel=1e-12)
    assert first["outputs"]["image"]["shape"] == [1, 3, 16, 16]  # the 8x8 measurement restored to the image size
    assert (out2 / "bee.png").is_file()
    # a folder of degrade outputs without --op: the same items, keyed by the sidecars' names
    out3 = tmp_path / "out3"
    assert runner.invoke(app, ["batch", str(degraded), "-o", str(out3), *base]).exit_code == 0
    assert (out3 / "a.png").read_bytes() != b"" and (out3 / "b.png").is_file()


@pytest.mark.parametrize("extra, message", [
    ((), "no such folder or manifest"),
    (("--precision", "fp8"), "unknown precision 'fp8'"),
    (("--dtype", "bf16"), "--dtype is replaced by --precision auto|fp32|bf16|fp16"),
    (("--param", "nosuch=1"), "strategy 'dps'"),
])
def test_usage_errors_exit_2_with_one_line(prior_dir, inputs, tmp_path, extra, message):
    source = tmp_path / "missing" if not extra else inputs
    result = runner.invoke(app, [*args(source, tmp_path / "out", prior_dir), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_readme_scale_out_commands_use_real_options():
    """Every option in README's scale-out commands is an option of `restore batch` (or of torchrun)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Scale out")[1].split("\n## ")[0]
    commands = " ".join(section.replace("\\\n", " ").split())
    named = set(re.findall(r"--[a-z][a-z-]*", section))
    torchrun = {"--nproc-per-node", "--nnodes", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id", "--no-python"}
    help_text = runner.invoke(app, ["batch", "--help"], env={"COLUMNS": "300"}).output
    assert {"--prior", "--param", "--op-param", "--threads"} <= named  # the prose is read too
    missing = sorted(o for o in named - torchrun if f"{o} " not in help_text and f"{o}/" not in help_text)
    assert not missing, missing
    assert "torchrun --nproc-per-node 8 --no-python restore batch" in commands


def test_settings_record_is_json():
    record = Settings(prior="gmm:8", seed=3).record()
    assert json.loads(json.dumps(record)) == record
    assert (record["precision"], record["compile"], record["channels_last"], record["seed"]) == ("auto", False, None, 3)


def test_outputs_leftover_pattern(tmp_path):
    outputs = Outputs(tmp_path, "x", ".png")
    keep = [tmp_path / ".xy.png.abcd1234.png", tmp_path / "x.png", tmp_path / ".x.png.abc.png"]
    drop = [tmp_path / ".x.png.abcd1234.png", tmp_path / ".x.json.a_b12345.json"]
    for p in keep + drop:
        p.write_bytes(b"")
    outputs.remove_leftovers()
    assert all(p.exists() for p in keep) and not any(p.exists() for p in drop)
