"""Measurement sidecars, ``restore degrade`` and ``restore check-operator``."""
import json
import types

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from restore.cli import app
from restore.hookspecs import hookimpl
from restore.operators import io as rio
from restore.operators.base import LinearOperator
from restore.plugins import load_registry

runner = CliRunner()


def clean_image(path, shape=(3, 32, 32), seed=0):
    """A smooth random 8-bit RGB PNG at ``path``; returns the tensor the file holds."""
    coarse = torch.rand(1, shape[0], 4, 4, generator=torch.Generator().manual_seed(seed))
    x = torch.nn.functional.interpolate(coarse, size=shape[1:], mode="bicubic", align_corners=False).clamp(0, 1)
    rio.write_image(path, x)
    return rio.read_image(path)


# ----------------------------------------------------------------------------- sidecars


def test_sidecar_round_trip_with_a_tensor(tmp_path):
    registry = load_registry()
    kernel = torch.rand(5, 5, generator=torch.Generator().manual_seed(3))
    op = registry.get("operator", "nonlinear-blur")(kernel, response="tanh", noise={"kind": "gaussian", "sigma": 0.01})
    x = clean_image(tmp_path / "x.png")
    y = op.measure(x, generator=torch.Generator().manual_seed(4))
    sidecar = rio.save_measurement(y, tmp_path / "y.npy", op, seed=4, input_path=tmp_path / "x.png")
    assert sidecar["tensors"] == {"kernel": "y.kernel.npy"} and sidecar["noise"] == {"kind": "gaussian", "sigma": 0.01}
    loaded = rio.load_measurement(tmp_path / "y.json", registry)
    assert torch.equal(loaded.y, y) and loaded.operator.params() == op.params()
    assert torch.equal(loaded.operator(x), op(x))
    assert loaded.sidecar["input_sha256"] == rio.sha256_file(tmp_path / "x.png")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "other"}, "format"),
        ({"version": 99}, "version"),
        ({"params": None}, "params"),
    ],
)
def test_bad_sidecars_are_errors(tmp_path, change, message):
    op = load_registry().get("operator", "saturation")()
    sidecar = rio.save_measurement(torch.zeros(1, 1, 4, 4), tmp_path / "y.png", op)
    (tmp_path / "y.json").write_text(json.dumps({**sidecar, **change}))
    with pytest.raises(ValueError, match=message):
        rio.load_operator_from_sidecar(tmp_path / "y.json", load_registry())


# ----------------------------------------------------------------------------- restore degrade


def remeasure(sidecar_file, x):
    """Rebuild the operator from the sidecar and draw the measurement again from its seed."""
    sidecar = json.loads(sidecar_file.read_text())
    op = rio.load_operator_from_sidecar(sidecar_file, load_registry())
    return op, op.measure(x, generator=torch.Generator().manual_seed(sidecar["seed"]))


def test_degrade_writes_a_png_and_a_sidecar_that_reproduce_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = clean_image(tmp_path / "clean.png")
    args = ["degrade", "clean.png", "--op", "sr", "--scale", "4", "--noise", "0.05", "--seed", "0", "-o", "y.png"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "y.json").read_text())
    assert sidecar["operator"] == "sr" and sidecar["params"]["scale"] == 4 and sidecar["seed"] == 0
    assert sidecar["noise"] == {"kind": "gaussian", "sigma": 0.05} and sidecar["input"] == "clean.png"
    _, y = remeasure(tmp_path / "y.json", x)
    with Image.open(tmp_path / "y.png") as image:
        stored = np.asarray(image)
    assert stored.shape == (8, 8, 3)
    assert np.array_equal(stored, np.round(y[0].permute(1, 2, 0).clamp(0, 1).double().numpy() * 255).astype(np.uint8))


def test_degrade_writes_non_images_as_npy_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = clean_image(tmp_path / "clean.png", shape=(1, 16, 16))
    result = runner.invoke(app, ["degrade", "clean.png", "--op", "phase-retrieval", "--poisson", "50", "--seed", "7"])
    assert result.exit_code == 0, result.output
    stored = np.load(tmp_path / "clean_phase-retrieval.npy")
    op, y = remeasure(tmp_path / "clean_phase-retrieval.json", x)
    assert op.noise.to_json() == {"kind": "poisson", "rate": 50.0}
    assert np.array_equal(stored, y.numpy())
    refused = runner.invoke(app, ["degrade", "clean.png", "--op", "phase-retrieval", "-o", "p.png"])
    assert refused.exit_code != 0 and ".npy" in refused.output and not (tmp_path / "p.png").exists()


def test_degrade_with_a_mask_file_and_a_generated_kernel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = clean_image(tmp_path / "clean.png")
    fill = torch.zeros(1, 1, 32, 32)
    fill[..., 8:20, 4:30] = 1  # white = region to fill
    rio.write_image(tmp_path / "mask.png", fill)
    result = runner.invoke(app, ["degrade", "clean.png", "--op", "inpaint", "--mask", "mask.png", "--seed", "1",
                                 "-o", "m.png"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["tensors"] == {"mask": "m.mask.npy"} and sidecar["inspect"] == {"mask": "m.used-mask.png"}
    assert torch.equal(rio.read_image(tmp_path / "m.used-mask.png"), fill.expand(1, 3, 32, 32))
    assert torch.equal(rio.read_image(tmp_path / "m.png")[:, :, 8:20, 4:30], torch.zeros(1, 3, 12, 26))
    assert torch.equal(rio.read_image(tmp_path / "m.png") * (1 - fill), x * (1 - fill))
    inverted = runner.invoke(app, ["degrade", "clean.png", "--op", "inpaint", "--mask", "mask.png",
                                   "--mask-white-known", "-o", "i.png"])
    assert inverted.exit_code == 0, inverted.output
    assert torch.equal(rio.read_image(tmp_path / "i.png"), x * fill)

    result = runner.invoke(app, ["degrade", "clean.png", "--op", "blur", "--param", "kernel=motion", "--param",
                                 "size=9", "--seed", "5", "-o", "b.png"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "b.json").read_text())
    assert sidecar["params"]["seed"] == 5 and sidecar["params"]["size"] == 9  # --seed also seeds the kernel
    op, y = remeasure(tmp_path / "b.json", x)
    assert torch.equal(rio.read_image(tmp_path / "b.png"), torch.round(y.clamp(0, 1).double() * 255).float() / 255)
    assert sidecar["inspect"] == {"kernel": "b.used-kernel.npy"}
    assert torch.equal(rio.read_array(tmp_path / "b.used-kernel.npy"), op.kernel)
    again = runner.invoke(app, ["degrade", "clean.png", "--op", "blur", "--kernel", "b.used-kernel.npy", "-o", "k.png"])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "k.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--op", "nope"], "registered operators:"),
        (["--op", "sr", "--param", "scael=4"], "scael"),
        (["--op", "sr", "--param", "scale"], "KEY=VALUE"),
        (["--op", "jpeg", "--param", "quality=500"], "quality"),
        (["--op", "jpeg", "--scale", "4"], "--scale"),
        (["--op", "sr", "--noise", "0.1", "--poisson", "10"], "--poisson"),
        (["--op", "sr", "--poisson", "-1"], "rate"),
        (["--op", "sr", "-o", "y.tif"], ".tif"),
    ],
)
def test_degrade_errors_are_clear(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    clean_image(tmp_path / "clean.png")
    result = runner.invoke(app, ["degrade", "clean.png", *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.png"]


def test_degrade_names_a_missing_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["degrade", "nothere.png", "--op", "sr"])
    assert result.exit_code == 2 and "nothere.png" in result.output


# ----------------------------------------------------------------------------- restore check-operator


@pytest.mark.parametrize(
    "args",
    [
        ["phase-retrieval"],
        ["jpeg", "--param", "quality=20"],
        ["saturation", "--param", "softness=0.1"],
        ["nonlinear-blur", "--param", "size=5", "--param", "response=tanh"],
        ["sr", "--param", "scale=2"],
        ["inpaint", "--param", "mask=random"],
    ],
)
def test_check_operator_passes_the_builtins(args):
    result = runner.invoke(app, ["check-operator", *args, "--shape", "3,16,16"])
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output and "FAIL" not in result.output
    assert f"operator {args[0]!r} from plugin 'builtin-operators'" in result.output


def test_check_operator_states_why_a_check_is_exempt():
    result = runner.invoke(app, ["check-operator", "jpeg", "--shape", "3,16,16"])
    assert result.exit_code == 0, result.output
    assert "SKIP  gradient" in result.output and "exempt: rounding is discontinuous" in result.output


class Doubling(LinearOperator):
    """y = 2 x, with a correct or a deliberately wrong adjoint."""

    name = "doubling"
    example: dict = {}  # takes no parameters; checked as built without any
    wrong = False

    def forward(self, x):
        self.check_input(x)
        return 2 * x

    def adjoint(self, y):
        return y if self.wrong else 2 * y

    def pinv(self, y):
        return y / 2


class WrongDoubling(Doubling):
    name = "wrong-doubling"
    wrong = True


@pytest.fixture
def third_party(monkeypatch):
    """A plugin ``my-ops`` registering both operators, seen by the CLI's default registry."""
    import restore.plugins as plugins

    plugin = types.SimpleNamespace(
        restore_operators=hookimpl(lambda: {"doubling": Doubling, "wrong-doubling": WrongDoubling})
    )
    monkeypatch.setattr(plugins, "default_registry", lambda: load_registry(extra_plugins=[("my-ops", plugin)]))


def test_check_operator_fails_a_wrong_third_party_operator(third_party):
    good = runner.invoke(app, ["check-operator", "doubling", "--shape", "1,8,8"])
    assert good.exit_code == 0, good.output
    assert "from plugin 'my-ops'" in good.output and "PASS  adjoint" in good.output
    bad = runner.invoke(app, ["check-operator", "wrong-doubling", "--shape", "1,8,8"])
    assert bad.exit_code == 1, bad.output
    assert "FAIL  adjoint" in bad.output and "FAIL  gradient" in bad.output and "PASS  forward" in bad.output


def test_check_operator_errors_are_clear(third_party):
    unknown = runner.invoke(app, ["check-operator", "tripling"])
    assert unknown.exit_code == 2 and "doubling" in unknown.output and "phase-retrieval" in unknown.output
    bad_param = runner.invoke(app, ["check-operator", "jpeg", "--param", "qualty=5"])
    assert bad_param.exit_code == 2 and "qualty" in bad_param.output
    bad_shape = runner.invoke(app, ["check-operator", "jpeg", "--shape", "3,16"])
    assert bad_shape.exit_code == 2 and "C,H,W" in bad_shape.output
