"""README's test command is what .ci/run runs, and it lints with ruff before the tests, with the
rules pyproject.toml states (README: "`.ci/run` runs exactly the second command")."""
from __future__ import annotations

import re
from pathlib import Path

from plugin_install import tomllib

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The shell commands of README's indented blocks that set up the virtual environment."""
    return [line.strip() for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("    ") and "python3 -m venv .venv" in line]


def test_ci_runs_exactly_readmes_second_command():
    script = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
              if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert script == [readme_commands()[1]]


def test_the_test_command_lints_with_ruff_before_the_tests():
    steps = [step.strip() for step in readme_commands()[1].split("&&")]
    assert ".venv/bin/ruff check ." in steps
    assert steps.index(".venv/bin/ruff check .") < steps.index(".venv/bin/python -m pytest -q")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(re.match(r"ruff\b", requirement) for requirement in config["project"]["optional-dependencies"]["test"])
    ruff = config["tool"]["ruff"]
    assert ruff["line-length"] == 120 and {"E", "F", "W"} <= set(ruff["lint"]["select"])
