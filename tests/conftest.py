"""Shared fixtures: the read-only reference data beside the repository, when present, and
the registered operators.

Tests that run over operators take the argument ``operator_name``: it is parametrized
over every operator of the registry (built-in or installed plugin), so no test keeps its
own list, and :func:`small_operator` builds one for small test images from its declared
example (``tests/test_registry_operators.py`` checks that every built-in is registered).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"

#: Overrides of the declared examples for 16 x 16 test images (the examples are sized for 64 x 64).
SMALL_IMAGE_PARAMS = {
    "blur": {"kernel": "gaussian", "size": 5, "std": 1.0},
    "nonlinear-blur": {"kernel": "gaussian", "size": 5, "std": 1.0},
    "cs": {"ratio": 0.25, "block": 8},
    "sr": {"scale": 2},
}


def _registry():
    from restore.plugins import default_registry

    return default_registry()


def pytest_generate_tests(metafunc):
    if "operator_name" in metafunc.fixturenames:
        metafunc.parametrize("operator_name", _registry().names("operator"))


def small_operator(name: str, shape=(3, 16, 16), **overrides):
    """Operator ``name`` from its declared example (adjusted by :data:`SMALL_IMAGE_PARAMS`),
    for inputs of ``shape``: explicit-matrix operators get a fixed random matrix of that size."""
    from restore.operators.base import example_params

    factory = _registry().get("operator", name)
    params = {**example_params(factory), **SMALL_IMAGE_PARAMS.get(name, {})}
    if "matrix" in params:
        n = 1
        for s in shape:
            n *= s
        matrix = torch.randn(n // 4, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / n**0.5
        params = {**params, "matrix": matrix, "shape": list(shape)}
    return factory(**{**params, **overrides})


@pytest.fixture(autouse=True, scope="session")
def _threads():
    # The tests use small tensors, where intra-op threads cost more than they bring
    # (measured up to 30x slower with 2 threads on a busy 2-core machine).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"reference data not found at {SHARED} (the project's shared/ folder is not beside this checkout)")
    return SHARED


@pytest.fixture(scope="session")
def diffusion_reference(shared_dir):
    path = shared_dir / "reference" / "adm" / "diffusion_reference.pt"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return torch.load(path, weights_only=True)
