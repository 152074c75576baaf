"""The linear built-in operators: exact adjoints, pseudo-inverses and SVDs (float64,
against dense matrices where small), clear parameter errors, seeded generators,
MATLAB bicubic weights, JSON round trips."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from restore.operators.base import SVDOperator
from restore.operators.blur import blur
from restore.operators.colorize import Colorize
from restore.operators.identity import Denoise
from restore.operators.inpaint import Inpaint
from restore.operators.kernels import gaussian_kernel, load_kernel, motion_kernel
from restore.operators.masks import _draw_segment, box_mask, load_mask, outpaint_mask, random_mask, stroke_mask
from restore.operators.resize import Downsample, bicubic_matrix, cubic
from restore.operators.sensing import CompressedSensing


#: A 3 x 3 kernel whose spectrum stays >= 0.2 in magnitude: CGLS converges to A^+ fast.
WELL_CONDITIONED = torch.tensor([[0.0, 0.1, 0.0], [0.05, 0.6, 0.15], [0.0, 0.1, 0.0]], dtype=torch.float64)
USER_MASK = (torch.rand(3, 8, 10, generator=torch.Generator().manual_seed(1)) > 0.4).double()

#: (id, factory, params, input shape (C, H, W)); shapes are small so dense matrices are cheap.
CASES = [
    ("inpaint-box", Inpaint, dict(mask="box", seed=3), (3, 8, 10)),
    ("inpaint-random", Inpaint, dict(mask="random", ratio=0.6, seed=1), (2, 8, 10)),
    ("inpaint-strokes", Inpaint, dict(mask="strokes", seed=2), (3, 16, 12)),
    ("inpaint-expand", Inpaint, dict(mask="outpaint", side="expand", invert=True), (1, 8, 10)),
    ("inpaint-user", Inpaint, dict(mask=USER_MASK), (3, 8, 10)),
    ("blur-gaussian-circular", blur, dict(kernel="gaussian", size=5, std=1.0), (2, 8, 10)),
    ("blur-motion-circular-odd", blur, dict(kernel="motion", size=5, intensity=0.8, seed=4), (1, 7, 9)),
    ("blur-user-circular", blur, dict(kernel=WELL_CONDITIONED), (3, 8, 6)),
    ("blur-reflect", blur, dict(kernel=WELL_CONDITIONED, boundary="reflect", tol=1e-13), (2, 8, 10)),
    ("blur-valid", blur, dict(kernel=WELL_CONDITIONED, boundary="valid", tol=1e-13), (2, 8, 10)),
    ("blur-valid-even", blur, dict(kernel=torch.tensor([[1.0, 0.5], [0.25, 2.0]]), boundary="valid", tol=1e-13),
     (1, 6, 7)),
    ("sr-bicubic-2", Downsample, dict(scale=2), (2, 8, 12)),
    ("sr-bicubic-4", Downsample, dict(scale=4), (1, 16, 8)),
    ("sr-avgpool-3", Downsample, dict(scale=3, method="avgpool"), (2, 9, 6)),
    ("colorize-mean", Colorize, dict(), (3, 6, 7)),
    ("colorize-bt601", Colorize, dict(weights="bt601"), (3, 6, 7)),
    ("denoise", Denoise, dict(), (2, 5, 6)),
    ("cs-hadamard", CompressedSensing, dict(ratio=0.3, block=4, seed=5), (2, 8, 12)),
    ("cs-orthogonal", CompressedSensing, dict(ratio=0.5, basis="orthogonal", block=[2, 3], seed=5), (1, 6, 9)),
]
IDS = [case[0] for case in CASES]


def build(factory, params, shape=None):
    return factory(**params, **({} if shape is None else {"shape": list(shape)}))


def dense(op, shape):
    """The matrix of ``op.forward`` on inputs of ``shape``, one column per basis image."""
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    return op.forward(basis).reshape(n, -1).T


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("_, factory, params, shape", CASES, ids=IDS)
def test_adjoint_dot_product(_, factory, params, shape):
    op = build(factory, params)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, *shape, generator=g, dtype=torch.float64)
    y = op.forward(x)
    w = torch.randn(y.shape, generator=g, dtype=torch.float64)
    lhs, rhs = (y * w).sum(), (x * op.adjoint(w)).sum()
    assert abs(lhs - rhs) / max(abs(lhs), abs(rhs)) <= 1e-10


@pytest.mark.parametrize("_, factory, params, shape", CASES, ids=IDS)
def test_matches_dense_matrix(_, factory, params, shape):
    """adjoint = A^T and pinv = A^+ entry by entry, against numpy on the dense matrix."""
    op = build(factory, params)
    a = dense(op, shape)
    y_shape = op.forward(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:]
    eye = torch.eye(a.shape[0], dtype=torch.float64).reshape(-1, *y_shape)
    adjoint = op.adjoint(eye).reshape(a.shape[0], -1)
    assert torch.allclose(adjoint, a, rtol=0, atol=1e-13)
    pinv = op.pinv(eye).reshape(a.shape[0], -1).T
    reference = torch.linalg.pinv(a)
    assert relative(pinv, reference) <= 1e-8
    assert relative(a @ pinv @ a, a) <= 1e-10


SVD_CASES = [case for case in CASES if not case[0].startswith("blur") or "circular" in case[0]]


@pytest.mark.parametrize("_, factory, params, shape", SVD_CASES, ids=[case[0] for case in SVD_CASES])
def test_svd_reconstructs_the_operator(_, factory, params, shape):
    op = build(factory, params, shape)
    assert isinstance(op, SVDOperator)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, *shape, generator=g, dtype=torch.float64)
    y = op.forward(x)
    s = op.singulars()
    coeffs = op.vt(x)
    assert coeffs.shape == (3, x[0].numel()) and op.ut(y).shape == (3, y[0].numel())
    scaled = torch.zeros(3, y[0].numel(), dtype=torch.float64)
    scaled[:, : s.numel()] = coeffs[:, : s.numel()] * s
    assert relative(op.u(scaled), y) <= 1e-12
    assert relative(op.v(coeffs), x) <= 1e-12 and abs(coeffs.norm() - x.norm()) <= 1e-12 * x.norm()
    c = torch.randn(3, y[0].numel(), generator=g, dtype=torch.float64)
    assert relative(op.ut(op.u(c)), c) <= 1e-12 and abs(op.u(c).norm() - c.norm()) <= 1e-12 * c.norm()
    singular_values = torch.linalg.svdvals(dense(op, shape))
    padded = torch.cat([s, torch.zeros(singular_values.numel() - s.numel(), dtype=torch.float64)])
    assert torch.allclose(padded.sort(descending=True).values, singular_values, rtol=0, atol=1e-12)


def test_circular_blur_svd_is_real_for_an_asymmetric_kernel_on_even_and_odd_sizes():
    kernel = torch.tensor([[0.0, 0.3, 0.0], [0.1, 0.2, 0.0], [0.0, 0.0, 0.4]], dtype=torch.float64)
    for shape in [(1, 6, 8), (1, 5, 7), (2, 4, 5)]:
        op = blur(kernel, shape=list(shape))
        n = math.prod(shape)
        v = op.v(torch.eye(n, dtype=torch.float64))
        u = op.u(torch.eye(n, dtype=torch.float64))
        for q in (v.reshape(n, n), u.reshape(n, n)):
            assert q.dtype == torch.float64
            assert torch.allclose(q @ q.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
        # U diag(s) V^T is the dense matrix.
        a = u.reshape(n, n).T @ torch.diag(op.singulars()) @ v.reshape(n, n)
        assert torch.allclose(a, dense(op, shape), atol=1e-12)
        assert not torch.allclose(u, v)  # the kernel's phases make U differ from V


@pytest.mark.parametrize("boundary, pad_mode", [("circular", "circular"), ("reflect", "reflect"), ("valid", None)])
def test_blur_is_a_true_convolution_with_the_stated_boundary(boundary, pad_mode):
    """Against PyTorch's own padding and conv2d (a correlation, hence the flipped kernel)."""
    kernel = torch.rand(5, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    op = blur(kernel, boundary=boundary)
    x = torch.rand(2, 3, 11, 9, dtype=torch.float64)
    padded = x if pad_mode is None else torch.nn.functional.pad(x, (1, 1, 2, 2), mode=pad_mode)
    weight = (kernel / kernel.sum()).flip(0, 1).expand(3, 1, 5, 3)
    assert torch.allclose(op(x), torch.nn.functional.conv2d(padded, weight, groups=3), atol=1e-14)


def test_blur_convention_shifts_by_the_kernel_offset():
    shift = torch.zeros(3, 3, dtype=torch.float64)
    shift[2, 1] = 1.0  # offset (+1, 0) from the centre: y(n) = x(n - (1, 0))
    x = torch.rand(1, 1, 6, 5, dtype=torch.float64)
    assert torch.allclose(blur(shift)(x), torch.roll(x, shifts=1, dims=2), atol=1e-15)


@pytest.mark.parametrize("_, factory, params, shape", CASES, ids=IDS)
def test_json_round_trip_rebuilds_identical_operator(_, factory, params, shape, tmp_path):
    op = build(factory, params)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    params_back = json.loads(json.dumps(op.params()))
    assert torch.equal(factory(**params_back, **op.tensors()).forward(x), op.forward(x))
    files = {}
    for name, tensor in op.tensors().items():
        files[name] = tmp_path / f"{name}.npy"
        np.save(files[name], tensor.numpy())
    assert torch.equal(factory(**params_back, **files).forward(x), op.forward(x))


def test_noise_is_read_from_its_json_form():
    op = Denoise(noise={"kind": "gaussian", "sigma": 0.1})
    assert op.params()["noise"] == {"kind": "gaussian", "sigma": 0.1}
    x = torch.zeros(1, 1, 4, 4)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(op.measure(x, g()), 0.1 * torch.randn(1, 1, 4, 4, generator=g()))


# ----------------------------------------------------------------------------- errors


def assert_one_error(call, kind, *words):
    """``call`` raises ``kind`` once (no chained exception) with every word in its message."""
    with pytest.raises(kind) as info:
        call()
    assert info.value.__cause__ is None and info.value.__context__ is None
    for word in words:
        assert word in str(info.value)


def test_kernel_larger_than_image():
    op = blur("gaussian", size=9, std=2.0)
    assert_one_error(lambda: op.forward(torch.zeros(1, 1, 8, 16)), ValueError, "kernel", "9x9", "8x16")
    for boundary in ("circular", "reflect", "valid"):
        assert_one_error(lambda: blur("gaussian", size=9, boundary=boundary, shape=[1, 16, 8]), ValueError, "kernel")


def test_even_kernel_size():
    assert_one_error(lambda: gaussian_kernel(size=8), ValueError, "size", "odd")
    assert_one_error(lambda: blur("motion", size=60), ValueError, "size", "odd")
    for boundary in ("circular", "reflect"):
        assert_one_error(lambda: blur(torch.ones(4, 5), boundary=boundary), ValueError, "kernel", "4x5", "odd")
    assert blur(torch.ones(4, 5), boundary="valid").forward(torch.ones(1, 1, 6, 6)).shape == (1, 1, 3, 2)


def test_empty_or_zero_kernel(tmp_path):
    assert_one_error(lambda: blur(torch.zeros(0, 3)), ValueError, "kernel", "empty")
    assert_one_error(lambda: blur(torch.zeros(3, 3)), ValueError, "kernel", "sum")
    np.save(tmp_path / "zero.npy", np.zeros((5, 5)))
    assert_one_error(lambda: blur(tmp_path / "zero.npy"), ValueError, "kernel", "sum")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "black.png")
    assert_one_error(lambda: blur(str(tmp_path / "black.png")), ValueError, "kernel", "sum")
    assert_one_error(lambda: blur(torch.tensor([[1.0, float("nan"), 0.0]] * 3)), ValueError, "kernel", "NaN")
    assert_one_error(lambda: blur("gausian"), ValueError, "kernel", "gaussian")
    assert_one_error(lambda: blur("gaussian", intensity=0.5), ValueError, "intensity")
    assert_one_error(lambda: blur("gaussian", rcond=1e-3, boundary="reflect"), ValueError, "rcond")


def test_scale_must_divide_the_size():
    op = Downsample(scale=3)
    assert_one_error(lambda: op.forward(torch.zeros(1, 1, 9, 10)), ValueError, "scale", "9x10")
    assert_one_error(lambda: Downsample(scale=4, shape=[3, 16, 18]), ValueError, "scale")
    assert_one_error(lambda: Downsample(scale=0), ValueError, "scale")
    assert_one_error(lambda: Downsample(scale=2.5), ValueError, "scale")
    assert_one_error(lambda: Downsample(method="lanczos"), ValueError, "method")


def test_mask_size_and_channels_are_checked():
    op = Inpaint(mask=torch.ones(8, 8))
    assert_one_error(lambda: op.forward(torch.zeros(1, 3, 8, 9)), ValueError, "mask", "8x8", "8x9")
    op = Inpaint(mask=torch.ones(2, 8, 8))
    assert_one_error(lambda: op.forward(torch.zeros(1, 3, 8, 8)), ValueError, "mask", "2 channels")
    assert_one_error(lambda: Inpaint(mask=torch.ones(8, 8), shape=[1, 8, 7]), ValueError, "mask")
    assert_one_error(lambda: Inpaint(mask=torch.ones(2, 2, 8, 8)), ValueError, "mask", "shape")
    assert_one_error(lambda: Inpaint(mask="boxes"), ValueError, "mask", "box")
    assert_one_error(lambda: Inpaint(mask="box", ratio=0.5), ValueError, "ratio", "size")
    assert_one_error(lambda: Inpaint(mask=torch.ones(4, 4), seed=1), ValueError, "seed")
    assert_one_error(lambda: Inpaint(mask="box", size=20).forward(torch.zeros(1, 1, 16, 16)), ValueError, "size")


def test_other_parameter_errors():
    assert_one_error(lambda: CompressedSensing(block=4).forward(torch.zeros(1, 1, 8, 6)), ValueError, "block")
    assert_one_error(lambda: CompressedSensing(block=[3, 4]), ValueError, "block", "power of two")
    assert_one_error(lambda: CompressedSensing(ratio=0), ValueError, "ratio")
    assert_one_error(lambda: CompressedSensing(basis="dct"), ValueError, "basis")
    assert_one_error(lambda: Colorize().forward(torch.zeros(1, 1, 4, 4)), ValueError, "channels")
    assert_one_error(lambda: Colorize(weights="rec709"), ValueError, "weights")
    assert_one_error(lambda: motion_kernel(intensity=1.5), ValueError, "intensity")
    assert_one_error(lambda: random_mask(4, 4, ratio=1.5), ValueError, "ratio")
    assert_one_error(lambda: outpaint_mask(4, 4, side="middle"), ValueError, "side")
    assert_one_error(lambda: Denoise(shape=[3, 4]), ValueError, "shape")
    assert_one_error(lambda: Denoise(noise=0.1), TypeError, "noise")


def test_svd_needs_a_bound_shape():
    op = Downsample(scale=2)
    assert_one_error(op.singulars, ValueError, "shape=[C, H, W]")
    bound = Downsample(scale=2, shape=[1, 4, 4])
    assert_one_error(lambda: bound.forward(torch.zeros(1, 1, 4, 6)), ValueError, "shape")


@pytest.mark.parametrize("_, factory, params, shape", SVD_CASES, ids=[case[0] for case in SVD_CASES])
def test_bound_to_equals_building_with_the_shape(_, factory, params, shape):
    op = build(factory, params)
    bound = op.bound_to(shape)
    built = build(factory, params, shape)
    assert bound.shape == tuple(shape) and op.shape is None and bound.bound_to(list(shape)) is bound
    assert bound.params() == built.params()
    x = torch.rand(2, *shape, dtype=torch.float64)
    assert torch.equal(bound.singulars(), built.singulars()) and torch.equal(bound.vt(x), built.vt(x))


def test_bound_to_checks_the_shape():
    assert_one_error(lambda: blur("gaussian", size=9).bound_to([1, 8, 8]), ValueError, "kernel")
    assert_one_error(lambda: Downsample(scale=4).bound_to([1, 8, 6]), ValueError, "scale")
    assert_one_error(lambda: Inpaint(mask=torch.ones(4, 4)).bound_to([1, 4, 5]), ValueError, "mask")
    assert_one_error(lambda: Colorize().bound_to([1, 4, 4]), ValueError, "channels")
    assert_one_error(lambda: CompressedSensing(block=4).bound_to([1, 4, 6]), ValueError, "block")
    assert_one_error(lambda: Denoise(shape=[1, 4, 4]).bound_to([1, 4, 5]), ValueError, "bound")


def test_cgls_warns_when_it_does_not_converge():
    op = blur("gaussian", size=5, std=2.0, boundary="reflect", tol=1e-12, max_iter=3)
    with pytest.warns(RuntimeWarning, match="max_iter=3"):
        op.pinv(op.forward(torch.rand(1, 1, 8, 8, dtype=torch.float64)))


# ----------------------------------------------------------------------------- generators


@pytest.mark.parametrize(
    "generator, options",
    [(box_mask, {}), (random_mask, {"ratio": 0.3}), (stroke_mask, {}), (motion_kernel, {"size": 15})],
    ids=["box", "random", "strokes", "motion"],
)
def test_seeded_generators_are_reproducible_and_differ_across_seeds(generator, options):
    make = (lambda seed: generator(seed=seed, **options)) if generator is motion_kernel else (
        lambda seed: generator(48, 40, seed=seed, **options)
    )
    assert torch.equal(make(0), make(0))
    assert torch.equal(make(11), make(11))
    assert len({make(seed).numpy().tobytes() for seed in range(6)}) == 6


def test_cs_rows_are_seeded():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    for basis in ("hadamard", "orthogonal"):
        same = CompressedSensing(0.25, basis=basis, block=8, seed=1)
        assert torch.equal(same(x), CompressedSensing(0.25, basis=basis, block=8, seed=1)(x))
        assert not torch.allclose(same(x), CompressedSensing(0.25, basis=basis, block=8, seed=2)(x))


def test_box_mask_geometry():
    known = box_mask(256, 256, seed=4)
    rows, cols = torch.nonzero(~known, as_tuple=True)
    assert (~known).sum() == 128 * 128  # DPS: a 128 x 128 box ...
    # ... 16 px margin
    assert rows.min() >= 16 and rows.max() <= 255 - 16 and cols.min() >= 16 and cols.max() <= 255 - 16
    assert rows.max() - rows.min() == 127 and cols.max() - cols.min() == 127
    known = box_mask(20, 30, seed=0, size=[4, 6], margin=0)
    assert (~known).sum() == 24


def test_random_mask_drops_exactly_the_ratio():
    assert (~random_mask(30, 20, seed=3, ratio=0.7)).sum() == round(0.7 * 600)
    assert random_mask(5, 5, ratio=0.0).all() and not random_mask(5, 5, ratio=1.0).any()


def test_stroke_masks_are_nontrivial_strokes():
    fractions = torch.tensor([(~stroke_mask(64, 64, seed=s)).double().mean() for s in range(8)])
    assert bool((fractions > 0).all()) and bool((fractions < 0.5).all()) and 0.03 < fractions.mean() < 0.3
    # Each segment clears exactly the pixels within the brush radius of it (a capsule).
    rng = np.random.default_rng(0)
    for _ in range(5):
        start, end, radius = tuple(rng.uniform(-2, 22, 2)), tuple(rng.uniform(-2, 22, 2)), rng.uniform(0.5, 4)
        known = torch.ones(20, 20, dtype=torch.bool)
        _draw_segment(known, start, end, radius)
        p, a, b = np.stack(np.meshgrid(np.arange(20), np.arange(20), indexing="ij"), -1), np.array(start), np.array(end)
        t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
        distance = np.linalg.norm(p - a - t[..., None] * (b - a), axis=-1)
        assert np.array_equal(known.numpy(), distance > radius)


def test_outpaint_masks():
    left = outpaint_mask(8, 10, side="left")
    assert not left[:, :5].any() and left[:, 5:].all()
    bottom = outpaint_mask(8, 10, side="bottom", fraction=0.25)
    assert bottom[:6].all() and not bottom[6:].any()
    expand = outpaint_mask(8, 12, side="expand")
    assert expand[2:6, 3:9].all() and expand.sum() == 4 * 6


def test_mask_file_convention(tmp_path):
    pixels = np.zeros((6, 8), np.uint8)
    pixels[1:3, 2:5] = 255  # white = region to fill
    pixels[4, 0] = 200  # light grey counts as white (threshold 0.5)
    Image.fromarray(pixels).convert("RGB").save(tmp_path / "mask.png")
    mask = load_mask(tmp_path / "mask.png")
    assert mask.shape == (1, 6, 8)
    assert mask[0, 1:3, 2:5].sum() == 0 and mask[0, 4, 0] == 0 and mask.sum() == 48 - 7
    assert torch.equal(load_mask(tmp_path / "mask.png", invert=True), 1 - mask)
    np.save(tmp_path / "mask.npy", mask.numpy())  # arrays use the engine convention: 1 = known
    assert torch.equal(load_mask(tmp_path / "mask.npy"), mask)
    op = Inpaint(mask=str(tmp_path / "mask.png"))
    x = torch.rand(2, 3, 6, 8, dtype=torch.float64)
    assert torch.equal(op(x), x * mask) and op.is_mask
    assert torch.equal(load_mask(torch.tensor([[0.2, 0.5, 0.9]])),
                       torch.tensor([[[0.0, 1.0, 1.0]]], dtype=torch.float64))


def test_kernel_files_are_normalized(tmp_path):
    Image.fromarray(np.array([[0, 51, 0], [51, 153, 51], [0, 51, 0]], np.uint8)).save(tmp_path / "k.png")
    op = blur(str(tmp_path / "k.png"))
    expected = torch.tensor([[0, 1, 0], [1, 3, 1], [0, 1, 0]], dtype=torch.float64) / 7
    assert torch.allclose(op.kernel, expected, atol=1e-15)
    np.save(tmp_path / "k.npy", 2 * expected.numpy())
    assert torch.allclose(blur(tmp_path / "k.npy").kernel, expected, atol=1e-15)
    assert load_kernel(torch.ones(1, 1, 3, 3)).shape == (3, 3)


def test_gaussian_kernel_values():
    k = gaussian_kernel(size=7, std=1.5)
    assert k.shape == (7, 7) and abs(k.sum().item() - 1) < 1e-15
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))
    assert math.isclose((k[3, 4] / k[3, 3]).item(), math.exp(-1 / (2 * 1.5**2)), rel_tol=1e-14)
    assert math.isclose((k[4, 4] / k[3, 3]).item(), math.exp(-2 / (2 * 1.5**2)), rel_tol=1e-14)


def test_motion_kernel_properties():
    for intensity in (0.0, 0.5, 1.0):
        k = motion_kernel(size=31, intensity=intensity, seed=2)
        assert k.shape == (31, 31) and bool((k >= 0).all()) and abs(k.sum().item() - 1) < 1e-12
        grid = torch.arange(31.0, dtype=torch.float64)
        rows, cols = torch.meshgrid(grid, grid, indexing="ij")
        centroid = ((k * rows).sum().item(), (k * cols).sum().item())
        assert max(abs(centroid[0] - 15), abs(centroid[1] - 15)) < 1.0  # centred: no net shift
    # intensity 0 is a straight line: across its principal axis the mass spreads only by
    # the bilinear sampling (variance <= 1/4), along it by the length (L^2 / 12).
    k = motion_kernel(size=31, intensity=0.0, seed=5).double()
    grid = torch.arange(31.0, dtype=torch.float64)
    rows, cols = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([rows.flatten(), cols.flatten()], 1)
    mean = (k.flatten()[:, None] * points).sum(0)
    cov = ((points - mean).T * k.flatten()) @ (points - mean)
    small, large = torch.linalg.eigvalsh(cov)
    assert small < 0.25 and large > 20
    k = motion_kernel(size=31, intensity=1.0, seed=5).double()
    centred = points - (k.flatten()[:, None] * points).sum(0)
    cov = (centred.T * k.flatten()) @ centred
    assert torch.linalg.eigvalsh(cov)[0] > 1.0  # a shaken path spreads in both directions


# ----------------------------------------------------------------------------- MATLAB bicubic


def test_cubic_kernel_values():
    t = torch.tensor([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5], dtype=torch.float64)
    expected = torch.tensor([1.0, 0.8671875, 0.2265625, 0.0, -0.0703125, -0.0234375, 0.0, 0.0], dtype=torch.float64)
    assert torch.equal(cubic(t), expected) and torch.equal(cubic(-t), expected)


def test_bicubic_weights_scale_2_match_the_hand_derivation():
    """Scale 2: u = 2i + 1/2 (1-based), taps at u -+ 0.5, 1.5, 2.5, 3.5 with weights
    cubic(d / 2) / 2 = 0.43359375, 0.11328125, -0.03515625, -0.01171875 (they sum to 1)."""
    a = bicubic_matrix(16, 2)
    interior = torch.tensor([-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625,
                             -0.01171875], dtype=torch.float64)
    for i in range(2, 6):  # output i (0-based) uses inputs 2i - 3 .. 2i + 4
        assert torch.equal(a[i, 2 * i - 3 : 2 * i + 5], interior)
        assert a[i].count_nonzero() == 8
    # Row 0: taps at 1-based positions -2 .. 5; positions 0, -1, -2 mirror (edge repeated) onto 1, 2, 3.
    assert torch.equal(a[0, :5], torch.tensor([0.546875, 0.3984375, 0.1015625, -0.03515625, -0.01171875],
                                              dtype=torch.float64))
    assert a[0, 5:].count_nonzero() == 0
    assert torch.equal(a[-1], a[0].flip(0))  # symmetric at the far edge


def test_bicubic_weights_scale_4_match_the_hand_derivation():
    """Scale 4: u = 4i - 3/2 (1-based), 16 taps at half-integer offsets d, weights
    cubic(d / 4) / 4 (cubic at 1/8, 3/8, ..., 15/8)."""
    half = torch.tensor([0.9638671875, 0.7275390625, 0.3896484375, 0.0908203125, -0.0478515625, -0.0732421875,
                         -0.0439453125, -0.0068359375], dtype=torch.float64) / 4
    interior = torch.cat([half.flip(0), half])
    a = bicubic_matrix(32, 4)
    for i in range(2, 6):  # output i (0-based) uses inputs 4i - 6 .. 4i + 9
        assert torch.equal(a[i, 4 * i - 6 : 4 * i + 10], interior)
        assert a[i].count_nonzero() == 16


def test_bicubic_keeps_constants_and_linear_ramps():
    op = Downsample(scale=2)
    assert torch.allclose(op(torch.full((1, 2, 12, 16), 0.3, dtype=torch.float64)),
                          torch.full((1, 2, 6, 8), 0.3, dtype=torch.float64), atol=1e-15)
    for scale in (2, 3, 4):
        ramp = torch.arange(12 * scale, dtype=torch.float64)
        y = bicubic_matrix(12 * scale, scale) @ ramp
        # Output i sits at input coordinate scale * i + (scale - 1) / 2 (0-based); the
        # symmetric weights reproduce a linear function exactly away from the borders.
        i = torch.arange(12, dtype=torch.float64)
        inside = slice(2, 10)
        assert torch.allclose(y[inside], (scale * i + (scale - 1) / 2)[inside], atol=1e-12)
        assert not math.isclose(y[0].item(), (scale - 1) / 2)  # the mirrored border is not linear


def test_sr_is_separable_and_avgpool_is_block_mean():
    x = torch.rand(2, 3, 8, 12, dtype=torch.float64)
    y = Downsample(scale=2)(x)
    assert torch.allclose(y, bicubic_matrix(8, 2) @ x @ bicubic_matrix(12, 2).T, atol=1e-15)
    pooled = Downsample(scale=4, method="avgpool")(x)
    assert torch.allclose(pooled, torch.nn.functional.avg_pool2d(x, 4), atol=1e-15)
    assert torch.allclose(Downsample(scale=4, method="avgpool", shape=[3, 8, 12]).singulars(),
                          torch.full((3 * 2 * 3,), 0.25, dtype=torch.float64))


# ----------------------------------------------------------------------------- operator specifics


def test_inpaint_structure():
    op = Inpaint(mask="random", ratio=0.5, seed=0, shape=[2, 6, 6])
    x = torch.rand(1, 2, 6, 6, dtype=torch.float64)
    mask = op.mask_for(6, 6)
    assert torch.equal(op(x), x * mask) and mask.shape == (1, 6, 6)
    assert op.singulars().numel() == 2 * mask.sum() and bool((op.singulars() == 1).all())
    assert torch.equal(op.vt(x)[:, : int(2 * mask.sum())], x[:, mask.expand(2, 6, 6) > 0].reshape(1, -1))
    assert op.params()["mask"] == "random" and op.tensors() == {}


def test_colorize_and_cs_structure():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    assert torch.allclose(Colorize()(x), x.mean(1, keepdim=True), atol=1e-15)
    luma = Colorize("bt601")(x)
    assert torch.allclose(luma[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2], atol=1e-15)
    op = CompressedSensing(ratio=0.25, block=4, seed=0)
    y = op(torch.rand(2, 3, 8, 12, dtype=torch.float64))
    assert y.shape == (2, 3 * 4, 2, 3)
    phi = op._completion[: op.rows]
    assert torch.allclose(phi @ phi.T, torch.eye(4, dtype=torch.float64), atol=1e-14)
    assert set(phi.abs().flatten().tolist()) == {0.25}  # +-1/sqrt(16): Walsh-Hadamard with sign flips


def test_dtypes_batches_and_gradients():
    cases = [(f, p, s) for _, f, p, s in CASES if "reflect" not in _ and "valid" not in _]
    for factory, params, shape in cases:
        op = build(factory, params)
        x = torch.rand(3, *shape, dtype=torch.float64, requires_grad=True)
        y = op(x)
        (grad,) = torch.autograd.grad((y * y).sum(), x)
        assert torch.allclose(grad, 2 * op.adjoint(y), atol=1e-12)
        assert torch.allclose(torch.cat([op(x[i : i + 1]) for i in range(3)]), y, atol=1e-14)
        for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
            low = op(x.detach().to(dtype))
            assert low.dtype == dtype and relative(low.double(), y.detach()) <= tolerance
            assert op.pinv(low).dtype == dtype and op.adjoint(low).dtype == dtype
