"""The example plugin distributions in plugins/: each builds as a wheel whose entry points
are the ones the tests install it with, and restore-vignette (a linear operator) is found
through its entry point, keeps the operator contract, also once bound to a shape, and
works through the CLI."""
import json
import re
import zipfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import restore.plugins as plugins
from plugin_install import PLUGINS, build_wheel, entry_points_text, installed, pyproject
from restore.cli import app
from restore.operators.io import load_operator_from_sidecar
from restore.operators.contract import all_passed, check_factory, format_report

DISTRIBUTIONS = sorted(p.name for p in PLUGINS.iterdir() if (p / "pyproject.toml").is_file())


@pytest.fixture
def vignette(tmp_path, monkeypatch):
    yield from installed("restore-vignette", tmp_path / "site", monkeypatch)


def test_every_example_distribution_is_tested():
    assert DISTRIBUTIONS == ["restore-bayer", "restore-denoiser-prior", "restore-vignette"]


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_distribution_builds_a_wheel_with_its_entry_point(distribution, tmp_path):
    wheel = build_wheel(distribution, tmp_path)
    packages = pyproject(distribution)["tool"]["setuptools"]["packages"]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert archive.read(points).decode().strip() == entry_points_text(distribution).strip()
    for package in packages:
        assert f"{package}/__init__.py" in names
    readme = PLUGINS / distribution / "README.md"
    assert readme.is_file() and distribution in readme.read_text()


def test_entry_point_plugin_is_registered_under_its_name(vignette):
    registry = plugins.load_registry()
    assert registry.failures == {}
    assert registry.entries["operator"]["vignette"].plugin == "vignette"
    op = registry.get("operator", "vignette")(strength=0.3)
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    y = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    lhs, rhs = (op(x) * y).sum(), (x * op.adjoint(y)).sum()
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    assert torch.allclose(op.pinv(op(x)), x)


def test_entry_point_plugin_can_be_disabled(vignette):
    registry = plugins.load_registry(disable=["vignette"])
    assert "vignette" not in registry.names("operator") and "vignette" in registry.disabled


@pytest.mark.parametrize("params", [{"strength": 0.4}, {"strength": 0.4, "shape": [3, 10, 6]},
                                    {"strength": 0.2, "noise": {"kind": "poisson", "rate": 100.0}}])
def test_vignette_keeps_the_contract_bound_or_not(vignette, params):
    factory = plugins.load_registry().get("operator", "vignette")
    checks = check_factory(factory, params)
    assert all_passed(checks), format_report(checks)
    assert {c.check for c in checks if c.passed} >= {"json", "adjoint", "pinv", "gradient"}


def test_bound_vignette_rebuilds_from_its_params(vignette):
    factory = plugins.load_registry().get("operator", "vignette")
    op = factory(strength=0.25, noise={"kind": "gaussian", "sigma": 0.1}).bound_to((3, 5, 4))
    rebuilt = factory(**json.loads(json.dumps(op.params())))
    assert rebuilt.shape == (3, 5, 4) and rebuilt.params() == op.params()
    assert rebuilt.noise == op.noise
    with pytest.raises(ValueError, match="bound to shape"):
        rebuilt(torch.rand(1, 3, 4, 4))


def test_vignette_refuses_a_bad_strength(vignette):
    factory = plugins.load_registry().get("operator", "vignette")
    for bad in (1.0, -0.1, "0.5", True):
        with pytest.raises(ValueError, match="strength must be a number in"):
            factory(strength=bad)


def test_vignette_through_the_cli(vignette, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0
    summary = r"Radial fall-off y = w \* x .* at the corners \(coordinates on \[-1, 1\]\)\."
    assert re.search(rf"^  vignette +\[vignette\]  {summary}$", listed.output, re.M), listed.output
    checked = runner.invoke(app, ["check-operator", "vignette"])
    assert checked.exit_code == 0, checked.output
    assert "from plugin 'vignette'" in checked.output and "0 failed" in checked.output
    assert re.search(r"^PASS  build .*Vignette\(\{'strength': 0.5", checked.output, re.M)  # the declared example
    image = tmp_path / "x.npy"
    np.save(image, np.full((3, 8, 8), 0.5, dtype=np.float32))
    out = tmp_path / "y.npy"
    result = runner.invoke(app, ["degrade", str(image), "--op", "vignette", "--param", "strength=0.5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    y = np.load(out)
    corner, centre = y[..., 0, 0], y[..., 3, 3]
    assert np.allclose(corner, 0.5 * (1 - 0.5)) and np.all(centre > corner)
    rebuilt = load_operator_from_sidecar(out.with_suffix(".json"), plugins.load_registry())
    assert type(rebuilt).__name__ == "Vignette" and rebuilt.params()["strength"] == 0.5
    bad = runner.invoke(app, ["degrade", str(image), "--op", "vignette", "--param", "strength=2", "-o", str(out)])
    assert bad.exit_code == 2 and "strength must be a number in [0, 1)" in bad.output
