"""docs/PLUGINS.md's minimal complete plugin is real: its module, run as written, registers
an operator that passes every contract check, and its pyproject declares the entry point."""
import re
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import restore.plugins as plugins
from plugin_install import tomllib
from restore.cli import app
from restore.operators.contract import all_passed, check_factory, format_report

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "PLUGINS.md"


def code_blocks(language):
    return re.findall(rf"^```{language}\n(.*?)^```$", GUIDE.read_text(), re.M | re.S)


@pytest.fixture
def colourcast():
    (source,) = [b for b in code_blocks("python") if b.startswith('"""restore_colourcast')]
    module = types.ModuleType("restore_colourcast")
    exec(compile(source, str(GUIDE), "exec"), module.__dict__)
    return module


def test_the_guide_example_declares_its_entry_point():
    (config,) = [tomllib.loads(b) for b in code_blocks("toml")]
    assert config["project"]["entry-points"]["restore"] == {"colourcast": "restore_colourcast"}
    assert config["tool"]["setuptools"]["packages"] == ["restore_colourcast"]


@pytest.mark.parametrize("params", [None, {"gains": [2.0, 1.0, 0.5], "shape": [3, 9, 7]},
                                    {"gains": [0.5], "noise": {"kind": "gaussian", "sigma": 0.1}}])
def test_the_guide_example_passes_the_contract(colourcast, params):
    registry = plugins.load_registry(extra_plugins=[("colourcast", colourcast)])
    assert registry.failures == {}
    factory = registry.get("operator", "colour-cast")
    shape = [1, 6, 5] if params and len(params["gains"]) == 1 else None
    checks = check_factory(factory, params, shape=shape)
    assert all_passed(checks), format_report(checks)
    assert {"json", "adjoint", "pinv", "svd-reconstruct"} <= {c.check for c in checks if c.passed}


def test_the_guide_example_refuses_bad_gains_and_channel_counts(colourcast):
    with pytest.raises(ValueError, match="gains must be positive numbers"):
        colourcast.ColourCast(gains=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="3 gains for 1-channel images"):
        colourcast.ColourCast()(torch.rand(1, 1, 4, 4))


def test_the_guide_example_is_listed_as_the_guide_says(colourcast, monkeypatch):
    registry = plugins.load_registry(extra_plugins=[("colourcast", colourcast)])
    monkeypatch.setattr(plugins, "default_registry", lambda: registry)
    result = CliRunner().invoke(app, ["list"])
    assert re.search(r"^  colour-cast +\[colourcast\]  Colour cast: channel c of the image is scaled by gains\[c\] > 0 "
                     r"\(a wrong white balance\)\.$", result.output, re.M), result.output


def test_plugin_code_calls_only_public_helpers_of_the_base_classes():
    # The guide's helpers exist on the base classes, and neither the guide's code nor the example
    # distributions call an underscore method of restore's operator base classes.
    from restore.operators.base import LinearOperator, Operator, SVDOperator

    text = GUIDE.read_text()
    helpers = re.search(r"^\*\*Helpers\*\*(.*?)\n\n", text, re.M | re.S).group(1)
    named = set(re.findall(r"`(?:SVDOperator\.)?(\w+)\(", helpers))
    assert named == {"check_input", "check_shape", "memo", "bound_shape", "x_numel", "scale_spectral"}
    assert all(callable(getattr(SVDOperator, name)) for name in named)
    private = {name for cls in (Operator, LinearOperator, SVDOperator) for name in vars(cls)
               if re.fullmatch(r"_[a-z]\w*", name)}
    sources = [*code_blocks("python"), *(p.read_text() for p in GUIDE.parents[1].glob("plugins/*/*/*.py"))]
    called = {name for source in sources for name in re.findall(r"self\.(_\w+)\(", source)}
    assert not called & private, called & private
