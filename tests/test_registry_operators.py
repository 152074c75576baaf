"""Every registered operator keeps the contract at its declared example configuration
(``restore check-operator NAME`` with no ``--param``), and no built-in goes missing."""
from __future__ import annotations

import importlib

import pytest
from typer.testing import CliRunner

from restore.cli import app
from restore.operators.base import example_params
from restore.operators.contract import all_passed, check_factory, format_report
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
