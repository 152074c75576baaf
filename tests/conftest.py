"""Shared fixtures: the read-only reference data beside the repository, when present."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"


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
