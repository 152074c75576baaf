"""The restore-bayer example distribution (plugins/restore-bayer), installed through its
entry point: a Bayer colour-filter array with exact adjoint, pseudo-inverse and SVD,
driven through `restore list`, `restore check-operator` and `restore degrade`."""
import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import restore.plugins as plugins
from plugin_install import installed
from restore.cli import app
from restore.operators.contract import all_passed, check_factory, format_report
from restore.operators.io import load_measurement

#: Where each pattern records R, G and B in its 2 x 2 tile, written out by hand.
TILES = {
    "RGGB": {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2},
    "BGGR": {(0, 0): 2, (0, 1): 1, (1, 0): 1, (1, 1): 0},
    "GRBG": {(0, 0): 1, (0, 1): 0, (1, 0): 2, (1, 1): 1},
    "GBRG": {(0, 0): 1, (0, 1): 2, (1, 0): 0, (1, 1): 1},
}


@pytest.fixture
def bayer(tmp_path, monkeypatch):
    yield from installed("restore-bayer", tmp_path / "site", monkeypatch)


def factory():
    return plugins.load_registry().get("operator", "bayer")


@pytest.mark.parametrize("pattern", sorted(TILES))
def test_each_pixel_records_the_colour_of_its_pattern(bayer, pattern):
    op = factory()(pattern=pattern)
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    y = op(x)
    for i in range(5):
        for j in range(6):
            colour = TILES[pattern][(i % 2, j % 2)]
            for c in range(3):
                expected = x[:, c, i, j] if c == colour else torch.zeros(2, dtype=torch.float64)
                assert torch.equal(y[:, c, i, j], expected)
    raw = op.mosaic(y)
    assert raw.shape == (2, 1, 5, 6) and torch.equal(op.planes(raw), y)


@pytest.mark.parametrize("params", [{}, {"pattern": "GBRG", "shape": [3, 9, 7]},
                                    {"pattern": "BGGR", "noise": {"kind": "gaussian", "sigma": 0.05}}])
def test_bayer_keeps_the_contract_exactly(bayer, params):
    checks = check_factory(factory(), params or factory().example)
    assert all_passed(checks), format_report(checks)
    passed = {c.check: c.figure for c in checks if c.passed}
    assert {"json", "svd-shapes", "svd-v", "svd-u", "svd-reconstruct"} <= set(passed)
    assert passed["adjoint"] == 0 and passed["pinv"] == 0 and passed["svd-reconstruct"] == 0


def test_svd_has_unit_singular_values_on_the_recorded_entries(bayer):
    op = factory()(pattern="GRBG", shape=[3, 4, 6])
    s = op.singulars()
    assert torch.equal(s, torch.ones(4 * 6, dtype=torch.float64))
    x = torch.rand(1, 3, 4, 6, dtype=torch.float64)
    c = op.vt(x)
    recorded = op(torch.ones(1, 3, 4, 6, dtype=torch.float64)).flatten() > 0
    # the leading coordinates are the recorded entries in raster order, then the 48 others
    assert torch.equal(c[:, :24], x.flatten(1)[:, recorded]) and torch.equal(c[:, 24:], x.flatten(1)[:, ~recorded])
    assert torch.equal(op.v(c), x)


def test_bayer_refuses_what_it_cannot_measure(bayer):
    with pytest.raises(ValueError, match="pattern must be one of RGGB, BGGR, GRBG, GBRG"):
        factory()(pattern="RGBG")
    with pytest.raises(ValueError, match="RGB images \\(3 channels\\), got 1"):
        factory()()(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="3 channels"):
        factory()(shape=[4, 8, 8])
    with pytest.raises(ValueError, match="raw mosaic is \\(B, 1, H, W\\)"):
        factory()().planes(torch.rand(1, 3, 4, 4))


def test_bayer_through_the_cli(bayer, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    (item,) = [i for i in json.loads(listed.output)["items"] if i["name"] == "bayer"]
    assert item == {"name": "bayer", "kind": "operator", "plugin": "bayer",
                    "summary": "Bayer colour-filter array: each pixel keeps one of R, G, B after a 2 x 2 pattern "
                               "(RGGB, BGGR, GRBG or GBRG)."}
    checked = runner.invoke(app, ["check-operator", "bayer"])
    assert checked.exit_code == 0, checked.output
    assert re.search(r"^PASS  svd-reconstruct", checked.output, re.M) and "0 failed" in checked.output
    assert re.search(r"^PASS  build .*Bayer\(\{'pattern': 'RGGB'", checked.output, re.M)  # the declared example
    odd = runner.invoke(app, ["check-operator", "bayer", "--param", "pattern=GBRG", "--shape", "3,9,7"])
    assert odd.exit_code == 0, odd.output

    image = tmp_path / "x.npy"
    x = np.random.default_rng(0).random((3, 6, 8)).astype(np.float32)
    np.save(image, x)
    out = tmp_path / "raw.npy"
    result = runner.invoke(app, ["degrade", str(image), "--op", "bayer", "--param", "pattern=BGGR", "-o", str(out)])
    assert result.exit_code == 0, result.output
    measurement = load_measurement(out.with_suffix(".json"), plugins.load_registry())
    assert measurement.operator.params()["pattern"] == "BGGR"
    assert torch.equal(measurement.y, measurement.operator(torch.from_numpy(x)[None]))
    bad = runner.invoke(app, ["degrade", str(image), "--op", "bayer", "--param", "pattern=XYZW", "-o", str(out)])
    assert bad.exit_code == 2 and "pattern must be one of" in bad.output and "Traceback" not in bad.output


def test_mask_and_svd_strategies_take_it_and_keep_the_recorded_colours(bayer):
    """RePaint, DDRM and DDNM accept the operator; DDRM on a noiseless mosaic with the analytic
    N(0, I) prior keeps the recorded entries exactly and samples the others."""
    from restore.priors.spec import load_prior
    from restore.strategies.base import Problem
    from restore.strategies.engine import solve

    registry = plugins.load_registry()
    prior = load_prior("gaussian:3x4x4", registry=registry)
    op = factory()(pattern="GRBG")
    x = torch.rand(400, 3, 4, 4, dtype=torch.float64)
    problem = Problem(prior, op, op(x))
    for name in ("repaint", "ddrm", "ddnm"):
        registry.get("strategy", name)().check(problem)
    result = solve(problem, registry.get("strategy", "ddrm")(), steps=20, registry=registry,
                   generator=torch.Generator().manual_seed(0))
    recorded = op(torch.ones(1, 3, 4, 4, dtype=torch.float64)).bool().expand_as(x)
    assert torch.allclose(result.image[recorded], x[recorded], atol=1e-6)
    # the colours the sensor did not record come from the prior (mean 0), not from x (mean 0.5);
    # their spread is DDRM's, which under-disperses unobserved directions (variance 0.62 of 1 here)
    free = result.image[~recorded]
    assert abs(float(free.mean())) < 0.03 and float(free.std()) > 0.3
