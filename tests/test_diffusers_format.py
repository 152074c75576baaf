"""diffusers folders as priors: tiny models built with diffusers' own classes, saved locally,
loaded through ``diffusers:DIR``; the denoiser agrees with diffusers' DDPM step, latent priors
encode / decode with the right scaling and pass gradients to the latent."""
import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers is an optional extra: pip install diffusers")
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DModel, VQModel  # noqa: E402

from restore.priors.diffusers_format import read_scheduler  # noqa: E402
from restore.priors.latent import LatentPrior  # noqa: E402
from restore.priors.spec import load_prior  # noqa: E402

BLOCKS = dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)


def unet(in_channels=3, out_channels=3, attention=False, **extra):
    torch.manual_seed(0)
    kinds = ("AttnDownBlock2D", "DownBlock2D") if attention else ("DownBlock2D", "DownBlock2D")
    ups = ("UpBlock2D", "AttnUpBlock2D") if attention else ("UpBlock2D", "UpBlock2D")
    model = UNet2DModel(sample_size=8, in_channels=in_channels, out_channels=out_channels, down_block_types=kinds,
                        up_block_types=ups, add_attention=attention, attention_head_dim=4, **BLOCKS, **extra)
    with torch.no_grad():  # diffusers zero-initialises nothing we rely on, but make every weight matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def autoencoder(cls, **extra):
    torch.manual_seed(1)
    coder = dict(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    return cls(in_channels=3, out_channels=3, sample_size=16, **coder, **BLOCKS, **extra).eval()


def hand_x0(model, scheduler, x_vp, t, **kwargs):
    """diffusers' own x0 estimate: DDPMScheduler.step's pred_original_sample."""
    out = model(x_vp, t, **kwargs).sample
    return scheduler.step(out, t, x_vp).pred_original_sample, out


def ve_input(scheduler, x_vp, t):
    """The VE-scale input x = x_vp / sqrt(abar_t) and sigma_t."""
    abar = scheduler.alphas_cumprod[t].double()
    return x_vp / abar.sqrt(), ((1 - abar) / abar).sqrt().reshape(1)


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_scheduler_betas_match_diffusers(beta_schedule):
    scheduler = DDPMScheduler(beta_schedule=beta_schedule, beta_start=0.00085, beta_end=0.012)
    view = read_scheduler(dict(scheduler.config, _class_name="DDPMScheduler"), "test")
    assert torch.allclose(view.schedule.alphas_cumprod, scheduler.alphas_cumprod.double(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="beta_schedule 'sigmoid' is not supported"):
        read_scheduler(dict(scheduler.config, _class_name="DDPMScheduler", beta_schedule="sigmoid"), "test")
    with pytest.raises(ValueError, match="scheduler 'ScoreSdeVeScheduler' is not supported"):
        read_scheduler({"_class_name": "ScoreSdeVeScheduler"}, "test")


@pytest.mark.parametrize("prediction_type,variance_type", [("epsilon", "fixed_small"), ("v_prediction", "fixed_small"),
                                                           ("epsilon", "learned_range")])
def test_pixel_prior_matches_the_diffusers_step(tmp_path, prediction_type, variance_type):
    learned = variance_type == "learned_range"
    model = unet(out_channels=6 if learned else 3)
    scheduler = DDPMScheduler(beta_schedule="linear", prediction_type=prediction_type, variance_type=variance_type)
    model.save_pretrained(tmp_path)
    scheduler.save_config(tmp_path)
    prior = load_prior(f"diffusers:{tmp_path}", channels=3)
    assert prior.shape is None and prior.info["size_policy"] == "pad" and not prior.latent
    t = 600
    x_vp = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected, out = hand_x0(model, scheduler, x_vp, t)
        x, sigma = ve_input(scheduler, x_vp, t)
        pred = prior.denoiser.predict(x.float(), sigma.expand(2))
    assert torch.allclose(pred.x0, expected, atol=1e-5)
    if learned:
        assert torch.allclose(pred.var_frac, (out[:, 3:] + 1) / 2, atol=1e-5)
    with torch.no_grad():  # odd sizes are reflect-padded to the UNet's multiple (2)
        assert prior.denoiser(torch.randn(1, 3, 9, 7), torch.tensor([1.0])).shape == (1, 3, 9, 7)


def test_attention_unet_is_fixed_size_and_class_labels_pass_through(tmp_path):
    model = unet(attention=True, num_class_embeds=10)
    scheduler = DDPMScheduler(clip_sample=False)
    model.save_pretrained(tmp_path)
    scheduler.save_config(tmp_path)
    prior = load_prior(f"diffusers:{tmp_path}?class=4")
    assert prior.shape == (3, 8, 8) and prior.info["size_policy"] == "tile"
    t, x_vp = 100, torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected, _ = hand_x0(model, scheduler, x_vp, t, class_labels=torch.tensor([4]))
        x, sigma = ve_input(scheduler, x_vp, t)
        assert torch.allclose(prior.denoiser(x.float(), sigma), expected, atol=1e-5)
        assert prior.denoiser(torch.randn(1, 3, 16, 5), sigma).shape == (1, 3, 16, 5)


def pipeline_folder(path, ae, ae_name, latent_channels, scheduler):
    unet(in_channels=latent_channels, out_channels=latent_channels).save_pretrained(path / "unet")
    ae.save_pretrained(path / ae_name)
    scheduler.save_pretrained(path / "scheduler")
    return path


def test_vq_latent_prior(tmp_path):
    vq = autoencoder(VQModel, latent_channels=3, num_vq_embeddings=16)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195, clip_sample=False)
    pipeline_folder(tmp_path, vq, "vqvae", 3, scheduler)
    prior = load_prior(f"diffusers:{tmp_path}")
    assert isinstance(prior, LatentPrior) and prior.latent and prior.factor == 2
    assert prior.info["scaling_factor"] == 1.0 and prior.info["channels"] == 3 and prior.data_range == (-1.0, 1.0)
    pixels = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z = prior.encode(pixels)
        assert torch.allclose(z, vq.encode(pixels).latents)
        assert torch.allclose(prior.decode(z), vq.decode(z).sample, atol=1e-6)
    latent_unet = UNet2DModel.from_pretrained(tmp_path / "unet")
    t = 300
    with torch.no_grad():
        expected, _ = hand_x0(latent_unet, DDPMScheduler.from_config(scheduler.config), z, t)
        x, sigma = ve_input(scheduler, z, t)
        assert torch.allclose(prior.denoiser(x, sigma), expected, atol=1e-5)
    z = z.clone().requires_grad_(True)
    prior.decode(z).square().sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # straight through the quantizer
    with pytest.raises(ValueError, match="divisible by 2"):
        prior.encode(torch.rand(1, 3, 15, 16))
    scaled = load_prior(f"diffusers:{tmp_path}?scaling_factor=0.5")
    with torch.no_grad():
        assert torch.allclose(scaled.encode(pixels), 0.5 * vq.encode(pixels).latents)


def test_kl_latent_prior_uses_the_config_scaling(tmp_path):
    kl = autoencoder(AutoencoderKL, latent_channels=4, scaling_factor=0.4)
    pipeline_folder(tmp_path, kl, "vae", 4, DDPMScheduler(clip_sample=False))
    prior = load_prior(f"diffusers:{tmp_path}")
    assert prior.info["autoencoder"] == "AutoencoderKL" and prior.info["scaling_factor"] == 0.4
    pixels = torch.rand(2, 3, 8, 12) * 2 - 1
    with torch.no_grad():
        z = prior.encode(pixels)
        assert torch.allclose(z, 0.4 * kl.encode(pixels).latent_dist.mode())
        assert torch.allclose(prior.decode(z), kl.decode(z / 0.4).sample, atol=1e-6)
    z = z.clone().requires_grad_(True)
    target = torch.randn(2, 3, 8, 12)
    loss = (prior.decode(z) - target).square().sum()
    (grad,) = torch.autograd.grad(loss, z)
    z_ref = z.detach().clone().requires_grad_(True)
    (ref,) = torch.autograd.grad((kl.decode(z_ref / 0.4).sample - target).square().sum(), z_ref)
    assert torch.allclose(grad, ref, atol=1e-6) and grad.abs().sum() > 0


def test_diffusers_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="diffusers folder not found: .*absent"):
        load_prior(f"diffusers:{tmp_path / 'absent'}")
    unet().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="scheduler config .* not found: .*scheduler_config.json"):
        load_prior(f"diffusers:{tmp_path}")
    DDPMScheduler().save_config(tmp_path)
    with pytest.raises(ValueError, match="class= given but the model is not class-conditional"):
        load_prior(f"diffusers:{tmp_path}?class=1")
    with pytest.raises(ValueError, match="unknown option\\(s\\) steps"):
        load_prior(f"diffusers:{tmp_path}?steps=3")
    with pytest.raises(ValueError, match="models 3-channel images, the input has 1"):
        load_prior(f"diffusers:{tmp_path}", channels=1)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ValueError, match="_class_name 'UNet2DConditionModel', expected UNet2DModel"):
        load_prior(f"diffusers:{tmp_path}")

    latent = tmp_path / "latent"
    pipeline_folder(latent, autoencoder(VQModel, latent_channels=3), "vqvae", 4, DDPMScheduler())
    with pytest.raises(ValueError, match="wrong channel count .* UNet maps 4 -> 4 channels; expected 3 -> 3"):
        load_prior(f"diffusers:{latent}")


def test_restore_sample_runs_a_float32_diffusers_prior(tmp_path):
    # `restore sample` draws in float64; the float32 UNet computes in its own dtype and hands the
    # result back in float64 (it crashed with "Input type (double) and bias type (float)").
    from typer.testing import CliRunner

    from restore.cli import app

    model = unet(attention=True)
    model.save_pretrained(tmp_path)
    DDPMScheduler().save_config(tmp_path)
    prior = load_prior(f"diffusers:{tmp_path}")
    with torch.no_grad():
        x0 = prior.denoiser(torch.randn(1, 3, 8, 8, dtype=torch.float64), torch.tensor([2.0]))
    assert x0.dtype == torch.float64
    result = CliRunner().invoke(app, ["sample", "--prior", f"diffusers:{tmp_path}", "--steps", "2", "-n", "2"])
    assert result.exit_code == 0, result.output
