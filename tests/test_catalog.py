"""The strategy catalog: it covers every registered strategy, its measured figures are the
benchmark's, docs/STRATEGIES.md shows its tables, its costs are what the engine counts, and
the default method of every operator is a strategy that serves it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import small_operator

from restore.operators.noise import GaussianNoise
from restore.plugins import default_registry
from restore.priors.analytic import GaussianMixture
from restore.priors.base import Prior
from restore.strategies.base import Problem
from restore.strategies.catalog import CATALOG, REFERENCE, default_method, facts_table, measured_table
from restore.strategies.engine import solve

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "posterior_cpu.txt"


def benchmark_rows() -> dict[tuple[str, str, str], float]:
    """(strategy, cell, NFE or '-') -> mean SW, from the posterior benchmark's results table."""
    rows = {}
    for line in RESULTS.read_text().splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) >= 5 and cols[0].isdigit() and re.match(r"^[\d.]+ ±", cols[4]):
            rows[(cols[2], f"{cols[0]}x{cols[1]}", cols[3])] = float(cols[4].split("±")[0])
    return rows


def test_catalog_covers_every_registered_strategy():
    assert set(default_registry().names("strategy")) <= set(CATALOG)


def test_measured_figures_are_the_benchmarks():
    rows = benchmark_rows()
    for fact in CATALOG.values():
        for cell, by_nfe in fact.measured.items():
            for nfe, value in by_nfe.items():
                assert rows[(fact.name, cell, str(nfe))] == value, (fact.name, cell, nfe)
    for name, by_cell in REFERENCE.items():
        for cell, value in by_cell.items():
            assert rows[(name, cell, "-")] == value, (name, cell)
    benchmarked = {(s, c, n) for (s, c, n) in rows if n != "-"}
    listed = {(f.name, c, str(n)) for f in CATALOG.values() for c, m in f.measured.items() for n in m}
    assert benchmarked == listed  # nothing measured is left out of the catalog


def test_the_doc_shows_the_catalog():
    doc = (ROOT / "docs" / "STRATEGIES.md").read_text()
    assert facts_table() in doc and measured_table() in doc


def exact_problem(name):
    mixture = GaussianMixture(torch.ones(2, dtype=torch.float64), torch.stack([torch.zeros(48), torch.ones(48)]).double(),
                              variances=torch.tensor([0.05, 0.05], dtype=torch.float64), shape=(3, 4, 4))
    prior = Prior(mixture, name="mixture", shape=(3, 4, 4), data_range=(0.0, 1.0))
    op = default_registry().get("operator", "denoise" if name == "tweedie" else "inpaint")(
        **({} if name == "tweedie" else {"mask": "box"}), noise=GaussianNoise(0.05))
    return Problem(prior, op, op.measure(torch.rand(1, 3, 4, 4, dtype=torch.float64)))


@pytest.mark.parametrize("name", [n for n, f in CATALOG.items() if n not in ("conditional", "classifier-guidance")])
def test_stated_nfe_per_step_is_what_the_engine_counts(name):
    steps = 1 if name == "tweedie" else (250 if name == "repaint" else 6)
    result = solve(exact_problem(name), default_registry().get("strategy", name)(), steps=steps,
                   generator=torch.Generator().manual_seed(0))
    assert result.nfe / steps == pytest.approx(CATALOG[name].nfe_per_step, rel=0.1 if name == "repaint" else 0)


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
    assert default_method(registry.get("operator", "denoise")())[0] == "ddrm"  # no noise: nothing to average
    assert default_method(make("inpaint", mask="box")) == ("ddnm+", 20)
    assert default_method(make("sr", scale=2)) == ("ddrm", 20)  # DDNM+ breaks down on blur and SR
    assert default_method(make("sr", scale=2), "high") == ("ddrm", 100)
    assert default_method(make("blur", kernel="gaussian", boundary="reflect"))[0] == "dps"
