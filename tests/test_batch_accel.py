"""The fast path (restore.accel): half-precision networks with float32 norms and sampler
state, the DPS gradient through a bf16 network, the torch.compile fallback."""
from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restore import accel
from restore.accel import Acceleration, Float32Norm, accelerate, parse_precision
from restore.priors.norms import normalize_in_float32
from restore.hookspecs import hookimpl
from restore.plugins import default_registry
from restore.priors.native import NativeConfig, save_native
from restore.priors.spec import load_prior
from restore.priors.unet import CompactUNet, UNetConfig
from restore.strategies.base import Problem
from restore.strategies.dps import DPS
from restore.strategies.engine import solve


@pytest.fixture(scope="module")
def registry():
    return default_registry()


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory):
    torch.manual_seed(0)
    arch = UNetConfig(base_channels=16, channel_mult=(1, 2), groups=4)
    net = CompactUNet(arch)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    return save_native(tmp_path_factory.mktemp("unet") / "tiny", net, NativeConfig(architecture=arch))


@pytest.fixture(scope="module")
def adm_spec(tmp_path_factory):
    """A tiny ADM UNet (attention at 8x8, learned sigma) saved as a state dict with its config."""
    from restore.priors.adm import ADMUNet

    config = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="8",
                  num_head_channels=16, learn_sigma=True, use_scale_shift_norm=True, resblock_updown=True)
    torch.manual_seed(1)
    net = ADMUNet.from_config(config)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    folder = tmp_path_factory.mktemp("adm")
    torch.save(net.state_dict(), folder / "tiny.pt")
    (folder / "tiny.json").write_text(json.dumps(config))
    return f"adm:{folder / 'tiny.pt'}:{folder / 'tiny.json'}"


def test_parse_precision():
    assert [parse_precision(name) for name in ("auto", "fp32", "bf16", "fp16")] == ["auto", "fp32", "bf16", "fp16"]
    for name in ("half", "bfloat16"):  # one vocabulary: the long dtype spellings are not precisions
        with pytest.raises(ValueError, match=f"unknown precision '{name}'; choose one of auto, fp32, bf16, fp16"):
            parse_precision(name)


def test_half_precision_keeps_norms_and_output_in_float32(unet_dir, registry):
    prior = accelerate(load_prior(f"unet:{unet_dir}", registry=registry), Acceleration(torch.bfloat16))
    _, _, network = accel.network_holder(prior)
    inner = network.network
    norms = [m for m in inner.modules() if isinstance(m, Float32Norm)]
    assert norms and all(p.dtype == torch.float32 for n in norms for p in n.parameters())
    convs = [m for m in inner.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    reference = load_prior(f"unet:{unet_dir}", registry=registry)
    x = torch.randn(2, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor(1.5)
    out, ref = prior.denoiser(x, sigma), reference.denoiser(x, sigma)
    assert out.dtype == torch.float32  # the sampler state stays float32
    assert (out - ref).norm() / ref.norm() < 2e-2
    assert prior.info["acceleration"] == {"precision": "bf16", "channels_last": False, "compile": False,
                                          "chunk_pixels": None}


@pytest.mark.parametrize("norm", [nn.GroupNorm(4, 8), nn.LayerNorm(20), nn.BatchNorm2d(8).eval()],
                         ids=["group", "layer", "batch"])
def test_norms_compute_in_float32_and_take_bf16_as_it_is_on_the_cpu(norm, monkeypatch):
    """normalize_in_float32 equals the norm of the float32 input rounded to bf16, gradients
    included; group and layer norms get the bf16 tensor itself (the CPU's mixed-type kernels),
    other norms a float32 copy."""
    with torch.no_grad():
        for p in norm.parameters():
            p.uniform_(0.5, 1.5)
    x = (3 * torch.randn(2, 8, 6, 20, generator=torch.Generator().manual_seed(0)) + 1).to(torch.bfloat16)
    seen = []
    for name in ("group_norm", "layer_norm", "batch_norm"):
        original = getattr(F, name)
        monkeypatch.setattr(F, name, lambda t, *a, _f=original, **k: seen.append(t.dtype) or _f(t, *a, **k))
    fast, slow = x.clone().requires_grad_(), x.float().requires_grad_()
    out, ref = normalize_in_float32(norm, fast), norm(slow)
    mixed = not isinstance(norm, nn.BatchNorm2d)
    assert out.dtype == torch.bfloat16 and seen[0] == (torch.bfloat16 if mixed else torch.float32)
    assert torch.equal(out, ref.to(torch.bfloat16)) or (out.float() - ref).abs().max() <= 2 ** -7 * ref.abs().max()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out.float() * weights).sum().backward()
    (ref * weights).sum().backward()
    assert (fast.grad.float() - slow.grad).abs().max() <= 2 ** -7 * slow.grad.abs().max()


def test_adm_uses_its_torso_dtype(adm_spec, registry):
    prior = accelerate(load_prior(adm_spec, registry=registry), Acceleration(torch.bfloat16))
    _, _, network = accel.network_holder(prior)
    assert network.dtype == torch.bfloat16  # ADMTrunk.set_torso_dtype
    assert network.out[-1].weight.dtype == torch.float32 and network.time_embed[0].weight.dtype == torch.float32


def dps_gradient(prior, y, op):
    problem = Problem(prior, op.bound_to((3, 16, 16)), y)
    x = 3.0 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    _, grad = DPS(zeta=0.5).guided_prediction(problem, prior.denoiser, x, 3.0)
    return grad


@pytest.mark.parametrize("kind", ["unet", "adm"])
def test_dps_gradient_through_bf16_network_is_finite_and_close(kind, unet_dir, adm_spec, registry):
    spec = f"unet:{unet_dir}" if kind == "unet" else adm_spec
    op = registry.get("operator", "inpaint")(mask="box")
    y = op(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)))
    exact = dps_gradient(load_prior(spec, registry=registry), y, op)
    half = dps_gradient(accelerate(load_prior(spec, registry=registry), Acceleration(torch.bfloat16)), y, op)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert not torch.equal(half, exact)  # the network did run in bf16
    assert (half - exact).norm() / exact.norm() < 5e-2


@pytest.mark.parametrize("name, params", [("dps", {"zeta": 0.5}), ("pigdm", {}), ("daps", {"langevin_steps": 5})])
def test_bf16_runs_of_gradient_strategies_stay_finite_and_near_fp32(name, params, unet_dir, registry):
    """DPS and PiGDM differentiate through the network, DAPS through the operator: with the network
    in bf16 every iterate stays finite (the engine's divergence guard would name the step) and
    the result stays near the fp32 one."""
    op = registry.get("operator", "inpaint")(mask="box", noise={"kind": "gaussian", "sigma": 0.05})
    y = op(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)))
    images = []
    for acceleration in (Acceleration(), Acceleration(torch.bfloat16)):
        prior = accelerate(load_prior(f"unet:{unet_dir}", registry=registry), acceleration)
        result = solve(Problem(prior, op, y), registry.get("strategy", name)(**params), steps=8, shape=(3, 16, 16),
                       generator=torch.Generator().manual_seed(0))
        images.append(result.image)
    assert torch.isfinite(images[1]).all()
    assert not torch.equal(images[1], images[0])
    assert (images[1] - images[0]).abs().max() < 1e-2


def test_analytic_priors_have_nothing_to_accelerate(registry):
    prior = load_prior("gmm:8", registry=registry)
    assert accelerate(prior, Acceleration()) is prior  # float32: untouched
    with pytest.raises(ValueError, match="has no neural network to accelerate"):
        accelerate(prior, Acceleration(torch.bfloat16))


def test_compile_falls_back_with_one_message(unet_dir, registry, monkeypatch):
    def unavailable(module, **kwargs):
        def broken(*args, **kw):
            raise RuntimeError("Compiler: cc not found\nmore detail")
        return broken

    monkeypatch.setattr(torch, "compile", unavailable)
    messages = []
    prior = accelerate(load_prior(f"unet:{unet_dir}", registry=registry), Acceleration(compile=True),
                       warn=messages.append)
    reference = load_prior(f"unet:{unet_dir}", registry=registry)
    x, sigma = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor(2.0)
    for _ in range(2):
        assert torch.equal(prior.denoiser(x, sigma), reference.denoiser(x, sigma))
    assert messages == ["note: --compile is unavailable here (RuntimeError: Compiler: cc not found); "
                        "running the network uncompiled"]


def test_compile_does_not_hide_the_network_s_own_errors(unet_dir, registry, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)  # "compiled" = the module itself
    messages = []
    prior = accelerate(load_prior(f"unet:{unet_dir}", registry=registry), Acceleration(compile=True),
                       warn=messages.append)
    with pytest.raises(ValueError, match="expects 3 input channels"):
        prior.denoiser(torch.zeros(1, 2, 8, 8), torch.tensor(1.0))
    assert messages == []


def test_channels_last_gives_the_same_network(unet_dir, registry):
    prior = accelerate(load_prior(f"unet:{unet_dir}", registry=registry), Acceleration(channels_last=True))
    reference = load_prior(f"unet:{unet_dir}", registry=registry)
    x, sigma = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor(2.0)
    assert torch.allclose(prior.denoiser(x, sigma), reference.denoiser(x, sigma), atol=1e-5)


# ----------------------------------------------------------------------------- one fast path everywhere


@pytest.fixture
def said(monkeypatch):
    """A fresh record of the once-per-process messages."""
    monkeypatch.setattr(accel, "SAID", set())
    return accel.SAID


class Recording:
    """``network``, recording the shape of every call's x and of its other tensor arguments."""

    def __init__(self, network):
        self.network, self.calls = network, []

    def __call__(self, x, *args, **kwargs):
        self.calls.append([tuple(x.shape)] + [tuple(a.shape) for a in [*args, *kwargs.values()]
                                               if isinstance(a, torch.Tensor)])
        return self.network(x, *args, **kwargs)


def test_a_network_in_chunks_is_the_network_on_the_whole_batch(adm_spec, registry):
    """x and the per-image time (and class labels) are cut together, a scalar passes whole; on
    an ADM network the output and the input gradient (DPS) equal the whole batch's."""
    network = accel.network_holder(load_prior(adm_spec, registry=registry))[2]
    recording = Recording(network)
    chunked = accel.ChunkedNetwork(recording, pixels=2 * 16 * 16 + 5)  # two 16 x 16 images per call
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(5, 3, 16, 16, generator=g), torch.tensor([10.0, 200.0, 400.0, 600.0, 990.0])
    x_whole, x_parts = x.clone().requires_grad_(), x.clone().requires_grad_()
    whole, parts = network(x_whole, t), chunked(x_parts, t)
    assert [c[:2] for c in recording.calls] == [[(2, 3, 16, 16), (2,)], [(2, 3, 16, 16), (2,)], [(1, 3, 16, 16), (1,)]]
    assert torch.allclose(parts, whole, atol=1e-5)
    whole.square().sum().backward()
    parts.square().sum().backward()
    assert torch.allclose(x_parts.grad, x_whole.grad, atol=1e-4)
    recording.calls.clear()
    chunked(x[:2], torch.tensor(300.0))  # within one chunk: one call, the scalar time whole
    assert recording.calls == [[(2, 3, 16, 16), ()]]
    labels = Recording(lambda x, t, y: x + y[:, None, None, None])
    out = accel.ChunkedNetwork(labels, pixels=1)(x[:3], t[:3], y=torch.arange(3.0))  # one image per call
    assert labels.calls == [[(1, 3, 16, 16), (1,), (1,)]] * 3
    assert torch.equal(out, x[:3] + torch.arange(3.0)[:, None, None, None])
    with pytest.raises(ValueError, match="pixels must be >= 1"):
        accel.ChunkedNetwork(network, pixels=0)


def test_batches_run_in_chunks_on_a_cpu_only(unet_dir, registry):
    prior = load_prior(f"unet:{unet_dir}", registry=registry)
    assert accel.resolve(accel.FastPath(), prior, torch.device("cpu"), "inpaint").chunk_pixels == accel.CPU_CHUNK_PIXELS
    assert accel.resolve(accel.FastPath("fp32"), prior, torch.device("cuda"), "inpaint").chunk_pixels is None


def test_the_mean_of_samples_runs_its_batch_in_chunks_and_is_unchanged(unet_dir, monkeypatch):
    """The API's mean of 3 samples on 16 x 16 images with a one-image chunk: the network sees
    one image per call, the run record says so, and the estimate equals the unchunked run's."""
    from restore.api import restore

    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    calls = []
    original = accel.ChunkedNetwork.forward

    def spy(self, x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(self, x, *args, **kwargs)

    def run():
        return restore(image, "denoise", prior=f"unet:{unet_dir}", noise=0.1, seed=0, method="ddrm", steps=3,
                       samples=3, precision="fp32", threads=1)

    monkeypatch.setattr(accel.ChunkedNetwork, "forward", spy)
    monkeypatch.setattr(accel, "CPU_CHUNK_PIXELS", 16 * 16)
    chunked = run()
    assert calls == [3] * 3 and chunked.provenance["fast_path"]["chunk_pixels"] == 16 * 16
    monkeypatch.setattr(accel, "CPU_CHUNK_PIXELS", 3 * 16 * 16)
    whole = run()
    assert whole.provenance["fast_path"]["chunk_pixels"] == 3 * 16 * 16
    assert torch.allclose(chunked.image, whole.image, atol=1e-5)


def test_channels_last_adm_equals_contiguous(adm_spec, registry):
    prior = accelerate(load_prior(adm_spec, registry=registry), Acceleration(channels_last=True))
    reference = load_prior(adm_spec, registry=registry)
    x, sigma = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor(2.0)
    assert torch.allclose(prior.denoiser(x, sigma), reference.denoiser(x, sigma), atol=1e-5)


def test_bf16_falls_back_to_fp32_saying_so_once(unet_dir, registry, monkeypatch, said):
    monkeypatch.setattr(accel, "fast_bf16", lambda device: (False, "this CPU (test) has no bfloat16 instructions"))
    prior, messages = load_prior(f"unet:{unet_dir}", registry=registry), []
    for _ in range(3):
        used = accel.resolve(accel.FastPath("bf16"), prior, torch.device("cpu"), "denoise", messages.append)
        assert used == Acceleration(torch.float32, channels_last=True, chunk_pixels=accel.CPU_CHUNK_PIXELS)
    assert messages == ["note: this CPU (test) has no bfloat16 instructions, where bf16 is slower than float32: "
                        "running the network in float32"]


def test_auto_precision_follows_the_kind_rule_and_the_hardware(unet_dir, registry, monkeypatch, said):
    prior, cpu = load_prior(f"unet:{unet_dir}", registry=registry), torch.device("cpu")
    monkeypatch.setattr(accel, "AUTO_BF16_KINDS", frozenset({"deblur"}))
    monkeypatch.setattr(accel, "fast_bf16", lambda device: (True, ""))
    assert accel.resolve(accel.FastPath(), prior, cpu, "deblur").dtype is torch.bfloat16
    assert accel.resolve(accel.FastPath(), prior, cpu, "inpaint").dtype is torch.float32
    assert accel.resolve(accel.FastPath("fp32"), prior, cpu, "deblur").dtype is torch.float32
    assert accel.resolve(accel.FastPath(channels_last=False), prior, cpu, "inpaint") == \
        Acceleration(chunk_pixels=accel.CPU_CHUNK_PIXELS)
    monkeypatch.setattr(accel, "fast_bf16", lambda device: (False, "no bf16 here"))
    messages = []
    assert accel.resolve(accel.FastPath(), prior, cpu, "deblur", messages.append).dtype is torch.float32
    assert messages == []  # auto falls back silently (the record says fp32); an explicit bf16 says so
    monkeypatch.setattr(accel, "fast_bf16", lambda device: (True, ""))
    with pytest.raises(ValueError, match="fp16 runs on a GPU only"):
        accel.resolve(accel.FastPath("fp16"), prior, cpu, "deblur")
    analytic = load_prior("gmm:8", registry=registry)
    assert accel.resolve(accel.FastPath(), analytic, cpu, "deblur") == Acceleration()  # nothing to accelerate
    with pytest.raises(ValueError, match="has no neural network"):
        accel.resolve(accel.FastPath(compile=True), analytic, cpu, "deblur")


def test_this_machine_s_bf16_verdict_matches_its_instruction_set():
    fast, why = accel.fast_bf16(torch.device("cpu"))
    caps = torch.cpu.get_capabilities()
    if caps.get("architecture") == "x86_64":
        assert fast == bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    assert fast or "no bfloat16 instructions" in why


class DtypeWatcher:
    """Records the dtype of every iterate and denoised estimate of a run."""

    def __init__(self):
        self.dtypes = set()

    @hookimpl
    def restore_step(self, event):
        self.dtypes |= {event.x.dtype, event.x0.dtype}


@pytest.mark.parametrize("method", ["ddrm", "dps"])
def test_bf16_network_keeps_the_sampler_state_float32(method, unet_dir, registry, monkeypatch, said):
    from restore.api import restore

    monkeypatch.setattr(accel, "fast_bf16", lambda device: (True, ""))
    watcher = DtypeWatcher()
    result = restore(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), "blur",
                     prior=f"unet:{unet_dir}", method=method, steps=3, seed=0, precision="bf16",
                     operator_options={"kernel": "gaussian", "std": 1.0, "size": 5}, noise=0.05,
                     listeners=[watcher])
    assert watcher.dtypes == {torch.float32}
    assert result.tensors["mean"].dtype == torch.float32
    assert result.provenance["fast_path"]["precision"] == "bf16"


def test_auto_precision_of_a_run_follows_its_operator_kind(unet_dir, registry, monkeypatch, said):
    """``auto`` asks :data:`accel.AUTO_BF16_KINDS` by the operator's kind (catalog.operator_kind):
    every kind the benchmark measures passed the rule (docs/PERFORMANCE.md); the kinds it does not
    measure (colorization's ``svd``, ``linear``, ``other``) stay fp32 until added."""
    from restore.api import restore

    monkeypatch.setattr(accel, "fast_bf16", lambda device: (True, ""))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    common = {"prior": f"unet:{unet_dir}", "seed": 0, "registry": registry, "steps": 2}
    assert accel.AUTO_BF16_KINDS == frozenset({"denoise", "deblur", "inpaint", "inpaint-noisy", "inpaint-hole",
                                               "inpaint-hole-noisy", "sr"})
    assert restore(x, "denoise", noise=0.1, **{**common, "steps": None}).provenance["fast_path"]["precision"] == "bf16"
    blurred = restore(x, "blur", method="ddrm", noise=0.05, **common,
                      operator_options={"kernel": "gaussian", "std": 1.0, "size": 5})
    assert blurred.provenance["fast_path"]["precision"] == "bf16"
    small = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    upscaled = restore(small, "sr", method="ddrm", noise=0.05, operator_options={"scale": 4}, **common)
    assert upscaled.provenance["fast_path"]["precision"] == "bf16"
    grey = x.mean(dim=1, keepdim=True)
    assert restore(grey, "colorize", method="ddrm", **common).provenance["fast_path"]["precision"] == "fp32"
    monkeypatch.setattr(accel, "AUTO_BF16_KINDS", frozenset({"svd"}))
    assert restore(grey, "colorize", method="ddrm", **common).provenance["fast_path"]["precision"] == "bf16"
    upscaled = restore(small, "sr", method="ddrm", noise=0.05, operator_options={"scale": 4}, **common)
    assert upscaled.provenance["fast_path"]["precision"] == "fp32"


def test_batch_resolves_auto_precision_per_operator_kind_as_the_commands_do(unet_dir, monkeypatch, said, tmp_path):
    """``restore batch`` applies the fast path per batch of one operator, as the command for that
    operator would: with fast bf16, inpainting items run the network in bf16, colorization items
    (kind ``svd``, not measured) in fp32."""
    from typer.testing import CliRunner

    from restore.cli import app
    from restore.operators.io import write_image

    monkeypatch.setattr(accel, "fast_bf16", lambda device: (True, ""))
    colour = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    write_image(tmp_path / "inpaint-in" / "a.png", colour)
    write_image(tmp_path / "colorize-in" / "a.png", colour.mean(dim=1, keepdim=True))
    common = ["--prior", f"unet:{unet_dir}", "--method", "ddrm", "--steps", "2", "--threads", "1", "--quiet"]
    for op, extra, precision in [("inpaint", ["--mask", "box"], "bf16"), ("colorize", [], "fp32")]:
        out = tmp_path / op
        result = CliRunner().invoke(app, ["batch", str(tmp_path / f"{op}-in"), "-o", str(out), "--op", op, *extra,
                                          *common])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "a.json").read_text())["fast_path"]["precision"] == precision, op


def test_prepare_leaves_a_caller_s_prior_alone_and_keeps_compiled_priors(unet_dir, registry, monkeypatch):
    spec, cpu = f"unet:{unet_dir}", torch.device("cpu")
    mine = load_prior(spec, registry=registry)
    _, _, network = accel.network_holder(mine)
    weight = next(network.parameters())
    same, used = accel.prepare(mine, None, accel.FastPath(), cpu, "deblur")
    assert same is mine and used == Acceleration()  # the defaults run a given prior as it is
    copy, used = accel.prepare(mine, None, accel.FastPath(channels_last=True), cpu, "deblur")
    assert copy is not mine and used.channels_last and copy.info["acceleration"]["channels_last"]
    assert accel.network_holder(mine)[2] is network and weight.is_contiguous() and "acceleration" not in mine.info
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(module) or module)
    monkeypatch.setattr(accel, "COMPILED", {})
    loads = []

    def load(name):
        loads.append(name)
        return load_prior(name, registry=registry)

    first = accel.prepare(spec, load, accel.FastPath(compile=True), cpu, "deblur")
    again = accel.prepare(spec, load, accel.FastPath(compile=True), cpu, "deblur")
    assert again[0] is first[0] and len(loads) == len(compiled) == 1  # loaded and compiled once


def test_threads_are_set_for_the_block_and_restored():
    before = torch.get_num_threads()
    with accel.threads(1) as used:
        assert used == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be >= 1"):
        with accel.threads(0):
            pass
    assert 1 <= accel.default_threads() <= max(os.cpu_count() or 1, 1)


@pytest.mark.parametrize("cores, busy, expected", [(2, 0, 2), (2, 1, 1), (2, 5, 1), (16, 3, 13), (1, 0, 1)])
def test_default_threads_take_the_idle_cores_and_at_least_one(cores, busy, expected):
    assert accel.default_threads(cores, busy) == expected


def test_busy_cores_do_not_count_this_process(monkeypatch):
    import builtins
    import io

    readings = iter(["0.50 0.40 0.30 3/200 999\n", "0.50 0.40 0.30 2/200 999\n", "0.50 0.40 0.30 4/200 999\n"])
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: io.StringIO(next(readings))
                        if path == "/proc/loadavg" else real_open(path, *a, **k))
    monkeypatch.setattr(accel, "own_runnable", lambda: 1)
    assert accel.busy_cores(samples=3, interval_s=0) == 1  # fewest runnable (2), less this process


def test_busy_cores_do_not_count_this_processs_spinning_threads(monkeypatch):
    """Three runnable tasks in the system, all three this process's threads (its OpenMP workers
    spinning after a parallel region): no other process is busy, the idle cores are all free."""
    import builtins
    import io

    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: io.StringIO("0.50 0.40 0.30 3/200 999\n")
                        if path == "/proc/loadavg" else real_open(path, *a, **k))
    monkeypatch.setattr(accel, "own_runnable", lambda: 3)
    assert accel.busy_cores(samples=2, interval_s=0) == 0 and accel.default_threads(cores=2) == 2


def test_own_runnable_counts_the_threads_in_state_r(tmp_path):
    for tid, state in (("11", "R"), ("12", "S"), ("13", "R"), ("14", "D")):
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "stat").write_text(f"{tid} (python3 (x) y) {state} 1 2 3 4\n")  # ")" inside the name
    assert accel.own_runnable(str(tmp_path)) == 2
    assert accel.own_runnable(str(tmp_path / "absent")) == 1
    assert accel.own_runnable() >= 1  # this process, read live


COMMANDS = {  # command -> arguments that make it reach the fast path on a small input
    "denoise": ["IMG", "--sigma", "0.1"],
    "sr": ["SMALL", "--scale", "2"],
    "deblur": ["IMG", "--kernel", "gaussian:1"],
    "inpaint": ["IMG", "--mask", "MASK"],
    "colorize": ["GREY"],
    "run": ["IMG", "--op", "denoise", "--noise", "0.1"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("fast")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / "img.png")
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / "small.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 4:9] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    return {"IMG": str(folder / "img.png"), "GREY": str(folder / "grey.png"), "MASK": str(folder / "mask.png"),
            "SMALL": str(folder / "small.png"), "folder": folder}


def command_line(name, files, *extra):
    return [name, *(files.get(a, a) for a in COMMANDS[name]), "--prior", "gaussian:3x16x16", "-q", "--overwrite",
            "-o", str(files["folder"] / f"{name}.png"), *extra]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_restoration_command_speaks_one_fast_path_vocabulary(name, files):
    from typer.testing import CliRunner

    from restore.cli import app

    runner = CliRunner()
    for extra, line in [(("--precision", "half"), "unknown precision 'half'; choose one of auto, fp32, bf16, fp16"),
                        (("--dtype", "float32"), "--dtype is replaced by --precision auto|fp32|bf16|fp16"),
                        (("--precision", "bf16"), "has no neural network: --precision bf16 and --compile apply")]:
        result = runner.invoke(app, command_line(name, files, *extra))
        assert result.exit_code == 2 and line in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, command_line(name, files, "--threads", "1", "--no-channels-last"))
    assert result.exit_code == 0, result.output
    record = json.loads((files["folder"] / f"{name}.json").read_text())
    assert record["fast_path"] == {"precision": "fp32", "channels_last": False, "compile": False, "chunk_pixels": None,
                                  "threads": 1}


def test_the_api_speaks_the_same_vocabulary(unet_dir):
    from restore.api import RestoreError, restore

    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="unknown precision 'half'; choose one of auto, fp32, bf16, fp16"):
        restore(image, "denoise", prior=f"unet:{unet_dir}", noise=0.1, precision="half")
    with pytest.warns(DeprecationWarning, match="dtype= is deprecated: use precision='fp32'"):
        old = restore(image, "denoise", prior=f"unet:{unet_dir}", noise=0.1, seed=0, dtype="float32", threads=1)
    new = restore(image, "denoise", prior=f"unet:{unet_dir}", noise=0.1, seed=0, precision="fp32", threads=1)
    assert torch.equal(old.tensors["mean"], new.tensors["mean"])
    assert new.provenance["fast_path"] == {"precision": "fp32", "channels_last": True, "compile": False,
                                         "chunk_pixels": accel.CPU_CHUNK_PIXELS, "threads": 1}
    with pytest.raises(RestoreError, match="unknown dtype 'float64'"):
        restore(image, "denoise", prior=f"unet:{unet_dir}", noise=0.1, dtype="float64")


def test_sample_speaks_the_same_vocabulary():
    from typer.testing import CliRunner

    from restore.cli import app

    base = ["sample", "--prior", "gaussian:3x8x8", "-n", "1", "--steps", "2"]
    for extra, line in [(("--precision", "half"), "unknown precision 'half'; choose one of auto, fp32, bf16, fp16"),
                        (("--dtype", "float32"), "--dtype is replaced by --precision auto|fp32|bf16|fp16")]:
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code == 2 and line in result.output and len(result.output.strip().splitlines()) == 1
    assert CliRunner().invoke(app, [*base, "--threads", "1"]).exit_code == 0
