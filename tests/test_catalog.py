"""The strategy catalog: it covers every registered strategy, its measured table is read from
the benchmark's results file, docs/STRATEGIES.md shows its tables, its costs are what the engine
counts, and the default method of every operator is a strategy that serves it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import small_operator

from restore.operators.noise import GaussianNoise
from restore.plugins import default_registry
from restore.priors.analytic import GaussianMixture
from restore.priors.base import Prior
from restore.strategies.base import Problem
from restore.strategies.catalog import (CATALOG, Default, default_method, default_run, facts_table, measured_table,
                                       posterior_results)
from restore.strategies.engine import solve

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "posterior_cpu.txt"


def test_catalog_covers_every_registered_strategy():
    assert set(default_registry().names("strategy")) <= set(CATALOG)


def test_measured_figures_are_read_from_the_results_file(tmp_path):
    rows = posterior_results(RESULTS)
    assert rows[("exact (floor)", "8x1", "-")] == 0.650 and rows[("ddrm", "80x4", "1000")] == 9.191
    assert not any(name in ("conditional", "repaint") for name, _, _ in rows)  # "n/a" rows are not figures
    # The table is the file's: a row changed or added there is a row changed or added here.
    text = RESULTS.read_text().replace("| 8 | 1 | ddrm | 20 | 7.834 ±", "| 8 | 1 | ddrm | 20 | 1.234 ±")
    edited = tmp_path / "posterior.txt"
    edited.write_text(text + "| 8 | 1 | my-plugin | 20 | 3.000 ± 1.000 | 0 | 0.10 |\n")
    table = measured_table(edited).splitlines()
    assert "| `ddrm` | 20 | 1.23 | 7.22 |" in "\n".join(table)
    assert table[-1].startswith("| `my-plugin` | 20 | 3.00 | - |")
    assert table[2].startswith("| exact (floor) | - | 0.65 |") and table[3].startswith("| prior | - | 12.01 |")


def test_the_doc_shows_the_catalog():
    doc = (ROOT / "docs" / "STRATEGIES.md").read_text()
    assert facts_table() in doc and measured_table(RESULTS) in doc


def exact_problem(name):
    means = torch.stack([torch.zeros(48), torch.ones(48)]).double()
    mixture = GaussianMixture(torch.ones(2, dtype=torch.float64), means,
                              variances=torch.tensor([0.05, 0.05], dtype=torch.float64), shape=(3, 4, 4))
    prior = Prior(mixture, name="mixture", shape=(3, 4, 4), data_range=(0.0, 1.0))
    denoises = default_registry().get("strategy", name).only_task == "denoise"
    op = default_registry().get("operator", "denoise" if denoises else "inpaint")(
        **({} if denoises else {"mask": "box"}), noise=GaussianNoise(0.05))
    return Problem(prior, op, op.measure(torch.rand(1, 3, 4, 4, dtype=torch.float64)))


@pytest.mark.parametrize("name", [n for n, f in CATALOG.items() if n not in ("conditional", "classifier-guidance")])
def test_stated_nfe_per_step_is_what_the_engine_counts(name):
    steps = 1 if name == "tweedie" else (250 if name == "repaint" else 6)
    result = solve(exact_problem(name), default_registry().get("strategy", name)(), steps=steps,
                   generator=torch.Generator().manual_seed(0))
    assert result.nfe / steps == pytest.approx(CATALOG[name].nfe_per_step, rel=0.1 if name == "repaint" else 0)


@pytest.mark.parametrize("levels, j, r", [(7, 10, 5), (11, 10, 10), (20, 3, 4), (30, 5, 1)])
def test_repaints_own_cost_is_what_the_engine_counts(levels, j, r):
    """RePaint's NFE is not proportional to its levels (resampling starts only where j levels
    lie above a level): ``RePaint.nfe`` counts it, as the benchmark's budget needs."""
    strategy = default_registry().get("strategy", "repaint")(jump_length=j, jump_n_sample=r)
    result = solve(exact_problem("repaint"), strategy, steps=levels, generator=torch.Generator().manual_seed(0))
    assert result.nfe == strategy.nfe(levels) == levels + (r - 1) * j * len(range(0, levels - j, j))


@pytest.mark.parametrize("quality", ["fast", "high"])
def test_default_method_serves_every_registered_operator(operator_name, quality):
    registry = default_registry()
    op = small_operator(operator_name, (3, 16, 16), noise=GaussianNoise(0.05)).bound_to((3, 16, 16)) \
        if operator_name != "matrix" else small_operator(operator_name, (3, 16, 16), noise=GaussianNoise(0.05))
    name, steps = default_method(op, quality)
    assert steps >= 1 and name in registry.names("strategy")
    prior = Prior(GaussianMixture(torch.ones(1), torch.full((1, 768), 0.5), variances=torch.tensor([0.04]),
                                  shape=(3, 16, 16)), name="g", shape=(3, 16, 16), data_range=(0.0, 1.0))
    problem = Problem(prior, op, op.measure(torch.rand(1, 3, 16, 16)))
    strategy = registry.get("strategy", name)()
    if op.has_svd or op.task is not None:
        strategy.check(problem)  # it serves the operator as it is
    else:  # DPS without a published step for this task: refused with the reason, never guessed
        with pytest.raises(ValueError, match="pass zeta"):
            strategy.check(problem)
    with pytest.raises(ValueError, match="quality"):
        default_method(op, "best")


def test_default_method_follows_the_natural_image_benchmark():
    registry = default_registry()
    noisy = GaussianNoise(0.05)
    make = lambda name, **kw: registry.get("operator", name)(**kw, noise=noisy)  # noqa: E731
    assert default_method(make("denoise")) == ("tweedie", 1)  # the posterior mean is PSNR-optimal
    assert default_method(make("denoise"), target="perceptual") == ("reverse-from-y", 20)  # sampled from y
    assert default_method(registry.get("operator", "denoise")())[0] == "dpir"  # no noise: the data step keeps y
    image = (3, 256, 256)
    sparse = registry.get("operator", "inpaint")(mask="random")
    assert default_run(sparse, shape=image) == Default("dpir", 40)  # noiseless
    warm = (("warm_start", "dpir"), ("t0", 0.2))
    assert default_run(make("inpaint", mask="random"), shape=image) == Default("ddnm+", 20, 2, warm, antithetic=True)
    # a hole: the mean of 8 cold samples in antithetic pairs, with noise or without
    assert default_run(registry.get("operator", "inpaint")(mask="box"), shape=image) == Default("ddnm+", 20, 8,
                                                                                               antithetic=True)
    assert default_run(make("inpaint", mask="box"), shape=image) == Default("ddnm+", 20, 8, antithetic=True)
    # a hole's sample starts cold; a sparse sampling keeps the warm start
    perceptual = {"target": "perceptual", "shape": image}
    assert default_run(make("inpaint", mask="box"), **perceptual) == Default("ddnm+", 20)
    assert default_run(make("inpaint", mask="random"), **perceptual) == Default("ddnm+", 20, 1, warm)
    assert default_run(make("sr", scale=2)) == Default("dpir", 20, params=(("lambda_", 0.1),))
    assert default_method(make("sr", scale=2), target="perceptual") == ("ddrm", 20)  # DDNM+ breaks down on blur
    assert default_method(make("denoise"), "high", "perceptual") == ("ddrm", 100)  # beat reverse-from-y at 100
    assert default_method(make("sr", scale=2), "high", "perceptual") == ("ddrm", 20)  # more steps did not
    blur = make("blur", kernel="gaussian", boundary="reflect")  # linear, no SVD: CG data step / DPS
    assert (default_method(blur)[0], default_method(blur, target="perceptual")[0]) == ("dpir", "dps")
