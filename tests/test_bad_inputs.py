"""Every mistake a user can make at the command line, as one table: the command, what it must
say, and the rules every row obeys -- exit status 2, one line ``error: ...`` on the output, no
traceback, and not one file of the working folder written, replaced or removed.

The table grows with each mistake found; rows are (id, arguments, expected fragment, setup).
Commands run in-process (typer's CliRunner) on tiny files made in ``tmp_path`` and the
analytic prior ``gaussian:3x16x20``, so no row restores anything.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restore.cli import app
from restore.operators import io as rio

PRIOR = ("--prior", "gaussian:3x16x20")
MASK = ("--mask", "mask.png")


def R(*args: object) -> list[str]:
    """A restoration command's arguments with the tiny analytic prior."""
    return [*map(str, args), *PRIOR]


def make_files(work: Path) -> None:
    """The folder every row starts from."""
    gen = torch.Generator().manual_seed(0)
    rio.write_image(work / "img.png", torch.rand(1, 3, 16, 20, generator=gen))
    fill = torch.zeros(1, 1, 16, 20)
    fill[..., 4:10, 6:14] = 1
    rio.write_image(work / "mask.png", fill)
    rio.write_image(work / "gt.png", torch.rand(1, 3, 16, 20, generator=gen))
    rio.write_image(work / "r.png", torch.rand(1, 3, 16, 20, generator=gen))
    rio.write_image(work / "one.png", torch.rand(1, 3, 1, 1, generator=gen))
    rio.write_image(work / "u.used-mask.png", torch.rand(1, 3, 16, 20, generator=gen))
    rio.write_image(work / "big.png", torch.rand(1, 3, 64, 80, generator=gen))
    rio.write_image(work / "small.png", torch.ones(1, 1, 8, 8))
    rio.write_image(work / "black.png", torch.zeros(1, 1, 16, 20))
    rio.write_image(work / "white.png", torch.ones(1, 1, 16, 20))
    np.save(work / "k.npy", np.full((3, 3), 1 / 9))
    np.save(work / "zero.npy", np.zeros((0, 0), np.float32))
    data = (work / "img.png").read_bytes()
    (work / "trunc.png").write_bytes(data[: len(data) // 2])
    (work / "text.png").write_text("not an image")
    (work / "empty.png").write_bytes(b"")
    (work / "file").write_text("")
    (work / "f.json").mkdir()
    os.symlink("img.png", work / "link.png")
    os.link(work / "img.png", work / "hard.png")
    runner = CliRunner()
    for args in (["degrade", "img.png", "--op", "sr", "--scale", "2", "--seed", "1", "-o", "y.png"],
                 ["degrade", "img.png", "--op", "inpaint", *MASK, "--seed", "1", "-o", "z.png"],
                 ["degrade", "img.png", "--op", "sr", "--scale", "2", "--seed", "1", "-o", "w.png"]):
        assert runner.invoke(app, args).exit_code == 0
    rio.write_image(work / "w.png", torch.rand(1, 3, 3, 3, generator=gen))  # no longer what w.json records
    np.save(work / "q.mask.npy", np.random.default_rng(0).random((3, 16, 20)).astype(np.float32))
    for folder in ("predd", "gtd", "bd"):
        (work / folder).mkdir()
        rio.write_image(work / folder / "a.png", torch.rand(1, 3, 16, 20, generator=gen))
    (work / "m.csv").write_text("image,output\nimg.png,img.png\n")
    # outputs of an earlier run
    for name in ("old.png", "s.sample-1.png", "pv/step-0002.png"):
        (work / name).parent.mkdir(exist_ok=True)
        rio.write_image(work / name, torch.rand(1, 3, 16, 20, generator=gen))
    for name in ("t.json", "old.csv", "old.json", "old.npy"):
        (work / name).write_text("{}")


def disk_full(monkeypatch) -> None:
    """Every temporary output file fails to write: No space left on device."""
    real = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if self.name.startswith("."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def cpu_out_of_memory(monkeypatch) -> None:
    """The CPU allocator fails inside the run."""
    def run(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9663676416 bytes")

    monkeypatch.setattr("restore.pipeline.run", run)


SETUPS = {"disk_full": disk_full, "cpu_out_of_memory": cpu_out_of_memory}
BIG_SEED = str(2**64)

CASES = [
    # --- a user's file is never written over (inputs, side files, links)
    ("inpaint-o-mask", R("inpaint", "img.png", *MASK, "-o", "mask.png"), "would replace the input --mask mask.png"),
    ("inpaint-o-image", R("inpaint", "img.png", *MASK, "-o", "img.png"), "would replace the input image img.png"),
    ("inpaint-o-dotdot", R("inpaint", "img.png", *MASK, "-o", "bd/../img.png"), "would replace the input image"),
    ("inpaint-symlink", R("inpaint", "link.png", *MASK, "-o", "img.png"), "would replace the input image link.png"),
    ("inpaint-hardlink", R("inpaint", "hard.png", *MASK, "-o", "img.png"), "would replace the input image hard.png"),
    ("run-from-sidecar", R("run", "--from", "y.json", "-o", "y.tif"),
     "y.json (sidecar of -o) would replace the input --from y.json"),
    ("run-from-measurement", R("run", "--from", "y.json", "-o", "y.png"), "would replace the input image y.png"),
    ("run-from-tensor", R("run", "--from", "z.json", "-o", "z.mask.npy"), "would replace the input tensor mask"),
    ("run-op-param-file", R("run", "img.png", "--op", "inpaint", "--op-param", "mask=mask.png", "-o", "mask.png"),
     "would replace the input --op-param mask mask.png"),
    ("deblur-o-kernel", R("deblur", "img.png", "--kernel", "k.npy", "-o", "k.npy"), "input --kernel k.npy"),
    ("sr-o-image", R("sr", "img.png", "--scale", 2, "-o", "./img.png"), "would replace the input image"),
    ("denoise-o-image", R("denoise", "img.png", "--sigma", 0.1, "-o", "hard.png"), "would replace the input image"),
    ("colorize-o-image", R("colorize", "white.png", "-o", "white.png"), "would replace the input image white.png"),
    ("degrade-o-image", ["degrade", "img.png", "--op", "sr", "--scale", "2", "-o", "img.png"],
     "would replace the input image img.png"),
    ("degrade-o-mask", ["degrade", "img.png", "--op", "inpaint", *MASK, "-o", "mask.png"],
     "would replace the input --mask mask.png"),
    ("degrade-o-kernel", ["degrade", "img.png", "--op", "blur", "--kernel", "k.npy", "-o", "k.npy"],
     "would replace the input --kernel k.npy"),
    ("degrade-tensor-side-file", ["degrade", "q.mask.npy", "--op", "inpaint", *MASK, "-o", "q.png"],
     "q.mask.npy (tensor mask of -o) would replace the input image q.mask.npy"),
    ("degrade-unplanned-side-file", ["degrade", "u.used-mask.png", "--op", "inpaint", *MASK, "-o", "u.png"],
     "u.used-mask.png would replace the input image u.used-mask.png"),  # refused at write time, all or nothing
    ("compare-o-truth", ["compare", "gt.png", "r.png", "--metrics", "psnr", "-o", "gt.png"],
     "would replace the input ground truth gt.png"),
    ("compare-o-restoration", ["compare", "gt.png", "r.png", "--metrics", "psnr", "-o", "r.png"],
     "would replace the input restoration r.png"),
    ("eval-json-truth", ["eval", "r.png", "gt.png", "--metrics", "psnr", "--json", "gt.png"],
     "gt.png (--json) would replace the input ground truth gt.png"),
    ("eval-csv-prediction", ["eval", "r.png", "gt.png", "--metrics", "psnr", "--csv", "r.png"],
     "r.png (--csv) would replace the input prediction r.png"),
    ("eval-csv-is-json", ["eval", "r.png", "gt.png", "--metrics", "psnr", "--csv", "s.txt", "--json", "./s.txt"],
     "s.txt would be written twice (--csv and --json)"),
    ("eval-figure-folder", ["eval", "predd", "gtd", "--metrics", "psnr", "--figure", "predd"],
     "(--figure) would replace the input prediction"),
    ("sample-o-prior", ["sample", "--prior", "adm:r.png", "-o", "r.png"], "would replace the input --prior r.png"),
    ("batch-o-input-folder", ["batch", "bd", "-o", "bd", "--op", "denoise", *PRIOR], "is the input folder bd"),
    ("batch-manifest-output", ["batch", "m.csv", "-o", ".", "--op", "denoise", *PRIOR],
     "img.png (output of img) would replace the input img.png"),
    ("train-o-data", ["train", "prior", "--data", "bd", "-o", "bd"], "is the --data folder bd"),
    ("train-o-val", ["train", "prior", "--data", "bd", "--val", "gtd", "-o", "./gtd"], "is the --val folder gtd"),
    ("train-o-foreign-folder", ["train", "prior", "--data", "bd", "-o", "gtd"],
     "-o gtd holds files and no checkpoint.pt of an earlier run: pass --overwrite"),
    # --- an existing output is replaced only with --overwrite
    ("inpaint-exists", R("inpaint", "img.png", *MASK, "-o", "old.png"), "old.png (-o) exists: pass --overwrite"),
    ("inpaint-sample-exists", R("inpaint", "img.png", *MASK, "--method", "ddnm+", "--samples", 2, "-o", "s.png"),
     "s.sample-1.png (sample 1 of -o) exists"),
    ("inpaint-sidecar-exists", R("inpaint", "img.png", *MASK, "-o", "t.png"), "t.json (sidecar of -o) exists"),
    ("inpaint-previews-exist", R("inpaint", "img.png", *MASK, "-o", "new.png", "--preview", "pv"),
     "(--preview) exists: pass --overwrite"),
    ("degrade-exists", ["degrade", "img.png", "--op", "sr", "--scale", "2", "-o", "old.png"], "old.png (-o) exists"),
    ("compare-exists", ["compare", "gt.png", "r.png", "--metrics", "psnr", "-o", "old.png"], "old.png (-o) exists"),
    ("eval-csv-exists", ["eval", "r.png", "gt.png", "--metrics", "psnr", "--csv", "old.csv"], "old.csv (--csv) exists"),
    ("eval-json-exists", ["eval", "r.png", "gt.png", "--metrics", "psnr", "--json", "old.json"], "(--json) exists"),
    ("sample-exists", ["sample", "--prior", "gaussian:3x4x4", "-n", "2", "--steps", "2", "-o", "old.npy"],
     "old.npy (-o) exists"),
    # --- option values click refuses: one line instead of a usage box
    ("steps-0", R("inpaint", "img.png", *MASK, "--steps", 0), "restore inpaint: Invalid value for '--steps'"),
    ("scale-abc", R("sr", "img.png", "--scale", "abc"), "Invalid value for '--scale'"),
    ("scale-0", R("sr", "img.png", "--scale", 0), "Invalid value for '--scale'"),
    ("samples-negative", R("inpaint", "img.png", *MASK, "--samples", -1), "Invalid value for '--samples'"),
    ("quality-bogus", R("inpaint", "img.png", *MASK, "--quality", "bogus"), "--quality must be fast or high"),
    # --- several samples of a deterministic estimate (the noiseless inpaint default, dpir): copies, std 0
    ("samples-of-an-estimate", R("inpaint", "img.png", *MASK, "--samples", 2, "-o", "n.png"),
     "strategy 'dpir' estimates the posterior mean and is deterministic: 2 samples would be 2 copies"),
    ("batch-perceptual-estimate", ["batch", "m.csv", "-o", "bout", "--op", "denoise", *PRIOR, "--method", "tweedie",
                                   "--target", "perceptual"], "'tweedie' estimates the posterior mean (the fidelity"),
    ("preview-every-0", R("inpaint", "img.png", *MASK, "--preview-every", 0), "Invalid value for '--preview-every'"),
    ("sigma-negative", R("denoise", "img.png", "--sigma", -1), "Invalid value for '--sigma'"),
    ("noise-not-number", R("deblur", "img.png", "--kernel", "k.npy", "--noise", "x"), "Invalid value for '--noise'"),
    ("sample-num-0", ["sample", "--prior", "gaussian:8", "-n", 0], "Invalid value for '-n'"),
    ("eval-crop-negative", ["eval", "r.png", "gt.png", "--crop", "-1"], "Invalid value for '--crop'"),
    ("batch-size-0", ["batch", "bd", "-o", "out", "--op", "denoise", "--batch-size", "0"], "'--batch-size'"),
    ("train-crop-4", ["train", "prior", "--data", "bd", "-o", "out", "--crop", "4"], "Invalid value for '--crop'"),
    ("degrade-noise-negative", ["degrade", "img.png", "--op", "sr", "--noise", "-1"], "Invalid value for '--noise'"),
    ("degrade-bits-abc", ["degrade", "img.png", "--op", "sr", "--bits", "abc"], "Invalid value for '--bits'"),
    ("check-operator-batch-0", ["check-operator", "sr", "--batch", "0"], "Invalid value for '--batch'"),
    ("missing-mask", R("inpaint", "img.png"), "Missing option '--mask'"),
    ("no-such-command", ["nosuch"], "No such command 'nosuch'"),
    ("no-such-option", R("inpaint", "img.png", *MASK, "--bogus"), "No such option: --bogus"),
    ("seed-negative", R("inpaint", "img.png", *MASK, "--seed", -1), "Invalid value for '--seed'"),
    ("seed-huge", R("inpaint", "img.png", *MASK, "--seed", BIG_SEED), "Invalid value for '--seed'"),
    ("degrade-seed-huge", ["degrade", "img.png", "--op", "sr", "--seed", BIG_SEED], "Invalid value for '--seed'"),
    ("sample-seed-huge", ["sample", "--prior", "gaussian:8", "--seed", BIG_SEED], "Invalid value for '--seed'"),
    ("batch-seed-huge", ["batch", "bd", "-o", "out", "--op", "denoise", "--seed", BIG_SEED], "'--seed'"),
    # --- inputs that used to end in a traceback
    ("denoise-empty-npy", R("denoise", "zero.npy", "--sigma", 0.1), "zero.npy: the image array (1, 1, 0, 0) holds no"),
    ("sr-empty-npy", R("sr", "zero.npy", "--scale", 2), "holds no pixels"),
    ("inpaint-empty-npy", R("inpaint", "zero.npy", *MASK), "holds no pixels"),
    ("sidecar-image-resized", R("run", "--from", "w.json"), "but its sidecar w.json records (1, 3, 8, 10)"),
    # --- lines that used to mislead
    ("sr-scale-1000", R("sr", "big.png", "--scale", 1000, "--device", "cpu"),
     "the result would be 64000x80000 pixels (1 sample(s)): too large for the"),
    ("disk-full", R("inpaint", "img.png", *MASK, "-o", "full.png"), "full.png: cannot write (No space left on device)",
     "disk_full"),
    ("degrade-disk-full", ["degrade", "img.png", "--op", "sr", "-o", "full.png"], "full.png: cannot write",
     "disk_full"),
    ("cpu-out-of-memory", R("inpaint", "img.png", *MASK, "--device", "cpu"),
     "out of memory on cpu: a batch of 1 image(s) of 16x20 does not fit; give fewer --samples (now 1) or an image "
     "of about 11x14 pixels (half as many)", "cpu_out_of_memory"),
    ("denoise-1x1", R("denoise", "one.png"), "an image of 1x1 pixels is too small to estimate its noise level"),
    ("denoise-estimated-target-bad", R("denoise", "img.png", "--target", "bad"),
     "--target must be fidelity or perceptual, got 'bad'"),  # no estimated-sigma line before the error
    ("param-unknown-key", R("inpaint", "img.png", *MASK, "--method", "dps", "--param", "nosuch=1"),
     "strategy 'dps' has no parameter 'nosuch' (given by --param nosuch=...); "
     "its parameters: symmetry, t0, warm_start, zeta"),
    ("param-unknown-key-default", R("sr", "img.png", "--scale", 2, "--param", "nosuch=1"), "its parameters:"),
    ("param-unknown-key-perceptual", R("inpaint", "img.png", *MASK, "--target", "perceptual", "--param", "nosuch=1"),
     "has no parameter 'nosuch' (given by --param nosuch=...); its parameters:"),
    ("batch-param-unknown-key", ["batch", "bd", "-o", "out", "--op", "denoise", "--method", "dps", "--param",
                                 "nosuch=1", *PRIOR], "strategy 'dps' has no parameter 'nosuch'"),
    ("batch-op-param-unknown-key", ["batch", "bd", "-o", "out", "--op", "denoise", "--op-param", "nosuch=1", *PRIOR],
     "operator 'denoise' has no parameter 'nosuch' (given by --op-param nosuch=...); its parameters:"),
    ("batch-op-unknown", ["batch", "bd", "-o", "out", "--op", "nosuch", *PRIOR], "registered operators:"),
    ("batch-o-under-a-file", ["batch", "bd", "-o", "file/out", "--op", "denoise", *PRIOR], "is a file, not a folder"),
    ("op-param-unknown-key", R("run", "img.png", "--op", "sr", "--op-param", "nosuch=1"),
     "operator 'sr' has no parameter 'nosuch'"),
    # --- earlier rows of tests/test_restore_cli.py
    ("trunc", R("inpaint", "trunc.png", *MASK), "damaged, truncated or unsupported PNG"),
    ("text", R("inpaint", "text.png", *MASK), "not a PNG, JPEG or TIFF image"),
    ("empty", R("inpaint", "empty.png", *MASK), "an empty file"),
    ("missing", R("inpaint", "missing.png", *MASK), "no such file"),
    ("mask-text", R("inpaint", "img.png", "--mask", "text.png"), "--mask"),
    ("mask-size", R("inpaint", "img.png", "--mask", "small.png"), "the mask is 8x8 pixels but the image is 16x20"),
    ("mask-black", R("inpaint", "img.png", "--mask", "black.png"), "the mask is empty"),
    ("mask-white", R("inpaint", "img.png", "--mask", "white.png"), "covers the whole image"),
    ("op-unknown", R("run", "img.png", "--op", "nosuch"), "registered operators:"),
    ("method-unknown", R("inpaint", "img.png", *MASK, "--method", "nosuch"), "registered strategys:"),
    ("o-under-a-file", R("inpaint", "img.png", *MASK, "-o", "file/out.png"), "is a file, not a folder"),
    ("o-gif", R("inpaint", "img.png", *MASK, "-o", "out.gif"), ".gif"),
    ("kernel-inf", R("deblur", "img.png", "--kernel", "gaussian:inf"), "finite"),
    ("kernel-blob", R("deblur", "img.png", "--kernel", "blob"), "gaussian"),
    ("cuda-9", R("sr", "img.png", "--scale", 2, "--device", "cuda:9"), "cuda"),
    ("from-not-json", R("run", "--from", "text.png"), "not valid JSON"),
    ("noise-inf", R("sr", "img.png", "--scale", 2, "--noise", "inf"), "not finite"),
    ("run-neither", R("run", "img.png"), "give either IMG --op NAME or --from y.json"),
    ("colorize-colour", R("colorize", "img.png"), "colorize takes a grey image"),
    ("degrade-trunc", ["degrade", "trunc.png", "--op", "sr"], "damaged, truncated or unsupported PNG"),
    ("degrade-mask-text", ["degrade", "img.png", "--op", "inpaint", "--mask", "text.png"], "mask: text.png"),
    ("degrade-noise-inf", ["degrade", "img.png", "--op", "sr", "--noise", "inf"], "not finite"),
    ("degrade-poisson-inf", ["degrade", "img.png", "--op", "sr", "--poisson", "inf"], "not finite"),
    ("degrade-text", ["degrade", "text.png", "--op", "sr"], "not a PNG, JPEG or TIFF image"),
    ("degrade-empty", ["degrade", "empty.png", "--op", "sr"], "an empty file"),
    ("degrade-sidecar-is-a-folder", ["degrade", "img.png", "--op", "sr", "-o", "f.png"], "is a folder"),
    ("degrade-o-under-a-file", ["degrade", "img.png", "--op", "sr", "-o", "file/y.png"], "is a file, not a folder"),
    ("deblur-repaint", R("deblur", "img.png", "--kernel", "gaussian:1", "--method", "repaint"), "is_mask"),
    ("run-phase-retrieval", R("run", "img.png", "--op", "phase-retrieval"), "bind the operator to the image shape"),
    ("sample-bad-prior", ["sample", "--prior", "gaussian:8:-1", "-n", "2"], "STD must be a finite number > 0"),
    ("sample-not-images", ["sample", "--prior", "gaussian:8", "-o", "s.png"], "samples of shape (8,) are not images"),
    ("sample-txt", ["sample", "--prior", "gaussian:8", "-o", "s.txt"], ".pt (torch archive), .npy (array) or an image"),
    ("disable-unknown-plugin", ["--disable-plugin", "nosuch", "list"], "cannot disable 'nosuch'"),
]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("template")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        make_files(folder)
    finally:
        os.chdir(cwd)
    return folder


def test_the_table_is_large_and_its_names_unique():
    assert len(CASES) >= 60 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_a_mistake_is_one_line_exit_2_and_writes_nothing(case, template, tmp_path, monkeypatch):
    name, args, expected, *setup = case
    import shutil

    work = tmp_path / "work"
    shutil.copytree(template, work, symlinks=True)
    (work / "hard.png").unlink()  # copytree copies a hard link as a file of its own
    os.link(work / "img.png", work / "hard.png")
    monkeypatch.chdir(work)
    for key in setup:
        SETUPS[key](monkeypatch)
    before = snapshot(work)
    result = CliRunner().invoke(app, [str(a) for a in args])
    text = result.output.strip()
    assert result.exit_code == 2, text
    assert text.startswith("error: ") and "\n" not in text and "Traceback" not in text, text
    assert expected in text, text
    if "cpu" in args:  # never told to use the device in use
        assert "--device cpu" not in text, text
    assert snapshot(work) == before


def test_overwrite_replaces_an_existing_output_but_never_an_input(template, tmp_path, monkeypatch):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(template, work, symlinks=True)
    monkeypatch.chdir(work)
    runner = CliRunner()
    common = ["--op", "sr", "--scale", "2", "--seed", "3"]
    old = (work / "old.png").read_bytes()
    assert runner.invoke(app, ["degrade", "img.png", *common, "-o", "old.png", "--overwrite"]).exit_code == 0
    assert (work / "old.png").read_bytes() != old and (work / "old.json").is_file()
    refused = runner.invoke(app, ["degrade", "img.png", *common, "-o", "img.png", "--overwrite"])
    assert refused.exit_code == 2 and "would replace the input image img.png" in refused.output
    restored = runner.invoke(app, R("inpaint", "img.png", *MASK, "--steps", 2, "-o", "t.png", "--overwrite"))
    assert restored.exit_code == 0, restored.output
    assert (work / "t.png").is_file() and (work / "t.json").read_text() != "{}"
    scored = runner.invoke(app, ["eval", "r.png", "gt.png", "--metrics", "psnr", "--csv", "old.csv", "--overwrite"])
    assert scored.exit_code == 0 and (work / "old.csv").read_text().startswith("image,psnr")


def test_an_hwc_npy_image_is_read_channel_last(tmp_path):
    hwc = np.random.default_rng(0).random((16, 20, 3)).astype(np.float32)
    np.save(tmp_path / "hwc.npy", hwc)
    image = rio.read_image(tmp_path / "hwc.npy")
    assert image.shape == (1, 3, 16, 20) and torch.equal(image[0].permute(1, 2, 0), torch.from_numpy(hwc))


def test_version_prints_the_package_version():
    from importlib import metadata

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"restore {metadata.version('diffusion-restore')}"


def grey(work: Path) -> str:
    rio.write_image(work / "grey.png", torch.rand(1, 1, 16, 20, generator=torch.Generator().manual_seed(5)))
    return "grey.png"


#: One run of every writing command (tiny priors, 2 steps), and the file it writes.
WRITERS = [
    ("inpaint", lambda w: R("inpaint", "img.png", *MASK, "--steps", 2, "--seed", 0), "out.png"),
    ("deblur", lambda w: R("deblur", "img.png", "--kernel", "k.npy", "--steps", 2, "--seed", 0), "out.png"),
    ("sr", lambda w: ["sr", "img.png", "--scale", "2", "--prior", "gaussian:3x32x40", "--steps", "2"], "out.png"),
    ("denoise", lambda w: R("denoise", "img.png", "--sigma", 0.1, "--steps", 2, "--seed", 0), "out.png"),
    ("colorize", lambda w: R("colorize", grey(w), "--steps", 2, "--seed", 0), "out.png"),
    ("run", lambda w: R("run", "--from", "z.json", "--steps", 2, "--seed", 0), "out.png"),
    ("degrade", lambda w: ["degrade", "img.png", "--op", "sr", "--scale", "2", "--seed", "0"], "out.png"),
    ("compare", lambda w: ["compare", "gt.png", "r.png", "--metrics", "psnr"], "out.png"),
    ("eval", lambda w: ["eval", "r.png", "gt.png", "--metrics", "psnr", "--json"], "out.json"),
    ("sample", lambda w: ["sample", "--prior", "gaussian:3x4x4", "-n", "2", "--steps", "2"], "out.npy"),
]


@pytest.mark.parametrize("command, args, output", WRITERS, ids=[w[0] for w in WRITERS])
def test_every_writer_refuses_an_existing_output_until_overwrite(command, args, output, template, tmp_path,
                                                                 monkeypatch):
    """First run writes; the same run again is refused (exit 2, the file untouched); with
    --overwrite it replaces the file."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(template, work, symlinks=True)
    monkeypatch.chdir(work)
    runner = CliRunner()
    given = [str(a) for a in args(work)]
    target = [output] if command == "eval" else ["-o", output]
    first = runner.invoke(app, [*given, *target])
    assert first.exit_code == 0, first.output
    written = (work / output).stat().st_ino  # an atomic replace makes a new inode
    again = runner.invoke(app, [*given, *target])
    assert again.exit_code == 2 and f"{output} (" in again.output and "exists: pass --overwrite" in again.output
    assert (work / output).stat().st_ino == written
    replaced = runner.invoke(app, [*given, *target, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert (work / output).stat().st_ino != written


def test_batch_refuses_an_unwritable_output_folder_before_restoring(template, tmp_path, monkeypatch):
    """A folder where no file can be created (mode 0500; for root, whom modes do not stop, /sys)
    is refused before the first image is read."""
    import shutil
    import tempfile

    work = tmp_path / "work"
    shutil.copytree(template, work, symlinks=True)
    monkeypatch.chdir(work)
    if os.geteuid() != 0:
        locked = work / "locked"
        locked.mkdir(mode=0o500)
    else:
        locked = Path("/sys")
        try:
            tempfile.TemporaryFile(dir=locked).close()
            pytest.skip("running as root where /sys is writable: no unwritable folder to test with")
        except OSError:
            pass

    def no_restoring(*args, **kwargs):
        raise AssertionError("batch restored before checking its output folder")

    monkeypatch.setattr("restore.batch.run", no_restoring)
    result = CliRunner().invoke(app, ["batch", "bd", "-o", str(locked / "out"), "--op", "denoise", *PRIOR])
    assert result.exit_code == 2 and result.output.startswith(f"error: {locked / 'out'}: cannot write in {locked}")


def test_train_writes_into_a_foreign_folder_only_with_overwrite_then_resumes(template, tmp_path, monkeypatch):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(template, work, symlinks=True)
    monkeypatch.chdir(work)
    tiny = ["train", "prior", "--data", "bd", "-o", "gtd", "--crop", "8", "--batch-size", "2", "--base-channels",
            "8", "--channel-mult", "1", "--max-steps", "1", "--val-count", "1", "--quiet", "--device", "cpu"]
    runner = CliRunner()
    assert runner.invoke(app, tiny).exit_code == 2 and not (work / "gtd" / "checkpoint.pt").exists()
    trained = runner.invoke(app, [*tiny, "--overwrite"])
    assert trained.exit_code == 0, trained.output
    assert (work / "gtd" / "checkpoint.pt").is_file() and (work / "gtd" / "a.png").is_file()
    resumed = runner.invoke(app, tiny)  # a folder with a checkpoint: rerunning resumes, no --overwrite needed
    assert resumed.exit_code == 0, resumed.output
