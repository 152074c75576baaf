"""The example plugin distribution in plugins/ is found through its entry point, as an
installed distribution would be (a dist-info folder on sys.path, no pip needed)."""
import sys
from pathlib import Path

import pytest
import torch

import restore.plugins as plugins

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "restore-vignette"


@pytest.fixture
def installed_vignette(tmp_path, monkeypatch):
    dist = tmp_path / "restore_vignette-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: restore-vignette\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[restore]\nvignette = restore_vignette\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    yield
    sys.modules.pop("restore_vignette", None)


def test_entry_point_plugin_is_registered_under_its_name(installed_vignette):
    registry = plugins.load_registry()
    assert registry.entries["operator"]["vignette"].plugin == "vignette"
    op = registry.get("operator", "vignette")(strength=0.3)
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    y = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    lhs, rhs = (op(x) * y).sum(), (x * op.adjoint(y)).sum()
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    assert torch.allclose(op.pinv(op(x)), x)


def test_entry_point_plugin_can_be_disabled(installed_vignette):
    registry = plugins.load_registry(disable=["vignette"])
    assert "vignette" not in registry.names("operator")
