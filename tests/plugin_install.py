"""Installing the example plugin distributions of plugins/ into the test environment.

``installed`` does what installing a pure-Python distribution does, without pip or a
network: it puts the distribution's package on ``sys.path`` beside a ``.dist-info``
folder whose ``entry_points.txt`` is written from the distribution's own
``pyproject.toml``, so restore discovers it through ``importlib.metadata`` exactly as it
would an installed one.  :func:`build_wheel` builds the real wheel (pip, offline, no build
isolation) so a test can check that the two agree.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import restore.plugins as plugins

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def pyproject(distribution: str) -> dict:
    """``plugins/<distribution>/pyproject.toml``, parsed."""
    return tomllib.loads((PLUGINS / distribution / "pyproject.toml").read_text())


def entry_points_text(distribution: str) -> str:
    """``entry_points.txt`` for the distribution's entry points, as setuptools writes it."""
    groups = pyproject(distribution)["project"]["entry-points"]
    return "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n"
                   for group, points in groups.items())


def installed(distribution: str, site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Install ``plugins/<distribution>`` for the duration of a fixture (``yield from`` it):
    its dist-info in ``site``, ``site`` and its source folder on ``sys.path``, restore's
    cached default registry dropped; afterwards its modules are unloaded again."""
    config = pyproject(distribution)
    meta, packages = config["project"], config["tool"]["setuptools"]["packages"]
    dist = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    (dist / "entry_points.txt").write_text(entry_points_text(distribution))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(PLUGINS / distribution))
    monkeypatch.setattr(plugins, "_DEFAULT", {})
    yield
    for name in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[name]


def build_wheel(distribution: str, out: Path) -> Path:
    """Build the distribution's wheel into ``out`` (offline: no index, no build isolation,
    no dependencies) from a copy of its folder, so the source tree stays clean."""
    pytest.importorskip("setuptools", reason="building a wheel without build isolation needs setuptools")
    import shutil

    source = out / "source"
    shutil.copytree(PLUGINS / distribution, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out), str(source)], check=True, capture_output=True, text=True)
    (wheel,) = out.glob("*.whl")
    return wheel
