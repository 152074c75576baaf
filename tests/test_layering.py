"""The layers import downwards only (docs/ARCHITECTURE.md): operators and priors know nothing of
the strategies, the model views of restore/diffusion/ nothing above them, and nothing outside
training imports restore.training (``restore batch`` takes its process-group setup from
restore/distributed.py).  Every import counts, those inside functions included."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Source folders and the package each installs as.
PACKAGES = {"restore": "restore", "operators": "restore.operators", "priors": "restore.priors"}


def module_name(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    return ".".join([PACKAGES[folder], *rest]).removesuffix(".__init__")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(m for m in imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


@pytest.mark.parametrize("folders, forbidden", [
    (("priors", "operators"), ("restore.strategies",)),
    (("restore/diffusion",), ("restore.strategies", "restore.priors", "restore.training", "restore.cli")),
])
def test_lower_layers_do_not_import_higher_ones(folders, forbidden):
    assert sources(*folders)
    assert offending(sources(*folders), forbidden) == {}


def test_only_training_imports_restore_training():
    outside = [p for p in sources("restore", "priors", "operators")
               if "training" not in p.relative_to(ROOT).parts and p.name != "train_commands.py"]
    assert ROOT / "restore" / "batch.py" in outside
    assert offending(outside, ("restore.training",)) == {}


def test_the_checker_sees_imports_inside_functions(tmp_path, monkeypatch):
    monkeypatch.setitem(PACKAGES, "pkg", "restore.priors")
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "loader.py"
    module.write_text("def load():\n    from restore.strategies.guidance import load_classifier\n"
                      "    from .base import Prior\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert imports(module) >= {"restore.strategies.guidance", "restore.priors.base", "restore.priors.base.Prior"}
    assert offending([module], ("restore.strategies",)) == {"pkg/loader.py": ["restore.strategies.guidance",
                                                                            "restore.strategies.guidance.load_classifier"]}
