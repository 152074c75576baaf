"""A conditional prior's default run (restore.strategies.catalog.CONDITIONAL_DEFAULTS) through
every front door: the catalog, the API, the restoration commands and ``restore batch``, each
given the embedded ``default-sr3x4`` and no method."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import restore
from restore.cli import app
from restore.operators.io import read_image, write_image
from restore.plugins import default_registry
from restore.priors.spec import load_prior
from restore.strategies.catalog import CONDITIONAL_DEFAULTS, DEFAULTS, QUALITIES, TARGETS, default_run, is_conditional

runner = CliRunner()
SR3 = "default-sr3x4"


@pytest.fixture(scope="module")
def sr3():
    return load_prior(SR3)


@pytest.fixture(scope="module")
def measurement(tmp_path_factory):
    """An 8x8 bicubic x4 measurement with the network's noise, sigma 0.025, as a PNG."""
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sr = default_registry().get("operator", "sr")(scale=4, noise={"kind": "gaussian", "sigma": 0.025})
    path = tmp_path_factory.mktemp("sr3") / "y.png"
    write_image(path, sr.measure(x, generator=torch.Generator().manual_seed(1)).clamp(0, 1))
    return path


def test_a_conditional_prior_has_its_own_default_run_whatever_the_operator(sr3):
    assert is_conditional(sr3) and not is_conditional(load_prior("default")) and not is_conditional(None)
    noisy = {"noise": {"kind": "gaussian", "sigma": 0.1}}
    operators = [default_registry().get("operator", name)(**kwargs)
                 for name, kwargs in (("sr", {"scale": 4}), ("inpaint", {"mask": "box"}), ("denoise", noisy))]
    for operator in operators:
        for quality in QUALITIES:
            for target in TARGETS:
                assert default_run(operator, quality, target, sr3) == CONDITIONAL_DEFAULTS[target][quality]
                assert default_run(operator, quality, target, shape=(3, 64, 64)).method != "conditional"
    fast = CONDITIONAL_DEFAULTS["fidelity"]["fast"]
    # the shipped network's measured run, its samples in antithetic pairs
    assert (fast.method, fast.steps, fast.samples, fast.antithetic) == ("conditional", 20, 4, True)
    assert CONDITIONAL_DEFAULTS["perceptual"]["fast"].samples == 1
    assert all(run.method != "conditional" for kind in DEFAULTS.values() for t in kind.values() for run in t.values())


def test_the_api_runs_the_conditional_strategy_when_no_method_is_named(sr3, measurement):
    y = read_image(measurement)
    fidelity = restore.sr(y, 4, noise=0.025, prior=sr3, steps=2, seed=0)
    assert fidelity.provenance["strategy"]["name"] == "conditional" and len(fidelity.samples) == 4
    assert fidelity.provenance["antithetic"] is True and fidelity.provenance["seeds"] == [0, 0, 2, 2]
    assert torch.equal(fidelity.image, fidelity.tensors["samples"].mean(dim=0))
    perceptual = restore.sr(y, 4, noise=0.025, prior=SR3, steps=2, seed=0, target="perceptual")
    assert perceptual.provenance["strategy"]["name"] == "conditional" and len(perceptual.samples) == 1
    # the operator it was not trained for is still refused, now without --method too
    with pytest.raises(Exception, match="trained for sr \\(scale 4, method bicubic\\), the operator has scale 2"):
        restore.sr(y, 2, noise=0.025, prior=sr3, steps=2, seed=0)


def test_the_command_runs_the_conditional_strategy_and_checks_its_parameters(measurement, tmp_path):
    out = tmp_path / "x.png"
    base = ["sr", str(measurement), "--scale", "4", "--noise", "0.025", "--prior", SR3, "--steps", "2", "--seed", "0",
            "--quiet"]
    done = runner.invoke(app, [*base, "-o", str(out)])
    assert done.exit_code == 0, done.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["strategy"]["name"] == "conditional" and record["samples"] == 4 and record["antithetic"] is True
    assert (tmp_path / "x.sample-3.png").is_file()
    # a hyperparameter of the conditional strategy is accepted without --method; one of DPIR's is not
    eta = runner.invoke(app, [*base, "--target", "perceptual", "--param", "eta=0", "-o", str(tmp_path / "e.png")])
    assert eta.exit_code == 0, eta.output
    record = json.loads((tmp_path / "e.json").read_text())
    assert record["strategy"]["params"]["eta"] == 0 and record["samples"] == 1
    wrong = runner.invoke(app, [*base, "--param", "lambda_=0.1", "-o", str(tmp_path / "w.png")])
    assert wrong.exit_code == 2 and "strategy 'conditional' has no parameter 'lambda_'" in wrong.output
    assert not (tmp_path / "w.png").exists()


def test_batch_runs_the_conditional_strategy_and_checks_its_parameters(measurement, tmp_path, monkeypatch):
    import restore.priors.spec as spec

    loads = []
    monkeypatch.setattr(spec, "load_prior", lambda *a, _load=spec.load_prior, **k: loads.append(a) or _load(*a, **k))
    source = measurement.parent
    base = ["batch", str(source), "--op", "sr", "--op-param", "scale=4", "--noise", "0.025", "--prior", SR3,
            "--steps", "2", "--threads", "1", "--quiet"]
    done = runner.invoke(app, [*base, "-o", str(tmp_path / "out"), "--param", "eta=0"])
    assert done.exit_code == 0, done.output
    assert len(loads) == 1, "the prior loaded for the --param check is the one the run uses"
    record = json.loads((tmp_path / "out" / "y.json").read_text())
    assert record["strategy"]["name"] == "conditional" and record["samples"] == 4 and record["antithetic"] is True
    wrong = runner.invoke(app, [*base, "-o", str(tmp_path / "bad"), "--param", "lambda_=0.1"])
    assert wrong.exit_code == 2 and "strategy 'conditional' has no parameter 'lambda_'" in wrong.output
