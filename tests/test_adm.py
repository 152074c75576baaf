"""ADM / guided-diffusion networks against the offline references in shared/reference/adm."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from restore.priors.adm import (
    ADMCheckpointError,
    ADMClassifier,
    ADMUNet,
    PRESETS,
    infer_config,
    load_adm,
    load_adm_classifier,
)

MANIFESTS = {
    "ffhq256_dps_unet.json": "ffhq256-dps",
    "imagenet256_uncond_unet.json": "imagenet256-uncond",
    "imagenet256_cond_unet.json": "imagenet256-cond",
    "imagenet256_classifier.json": "imagenet256-classifier",
}
# bf16 torso vs fp32 on the tiny UNet: measured max |diff| 5.3e-4, relative L2 2.8e-3
# (output max |value| 0.165); the bounds below leave about 4x headroom.
BF16_MAX_ABS, BF16_REL_L2 = 2e-3, 1e-2


@pytest.fixture(scope="module")
def ref_dir(shared_dir: Path) -> Path:
    """shared/reference/adm; ``shared_dir`` (conftest) skips when ../shared is absent."""
    path = shared_dir / "reference" / "adm"
    if not path.is_dir():
        pytest.skip(f"ADM reference files not found at {path}")
    return path


def _manifest(ref_dir: Path, name: str) -> dict:
    return json.loads((ref_dir / name).read_text())


def _meta_state(manifest: dict) -> dict:
    return {key: torch.empty(shape, device="meta") for key, shape in manifest["state_dict"]}


@pytest.fixture(scope="module")
def tiny_unet(ref_dir: Path) -> dict:
    return torch.load(ref_dir / "tiny_unet_reference.pt", weights_only=True)


@pytest.fixture(scope="module")
def tiny_unet_path(tmp_path_factory, tiny_unet) -> Path:
    path = tmp_path_factory.mktemp("adm") / "tiny.pt"
    torch.save(tiny_unet["state_dict"], path)
    return path


# -- (1) presets reproduce the released checkpoints' keys, shapes and parameter counts


@pytest.mark.parametrize("manifest_name", MANIFESTS)
def test_preset_matches_manifest(ref_dir, manifest_name):
    manifest = _manifest(ref_dir, manifest_name)
    preset = PRESETS[MANIFESTS[manifest_name]]
    assert preset == manifest["config"]
    cls = ADMClassifier if "classifier" in manifest_name else ADMUNet
    with torch.device("meta"):
        model = cls.from_config(preset)
    got = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    assert got == manifest["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_parameters"]


def test_repaint_presets_share_imagenet_architecture():
    assert PRESETS["celebahq256-repaint"] == PRESETS["places256-repaint"] == PRESETS["imagenet256-uncond"]


# -- (2) numerics against the original implementation


def test_tiny_unet_matches_reference(tiny_unet):
    model = ADMUNet.from_config(tiny_unet["config"]).eval()
    model.load_state_dict(tiny_unet["state_dict"], strict=True)
    with torch.no_grad():
        out = model(tiny_unet["x"], tiny_unet["t"])
        fractional = model(tiny_unet["x"], tiny_unet["t"].float())
    assert out.shape == (2, 6, 32, 32)
    torch.testing.assert_close(out, tiny_unet["output"], atol=1e-5, rtol=0)
    torch.testing.assert_close(fractional, out, atol=0, rtol=0)


def test_tiny_classifier_matches_reference(ref_dir):
    ref = torch.load(ref_dir / "tiny_classifier_reference.pt", weights_only=True)
    model = ADMClassifier(**ref["config"]).eval()
    model.load_state_dict(ref["state_dict"], strict=True)
    with torch.no_grad():
        out = model(ref["x"], ref["t"])
    torch.testing.assert_close(out, ref["output"], atol=1e-5, rtol=0)


def test_loaded_model_contract(tiny_unet, tiny_unet_path):
    model = load_adm(tiny_unet_path, tiny_unet["config"])
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.config["learn_sigma"] and model.config["image_size"] == 32
    with torch.no_grad():
        out = model(tiny_unet["x"], tiny_unet["t"].double() + 0.5)
    assert out.shape == (2, 6, 32, 32) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="expected input of shape"):
        model(tiny_unet["x"][:, :1], tiny_unet["t"])


def test_activation_checkpointing_keeps_input_gradient(tiny_unet):
    grads = []
    for use_checkpoint in (False, True):
        model = ADMUNet.from_config(dict(tiny_unet["config"], use_checkpoint=use_checkpoint)).eval()
        model.load_state_dict(tiny_unet["state_dict"])
        model.requires_grad_(False)
        x = tiny_unet["x"][:, :, :16, :16].clone().requires_grad_(True)
        model(x, tiny_unet["t"]).square().sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0])


# -- (3) config inference


@pytest.mark.parametrize("manifest_name", MANIFESTS)
def test_infer_config_recovers_manifest(ref_dir, manifest_name):
    manifest = _manifest(ref_dir, manifest_name)
    assert infer_config(_meta_state(manifest)) == manifest["config"]


_HEADS = dict(num_heads=4, num_head_channels=64)


@pytest.mark.parametrize("config", [
    dict(image_size=64, num_channels=192, num_res_blocks=3, attention_resolutions="32,16,8",
         learn_sigma=True, class_cond=True, resblock_updown=True, use_scale_shift_norm=True, **_HEADS),
    dict(image_size=512, num_channels=256, num_res_blocks=2, attention_resolutions="32,16,8",
         learn_sigma=True, resblock_updown=True, use_scale_shift_norm=True, **_HEADS),
    dict(image_size=256, num_channels=64, num_res_blocks=2, attention_resolutions="16,8", **_HEADS),
    dict(image_size=128, classifier_width=64, classifier_pool="adaptive", classifier_resblock_updown=False),
], ids=["64-cond", "512-half-mult", "256-plain", "classifier-128-adaptive"])
def test_infer_config_round_trip(config):
    cls = ADMClassifier if "classifier_pool" in config else ADMUNet
    with torch.device("meta"):
        model = cls.from_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no preset matches these: heads are assumed
        assert infer_config(model.state_dict()) == model.config


def test_infer_config_tiny_unet_without_preset(tiny_unet):
    with pytest.warns(UserWarning, match="num_head_channels=64"):
        config = infer_config(tiny_unet["state_dict"], image_size=32)
    undetermined = ("num_heads", "num_head_channels")
    assert {k: v for k, v in config.items() if k not in undetermined} == {
        k: v for k, v in tiny_unet["config"].items() if k not in undetermined
    }


# -- (4) loader errors and dtype handling


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_adm(path, "ffhq256-dps")


def test_unknown_preset(tiny_unet_path):
    with pytest.raises(ValueError, match="unknown ADM preset 'ffhq512'.*ffhq256-dps.*imagenet256-uncond"):
        load_adm(tiny_unet_path, "ffhq512")


def _save_shapes(state: dict, path: Path) -> Path:
    """Save a state dict of the given shapes cheaply (zero-stride tensors): keys and shapes matter."""
    torch.save({key: torch.zeros(()).expand(value.shape) for key, value in state.items()}, path)
    return path


def test_key_mismatch_names_keys_and_closest_preset(tmp_path, ref_dir):
    state = _meta_state(_manifest(ref_dir, "ffhq256_dps_unet.json"))
    state["middle_block.1.qkv_renamed.weight"] = state.pop("middle_block.1.qkv.weight")
    with pytest.raises(ADMCheckpointError) as info:
        load_adm(_save_shapes(state, tmp_path / "renamed.pt"), "ffhq256-dps")
    message = str(info.value)
    assert "missing keys (1): middle_block.1.qkv.weight" in message
    assert "unexpected keys (1): middle_block.1.qkv_renamed.weight" in message
    assert "Closest preset by key overlap: 'ffhq256-dps'" in message

    imagenet = _meta_state(_manifest(ref_dir, "imagenet256_uncond_unet.json"))
    with pytest.raises(ADMCheckpointError, match="(?s)missing keys.*unexpected keys.*shape mismatches.*"
                       "Closest preset by key overlap: 'imagenet256-uncond'"):
        load_adm(_save_shapes(imagenet, tmp_path / "imagenet.pt"), "ffhq256-dps")


def test_wrong_channel_count(tmp_path, tiny_unet):
    state = dict(tiny_unet["state_dict"])
    state["out.2.weight"], state["out.2.bias"] = state["out.2.weight"][:3], state["out.2.bias"][:3]
    path = tmp_path / "three.pt"
    torch.save(state, path)
    with pytest.raises(ADMCheckpointError, match="wrong channel count.*3 outputs.*learn_sigma"):
        load_adm(path, tiny_unet["config"])


def test_load_without_preset_infers_config(tmp_path, ref_dir):
    for name, loader in (("ffhq256_dps_unet.json", load_adm), ("imagenet256_classifier.json", load_adm_classifier)):
        manifest = _manifest(ref_dir, name)
        model = loader(_save_shapes(_meta_state(manifest), tmp_path / "ckpt.pt"))
        assert model.config == manifest["config"]


class _Payload:
    """A class instance: unpickling it would need code from this module."""


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"time_embed.0.weight": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(ADMCheckpointError, match="holds pickled code"):
        load_adm(path, "ffhq256-dps")


def test_classifier_preset_is_refused_by_unet_loader(tiny_unet_path):
    with pytest.raises(ADMCheckpointError, match="load_adm_classifier"):
        load_adm(tiny_unet_path, "imagenet256-classifier")
    with pytest.raises(ADMCheckpointError, match="load it with load_adm"):
        load_adm_classifier(tiny_unet_path, "ffhq256-dps")


def test_fp16_checkpoint_loads_and_casts(tmp_path, tiny_unet):
    half = {k: v.half() for k, v in tiny_unet["state_dict"].items()}
    path = tmp_path / "half.pt"
    torch.save(half, path)
    model = load_adm(path, tiny_unet["config"])
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    expected = ADMUNet.from_config(tiny_unet["config"]).eval()
    expected.load_state_dict({k: v.float() for k, v in half.items()})
    with torch.no_grad():
        torch.testing.assert_close(model(tiny_unet["x"], tiny_unet["t"]), expected(tiny_unet["x"], tiny_unet["t"]))
    bf16 = load_adm(path, tiny_unet["config"], dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16 and bf16.out[-1].weight.dtype == torch.float32


def test_safetensors_checkpoint(tmp_path, tiny_unet):
    from safetensors.torch import save_file

    path = tmp_path / "tiny.safetensors"
    save_file(tiny_unet["state_dict"], str(path))
    model = load_adm(path, tiny_unet["config"])
    with torch.no_grad():
        torch.testing.assert_close(model(tiny_unet["x"], tiny_unet["t"]), tiny_unet["output"], atol=1e-5, rtol=0)


# -- (5) reduced precision


def test_bf16_forward_close_to_fp32(tiny_unet_path, tiny_unet):
    model = load_adm(tiny_unet_path, tiny_unet["config"], dtype=torch.bfloat16)
    with torch.no_grad():
        out = model(tiny_unet["x"], tiny_unet["t"])
    ref = tiny_unet["output"]
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < BF16_MAX_ABS
    assert (out - ref).norm() / ref.norm() < BF16_REL_L2
