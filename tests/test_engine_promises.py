"""What ``solve`` promises beyond a sample: observer hooks fire (and cost nothing unheard),
no autograd graph survives a step, frozen loaders, warnings outside a strategy's
assumptions, and noise models that own their likelihood (a third-party one included)."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor

from restore.diffusion.denoiser import VPNetworkDenoiser
from restore.diffusion.schedules import VPDiscrete
from restore.hookspecs import hookimpl
from restore.operators.noise import GaussianNoise, NoiseModel, PoissonNoise
from restore.plugins import load_registry
from restore.priors.base import Prior
from restore.priors.native import NativeConfig, native_prior, save_native
from restore.priors.sizing import PaddedNetwork
from restore.priors.spec import load_prior
from restore.priors.unet import CompactUNet, UNetConfig
from restore.strategies.base import OutsideAssumptionsWarning, Problem
from restore.strategies.engine import solve


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def blur_problem(registry, noise=None, image=8):
    prior = load_prior(f"gaussian:3x{image}x{image}:0.3", registry=registry)
    op = registry.get("operator", "blur")(kernel="gaussian", size=3, std=1.0,
                                          noise=noise if noise is not None else GaussianNoise(0.05))
    x = torch.rand(2, 3, image, image, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return Problem(prior, op, op.measure(x, generator=torch.Generator().manual_seed(1)))


class Recorder:
    """An observer plugin: records what the engine reports."""

    def __init__(self) -> None:
        self.starts, self.steps, self.ends = [], [], []

    @hookimpl
    def restore_run_start(self, info):
        self.starts.append(dict(info))

    @hookimpl
    def restore_step(self, event):
        self.steps.append(event)

    @hookimpl
    def restore_run_end(self, info):
        self.ends.append(dict(info))


@pytest.mark.parametrize("strategy, nfe_per_step", [("ddnm+", 1), ("dps", 1), ("daps", 5)])
def test_a_listener_receives_every_step_with_the_nfe_so_far(registry, strategy, nfe_per_step):
    problem, steps = blur_problem(registry), 7
    recorder = Recorder()
    params = {"langevin_steps": 2} if strategy == "daps" else {}
    result = solve(problem, registry.get("strategy", strategy)(**params), steps=steps, registry=registry,
                   generator=torch.Generator().manual_seed(0), listeners=[recorder])
    assert [e.step for e in recorder.steps] == list(range(steps))
    assert all(e.total == steps for e in recorder.steps)
    assert [e.nfe for e in recorder.steps] == [nfe_per_step * (i + 1) for i in range(steps)]
    assert recorder.starts == [{"prior": problem.prior.name, "strategy": strategy,
                                "params": registry.get("strategy", strategy)(**params).params(),
                                "steps": steps, "shape": (3, 8, 8), "batch": 2}]
    (end,) = recorder.ends
    assert end["nfe"] == result.nfe == nfe_per_step * steps and end["seconds"] == result.seconds > 0
    # the listener belongs to that run only
    solve(problem, registry.get("strategy", strategy)(**params), steps=2, registry=registry)
    assert len(recorder.starts) == 1 and not registry.listens("restore_step")


def test_listeners_belong_to_their_run_while_plugins_observe_every_run():
    # Two runs at once in two threads, each with its own listener: a barrier at the first step
    # keeps both runs in flight together; each listener hears only its run, a plugin hears both.
    import threading

    together = threading.Barrier(2, timeout=60)

    class Meeting(Recorder):
        @hookimpl
        def restore_step(self, event):
            if not self.steps:
                together.wait()
            super().restore_step(event)

    watcher = Recorder()
    registry = load_registry(extra_plugins=[("watcher", watcher)])
    runs = {"ddrm": (Meeting(), 5, 1), "dps": (Meeting(), 9, 2)}  # listener, steps, batch
    errors = []

    def run(strategy, listener, steps, batch):
        problem = blur_problem(registry)
        problem = Problem(problem.prior, problem.operator, problem.y[:batch])
        try:
            solve(problem, registry.get("strategy", strategy)(), steps=steps, registry=registry,
                  generator=torch.Generator().manual_seed(0), listeners=[listener])
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name, *spec)) for name, spec in runs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for name, (listener, steps, batch) in runs.items():
        assert [(s["strategy"], s["steps"], s["batch"]) for s in listener.starts] == [(name, steps, batch)]
        assert [e.step for e in listener.steps] == list(range(steps)) and {e.total for e in listener.steps} == {steps}
        assert len(listener.ends) == 1
    assert sorted(s["strategy"] for s in watcher.starts) == ["ddrm", "dps"] and len(watcher.ends) == 2
    assert len(watcher.steps) == 5 + 9
    assert not {id(listener) for listener, *_ in runs.values()} & {id(p) for p in registry.manager.get_plugins()}


def test_without_listeners_no_step_hook_runs(registry, monkeypatch):
    class Unheard:
        calls = 0

        def get_hookimpls(self):
            return []

        def __call__(self, **kwargs):
            Unheard.calls += 1

    monkeypatch.setattr(registry.manager.hook, "restore_step", Unheard())
    solve(blur_problem(registry), registry.get("strategy", "ddrm")(), steps=4, registry=registry)
    assert Unheard.calls == 0


def unet_prior(tmp_path) -> Prior:
    arch = UNetConfig(channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4)
    network = CompactUNet(arch)
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0, 0.1)
    config = NativeConfig(arch, "epsilon", {"type": "vp", "beta_schedule": "linear", "num_timesteps": 1000})
    save_native(tmp_path, network, config)
    return native_prior(tmp_path)


def trainable_prior() -> Prior:
    """A prior whose network still has trainable weights (not from a loader)."""
    arch = UNetConfig(channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4)
    network = CompactUNet(arch)
    denoiser = VPNetworkDenoiser(PaddedNetwork(network, network.multiple), VPDiscrete.linear(1000))
    return Prior(denoiser, name="trainable", shape=None, data_range=(-1.0, 1.0))


def test_loaders_freeze_their_networks(tmp_path):
    prior = unet_prior(tmp_path)
    network = prior.denoiser.network.network
    assert not network.training and not any(p.requires_grad for p in network.parameters())


@pytest.mark.parametrize("strategy", ["ddnm+", "ddrm", "diffpir", "pigdm", "dps", "daps"])
def test_no_autograd_graph_survives_a_step(registry, strategy):
    # Even with trainable weights, no iterate or estimate the engine hands on carries a graph,
    # so memory cannot grow with the number of steps (DPS / PiGDM / DAPS take their gradient
    # locally and detach it).
    prior = trainable_prior()
    op = registry.get("operator", "inpaint")(mask="box", noise=GaussianNoise(0.05))
    y = op.measure(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    events = []
    params = {"langevin_steps": 1, "ode_steps": 1} if strategy == "daps" else {}
    result = solve(Problem(prior, op, y), registry.get("strategy", strategy)(**params), steps=5, shape=(3, 8, 8),
                   callback=events.append, registry=registry, generator=torch.Generator().manual_seed(0))
    assert len(events) == 5
    tensors = [t for e in events for t in (e.x, e.x0)] + [result.sample, result.image]
    assert all(t.grad_fn is None and not t.requires_grad for t in tensors)


def test_warns_when_a_noiseless_method_meets_a_noisy_measurement(registry):
    noisy, clean = blur_problem(registry), blur_problem(registry, noise=GaussianNoise(0.0))
    with pytest.warns(OutsideAssumptionsWarning, match="'ddnm' assumes a noiseless measurement"):
        solve(noisy, registry.get("strategy", "ddnm")(), steps=2, registry=registry)
    with pytest.warns(OutsideAssumptionsWarning, match="'ddrm' is derived for white Gaussian noise"):
        solve(blur_problem(registry, noise=PoissonNoise(100.0)), registry.get("strategy", "ddrm")(), steps=2,
              registry=registry)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutsideAssumptionsWarning)
        solve(clean, registry.get("strategy", "ddnm")(), steps=2, registry=registry)
        solve(noisy, registry.get("strategy", "ddnm+")(), steps=2, registry=registry)
        solve(blur_problem(registry, noise=PoissonNoise(100.0)), registry.get("strategy", "dps")(), steps=2,
              registry=registry)


class Laplace(NoiseModel):
    """A third-party noise model without a ``sigma`` attribute: Laplace noise of scale b."""

    kind = "laplace"

    def __init__(self, b: float) -> None:
        self.b = b

    def sample(self, clean: Tensor, generator=None) -> Tensor:
        u = torch.rand(clean.shape, generator=generator, dtype=clean.dtype) - 0.5
        return clean - self.b * u.sign() * torch.log1p(-2 * u.abs())

    def to_json(self):
        return {"kind": self.kind, "b": self.b}

    @property
    def proxy_sigma(self) -> float:
        return 2**0.5 * self.b  # the Laplace standard deviation


class Silent(Laplace):
    """A noise model that states no Gaussian proxy."""

    proxy_sigma = NoiseModel.proxy_sigma


def test_a_third_party_noise_model_is_not_taken_for_noiseless(registry):
    problem = blur_problem(registry, noise=Laplace(0.05))
    assert not hasattr(problem.operator.noise, "sigma")
    assert problem.sigma_y == pytest.approx(2**0.5 * 0.05)
    with pytest.warns(OutsideAssumptionsWarning, match="white Gaussian noise"):
        result = solve(problem, registry.get("strategy", "ddnm+")(), steps=3, registry=registry)
    assert torch.isfinite(result.image).all()
    # DAPS's likelihood width is the proxy's, not "noiseless"
    assert registry.get("strategy", "daps")().likelihood_width(problem) == pytest.approx(2**0.5 * 0.05)
    # a model that states no proxy is refused with a reason wherever the proxy is needed
    silent = blur_problem(registry, noise=Silent(0.05))
    with pytest.raises(NotImplementedError, match="Silent does not state its Gaussian proxy"):
        solve(silent, registry.get("strategy", "ddrm")(), steps=2, registry=registry)
    # ... and DPS, which needs only residual weights (white by default), still runs
    assert torch.isfinite(solve(silent, registry.get("strategy", "dps")(), steps=2, registry=registry).image).all()


def test_wrapping_denoisers_forward_everything_they_do_not_change():
    from restore.diffusion.denoiser import Denoiser, Prediction
    from restore.strategies.engine import CountingDenoiser
    from restore.diffusion.classifier import GuidedDenoiser, NoisyClassifier

    class Own(Denoiser):
        sigma_min, sigma_max, vp = 0.5, 7.0, True

        def predict(self, x, sigma):
            return Prediction(x / 2)

        def sampling_sigmas(self, steps):
            return torch.tensor([7.0, 0.0])

        def init_noise(self, shape, sigma, *, generator=None, device="cpu", dtype=torch.float32):
            return torch.full(shape, 3.0, dtype=dtype)

    class Flat(NoisyClassifier):
        def log_prob(self, x, sigma, labels):
            return x.sum(dim=(1, 2, 3)) * 0

    for wrapped in (CountingDenoiser(Own()), GuidedDenoiser(Own(), Flat(), 0),
                    CountingDenoiser(GuidedDenoiser(Own(), Flat(), 0))):
        assert (wrapped.sigma_min, wrapped.sigma_max, wrapped.vp) == (0.5, 7.0, True)
        assert torch.equal(wrapped.sampling_sigmas(5), torch.tensor([7.0, 0.0]))
        assert torch.equal(wrapped.init_noise((1, 1, 2, 2), 7.0), torch.full((1, 1, 2, 2), 3.0))
        assert torch.equal(wrapped(torch.ones(1, 1, 2, 2), torch.ones(1)), torch.full((1, 1, 2, 2), 0.5))
    assert wrapped.evaluations() == {"classifier": 1} and wrapped.nfe == 1


def test_gradient_free_runs_save_nothing_for_backward(registry):
    # The memory an autograd graph would hold is the tensors saved for backward: with trainable
    # weights and a gradient-free strategy, solve saves none at all, whatever the step count.
    saved = []
    prior = trainable_prior()
    op = registry.get("operator", "inpaint")(mask="box", noise=GaussianNoise(0.05))
    y = op.measure(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        solve(Problem(prior, op, y), registry.get("strategy", "ddnm+")(), steps=6, shape=(3, 8, 8), registry=registry)
    assert saved == []


def test_a_loaded_prior_builds_no_graph_even_outside_solve(tmp_path, registry):
    prior = unet_prior(tmp_path)
    sampler = registry.get("sampler", "ddpm")
    sigmas = prior.denoiser.sampling_sigmas(4)
    x = prior.denoiser.init_noise((1, 3, 8, 8), float(sigmas[0]), generator=torch.Generator().manual_seed(0))
    out = sampler(prior.denoiser, x, sigmas, generator=torch.Generator().manual_seed(0))
    assert out.grad_fn is None and not out.requires_grad
