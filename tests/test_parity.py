"""One pipeline: a measurement of each kind restored through the Python API, `restore run --from`
and `restore batch` gives the same image and the same run record (docs/RUN_RECORD.md), apart
from paths, times and the `invocation` entry that names the front door; and one vocabulary
(kernel grammar, mask convention) across `degrade`, the restoration commands, batch and the API."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import restore
from restore.batch import item_seed
from restore.cli import app
from restore.operators import io as rio

PRIOR = "gaussian:3x16x16:0.3"
STEPS = 2
#: name -> `restore degrade` options and output file: 8- and 16-bit PNGs, an exact float .npy
#: (no rounding noise), phase retrieval and compressed sensing (measurements that are not images
#: of the image's size: the sidecar's input shape binds the operator).
KINDS = {
    "png8": (["--op", "sr", "--scale", "2", "--noise", "0.01", "--bits", "8"], "png8.png", 1 / (255 * math.sqrt(12))),
    "png16": (["--op", "blur", "--kernel", "gaussian:1", "--noise", "0.01", "--bits", "16"], "png16.png",
              1 / (65535 * math.sqrt(12))),
    "float": (["--op", "blur", "--kernel", "gaussian:1", "--noise", "0.01"], "float.npy", 0.0),
    "phase": (["--op", "phase-retrieval", "--noise", "0.01"], "phase.npy", 0.0),
    "cs": (["--op", "cs", "--param", "ratio=0.5", "--param", "block=[8, 8]", "--noise", "0.01"], "cs.npy", 0.0),
}
runner = CliRunner()


def ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each kind measured once by `restore degrade`, then restored by the three front doors."""
    work = tmp_path_factory.mktemp("parity")
    rio.write_image(work / "clean.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    made = work / "made"
    for name, (options, file, _) in KINDS.items():
        ok("degrade", work / "clean.png", *options, "--seed", 1, "-o", made / file)
    ok("batch", made, "-o", work / "batch", "--prior", PRIOR, "--steps", STEPS, "--seed", 0, "--threads", 1, "--quiet")
    out = {}
    for name, (_, file, _) in KINDS.items():
        seed = item_seed(0, name)  # the seed batch derives for this item
        suffix = ".npy" if file.endswith(".npy") else ".png"
        cli = work / "cli" / f"{name}{suffix}"
        # the thread count is an input of the bytes (float summation order) and of the record: one for all three
        ok("run", "--from", made / f"{name}.json", "--prior", PRIOR, "--steps", STEPS, "--seed", seed, "-o", cli,
           "--threads", 1, "--quiet")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            api = restore.restore(str(made / f"{name}.json"), prior=PRIOR, steps=STEPS, seed=seed, threads=1)
        out[name] = {"api": api, "cli": cli, "batch": work / "batch" / f"{name}{suffix}"}
    return out


def comparable(record: dict) -> dict:
    """A run record without what differs by front door: paths, times, the invocation, the files."""
    kept = {k: v for k, v in record.items() if k not in ("invocation", "outputs", "seconds")}
    kept["input"] = {k: v for k, v in record["input"].items() if k not in ("path", "sidecar")}
    return kept


@pytest.mark.parametrize("name", list(KINDS))
def test_api_run_from_and_batch_give_the_same_image_and_run_record(runs, name):
    api, cli, batch = runs[name]["api"], runs[name]["cli"], runs[name]["batch"]
    assert cli.read_bytes() == batch.read_bytes()  # the same image file, byte for byte
    cli_record = json.loads(cli.with_suffix(".json").read_text())
    batch_record = json.loads(batch.with_suffix(".json").read_text())
    mean = api.tensors["mean"]
    if cli.suffix == ".npy":
        assert torch.equal(mean, torch.from_numpy(np.load(cli)))
    else:
        bits = cli_record["outputs"]["image"]["bits"]
        assert np.array_equal(rio.to_pixels(mean, bits), rio.to_pixels(rio.read_image(cli), bits))
    assert comparable(api.provenance) == comparable(cli_record) == comparable(batch_record)
    assert cli_record["outputs"]["image"]["sha256"] == batch_record["outputs"]["image"]["sha256"]
    assert cli_record["format"] == "restore-run" and cli_record["schema_version"] == 1
    assert [r["invocation"]["interface"] for r in (api.provenance, cli_record, batch_record)] == ["api", "cli", "batch"]


@pytest.mark.parametrize("name", ["png16", "float"])
def test_the_deblurring_default_draws_antithetic_pairs_through_every_front_door(runs, name):
    """The blur kind's fidelity default is a mean of samples in antithetic pairs (catalog): the
    API, `run --from` and batch all pair sample 2j + 1 with sample 2j's seed."""
    for record in (runs[name]["api"].provenance, json.loads(runs[name]["batch"].with_suffix(".json").read_text())):
        seeds = record["seeds"]
        assert record["antithetic"] is True and record["samples"] == len(seeds) == 8
        assert seeds[1::2] == seeds[0::2] and len(set(seeds)) == 4


@pytest.mark.parametrize("name", list(KINDS))
def test_rounding_noise_follows_the_stored_bits(runs, name):
    """8 / 16-bit PNGs add q / sqrt(12); an exact float .npy adds none, through every front door."""
    expected = KINDS[name][2]
    record = runs[name]["api"].provenance
    assert record["quantization_sigma"] == pytest.approx(expected, rel=1e-12, abs=0)
    assert record["input"]["bits"] == (32 if KINDS[name][1].endswith(".npy") else int(KINDS[name][0][-1]))
    assert record["operator"]["params"]["noise"]["sigma"] == pytest.approx(math.hypot(0.01, expected), rel=1e-12)


@pytest.mark.parametrize("name", ["phase", "cs"])
def test_measurements_of_another_shape_restore_to_the_image_size(runs, name):
    """Batch restores phase retrieval and compressed sensing like `run --from`: the operator is
    bound to the clean image's shape the sidecar records."""
    assert runs[name]["api"].tensors["mean"].shape == (1, 3, 16, 16)
    assert np.load(runs[name]["batch"]).shape == (1, 3, 16, 16)
    if name == "phase":  # magnitudes do not tell the image size: the operator is bound to the recorded one
        assert runs[name]["api"].provenance["operator"]["params"]["shape"] == [3, 16, 16]


def test_one_kernel_grammar_everywhere(tmp_path):
    """`gaussian:2` names one operator in degrade, deblur, batch and the API (std 2, size 13)."""
    rio.write_image(tmp_path / "x.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)))
    ok("degrade", tmp_path / "x.png", "--op", "blur", "--kernel", "gaussian:2", "--seed", 0, "-o", tmp_path / "y.png")
    common = ["--prior", PRIOR, "--steps", 1, "--seed", 0, "--quiet"]
    ok("run", "--from", tmp_path / "y.json", *common, "-o", tmp_path / "from.png")
    ok("deblur", tmp_path / "y.png", "--kernel", "gaussian:2", *common, "-o", tmp_path / "deblur.png")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "y.png").write_bytes((tmp_path / "y.png").read_bytes())
    ok("batch", tmp_path / "in", "--op", "blur", "--kernel", "gaussian:2", "-o", tmp_path / "out", *common)
    api = restore.deblur(str(tmp_path / "y.png"), "gaussian:2", prior=PRIOR, steps=1, seed=0)  # a file, as the CLI
    records = [json.loads((tmp_path / f).read_text()) for f in ("from.json", "deblur.json", "out/y.json")]
    sidecar = json.loads((tmp_path / "y.json").read_text())
    kernel = np.load(tmp_path / sidecar["inspect"]["kernel"])
    assert kernel.shape == (13, 13)  # the default size rule: 2 ceil(3 * 2) + 1
    assert sidecar["params"]["std"] == 2.0 and sidecar["params"]["size"] == kernel.shape[0]  # recorded as used
    digests = {r["operator"]["sha256"] for r in records[1:]} | {api.provenance["operator"]["sha256"]}
    assert len(digests) == 1  # the same operator (run --from's is also bound to the image shape)
    from_params = records[0]["operator"]["params"]
    assert (from_params["kernel"], from_params["std"], from_params["size"]) == ("gaussian", 2.0, kernel.shape[0])
    assert {r["operator"]["params"]["size"] for r in records} == {api.provenance["operator"]["params"]["size"]} == {13}


def test_one_mask_convention_everywhere(tmp_path):
    """A .npy mask with 1 = fill means what a PNG mask with white = fill means, in degrade,
    inpaint and the API; a mask with other values is refused with the rule."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    rio.write_image(tmp_path / "x.png", x)
    fill = np.zeros((16, 16), np.float32)
    fill[4:8, 3:9] = 1
    np.save(tmp_path / "fill.npy", fill)
    rio.write_image(tmp_path / "fill.png", torch.from_numpy(fill)[None, None])
    ok("degrade", tmp_path / "x.png", "--op", "inpaint", "--mask", tmp_path / "fill.npy", "--seed", 0,
       "-o", tmp_path / "y.png")
    engine = np.load(tmp_path / "y.mask.npy")  # the operator's own mask: 1 = known
    assert np.array_equal(engine[0], 1 - fill)
    common = ["--prior", PRIOR, "--steps", 1, "--seed", 0, "--quiet"]
    ok("inpaint", tmp_path / "y.png", "--mask", tmp_path / "fill.png", *common, "-o", tmp_path / "a.png")
    ok("inpaint", tmp_path / "y.png", "--mask", tmp_path / "fill.npy", *common, "-o", tmp_path / "b.png")
    api = restore.inpaint(rio.read_image(tmp_path / "y.png"), fill, prior=PRIOR, steps=1, seed=0)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert np.array_equal(rio.to_pixels(api.tensors["mean"]), rio.to_pixels(rio.read_image(tmp_path / "a.png")))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "y.png").write_bytes((tmp_path / "y.png").read_bytes())
    ok("batch", tmp_path / "in", "--op", "inpaint", "--mask", tmp_path / "fill.npy", "-o", tmp_path / "out", *common)
    operators = [json.loads((tmp_path / f).read_text())["operator"] for f in ("a.json", "b.json", "out/y.json")]
    assert operators[0] == operators[1] == operators[2]  # the same engine mask from the PNG and the .npy
    np.save(tmp_path / "soft.npy", fill * 0.5)
    result = runner.invoke(app, ["inpaint", str(tmp_path / "y.png"), "--mask", str(tmp_path / "soft.npy"),
                                 *map(str, common)])
    assert result.exit_code == 2 and "marks the pixels to fill with 1" in result.output


def documented_keys() -> set[str]:
    """The keys of docs/RUN_RECORD.md's key table (first column)."""
    from pathlib import Path
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "RUN_RECORD.md").read_text()
    return set(re.findall(r"^\| `([a-z0-9_.]+)` \|", text.split("## Keys")[1], re.M))


def test_the_schema_document_lists_every_key(runs):
    """docs/RUN_RECORD.md names every key the records hold (top level and one level into the
    objects it describes key by key), and every key it names is held or documented as optional."""
    nested = ("versions", "prior", "input", "operator", "strategy", "outputs")
    held = set()
    for record in (json.loads(runs["png8"]["cli"].with_suffix(".json").read_text()), runs["phase"]["api"].provenance):
        held |= set(record) | {f"{key}.{inner}" for key in nested for inner in record[key]}
    optional = {"crop_to_mask", "outputs.samples", "outputs.std", "outputs.std_figure", "outputs.previews"}
    documented = documented_keys()
    assert held <= documented and documented - held <= optional, (held - documented, documented - held)


def test_batch_redoes_an_item_whose_record_has_another_schema_version(tmp_path):
    from restore.batch import Outputs, is_complete

    outputs = Outputs(tmp_path, "a", ".png")
    rio.write_image(outputs.image, torch.zeros(1, 1, 4, 4))
    record = {"format": "restore-run", "schema_version": 0, "invocation": {"settings": {}}, "operator": None,
              "input": {"sha256": "x", "sidecar_sha256": None},
              "outputs": {"image": {"sha256": rio.sha256_file(outputs.image)}}}
    outputs.sidecar.write_text(json.dumps(record))
    expected = {"settings": {}, "operator": None, "input": ("x", None)}
    assert not is_complete(outputs, expected)
    outputs.sidecar.write_text(json.dumps({**record, "schema_version": 1}))
    assert is_complete(outputs, expected)
