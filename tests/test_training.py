"""``restore train prior``: the EDM loss, the schedule, the EMA, resumption and torchrun."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from restore.cli import app
from restore.priors.spec import load_prior
from restore.priors.unet import CompactUNet, UNetConfig
from restore.training.data import CropSampler, dihedral_source
from restore.training.ema import EMA
from restore.training.loop import LRSchedule, step_generator

TINY = ["--base-channels", "8", "--channel-mult", "1,2", "--crop", "16", "--batch-size", "2", "--val-crop", "24",
        "--val-count", "1", "--warmup-images", "4", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three smooth colour images (gradients plus a disc), 40x48 pixels."""
    root = tmp_path_factory.mktemp("train")
    yy, xx = np.mgrid[0:40, 0:48]
    for i in range(3):
        disc = ((yy - 20) ** 2 + (xx - 10 - 10 * i) ** 2 < 100).astype(float)
        rgb = np.stack([xx / 47, yy / 39, disc], -1) * (0.5 + 0.2 * i)
        Image.fromarray((rgb * 255).round().astype(np.uint8)).save(root / f"im{i}.png")
    return root


def _train(folder: Path, out: Path, *extra: str):
    result = CliRunner().invoke(app, ["train", "prior", "--data", str(folder), "-o", str(out), "--val", str(folder),
                                      *TINY, *extra])
    assert result.exit_code == 0, result.output
    return result


def test_schedule_warms_up_then_anneals():
    s = LRSchedule(1e-3, total=1000, warmup=100, anneal_fraction=0.2, anneal_factor=0.1)
    assert s(50) == pytest.approx(5e-4)
    assert s(100) == s(799) == 1e-3
    assert s(800) == pytest.approx(1e-4)


def test_ema_is_bias_corrected():
    net = torch.nn.Linear(3, 2)
    ema = EMA(net, 0.999)
    ema.update(net)
    # after one update the corrected average is the raw weights (an uncorrected one would be 0.001 x them)
    assert all(torch.allclose(v, net.state_dict()[k]) for k, v in ema.state_for(net).items())
    w0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.fill_(2.0)
    for _ in range(4):
        ema.update(net)
    b = 0.999
    expected = ((1 - b) * b**4 * w0 + sum((1 - b) * b**k for k in range(4)) * 2.0) / (1 - b**5)
    assert torch.allclose(ema.state_for(net)["weight"], expected, atol=1e-6)
    assert ema.horizon == pytest.approx(1000)


def test_crops_are_augmented_and_seeded(folder):
    sampler = CropSampler.from_folder(folder, 16, 3)
    a = sampler.sample(8, torch.Generator().manual_seed(1))
    b = sampler.sample(8, torch.Generator().manual_seed(1))
    assert a.shape == (8, 3, 16, 16) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    with pytest.raises(ValueError, match="smaller than the crop size"):
        CropSampler.from_folder(folder, 41, 3)


@pytest.mark.parametrize("element", range(8))
def test_dihedral_source_reads_what_flip_and_rot90_give(element):
    crop = torch.rand(5, 5)
    turns, flip = element // 2, element % 2 == 1
    expected = torch.rot90(crop.flip(-1) if flip else crop, turns, dims=(-2, -1))
    u, v = dihedral_source(5, torch.tensor([turns]), torch.tensor([flip]))
    assert torch.equal(crop[u[0], v[0]], expected)


def test_a_batch_is_one_gather_of_windows_of_the_images():
    """Each crop of a batch, decoded from images whose pixels hold (row, column, image index),
    is a dihedral transform of a whole window of one image; windows reach every edge, every
    group element occurs, and images are drawn in proportion to their area."""
    shapes = [(20, 30), (30, 20), (12, 12)]
    images = []
    for k, (h, w) in enumerate(shapes):
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        images.append(torch.stack([rows, cols, torch.full((h, w), k)]).to(torch.uint8))
    size = 8
    crops = CropSampler(images, size).sample(3000, torch.Generator().manual_seed(0))
    assert crops.shape == (3000, 3, size, size) and crops.dtype == torch.float32
    decoded = (crops * 255).round().long()
    seen_elements, seen_tops, counts = set(), {k: set() for k in range(3)}, [0, 0, 0]
    for crop in decoded:
        k = int(crop[2, 0, 0])
        assert (crop[2] == k).all()
        top, left = int(crop[0].min()), int(crop[1].min())
        window = images[k][:, top:top + size, left:left + size].long()
        matches = [e for e in range(8)
                   if torch.equal(torch.rot90(window.flip(-1) if e % 2 else window, e // 2, dims=(-2, -1)), crop)]
        assert len(matches) == 1, "a crop must be a flip and quarter turns of one window"
        seen_elements.add(matches[0])
        seen_tops[k].add(top)
        counts[k] += 1
    assert seen_elements == set(range(8))
    assert all(seen_tops[k] == set(range(shapes[k][0] - size + 1)) for k in range(3))
    areas = torch.tensor([h * w for h, w in shapes], dtype=torch.float64)
    expected = 3000 * areas / areas.sum()
    assert all(abs(counts[k] - expected[k]) < 4 * expected[k].sqrt() for k in range(3))


def test_a_folder_too_large_for_the_device_stays_on_the_host_and_says_so(folder, monkeypatch):
    """Where the pixels do not fit (data.fits_on), they stay on the host with a warning and the
    crops are those the device would have drawn (the copy to a GPU: the CUDA test below)."""
    from restore.training import data

    fitted = CropSampler.from_folder(folder, 16, 3).sample(8, torch.Generator().manual_seed(4))
    monkeypatch.setattr(data, "fits_on", lambda device, nbytes: False)
    sampler = CropSampler.from_folder(folder, 16, 3)
    with pytest.warns(UserWarning, match="stay in host memory and each batch is gathered there"):
        kept = sampler.sample(8, torch.Generator().manual_seed(4))
    assert torch.equal(kept, fitted)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: host-gathered crops copied to it")
def test_host_gathered_crops_equal_the_devices(folder, monkeypatch):
    from restore.training import data

    fitted = CropSampler.from_folder(folder, 16, 3).sample(8, torch.Generator("cuda").manual_seed(4))
    monkeypatch.setattr(data, "fits_on", lambda device, nbytes: False)
    with pytest.warns(UserWarning, match="stay in host memory"):
        kept = CropSampler.from_folder(folder, 16, 3).sample(8, torch.Generator("cuda").manual_seed(4))
    assert kept.device.type == "cuda" and torch.equal(kept, fitted)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: batches and validation on the device")
def test_a_step_and_its_validation_run_on_the_gpu(folder):
    from restore.training.prior import EDMLoss, PriorTask

    task = PriorTask(UNetConfig(channels=3, base_channels=8, channel_mult=(1, 2)),
                     CropSampler.from_folder(folder, 16, 3), "tiny", validation=[torch.rand(1, 3, 24, 24)])
    network = task.network.cuda()
    generator = step_generator(0, 0, 0, "cuda")
    batch = task.batch(4, generator)
    assert batch.device.type == "cuda"
    assert torch.isfinite(EDMLoss()(network, batch, generator))
    assert all(torch.isfinite(torch.tensor(v)) for v in task.validate(network.eval()).values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: SR3 batches and validation on the device")
def test_an_sr3_step_and_its_validation_run_on_the_gpu(folder):
    from restore.training.sr3 import SR3Task

    config = UNetConfig(channels=3, in_channels=6, base_channels=8, channel_mult=(1, 2))
    task = SR3Task(config, CropSampler.from_folder(folder, 16, 3), "tiny", 4, [torch.rand(1, 3, 24, 24)], "v", 2)
    network = task.network.cuda()
    generator = step_generator(0, 0, 0, "cuda")
    assert torch.isfinite(task.loss(network, task.batch(4, generator), generator))
    assert all(torch.isfinite(torch.tensor(v)) for v in task.validate(network.eval()).values())


def test_train_writes_a_loadable_prior_with_card(folder, tmp_path):
    out = tmp_path / "prior"
    _train(folder, out, "--images", "8", "--validate-every", "4")
    prior = load_prior(f"unet:{out}")
    x = torch.rand(1, 3, 20, 28) * 2 - 1
    assert prior.denoiser(x, torch.tensor([0.5])).shape == x.shape
    record = json.loads((out / "training.json").read_text())
    assert record["images"] == 8 and record["steps"] == 4
    assert [v["images"] for v in record["validation"]] == [4, 8]
    assert all(np.isfinite(v["psnr25"]) for v in record["validation"])
    card = (out / "MODEL_CARD.md").read_text()
    assert "non-commercial" in card and "| images seen | 8 of 8 planned (4 steps) |" in card


def test_resume_continues_step_for_step(folder, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _train(folder, straight, "--images", "12")
    _train(folder, resumed, "--images", "12", "--max-steps", "2")
    assert json.loads((resumed / "training.json").read_text())["steps"] == 2
    _train(folder, resumed, "--images", "12")
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_loss_that_turns_non_finite_stops_training_and_keeps_the_last_checkpoint(folder, tmp_path):
    """Losses stay on the device between progress lines; the first read after a NaN loss (at
    the latest before a validation or checkpoint) raises, and the checkpoint on disk is the
    last good one, not weights the NaN spoiled.  Here: the resumed run's first line reads step 3;
    NaN from step 5; no line is due again (an hour apart), so the read before the final
    validation raises for steps 4 to 19."""
    from restore.distributed import World
    from restore.training.loop import CHECKPOINT, RunOptions, train
    from restore.training.prior import PriorTask

    def task(poison_from: int) -> PriorTask:
        made = PriorTask(UNetConfig(channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4),
                         CropSampler.from_folder(folder, 16, 3), "tiny", validation=[torch.rand(1, 3, 24, 24)])
        plain, calls = made.loss, []

        def loss(network, batch, generator):
            calls.append(1)
            value = plain(network, batch, generator)
            return value * float("nan") if len(calls) > poison_from else value

        made.loss = loss
        return made

    world = World(0, 1, torch.device("cpu"))
    options = dict(out=tmp_path, images=40, batch_size=2, log_seconds=3600, quiet=True)
    train(task(poison_from=100), RunOptions(**options, max_steps=3), world)
    kept = (tmp_path / CHECKPOINT).read_bytes()
    with pytest.raises(FloatingPointError, match=r"training loss is nan in steps 4 to 19; lower --lr"):
        train(task(poison_from=2), RunOptions(**options), world)
    assert (tmp_path / CHECKPOINT).read_bytes() == kept


def test_resume_refuses_another_architecture(folder, tmp_path):
    _train(folder, tmp_path / "p", "--images", "4")
    result = CliRunner().invoke(app, ["train", "prior", "--data", str(folder), "-o", str(tmp_path / "p"),
                                      *TINY, "--images", "4", "--num-res-blocks", "2"])
    assert result.exit_code == 2 and "different run" in result.output
    assert "num_res_blocks: 1 there, 2 here" in " ".join(result.output.split())  # names what differs, only that
    assert "base_channels" not in result.output


def test_init_starts_from_the_given_weights_and_the_card_says_so(folder, tmp_path):
    _train(folder, tmp_path / "a", "--images", "4")
    a = load_file(tmp_path / "a" / "model.safetensors")
    # lr 1e-12: Adam moves each weight by about lr, so the result is the start to float precision
    _train(folder, tmp_path / "b", "--images", "2", "--lr", "1e-12", "--init", f"unet:{tmp_path / 'a'}")
    _train(folder, tmp_path / "c", "--images", "2", "--lr", "1e-12", "--seed", "1")
    b, c = load_file(tmp_path / "b" / "model.safetensors"), load_file(tmp_path / "c" / "model.safetensors")
    assert all(torch.allclose(b[k], a[k], atol=1e-8) for k in a)
    assert not all(torch.allclose(c[k], a[k], atol=1e-3) for k in a)  # seeded weights are another start
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    digest = hashlib.sha256((tmp_path / "a" / "model.safetensors").read_bytes()).hexdigest()
    assert f"| initial weights | `unet:{tmp_path / 'a'}` (model.safetensors sha256 {digest[:16]}..." in card
    assert "initial weights" not in (tmp_path / "c" / "MODEL_CARD.md").read_text()
    record = json.loads((tmp_path / "b" / "training.json").read_text())
    assert record["identity"]["init"] == {"source": f"unet:{tmp_path / 'a'}", "sha256": digest}
    _train(folder, tmp_path / "d", "--images", "4")
    result = CliRunner().invoke(app, ["train", "prior", "--data", str(folder), "-o", str(tmp_path / "b"), *TINY,
                                      "--images", "4", "--init", f"unet:{tmp_path / 'd'}"])
    assert result.exit_code == 2 and "different run" in result.output and "d' here" in result.output


def test_init_from_the_embedded_default_is_its_weights():
    from restore.priors.plugin import embedded_dir
    from restore.training.prior import initial_weights

    start = initial_weights("default", UNetConfig())
    shipped = load_file(embedded_dir("default") / "model.safetensors")
    assert start.state.keys() == shipped.keys() and all(torch.equal(start.state[k], shipped[k]) for k in shipped)


def test_init_with_more_residual_blocks_deepens_the_trained_prior_into_the_same_function(folder, tmp_path):
    """``--init`` of a network with fewer ``--num-res-blocks``: the run starts from a deeper network
    that computes the trained one's function exactly (restore.priors.unet.deepen), with trainable
    added blocks, and says so in the model card; fewer blocks than the trained network's is refused."""
    from restore.priors.native import load_native
    from restore.priors.unet import deepen
    from restore.training.prior import initial_weights

    a = tmp_path / "a"
    _train(folder, a, "--images", "4")
    trained, config = load_native(a)
    start = initial_weights(f"unet:{a}", replace(config.architecture, num_res_blocks=3))
    assert start.architecture == config.architecture
    x, noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([0.5, -1.0])
    for blocks in (2, 3):
        deeper = CompactUNet(replace(config.architecture, num_res_blocks=blocks))
        deepen(deeper, trained)
        assert len(deeper.down[0]) == blocks and len(deeper.up[0]) == blocks + 1
        with torch.no_grad():
            assert torch.equal(deeper(x, noise), trained(x, noise)), blocks
        loss = deeper(x, noise).square().sum() + (deeper(x, noise) - x).square().sum()
        loss.backward()
        assert deeper.up[0][1].conv2.weight.grad.abs().sum() > 0 and deeper.down[0][1].conv2.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="is not"):
        deepen(CompactUNet(config.architecture), CompactUNet(replace(config.architecture, num_res_blocks=2)))
    _train(folder, tmp_path / "b", "--images", "2", "--init", f"unet:{a}", "--num-res-blocks", "2")
    assert "deepens it from 1 to 2 residual blocks a level" in (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert load_native(tmp_path / "b")[1].architecture.num_res_blocks == 2


@pytest.mark.parametrize("init, extra, message", [
    ("unet:{a}", ["--base-channels", "16"], "--channels 3 --base-channels 8 --channel-mult 1,2 --num-res-blocks 1"),
    ("default-sr3x4", [], "a conditional network"),
    ("gaussian:3x8x8", [], "training starts only from the compact UNet"),
    ("unet:{a}", ["-o", "{a}"], "is the --init folder"),
])
def test_init_refuses_what_it_cannot_start_from(folder, tmp_path, init, extra, message):
    a = tmp_path / "a"
    _train(folder, a, "--images", "2")
    before = (a / "model.safetensors").read_bytes()
    out = ["-o", str(tmp_path / "out")] if "-o" not in extra else []
    result = CliRunner().invoke(app, ["train", "prior", "--data", str(folder), *out, *TINY, "--images", "2",
                                      "--init", init.format(a=a), *[e.format(a=a) for e in extra]])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert (a / "model.safetensors").read_bytes() == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_run(folder, tmp_path):
    out = tmp_path / "ddp"
    script = Path(sys.executable).with_name("restore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), str(script), "train", "prior", "--data", str(folder), "-o", str(out),
           "--val", str(folder), *TINY, "--images", "8", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "training.json").read_text())
    # two ranks of batch 2: four images per step
    assert record["hardware"]["processes"] == 2 and record["steps"] == 2 and record["images"] == 8
    network = CompactUNet(UNetConfig(base_channels=8, channel_mult=(1, 2)))
    network.load_state_dict(load_file(out / "model.safetensors"))


def test_train_sr3_writes_a_conditional_network(folder, tmp_path):
    from restore.strategies.base import Problem
    from restore.diffusion.conditional import ConditionalNetwork
    from restore.strategies.conditional import Conditional
    from restore.strategies.engine import solve
    from restore.training.sr3 import sr_operator

    out = tmp_path / "sr3"
    result = CliRunner().invoke(app, ["train", "sr3", "--scale", "2", "--data", str(folder), "-o", str(out),
                                      "--val", str(folder), "--val-steps", "3", *TINY, "--images", "4"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["condition"] == "upsample" and config["architecture"]["in_channels"] == 6
    # new runs model the residual over bicubic (SRDiff), predicting it
    assert config["residual"] is True and config["parametrization"] == "x0"
    assert "residual x - U(y) out (SRDiff" in (out / "MODEL_CARD.md").read_text()
    validation = json.loads((out / "training.json").read_text())["validation"][-1]
    assert set(validation) >= {"sr2_psnr", "bicubic_psnr"} and np.isfinite(validation["sr2_psnr"])
    prior = load_prior(f"unet:{out}")
    assert isinstance(prior.denoiser, ConditionalNetwork)
    assert prior.denoiser.residual and prior.denoiser.parametrization == "x0" and prior.info["residual"]
    assert prior.denoiser.clip == (-1.0, 1.0)  # x0 clipped to the data range, as ADM samples
    x = torch.rand(1, 3, 12, 20)
    y = sr_operator(2).measure(x)
    image = solve(Problem(prior, sr_operator(2), y), Conditional(eta=0.0), steps=3, shape=(3, 12, 20),
                  generator=torch.Generator().manual_seed(0)).image
    assert image.shape == x.shape and torch.isfinite(image).all()


def test_no_residual_writes_and_loads_the_earlier_format(folder, tmp_path):
    """--no-residual writes the keys every conditional network had before the residual option
    (and the operator it was trained for), and such a network, without that record as earlier
    ones were written, loads and denoises as before: x0 = clip(x - sigma eps)."""
    from restore.priors.native import load_native

    out = tmp_path / "sr3"
    result = CliRunner().invoke(app, ["train", "sr3", "--scale", "2", "--data", str(folder), "-o", str(out),
                                      "--no-residual", *TINY, "--images", "4"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert set(config) == {"format", "format_version", "architecture", "channels", "data_range", "parametrization",
                           "schedule", "learned_sigma", "condition", "measurement_operator"}
    assert config["parametrization"] == "epsilon"
    assert config.pop("measurement_operator") == {"name": "sr", "scale": 2, "method": "bicubic"}
    (out / "config.json").write_text(json.dumps(config))  # as networks were written before the record
    prior = load_prior(f"unet:{out}")
    assert not prior.denoiser.residual and prior.denoiser.parametrization == "epsilon"
    network, _ = load_native(out)
    assert network.out[-1].weight.abs().max() > 0  # trained two steps: no longer the zero output
    g = torch.Generator().manual_seed(0)
    cond, x = torch.randn(2, 3, 16, 16, generator=g), 3 * torch.randn(2, 3, 16, 16, generator=g)
    sigma = prior.denoiser.schedule.sigmas[[10, 400]]
    s = sigma.reshape(-1, 1, 1, 1).float()
    t = prior.denoiser.schedule.sigma_to_t(sigma).float()
    with torch.no_grad():
        expected = (x - s * network(torch.cat([x / (1 + s**2).sqrt(), cond], 1), t)).clamp(-1, 1)
        torch.testing.assert_close(prior.denoiser.bind(cond)(x, sigma), expected, atol=1e-5, rtol=1e-5)


def test_native_config_refuses_inconsistent_conditioning():
    from restore.priors.native import NativeConfig

    vp = {"type": "vp", "beta_schedule": "linear", "num_timesteps": 1000}
    with pytest.raises(ValueError, match="2 x 3 input channels"):
        NativeConfig(UNetConfig(), "epsilon", vp, condition="upsample")
    with pytest.raises(ValueError, match="set 'condition'"):
        NativeConfig(UNetConfig(in_channels=6), "epsilon", vp)
    with pytest.raises(ValueError, match="epsilon or x0 on a VP schedule"):
        NativeConfig(UNetConfig(in_channels=6), condition="upsample")
    with pytest.raises(ValueError, match="needs a conditional network"):
        NativeConfig(UNetConfig(), residual=True)
    with pytest.raises(ValueError, match="'residual' must be true or false"):
        NativeConfig(UNetConfig(in_channels=6), "x0", vp, condition="upsample", residual="bicubic")
    with pytest.raises(ValueError, match="'measurement_sigma' must be a number >= 0"):
        NativeConfig(UNetConfig(in_channels=6), "x0", vp, condition="upsample", measurement_sigma=-0.1)
    with pytest.raises(ValueError, match="'measurement_sigma' is the noise of a conditional network"):
        NativeConfig(UNetConfig(), measurement_sigma=0.025)
    with pytest.raises(ValueError, match="'measurement_operator' must be an object with the operator's registry"):
        NativeConfig(UNetConfig(in_channels=6), "x0", vp, condition="upsample", measurement_operator="sr")
    with pytest.raises(ValueError, match="'measurement_operator' is the operator a conditional network"):
        NativeConfig(UNetConfig(), measurement_operator={"name": "sr"})
    recorded = NativeConfig(UNetConfig(in_channels=6), "x0", vp, condition="upsample",
                            measurement_operator={"name": "sr", "scale": 4})
    assert NativeConfig.from_json(recorded.to_json()) == recorded


def test_train_sr3_with_noise_records_its_level_and_trains_on_noisy_measurements(folder, tmp_path):
    """--noise-sigma: the training measurements carry that noise (the loss differs from the
    noiseless one on the same draws), config.json and the card record it, a resumed run with
    another level is refused, and the loaded network refuses other noise levels."""
    from restore.priors.native import NativeConfig
    from restore.strategies.base import Problem, StrategyNotApplicable
    from restore.strategies.conditional import Conditional, conditional_loss
    from restore.strategies.engine import solve
    from restore.training.sr3 import SR3Task, sr_operator

    out = tmp_path / "sr3"
    command = ["train", "sr3", "--scale", "2", "--data", str(folder), "-o", str(out), *TINY]
    result = CliRunner().invoke(app, [*command, "--noise-sigma", "0.025", "--images", "4"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["measurement_sigma"] == 0.025
    assert NativeConfig.from_json(config).measurement_sigma == 0.025
    assert "Gaussian noise, sigma 0.025 on [0, 1]" in (out / "MODEL_CARD.md").read_text()
    resumed = CliRunner().invoke(app, [*command, "--noise-sigma", "0.05", "--images", "8"])
    assert resumed.exit_code != 0 and "noise_sigma" in resumed.output
    prior = load_prior(f"unet:{out}")
    assert prior.denoiser.measurement_sigma == 0.025 and prior.info["measurement_sigma"] == 0.025
    x = torch.rand(1, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    for sigma, served in ((0.025, True), (0.0, False), (0.05, False)):
        op = sr_operator(2, sigma)
        problem = Problem(prior, op, op.measure(x, generator=torch.Generator().manual_seed(1)))
        if served:
            assert solve(problem, Conditional(), steps=2, shape=(3, 12, 20)).image.shape == x.shape
        else:
            with pytest.raises(StrategyNotApplicable, match=f"sigma {sigma:g}, the network was trained on sigma 0.025"):
                solve(problem, Conditional(), steps=2, shape=(3, 12, 20))
    # the loss sees noisy measurements: the same draws give another loss without the noise
    data = CropSampler.from_folder(folder, 8, 3)
    tasks = [SR3Task(UNetConfig(channels=3, in_channels=6, base_channels=8, channel_mult=(1,), groups=8), data,
                     "toy", 2, noise_sigma=sigma) for sigma in (0.0, 0.1)]
    batch = tasks[0].batch(4, torch.Generator().manual_seed(0))
    losses = [float(conditional_loss(prior, task.operator, batch, generator=torch.Generator().manual_seed(2)))
              for task in tasks]
    assert losses[0] != losses[1]
    assert tasks[1].identity()["noise_sigma"] == 0.1 and "noise_sigma" not in tasks[0].identity()
    with pytest.raises(ValueError, match="noise sigma must be >= 0"):
        SR3Task(tasks[0].architecture, data, "toy", 2, noise_sigma=-1.0)


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory) -> Path:
    """A toy two-class folder: reddish vs bluish textured images."""
    root = tmp_path_factory.mktemp("classes")
    rng = np.random.default_rng(0)
    for name, channel in (("red", 0), ("blue", 2)):
        (root / name).mkdir()
        for i in range(4):
            rgb = rng.uniform(0.0, 0.4, (24, 24, 3))
            rgb[..., channel] += 0.5
            Image.fromarray((rgb * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_labelled_crops_come_from_their_class_and_are_seeded(two_classes):
    """Every crop is of its label's subfolder (red: channel 0 brightest, blue: channel 2) and a
    seed gives the same batch."""
    from restore.training.data import LabelledCropSampler

    sampler = LabelledCropSampler.from_folder(two_classes, 16, 3)
    crops, labels = sampler.sample(64, torch.Generator().manual_seed(3))
    again = sampler.sample(64, torch.Generator().manual_seed(3))
    assert sampler.classes == ["blue", "red"] and crops.shape == (64, 3, 16, 16) and labels.shape == (64,)
    assert torch.equal(crops, again[0]) and torch.equal(labels, again[1]) and 0 < labels.sum() < 64
    brightest = crops.mean(dim=(2, 3)).argmax(dim=1)
    assert torch.equal(brightest, torch.where(labels == 1, 0, 2))


def test_train_classifier_learns_a_toy_task_and_guides(two_classes, tmp_path):
    from restore.priors.classifier import load_classifier

    out = tmp_path / "clf"
    result = CliRunner().invoke(app, ["train", "classifier", "--data", str(two_classes), "-o", str(out),
                                      "--val", str(two_classes), "--val-crop", "16", "--crop", "16",
                                      "--base-channels", "32", "--channel-mult", "1,2", "--batch-size", "8",
                                      "--images", "320", "--lr", "2e-3", "--warmup-images", "0",
                                      "--ema-beta", "0.9", "--quiet", "--threads", "1"])
    assert result.exit_code == 0, result.output
    last = json.loads((out / "training.json").read_text())["validation"][-1]
    assert last["accuracy_t0"] == 100.0  # clean stripes: every held-out image right
    guide = load_classifier(out)
    assert guide.classes == ["blue", "red"]
    red = torch.zeros(2, 3, 16, 16)
    red[:, 0] = 0.8
    logp = guide.log_prob(red * 2 - 1, torch.tensor(0.01), torch.tensor([0, 1]))  # in [-1, 1]
    assert logp[1] > logp[0]


def test_train_classifier_needs_two_classes(tmp_path, folder):
    result = CliRunner().invoke(app, ["train", "classifier", "--data", str(folder), "-o", str(tmp_path / "c")])
    assert result.exit_code == 2 and "at least two classes" in result.output


def test_sr3_benchmark_runs_on_a_trained_network(folder, tmp_path):
    out = tmp_path / "sr3"
    result = CliRunner().invoke(app, ["train", "sr3", "--scale", "2", "--data", str(folder), "-o", str(out),
                                      *TINY, "--images", "2"])
    assert result.exit_code == 0, result.output
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sr3.py"
    done = subprocess.run([sys.executable, str(script), str(out), "--data", str(folder), "--images", "1",
                           "--crop", "24", "--steps", "2", "--scale", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SR3 (DDPM 2)" in done.stdout and "bicubic" in done.stdout


def test_ctrl_c_checkpoints_and_the_rerun_continues_step_for_step(folder, tmp_path):
    import signal

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    _train(folder, straight, "--images", "200")
    script = Path(sys.executable).with_name("restore")
    cmd = [str(script), "train", "prior", "--data", str(folder), "-o", str(stopped), "--val", str(folder),
           *[a for a in TINY if a != "--quiet"], "--images", "200", "--checkpoint-minutes", "60"]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = []
    for line in run.stdout:  # Ctrl-C after the first step's progress line
        lines.append(line)
        if line.startswith("step 1 "):
            run.send_signal(signal.SIGINT)
            break
    output = "".join(lines) + run.stdout.read()
    assert run.wait(timeout=120) == 128 + signal.SIGINT, output
    assert "stopped by SIGINT at" in output and "checkpoint saved" in output, output
    record = json.loads((stopped / "training.json").read_text())
    assert "training to 200 images from step 0; Ctrl-C stops with a checkpoint" in output
    assert 0 < record["images"] < 200  # the only checkpoint is the one the interrupt wrote
    _train(folder, stopped, "--images", "200")
    a, b = load_file(straight / "model.safetensors"), load_file(stopped / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stop_request_records_the_first_signal_and_a_second_ctrl_c_interrupts():
    import signal

    from restore.training.loop import StopRequest

    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are put back


def test_bf16_training_runs_where_bf16_is_fast_and_says_so_where_it_is_not(folder, tmp_path, monkeypatch):
    """--precision bf16 autocasts the loss and the validation on a device with fast bf16 (the
    record says bf16); elsewhere it trains in float32, says
    so once and records fp32."""
    from restore import accel

    def history(out: Path) -> dict:
        return json.loads((out / "training.json").read_text())

    from restore.training.prior import PriorTask

    validated_in = []
    validate = PriorTask.validate
    monkeypatch.setattr(PriorTask, "validate", lambda self, network: (
        validated_in.append(torch.is_autocast_enabled("cpu")), validate(self, network))[1])
    trained_in = []
    loss = PriorTask.loss
    monkeypatch.setattr(PriorTask, "loss", lambda self, network, batch, generator: (
        trained_in.append(torch.is_autocast_enabled("cpu")), loss(self, network, batch, generator))[1])
    monkeypatch.setattr(accel, "fast_bf16", lambda device: (True, ""))
    _train(folder, tmp_path / "bf16", "--precision", "bf16", "--images", "4", "--validate-every", "2")
    _train(folder, tmp_path / "fp32", "--images", "4", "--validate-every", "2")
    bf16, fp32 = history(tmp_path / "bf16"), history(tmp_path / "fp32")
    assert bf16["precision"] == "bf16" and fp32["precision"] == "fp32"
    assert validated_in == [True, True, False, False]
    assert trained_in == [True, True, False, False]
    monkeypatch.setattr(accel, "fast_bf16", lambda device: (False, "this CPU (test 7) has no bf16 instructions"))
    said = []
    monkeypatch.setattr(accel, "say_once", lambda message, warn=None: said.append(message))
    _train(folder, tmp_path / "slow", "--precision", "bf16", "--images", "4", "--validate-every", "2")
    assert history(tmp_path / "slow")["precision"] == "fp32"
    assert history(tmp_path / "slow")["validation"] == fp32["validation"]
    assert said == ["note: this CPU (test 7) has no bf16 instructions, where bf16 is slower than float32: "
                    "training in float32"]


def test_the_docs_quote_the_cpu_training_measurements():
    """docs/STRATEGIES.md's gains of training `default` further on a CPU are the CBSD68 rows of
    benchmarks/results/training_cpu_amx.md (sigma 25, against the shipped prior)."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "benchmarks" / "results" / "training_cpu_amx.md").read_text()
    rows = {line.split("|")[1].strip(): [float(v) for v in line.split("|")[2:5]] for line in text.splitlines()
            if line.startswith("| ") and line.split("|")[2].strip().replace(".", "").isdigit()
            and len(line.split("|")) == 6}
    shipped = rows["`default` (shipped)"][1]
    deepened = next(v for k, v in rows.items() if k.startswith("deepened"))[1]
    finetuned = next(v for k, v in rows.items() if k.startswith("same network"))[1]
    docs = (root / "docs" / "STRATEGIES.md").read_text().replace("\n", " ")
    assert f"by {finetuned - shipped:.2f} dB" in docs and f"--num-res-blocks 2`) by {deepened - shipped:.2f}" in docs
    assert deepened > finetuned > shipped
