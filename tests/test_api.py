"""The high-level API: image kinds in and out, batching, seeding, listeners, README snippet."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import restore
from restore.api import RestoreError
from restore.cli.progress import ProgressBar
from restore.hookspecs import hookimpl
from restore.priors.native import NativeConfig, save_native
from restore.priors.unet import CompactUNet, UNetConfig
from restore.strategies.catalog import DEFAULTS

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    torch.manual_seed(0)
    net = CompactUNet(UNetConfig(channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4))
    return restore.load_prior(f"unet:{save_native(tmp_path_factory.mktemp('p'), net, NativeConfig(net.config))}")


def test_readme_python_snippet_runs_as_written():
    text = README.read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})


def test_kinds_come_back_as_they_came(prior):
    mask = np.zeros((12, 10))
    mask[3:8, 2:6] = 1  # 1 = fill, as on the command line
    x = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    kw = dict(prior=prior, method="ddnm+", steps=2, seed=0)  # a sampler that keeps the known pixels exactly
    out = restore.inpaint(x, mask, **kw)
    assert out.image.shape == (2, 3, 12, 10) and out.image.dtype == torch.float32
    assert restore.inpaint(x[0], mask, **kw).image.shape == (3, 12, 10)
    assert restore.inpaint(x[0].double(), mask, **kw).image.dtype == torch.float64
    pixels = (x[0].permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
    back = restore.inpaint(pixels, mask, **kw)
    assert back.image.dtype == np.uint16 and back.image.shape == (12, 10, 3)
    assert np.array_equal(back.image[mask == 0], pixels[mask == 0])  # known pixels kept exactly
    rgba = Image.fromarray(np.dstack([(pixels >> 8).astype(np.uint8), np.full((12, 10), 200, np.uint8)]), "RGBA")
    result = restore.inpaint(rgba, mask, **kw)
    assert result.image.mode == "RGBA" and np.array_equal(np.asarray(result.image)[..., 3], np.full((12, 10), 200))
    assert result.std.dtype == np.float32 and result.std.shape == (12, 10, 3)


def test_batch_items_do_not_depend_on_the_batch_and_global_rng_is_untouched(prior):
    x = torch.rand(3, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    state = torch.get_rng_state()
    kw = dict(prior=prior, method="ddrm", steps=3)  # a sampler: the seed matters
    batched = restore.sr(x, 2, seed=10, **kw)
    assert torch.equal(torch.get_rng_state(), state)
    alone = restore.sr(x[2:], 2, seed=12, **kw)  # item k of a batch uses seed + k
    assert torch.equal(batched.image[2:], alone.image)
    again = restore.sr(x, 2, seed=10, **kw)
    assert torch.equal(batched.image, again.image)
    other = restore.sr(x, 2, seed=11, **kw)
    assert not torch.equal(batched.image, other.image)


def test_samples_mean_and_std(prior):
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    result = restore.denoise(x, 0.1, prior=prior, method="ddnm+", steps=2, seed=0, samples=3)
    draws = result.tensors["samples"]
    assert draws.shape == (3, 1, 3, 8, 8) and len(result.samples) == 3
    assert torch.allclose(result.image, draws.mean(0)) and torch.allclose(result.std, draws.std(0, correction=0))
    assert result.provenance["operator"]["params"]["noise"] == {"kind": "gaussian", "sigma": 0.1}
    assert result.provenance["samples"] == 3 and result.nfe == 6  # per image: 2 steps for each of 3 samples


def test_the_record_keeps_the_runs_warnings_not_the_garbage_collectors(prior):
    """A ResourceWarning (the garbage collector's, whenever it runs, about a file some other code
    left open) is not the run's: the record's warnings leave it out and keep the run's own."""
    import warnings

    class Noisy:
        @hookimpl
        def restore_run_start(self, info):
            warnings.warn("unclosed file <_io.BufferedReader name=13>", ResourceWarning)
            warnings.warn("the run's own warning", UserWarning)

    result = restore.deblur(torch.rand(1, 3, 12, 12), "gaussian", kernel_options={"size": 3, "std": 1.0}, prior=prior,
                            steps=2, seed=0, listeners=[Noisy()])
    assert result.provenance["warnings"] == ["the run's own warning"]


def test_listeners_hear_every_step(prior):
    class Counter:
        def __init__(self):
            self.steps, self.started, self.ended = [], 0, 0

        @hookimpl
        def restore_run_start(self, info):
            self.started += 1

        @hookimpl
        def restore_step(self, event):
            self.steps.append((event.step, event.nfe))

        @hookimpl
        def restore_run_end(self, info):
            self.ended += 1

    counter, bar = Counter(), ProgressBar()
    restore.deblur(torch.rand(1, 3, 12, 12), "gaussian", kernel_options={"size": 3, "std": 1.0}, prior=prior,
                   steps=4, seed=0, listeners=[counter, bar])
    assert counter.started == counter.ended == 1 and [s for s, _ in counter.steps] == [0, 1, 2, 3]
    # per image, each sample counted: 4 steps for each of the fidelity default's samples
    samples = DEFAULTS["deblur"]["fidelity"]["fast"].samples
    assert samples > 1 and counter.steps[-1][1] == 4 * samples
    assert bar.progress is None  # the bar closed itself at the end
    result = restore.deblur(torch.rand(1, 3, 12, 12), "gaussian", kernel_options={"size": 3, "std": 1.0},
                            prior=prior, steps=2, seed=0)
    assert result.nfe == 2 * samples and len(counter.steps) == 4  # the listeners are gone after their run


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p: restore.restore("not an image", "denoise", prior=p), "unsupported image type"),
        (lambda p: restore.restore(np.zeros((4, 4), np.int32), "denoise", prior=p), "uint8, uint16 or float"),
        (lambda p: restore.restore(torch.full((1, 3, 4, 4), float("nan")), "denoise", prior=p), "finite"),
        (lambda p: restore.restore(np.full((4, 4), np.inf), "denoise", prior=p), "finite"),
        (lambda p: restore.inpaint(torch.rand(1, 3, 4, 4), np.full((4, 4), 0.5), prior=p), "0 \\(black\\)"),
        (lambda p: restore.deblur(torch.rand(1, 3, 8, 8), "gaussian:x", prior=p), "gaussian\\[:STD"),
        (lambda p: restore.restore(torch.rand(1, 3, 4, 4), "denoise", prior=p, samples=0), "samples"),
        (lambda p: restore.denoise(torch.rand(1, 3, 4, 4), 0.1, prior=p, samples=3),  # the default: tweedie
         "strategy 'tweedie' estimates the posterior mean and is deterministic: 3 samples"),
        (lambda p: restore.sr(torch.rand(1, 3, 4, 4), 2, prior=p, method="dpir", samples=2), "'dpir' estimates"),
        (lambda p: restore.sr(torch.rand(1, 3, 4, 4), 2, prior=p, method="dpir", target="perceptual"),
         "'dpir' estimates the posterior mean \\(the fidelity target\\); the perceptual target is a posterior sample"),
        (lambda p: restore.restore(torch.rand(1, 3, 4, 4), "denoise", prior=p, dtype="float8"), "unknown dtype"),
        (lambda p: restore.restore(torch.rand(1, 3, 4, 4), "denoise", prior=p, noise=float("inf")), "finite"),
        (lambda p: restore.restore(torch.rand(1, 3, 4, 4), "denoise", prior=p, params={"nosuch": 1}), "nosuch"),
    ],
)
def test_api_mistakes_are_clear(prior, call, message):
    with pytest.raises(RestoreError, match=message):
        call(prior)


@pytest.mark.parametrize("array", [
    (np.arange(120).reshape(12, 10) * 500).astype(np.uint16),  # PIL mode I;16
    (np.arange(120).reshape(12, 10) * 2).astype(np.uint8),  # L
    (np.arange(360).reshape(12, 10, 3) % 256).astype(np.uint8),  # RGB
])
def test_pil_images_convert_both_ways_exactly(array):
    from restore.api import from_tensor, to_tensor

    image = Image.fromarray(array)
    x, alpha, kind = to_tensor(image)
    back = from_tensor(x, kind, alpha)
    assert back.mode == image.mode and np.array_equal(np.asarray(back), array)


def test_numpy_alpha_is_kept_aside_and_opaque_alpha_follows_super_resolution(prior):
    rgba = (np.arange(8 * 8 * 4).reshape(8, 8, 4) % 200).astype(np.uint8)
    rgba[..., 3] = 255
    result = restore.sr(rgba, 2, prior=prior, steps=2, seed=0)
    assert result.image.shape == (16, 16, 4) and np.all(result.image[..., 3] == 255)
    rgba[..., 3] = 100
    kept = restore.denoise(rgba, 0.1, prior=prior, seed=0)
    assert np.all(kept.image[..., 3] == 100) and kept.std.shape == (8, 8, 3)
    with pytest.raises(RestoreError, match="transparency"):
        restore.sr(rgba, 2, prior=prior, steps=2, seed=0)


def test_denoise_defaults_to_the_posterior_mean(prior):
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    result = restore.denoise(x, 0.1, prior=prior, seed=0)
    assert result.provenance["strategy"]["name"] == "tweedie" and result.nfe == 1
    # it takes no steps: more are run as its one, said and recorded so
    said = "'tweedie' is one evaluation at the measurement's noise level: 5 steps ignored"
    with pytest.warns(UserWarning, match=said):
        more = restore.denoise(x, 0.1, prior=prior, seed=0, steps=5)
    assert more.provenance["steps"] == result.provenance["steps"] == 1 and torch.equal(more.image, result.image)
    assert any(said in w for w in more.provenance["warnings"])


def test_quality_with_a_method_given_changes_nothing_and_says_so(prior):
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with pytest.warns(UserWarning, match="quality 'high' chooses the default run \\(ddrm, 100 steps\\); with the "
                                         "method 'ddrm' given it changes nothing: give the steps"):
        result = restore.denoise(x, 0.1, prior=prior, seed=0, method="ddrm", quality="high", target="perceptual")
    assert result.provenance["steps"] == 20 and result.provenance["quality"] == "high"


def test_one_mask_convention_with_the_command_line(prior, tmp_path):
    """1 / white = fill in arrays, .npy and image files alike; mask_white_known reads it the other way."""
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(5))
    fill = np.zeros((12, 10), np.uint8)
    fill[3:8, 2:6] = 1
    Image.fromarray(fill * 255).save(tmp_path / "fill.png")
    np.save(tmp_path / "fill.npy", fill.astype(np.float32))
    kw = dict(prior=prior, method="ddnm+", steps=2, seed=0)  # a method that keeps the known pixels exactly
    results = [restore.inpaint(x, m, **kw).image for m in (fill, torch.from_numpy(fill), str(tmp_path / "fill.png"),
                                                           str(tmp_path / "fill.npy"), fill.astype(bool))]
    results.append(restore.inpaint(x, 1 - fill, mask_white_known=True, **kw).image)
    for image in results:
        assert torch.equal(image, results[0])
    known = torch.from_numpy(fill == 0)
    assert torch.equal(results[0][..., known], x[..., known]) and not torch.equal(results[0], x)


def test_noisy_float_measurements_outside_0_1_are_taken(prior):
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    noisy = x + 0.2 * torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    assert noisy.min() < 0 and noisy.max() > 1
    result = restore.denoise(noisy, 0.2, prior=prior, seed=0)
    assert result.image.shape == noisy.shape and torch.isfinite(result.image).all()
    assert result.provenance["input"]["bits"] == 32 and result.provenance["quantization_sigma"] == 0


def test_colorize_gives_colour_for_2d_and_3_channel_grey_arrays(prior):
    grey = (np.arange(80).reshape(8, 10) * 3).astype(np.uint8)
    flat = restore.colorize(grey, prior=prior, steps=2, seed=0)
    assert flat.image.shape == (8, 10, 3) and flat.image.dtype == np.uint8
    stacked = restore.colorize(np.dstack([grey] * 3), prior=prior, steps=2, seed=0)
    assert np.array_equal(stacked.image, flat.image)
    with pytest.raises(RestoreError, match="colorize takes a grey image"):
        restore.colorize(np.dstack([grey, grey, grey // 2]), prior=prior, steps=2, seed=0)


def test_kernel_grammar_and_defaults_are_the_command_lines(prior):
    """``gaussian:2`` in the API is the operator of ``--kernel gaussian:2``: std 2, size 2 ceil(3 std) + 1 = 13."""
    from restore.operators.kernels import gaussian_kernel

    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    named = restore.deblur(x, "gaussian:2", prior=prior, steps=2, seed=0)
    given = restore.deblur(x, gaussian_kernel(size=13, std=2.0), prior=prior, steps=2, seed=0)
    assert torch.equal(named.image, given.image)
    assert named.provenance["operator"]["params"]["std"] == 2.0 and gaussian_kernel(std=2.0).shape == (13, 13)
