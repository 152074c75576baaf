"""The restoration commands end to end on a tiny random prior, and every bad-input case."""
import json
import os
import tempfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restore.cli import app
from restore.operators import io as rio
from restore.priors.native import NativeConfig, save_native
from restore.priors.unet import CompactUNet, UNetConfig

runner = CliRunner()


def tiny_prior(folder, channels=3):
    torch.manual_seed(0)
    net = CompactUNet(UNetConfig(channels=channels, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4))
    return f"unet:{save_native(folder, net, NativeConfig(net.config))}"


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    return tiny_prior(tmp_path_factory.mktemp("prior"))


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with a 16x20 RGB image and a mask (white = fill) of a 6x8 box."""
    monkeypatch.chdir(tmp_path)
    rio.write_image(tmp_path / "img.png", torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(0)))
    fill = torch.zeros(1, 1, 16, 20)
    fill[..., 4:10, 6:14] = 1
    rio.write_image(tmp_path / "mask.png", fill)
    return tmp_path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def test_inpaint_samples_std_sidecar_and_byte_identical_reruns(work, prior):
    # a sampler (the fidelity default, dpir, is deterministic: its std is 0)
    ok("inpaint", "img.png", "--mask", "mask.png", "--prior", prior, "--method", "ddnm+", "--steps", 3, "--seed", 7,
       "--samples", 2, "-o", "a.png")
    ok("inpaint", "img.png", "--mask", "mask.png", "--prior", prior, "--method", "ddnm+", "--steps", 3, "--seed", 7,
       "--samples", 2, "-o", "b.png")
    for name in ("", ".sample-0", ".sample-1", ".std"):
        assert (work / f"a{name}.png").read_bytes() == (work / f"b{name}.png").read_bytes()
    std = np.load(work / "a.std.npy")
    fill = rio.read_image(work / "mask.png")[0, 0].numpy() > 0.5
    assert std.shape == (3, 16, 20) and np.all(std[:, ~fill] == 0) and std[:, fill].mean() > 0
    sidecar = json.loads((work / "a.json").read_text())
    assert sidecar["invocation"]["command"] == "inpaint" and sidecar["seed"] == 7
    assert sidecar["steps"] == 3 and sidecar["nfe"] == 6  # per image: 3 steps for each of its 2 samples
    assert sidecar["strategy"]["name"] == "ddnm+" and "eta" in sidecar["strategy"]["params"]
    assert sidecar["prior"]["spec"] == prior and len(sidecar["prior"]["weights_sha256"]) == 64
    assert sidecar["versions"]["torch"] == torch.__version__
    assert sidecar["device"] == "cpu" and sidecar["dtype"] == "float32"
    assert sidecar["format"] == "restore-run" and sidecar["schema_version"] == 1
    assert sidecar["input"]["sha256"] == rio.sha256_file(work / "img.png")
    mask = np.load(work / sidecar["outputs"]["tensors"]["mask"])  # the operator's tensor, saved beside
    assert np.array_equal(mask[0] > 0.5, ~fill)
    mean = rio.read_image(work / "a.png")
    keep = ~torch.from_numpy(fill)
    assert torch.equal(mean[..., keep], rio.read_image(work / "img.png")[..., keep])


def test_every_command_runs_and_keeps_depth_and_channels(work, prior):
    x = torch.rand(1, 1, 12, 14, generator=torch.Generator().manual_seed(1))
    rio.write_image(work / "grey16.png", x, bits=16)
    ok("deblur", "grey16.png", "--kernel", "gaussian:1", "--prior", prior, "--steps", 2, "--seed", 0, "-o", "d.png")
    back = rio.load_image(work / "d.png")
    assert back.bits == 16 and back.channels == 1 and back.image.shape[-2:] == (12, 14)
    ok("sr", "img.png", "--scale", 2, "--prior", prior, "--steps", 2, "--seed", 0, "-o", "s.tif")
    assert rio.read_image(work / "s.tif").shape == (1, 3, 32, 40)
    result = ok("denoise", "img.png", "--prior", prior, "--steps", 2, "--seed", 0, "-o", "n.png")
    sidecar = json.loads((work / "n.json").read_text())
    assert f"estimated noise sigma: {sidecar['sigma_estimated']:.4f}" in result.output
    assert sidecar["operator"]["params"]["noise"]["sigma"] == sidecar["sigma_estimated"]
    rio.write_image(work / "float.tif", rio.read_image(work / "img.png"), bits=32)
    ok("denoise", "float.tif", "--sigma", 0.05, "--prior", prior, "--steps", 2, "--seed", 0)
    assert rio.load_image(work / "float_restored.tif").bits == 32
    rio.write_image(work / "opaque.png", rio.read_image(work / "img.png"), alpha=torch.ones(1, 1, 16, 20))
    ok("sr", "opaque.png", "--scale", 2, "--prior", prior, "--steps", 2, "--seed", 0, "-o", "o.png")
    assert torch.equal(rio.load_image(work / "o.png").alpha, torch.ones(1, 1, 32, 40))
    rio.write_image(work / "grey.png", x)
    ok("colorize", "grey.png", "--prior", prior, "--steps", 2, "--seed", 0, "-o", "c.png")
    assert rio.load_image(work / "c.png").channels == 3
    ok("run", "img.png", "--op", "blur", "--op-param", "kernel=gaussian", "--op-param", "size=3",
       "--op-param", "std=1.0",
       "--prior", prior, "--steps", 2, "--method", "dps", "--param", "zeta=0.3", "-o", "r.png")
    assert json.loads((work / "r.json").read_text())["strategy"]["params"]["zeta"] == 0.3


def test_alpha_is_put_back(work, prior):
    alpha = torch.rand(1, 1, 16, 20, generator=torch.Generator().manual_seed(2))
    rio.write_image(work / "rgba.png", rio.read_image(work / "img.png"), alpha=alpha)
    ok("inpaint", "rgba.png", "--mask", "mask.png", "--prior", prior, "--steps", 2, "--seed", 0, "-o", "o.png")
    back = rio.load_image(work / "o.png")
    assert back.channels == 3 and torch.equal(back.alpha, rio.load_image(work / "rgba.png").alpha)


def test_run_from_a_degrade_sidecar_uses_its_operator(work, prior):
    ok("degrade", "img.png", "--op", "sr", "--scale", 2, "--noise", 0.01, "--seed", 3, "-o", "y.png")
    ok("run", "--from", "y.json", "--prior", prior, "--steps", 2, "--seed", 0, "-o", "x.png")
    sidecar = json.loads((work / "x.json").read_text())
    assert sidecar["operator"]["name"] == "sr" and sidecar["operator"]["params"]["scale"] == 2
    # the recorded noise plus the rounding of the 8-bit measurement file (q / sqrt(12), q = 1/255)
    q = 1 / (255 * 12**0.5)
    assert sidecar["quantization_sigma"] == pytest.approx(q)
    expected_sigma = pytest.approx((0.01**2 + q**2) ** 0.5)
    assert sidecar["operator"]["params"]["noise"] == {"kind": "gaussian", "sigma": expected_sigma}
    assert rio.read_image(work / "x.png").shape == (1, 3, 16, 20)
    # a measurement that is not an image of the image's size: the sidecar's input shape binds the operator
    ok("degrade", "img.png", "--op", "phase-retrieval", "--seed", 3, "-o", "p.npy")
    ok("run", "--from", "p.json", "--prior", prior, "--steps", 2, "--seed", 0, "-o", "q.png")
    assert rio.read_image(work / "q.png").shape == (1, 3, 16, 20)
    assert json.loads((work / "q.json").read_text())["strategy"]["name"] == "dps"


def test_json_output_and_previews(work, prior):
    result = ok("inpaint", "img.png", "--mask", "mask.png", "--prior", prior, "--steps", 4, "--seed", 0, "--json",
                "--preview", "prev", "--preview-every", 2, "-o", "j.png")
    report = json.loads(result.output)
    assert report["outputs"]["image"]["file"] == "j.png"
    assert sorted(p.name for p in (work / "prev").iterdir()) == ["step-0002.png", "step-0004.png"]


def test_grey_image_with_a_colour_prior_is_spread_and_averaged(work, prior):
    rio.write_image(work / "grey.png", torch.rand(1, 1, 16, 20, generator=torch.Generator().manual_seed(3)))
    ok("inpaint", "grey.png", "--mask", "mask.png", "--prior", prior, "--steps", 2, "--seed", 0, "-o", "g.png")
    assert rio.load_image(work / "g.png").channels == 1
    assert json.loads((work / "g.json").read_text())["channels_spread"] is True


def test_unknown_prior_channel_mismatch_divergence_and_memory(work, prior, tmp_path_factory, monkeypatch):
    result = invoke("inpaint", "img.png", "--mask", "mask.png", "--prior", "nosuch:1")
    assert result.exit_code == 2 and "known schemes:" in result.output
    grey_prior = tiny_prior(tmp_path_factory.mktemp("grey"), channels=1)
    result = invoke("inpaint", "img.png", "--mask", "mask.png", "--prior", grey_prior, "--steps", 2)
    assert result.exit_code == 2 and "wrong channel count" in result.output
    result = invoke("inpaint", "img.png", "--mask", "mask.png", "--prior", prior, "--steps", 3, "--method", "dps",
                    "--param", "zeta=1e38")
    assert result.exit_code == 2 and "diverged at step" in result.output and "Try" in result.output

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr("restore.pipeline.run", out_of_memory)
    result = invoke("inpaint", "img.png", "--mask", "mask.png", "--prior", prior)
    assert result.exit_code == 2 and "out of memory on cpu: a batch of 1 image(s) of 16x20" in result.output
    assert "about 11x14 pixels" in result.output
    assert not (work / "img_restored.png").exists()


def test_sample_needs_a_size_for_any_size_priors(work, prior):
    result = invoke("sample", "--prior", prior, "-n", 2, "--steps", 2)
    assert result.exit_code == 2 and "--size HxW" in result.output
    ok("sample", "--prior", prior, "--size", "8x12", "-n", 2, "--steps", 2, "-o", "s.npy")
    assert np.load(work / "s.npy").shape == (2, 3, 8, 12)


def unwritable_folder(tmp_path):
    """A folder the user cannot write in: mode 0500, or for root (whom modes do not stop) /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
        return folder
    try:
        tempfile.NamedTemporaryFile(dir="/sys").close()
    except OSError:
        return "/sys"
    pytest.skip("running as root on a machine where /sys is writable: no unwritable folder to test with")


def test_unwritable_output_folders_are_refused(work, prior):
    folder = unwritable_folder(work)
    for args in (["degrade", "img.png", "--op", "sr", "--scale", 2, "-o", f"{folder}/y.png"],
                 ["inpaint", "img.png", "--mask", "mask.png", "--prior", prior, "--steps", 2, "-o", f"{folder}/x.png"]):
        result = invoke(*args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert str(folder) in result.output and ("permission" in result.output.lower()), result.output


def test_a_method_outside_its_assumptions_is_one_warning_line(work, prior):
    result = ok("inpaint", "img.png", "--mask", "mask.png", "--prior", prior, "--steps", 2, "--method", "repaint",
                "--noise", 0.1, "-o", "w.png")
    assert "warning: strategy 'repaint' assumes a noiseless measurement" in result.output
    assert json.loads((work / "w.json").read_text())["warnings"][0].startswith("strategy 'repaint'")


def test_mask_white_known_reads_the_mask_the_other_way(work, prior):
    inverted = 1 - rio.read_image(work / "mask.png")
    rio.write_image(work / "known.png", inverted)
    common = ["--prior", prior, "--steps", 2, "--seed", 4]
    ok("inpaint", "img.png", "--mask", "mask.png", *common, "-o", "a.png")
    ok("inpaint", "img.png", "--mask", "known.png", "--mask-white-known", *common, "-o", "b.png")
    assert (work / "a.png").read_bytes() == (work / "b.png").read_bytes()


def test_every_restoration_command_takes_the_shared_options_and_its_own():
    """restoration_command gives each command the shared options (one declaration) after its own;
    a shared option reaches the body inside CommandOptions, not as a parameter of its own."""
    import typer.main

    from restore.cli.restore_commands import SHARED_OPTIONS

    group = typer.main.get_command(app)
    own = {"inpaint": {"image", "mask", "mask_white_known", "crop_to_mask", "noise"},
           "deblur": {"image", "kernel", "boundary", "noise"}, "sr": {"image", "scale", "kernel", "noise"},
           "denoise": {"image", "sigma", "noise"}, "colorize": {"image", "weights", "noise"},
           "run": {"image", "op", "op_param", "source", "noise"}}
    for name, expected in own.items():
        names = [p.name for p in group.commands[name].params]
        assert set(names[:len(expected)]) == expected, name
        assert names[len(expected):] == list(SHARED_OPTIONS), name


def test_a_shared_option_reaches_the_run(work, prior):
    """--quality is shared: a bad value is refused by every command the same way."""
    for argv in (["inpaint", "img.png", "--mask", "mask.png"], ["denoise", "img.png", "--sigma", "0.1"],
                 ["sr", "img.png", "--scale", "2"]):
        result = runner.invoke(app, [*argv, "--prior", prior, "--quality", "slow"])
        assert result.exit_code == 2 and "--quality must be fast or high, got 'slow'" in result.output, argv
