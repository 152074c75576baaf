"""Nonlinear operators (phase retrieval, JPEG, saturation, nonlinear blur) and the noise models."""
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from restore.operators.blur import blur
from restore.operators.jpeg import CHROMA_TABLE, JPEG, LUMA_TABLE, quantization_table, round_cubic, round_ste
from restore.operators.noise import GaussianNoise, NoiseModel, PoissonNoise
from restore.operators.nonlinear import NonlinearBlur, PhaseRetrieval, Saturation, soft_clip, srgb_response
from restore.plugins import load_registry

#: Test cases: (registered operator name, parameters), small enough for 12-24 pixel images.
CASES = {
    "phase-retrieval": ("phase-retrieval", {"oversample": 2.0}),
    "jpeg": ("jpeg", {"quality": 40}),
    "jpeg-cubic": ("jpeg", {"quality": 40, "rounding": "cubic", "subsample": False}),
    "saturation": ("saturation", {"gain": 1.5}),
    "saturation-soft": ("saturation", {"gain": 1.5, "softness": 0.05}),
    "nonlinear-blur": ("nonlinear-blur", {"kernel": "gaussian", "size": 5, "std": 1.0}),
    "nonlinear-blur-tanh": (
        "nonlinear-blur",
        {"kernel": "motion", "size": 5, "seed": 2, "response": "tanh", "boundary": "circular"},
    ),
}


def make(case):
    name, params = CASES[case]
    return load_registry().get("operator", name), params


def assert_close(a, b, tol, case):
    """Max error within ``tol``; for the codec, where a value rounded the other way moves
    a whole block by a quantization step, a mean error below one 8-bit level."""
    error = (a.double() - b.double()).abs()
    if case.startswith("jpeg"):
        assert error.mean() <= 1 / 255, error.mean()
    else:
        assert error.max() <= tol, error.max()


def smooth_image(shape, seed=0):
    """Smooth random images on [0, 1] (bicubic upsampling of a coarse random grid)."""
    b, c, h, w = shape
    coarse = torch.rand(b, c, max(h // 8, 2), max(w // 8, 2), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def test_registered_through_the_builtin_plugin():
    registry = load_registry()
    for name in ("phase-retrieval", "jpeg", "saturation", "nonlinear-blur"):
        assert registry.entries["operator"][name].plugin == "builtin-operators"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("shape", [(2, 3, 19, 23), (1, 1, 16, 16), (3, 4, 12, 17)])
def test_any_batch_channels_and_size_with_gradients(case, shape):
    factory, params = make(case)
    op = factory(**params)
    x = smooth_image(shape).requires_grad_(True)
    y = op(x)
    assert y.shape[:2] == shape[:2] and y.dtype == x.dtype and torch.isfinite(y).all()
    (y * torch.linspace(0.5, 1.5, y.numel()).reshape(y.shape)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_dtypes_follow_the_input(case):
    factory, params = make(case)
    op = factory(**params)
    x = smooth_image((1, 3, 16, 16), seed=1)
    y32, y64, y16 = op(x), op(x.double()), op(x.bfloat16())
    assert (y32.dtype, y64.dtype, y16.dtype) == (torch.float32, torch.float64, torch.bfloat16)
    scale = y64.abs().max().item()
    assert_close(y32, y64, 1e-4 * scale, case)
    # bfloat16 inputs carry 8 bits of mantissa; the operator must add no more than bfloat16 rounding.
    assert_close(y16, op(x.bfloat16().double()), 1e-2 * scale, case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_params_round_trip_through_json(case):
    factory, params = make(case)
    op = factory(**params, noise={"kind": "poisson", "rate": 30.0})
    rebuilt = factory(**json.loads(json.dumps(op.params())))
    assert rebuilt.params() == op.params()
    assert rebuilt.noise == PoissonNoise(30.0)
    x = smooth_image((2, 3, 16, 16), seed=2)
    assert torch.equal(rebuilt(x), op(x))


@pytest.mark.parametrize(
    "factory, kwargs, message",
    [
        (PhaseRetrieval, {"oversample": 0.5}, "oversample"),
        (PhaseRetrieval, {"oversample": float("nan")}, "oversample"),
        (Saturation, {"gain": 0}, "gain"),
        (Saturation, {"softness": -1}, "softness"),
        (JPEG, {"quality": 0}, "quality"),
        (JPEG, {"quality": 101}, "quality"),
        (JPEG, {"quality": 50.5}, "quality"),
        (JPEG, {"subsample": "yes"}, "subsample"),
        (JPEG, {"rounding": "floor"}, "rounding"),
        (NonlinearBlur, {"response": "cubic"}, "response"),
        (NonlinearBlur, {"response": "srgb", "strength": 2.0}, "strength"),
        (NonlinearBlur, {"response": "tanh", "strength": -1.0}, "strength"),
        (NonlinearBlur, {"size": 4}, "size"),
    ],
)
def test_bad_parameters_are_named(factory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)


def test_bad_input_shape_is_an_error():
    with pytest.raises(ValueError, match="B, C, H, W"):
        Saturation()(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="bound"):
        JPEG(shape=[3, 16, 16])(torch.rand(1, 3, 8, 8))


# ----------------------------------------------------------------------------- phase retrieval


def test_phase_retrieval_is_the_centred_orthonormal_dft_magnitude():
    x = torch.rand(2, 1, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = PhaseRetrieval(oversample=1.5)(x)
    n_h, n_w = 8, 9  # round(1.5 * 5) = 8 (half up), 1.5 * 6 = 9
    assert y.shape == (2, 1, n_h, n_w)
    canvas = torch.zeros(2, 1, n_h, n_w, dtype=torch.float64)
    canvas[..., 1:6, 1:7] = x  # centred: pads (1, 2) rows and (1, 2) columns
    k, m = torch.arange(n_h, dtype=torch.float64), torch.arange(n_w, dtype=torch.float64)
    dft_h = torch.exp(-2j * math.pi * torch.outer(k, k) / n_h) / math.sqrt(n_h)
    dft_w = torch.exp(-2j * math.pi * torch.outer(m, m) / n_w) / math.sqrt(n_w)
    spectrum = dft_h @ canvas.to(torch.complex128) @ dft_w.T
    expected = torch.roll(spectrum.abs(), shifts=(n_h // 2, n_w // 2), dims=(-2, -1))
    assert torch.allclose(y, expected, atol=1e-12)


def test_phase_retrieval_parseval_and_trivial_ambiguities():
    op = PhaseRetrieval()
    x = torch.rand(3, 3, 16, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = op(x)
    assert y.shape == (3, 3, 32, 40)
    assert torch.allclose((y**2).sum(dim=(-2, -1)), (x**2).sum(dim=(-2, -1)))
    assert torch.allclose(op(torch.flip(x, dims=(-2, -1))), y)  # point reflection
    small = torch.zeros(1, 1, 16, 20, dtype=torch.float64)
    small[..., 4:9, 6:12] = x[:1, :1, :5, :6]
    moved = torch.roll(small, shifts=(5, -4), dims=(-2, -1))  # the object moves, with zeros around it
    assert torch.allclose(op(moved), op(small))


def test_phase_retrieval_gradcheck():
    x = torch.rand(1, 2, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.1
    assert torch.autograd.gradcheck(PhaseRetrieval(oversample=1.5), (x.requires_grad_(True),))


# ----------------------------------------------------------------------------- saturation


def test_hard_saturation_is_the_clip_and_blocks_the_gradient_where_saturated():
    x = torch.tensor([[[[-0.2, 0.1, 0.3, 0.6, 0.9]]]], requires_grad=True)
    y = Saturation(gain=2.0)(x)
    assert torch.equal(y.detach(), torch.tensor([[[[0.0, 0.2, 0.6, 1.0, 1.0]]]]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([[[[0.0, 2.0, 2.0, 0.0, 0.0]]]]))


def test_soft_saturation_bounds_and_gradient():
    tau, gain = 0.05, 2.0
    x = torch.linspace(-1, 2, 301, dtype=torch.float64).reshape(1, 1, 1, -1).requires_grad_(True)
    y = Saturation(gain=gain, softness=tau)(x)
    z = gain * x.detach()
    assert (y - z.clamp(0, 1)).abs().max() <= tau * math.log(2) + 1e-12
    y.sum().backward()
    expected = gain * (torch.sigmoid(z / tau) - torch.sigmoid((z - 1) / tau))
    assert torch.allclose(x.grad, expected)
    # Within 10 tau of the clip points the values stay strictly inside (0, 1) and the
    # gradient strictly positive (further out both round off to the hard clip's).
    near = (z > -10 * tau) & (z < 1 + 10 * tau)
    assert ((y[near] > 0) & (y[near] < 1)).all() and (x.grad[near] > 0).all()
    points = torch.linspace(-0.3, 1.3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: soft_clip(t, 0.1), (points,))


# ----------------------------------------------------------------------------- nonlinear blur


def test_nonlinear_blur_is_the_response_of_the_linear_blur():
    x = smooth_image((2, 3, 20, 20), seed=3)
    linear = blur("gaussian", size=7, std=1.2, boundary="reflect")
    srgb = NonlinearBlur("gaussian", size=7, std=1.2)
    tanh = NonlinearBlur("gaussian", size=7, std=1.2, response="tanh", strength=3.0)
    u = linear(x)
    assert torch.allclose(srgb(x), srgb_response(u), atol=1e-6)
    assert torch.allclose(tanh(x), torch.tanh(3.0 * u) / math.tanh(3.0), atol=1e-6)
    knee = 0.0031308  # the sRGB curve is continuous at its knee and fixes 0 and 1
    values = srgb_response(torch.tensor([0.0, knee, 1.0], dtype=torch.float64))
    assert torch.allclose(values, torch.tensor([0.0, 12.92 * knee, 1.0], dtype=torch.float64), atol=1e-6)


def test_nonlinear_blur_keeps_user_kernels_as_tensors():
    kernel = torch.rand(5, 5, generator=torch.Generator().manual_seed(4))
    op = NonlinearBlur(kernel)
    assert set(op.tensors()) == {"kernel"} and "kernel" not in op.params()
    rebuilt = NonlinearBlur(**op.params(), **op.tensors())
    x = smooth_image((1, 3, 16, 16))
    assert torch.equal(rebuilt(x), op(x))


def test_nonlinear_blur_gradcheck():
    op = NonlinearBlur("gaussian", size=3, std=0.8, response="tanh", boundary="circular")
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert torch.autograd.gradcheck(op, (x.requires_grad_(True),))


# ----------------------------------------------------------------------------- JPEG


def pillow_jpeg(pixels: np.ndarray, quality: int, subsampling: int):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as image:
        return np.asarray(image).astype(np.float64), image.quantization


@pytest.mark.parametrize("quality", [1, 10, 50, 75, 90, 100])
def test_quantization_tables_are_libjpegs(quality):
    pixels = np.zeros((8, 8, 3), np.uint8)
    _, tables = pillow_jpeg(pixels, quality, 0)
    assert list(tables[0]) == quantization_table(LUMA_TABLE, quality).flatten().tolist()
    assert list(tables[1]) == quantization_table(CHROMA_TABLE, quality).flatten().tolist()


def to_pixels(x):
    return (x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


@pytest.mark.parametrize("quality", [10, 50])
@pytest.mark.parametrize("shape", [(3, 48, 64), (3, 45, 50), (1, 40, 40)])
def test_jpeg_matches_libjpeg_at_444(quality, shape):
    x = torch.from_numpy(to_pixels(smooth_image((1, *shape)))).permute(2, 0, 1)[None].float() / 255
    pixels = to_pixels(x)
    reference, _ = pillow_jpeg(pixels if shape[0] == 3 else pixels[..., 0], quality, 0)
    ours = to_pixels(JPEG(quality=quality, subsample=False)(x)).astype(np.float64)
    ours = ours if shape[0] == 3 else ours[..., 0]
    error = np.abs(ours - reference)
    assert (error == 0).mean() >= 0.85 and error.mean() <= 0.3, (error.mean(), (error == 0).mean())


def test_jpeg_with_chroma_subsampling_is_close_to_libjpeg():
    x = smooth_image((1, 3, 64, 64), seed=6)
    pixels = to_pixels(x)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    for quality in (20, 75):
        reference, _ = pillow_jpeg(pixels, quality, 2)
        ours = to_pixels(JPEG(quality=quality, subsample=True)(x)).astype(np.float64)
        identity = np.abs(pixels - reference).mean()
        assert np.abs(ours - reference).mean() <= min(1.0, identity / 4)


def test_jpeg_codes_other_channel_counts_plane_by_plane():
    x = smooth_image((2, 4, 16, 24), seed=7)
    op = JPEG(quality=30)
    y = op(x)
    for c in range(4):
        assert torch.equal(y[:, c : c + 1], op(x[:, c : c + 1]))


def test_rounding_stand_ins():
    z = torch.tensor([-1.6, -0.4, 0.2, 0.7, 2.45], dtype=torch.float64, requires_grad=True)
    ste = round_ste(z)
    ste.sum().backward()
    assert torch.equal(ste.detach(), torch.round(z.detach()))
    assert torch.equal(z.grad, torch.ones(5, dtype=torch.float64))
    z.grad = None
    cubic = round_cubic(z)
    cubic.sum().backward()
    r = z.detach() - torch.round(z.detach())
    assert torch.allclose(cubic.detach(), torch.round(z.detach()) + r**3)
    assert torch.allclose(z.grad, 3 * r**2)


def test_cubic_jpeg_gradcheck():
    x = smooth_image((1, 3, 8, 8), seed=8).double() * 0.9 + 0.05
    op = JPEG(quality=50, rounding="cubic", subsample=False)
    # A tiny step keeps the finite differences off the jumps of the rounding at half-integers.
    assert torch.autograd.gradcheck(op, (x.requires_grad_(True),), eps=1e-9, atol=1e-5, fast_mode=True)


# ----------------------------------------------------------------------------- noise models

N = 400_000


@pytest.mark.parametrize("sigma", [0.01, 0.2])
def test_gaussian_noise_statistics(sigma):
    clean = torch.full((N,), 0.3, dtype=torch.float64)
    y = GaussianNoise(sigma).sample(clean, generator=torch.Generator().manual_seed(0))
    n = y - clean
    assert abs(n.mean().item()) <= 5 * sigma / math.sqrt(N)
    assert abs(n.var().item() / sigma**2 - 1) <= 5 * math.sqrt(2 / N)


@pytest.mark.parametrize("level", [0.05, 0.5, 1.0])
def test_poisson_noise_statistics(level):
    rate = 40.0
    clean = torch.full((N,), level, dtype=torch.float64)
    y = PoissonNoise(rate).sample(clean, generator=torch.Generator().manual_seed(1))
    counts = y * rate
    lam = level * rate
    assert (counts - counts.round()).abs().max() < 1e-9 and (counts >= 0).all()  # whole photon counts
    assert abs(y.mean().item() - level) <= 5 * math.sqrt(level / rate / N)
    # Var of the sample variance of Poisson(lam) counts is about (lam + 2 lam^2) / N.
    assert abs(counts.var().item() - lam) <= 5 * math.sqrt((lam + 2 * lam**2) / N)


@pytest.mark.parametrize("model", [GaussianNoise(0.1), PoissonNoise(20.0)])
def test_noise_is_reproducible_from_its_seed(model):
    clean = torch.rand(2, 3, 8, 8)
    draw = lambda seed: model.sample(clean, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(5), draw(5)) and not torch.equal(draw(5), draw(6))
    assert draw(5).dtype == clean.dtype and model.sample(clean.double()).dtype == torch.float64


def test_noise_json_round_trip_and_defaults():
    for model in (GaussianNoise(0.0), GaussianNoise(0.05), PoissonNoise(7.5)):
        assert NoiseModel.from_json(json.loads(json.dumps(model.to_json()))) == model
    assert NoiseModel.from_json(None) == GaussianNoise(0.0)
    clean = torch.rand(4)
    assert GaussianNoise(0.0).sample(clean) is clean


@pytest.mark.parametrize(
    "data, message",
    [
        ({"kind": "gaussian", "sigma": -0.1}, "sigma"),
        ({"kind": "gaussian", "sigma": float("nan")}, "sigma"),
        ({"kind": "poisson", "rate": 0}, "rate"),
        ({"kind": "speckle", "sigma": 0.1}, "speckle"),
    ],
)
def test_bad_noise_parameters_are_errors(data, message):
    with pytest.raises(ValueError, match=message):
        NoiseModel.from_json(data)
