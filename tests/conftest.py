"""Shared fixtures: the read-only reference data beside the repository, when present, and
the registered operators.

Tests that run over operators take the argument ``operator_name``: it is parametrized
over every operator of the registry (built-in or installed plugin), so no test keeps its
own list, and :func:`small_operator` builds one for small test images from its declared
example (``tests/test_registry_operators.py`` checks that every built-in is registered).
Only the built-ins get small-image overrides; a third-party operator is built from its
declared example alone, whatever its parameters are called.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"

#: Overrides of the built-ins' declared examples for 16 x 16 test images (the examples are sized
#: for 64 x 64), by built-in name; applied only when the registered factory is the built-in one.
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


@functools.cache
def builtin_operators() -> dict:
    """The built-in operator factories by name, as the built-in plugin registers them."""
    from restore.operators.plugin import MODULES
    from restore.plugins import gather

    return gather("restore.operators", MODULES, "OPERATORS")


def small_image_params(name: str, shape) -> dict:
    """The built-in ``name``'s overrides of its example for inputs of ``shape``: the explicit-matrix
    operator gets a fixed random matrix of that size, the others :data:`SMALL_IMAGE_PARAMS`."""
    if name != "matrix":
        return SMALL_IMAGE_PARAMS.get(name, {})
    n = math.prod(shape)
    matrix = torch.randn(n // 4, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / n**0.5
    return {"matrix": matrix, "shape": list(shape)}


def small_operator(name: str, shape=(3, 16, 16), **overrides):
    """Operator ``name`` for inputs of ``shape``, from its declared example: a built-in adjusted by
    :func:`small_image_params`, any other (a third-party plugin's) from its example alone, and
    skipped, saying why, when that example binds it to another shape."""
    from restore.operators.base import example_params

    factory = _registry().get("operator", name)
    builtin = factory is builtin_operators().get(name)
    params = {**example_params(factory), **(small_image_params(name, shape) if builtin else {})}
    op = factory(**{**params, **overrides})
    if not builtin and op.shape is not None and tuple(op.shape) != tuple(shape):
        pytest.skip(f"third-party operator {name!r}: its declared example binds it to shape {list(op.shape)}, "
                    f"this test runs on {list(shape)}")
    return op


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
