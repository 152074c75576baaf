"""Every registered operator keeps the contract at its declared example configuration
(``restore check-operator NAME`` with no ``--param``), and no built-in goes missing."""
from __future__ import annotations

import importlib

import pytest
import torch
from typer.testing import CliRunner

import restore.plugins as plugins
from conftest import small_operator
from restore.cli import app
from restore.hookspecs import hookimpl
from restore.operators.base import Operator, example_params
from restore.operators.contract import all_passed, check_factory, format_report
from restore.operators.noise import GaussianNoise
from restore.operators.plugin import MODULES
from restore.plugins import default_registry

#: The operators restore ships; losing one must fail a test, not skip one.
BUILTIN = {"blur", "colorize", "cs", "denoise", "inpaint", "jpeg", "matrix", "nonlinear-blur", "phase-retrieval",
           "saturation", "sr"}


def test_every_builtin_operator_is_registered():
    registry = default_registry()
    declared = {name for module in MODULES
                for name in importlib.import_module(f"restore.operators.{module}").OPERATORS}
    assert declared == BUILTIN
    assert BUILTIN <= set(registry.names("operator")), registry.failures


def test_every_registered_operator_passes_its_example(operator_name):
    factory = default_registry().get("operator", operator_name)
    example_params(factory)  # declared (a factory without one fails here)
    checks = check_factory(factory)
    assert checks[0].check == "build" and all_passed(checks), format_report(checks)


def test_check_operator_without_params_uses_the_example():
    result = CliRunner().invoke(app, ["check-operator", "inpaint"])
    assert result.exit_code == 0, result.output
    assert "params its declared example" in result.output and "0 failed" in result.output


def test_a_factory_without_an_example_is_a_failed_build():
    def bare(**params):
        raise AssertionError("not called")

    (check,) = check_factory(bare)
    assert check.check == "build" and check.passed is False and "declares no example" in check.message


@pytest.mark.parametrize("boundary", ["reflect", "valid"])
def test_iterative_pinv_reports_the_accuracy_it_reached(boundary):
    # CGLS that cannot reach tol within max_iter says so; the check states the accuracy reached.
    factory = default_registry().get("operator", "blur")
    checks = {c.check: c for c in check_factory(factory, {"kernel": "gaussian", "size": 9, "std": 2.0,
                                                          "boundary": boundary, "max_iter": 20})}
    pinv = checks["pinv"]
    assert pinv.passed and 1e-6 < pinv.figure < 1 and "not reached" in pinv.message and "max_iter=20" in pinv.message
    converged = {c.check: c for c in check_factory(factory, {"kernel": "gaussian", "size": 3, "std": 0.5,
                                                             "boundary": boundary, "tol": 1e-10})}["pinv"]
    assert converged.passed and converged.figure <= 1e-10 and "not reached" not in converged.message


class Mixer(Operator):
    """A third-party operator with a parameter named ``matrix`` of its own: y = M x on the
    flattened image, M given as nested lists."""

    name = "mixer"
    example = {"matrix": [[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, -1.0]], "shape": [1, 2, 2]}

    def __init__(self, matrix, noise=None, shape=None):
        super().__init__(noise, shape)
        self.matrix = torch.tensor(matrix, dtype=torch.float64)

    def forward(self, x):
        self.check_input(x)
        return x.flatten(1) @ self.matrix.to(x.dtype).T

    def params(self):
        return {"matrix": self.matrix.tolist(), **super().params()}


class ThirdParty:
    @hookimpl
    def restore_operators(self):
        return {"mixer": Mixer}


def test_registry_wide_tests_build_a_third_party_operator_from_its_example(monkeypatch):
    registry = plugins.load_registry(extra_plugins=[("third-party", ThirdParty())])
    monkeypatch.setattr(plugins, "default_registry", lambda: registry)
    op = small_operator("mixer", (1, 2, 2), noise=GaussianNoise(0.1))
    assert op.params() == {**Mixer.example, "noise": {"kind": "gaussian", "sigma": 0.1}}  # its matrix, not a swap
    assert all_passed(check_factory(registry.get("operator", "mixer")))
    with pytest.raises(pytest.skip.Exception, match=r"'mixer': its declared example binds it to shape \[1, 2, 2\]"):
        small_operator("mixer", (3, 16, 16))
    # the built-ins keep their small-image overrides
    assert small_operator("sr").params()["scale"] == 2
    assert small_operator("matrix", (1, 4, 4)).matrix.shape == (4, 16)
