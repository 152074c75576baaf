"""Image files (PNG, JPEG, TIFF, .npy) and atomic, umask-respecting output files."""
import os

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from restore.files import OutputError, all_or_nothing, atomic_write
from restore.operators import io as rio


def rand(shape, seed=1):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("suffix, bits", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".tif", 32)])
@pytest.mark.parametrize("channels", [1, 3])
def test_lossless_round_trips_keep_depth_and_channels(tmp_path, suffix, bits, channels):
    x = rand((1, channels, 13, 17))
    rio.write_image(tmp_path / f"a{suffix}", x, bits=bits)
    back = rio.load_image(tmp_path / f"a{suffix}")
    assert back.bits == bits and back.channels == channels and back.alpha is None
    expected = x if bits == 32 else (torch.round(x.double() * (2**bits - 1)) / (2**bits - 1)).float()
    assert back.image.dtype == torch.float32 and torch.equal(back.image, expected)


def test_files_written_by_other_libraries_read_exactly(tmp_path):
    """16-bit colour PNG from OpenCV (BGR order on disk), 16-bit grey PNG from Pillow,
    float32 TIFF from tifffile: the samples we read are theirs."""
    rgb = np.random.default_rng(0).integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])
    assert torch.equal(rio.read_image(tmp_path / "c.png")[0].permute(1, 2, 0), torch.from_numpy(rgb / 65535).float())
    grey = rgb[..., 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    assert rio.load_image(tmp_path / "g.png").bits == 16
    assert torch.equal(rio.read_image(tmp_path / "g.png")[0, 0], torch.from_numpy(grey / 65535).float())
    floats = np.random.default_rng(1).random((6, 4, 3), dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tiff", floats, photometric="rgb")
    assert torch.equal(rio.read_image(tmp_path / "f.tiff")[0].permute(1, 2, 0), torch.from_numpy(floats))


def test_written_files_decode_in_other_libraries(tmp_path):
    x = rand((1, 3, 9, 11), seed=2)
    rio.write_image(tmp_path / "p.png", x, bits=16)
    theirs = cv2.imread(str(tmp_path / "p.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert np.array_equal(theirs, rio.to_pixels(x, 16))
    rio.write_image(tmp_path / "p.tif", x, bits=16)
    assert np.array_equal(tifffile.imread(tmp_path / "p.tif"), rio.to_pixels(x, 16))
    rio.write_image(tmp_path / "q.png", x[:, :1])
    with Image.open(tmp_path / "q.png") as image:
        assert image.mode == "L" and np.array_equal(np.asarray(image), rio.to_pixels(x[:, :1])[..., 0])


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_alpha_is_kept_aside_and_put_back(tmp_path, suffix, channels):
    x, alpha = rand((1, channels, 6, 5)), rand((1, 1, 6, 5), seed=3)
    rio.write_image(tmp_path / f"a{suffix}", x, alpha=alpha)
    back = rio.load_image(tmp_path / f"a{suffix}")
    assert back.channels == channels and back.alpha.shape == (1, 1, 6, 5)
    assert torch.equal(back.alpha, torch.round(alpha * 255) / 255)
    with pytest.raises(rio.ImageFileError, match="alpha channel is not fully opaque"):
        rio.read_image(tmp_path / f"a{suffix}")
    rio.write_image(tmp_path / f"o{suffix}", x, alpha=torch.ones(1, 1, 6, 5))
    assert rio.read_image(tmp_path / f"o{suffix}").shape == (1, channels, 6, 5)  # opaque alpha is dropped


def test_jpeg_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((8, 16), np.uint8)
    pixels[:2] = 255  # a white top band
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(pixels).save(tmp_path / "r.jpg", quality=100, exif=exif)
    x = rio.read_image(tmp_path / "r.jpg")
    assert x.shape == (1, 1, 16, 8)  # displayed upright: portrait
    assert x[0, 0, :, -1].min() > 0.8 and x[0, 0, :, 0].max() < 0.2  # the top band is now the right column


def test_palette_grey_jpeg_and_npy_inputs(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 10, 3)).astype(np.uint8)
    Image.fromarray(pixels).convert("P").save(tmp_path / "p.png")
    assert rio.read_image(tmp_path / "p.png").shape == (1, 3, 8, 10)
    Image.fromarray(pixels[..., 0]).save(tmp_path / "g.jpg")
    assert rio.load_image(tmp_path / "g.jpg").channels == 1
    for shape, expected in (((6, 7), (1, 1, 6, 7)), ((3, 6, 7), (1, 3, 6, 7)), ((1, 2, 6, 7), (1, 2, 6, 7))):
        np.save(tmp_path / "a.npy", np.full(shape, 0.25))
        assert rio.read_image(tmp_path / "a.npy").shape == expected


def write_png(path):
    rio.write_image(path, rand((1, 3, 32, 32)))
    return path.read_bytes()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(write_png(p)[:300]), "damaged, truncated or unsupported PNG"),
        (lambda p: p.write_bytes(write_png(p)[:-12]), "damaged, truncated or unsupported PNG"),
        (lambda p: p.write_text("hello, I am text"), "not a PNG, JPEG or TIFF image"),
        (lambda p: p.write_bytes(b""), "an empty file"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
)
def test_bad_image_files_are_clear_errors(tmp_path, make, message):
    make(tmp_path / "bad.png")
    with pytest.raises(rio.ImageFileError, match=message):
        rio.read_image(tmp_path / "bad.png")


def test_truncated_jpeg_and_multipage_tiff_are_refused(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)).save(tmp_path / "a.jpg")
    (tmp_path / "t.jpg").write_bytes((tmp_path / "a.jpg").read_bytes()[:500])
    with pytest.raises(rio.ImageFileError, match="damaged, truncated or unsupported JPEG"):
        rio.read_image(tmp_path / "t.jpg")
    tifffile.imwrite(tmp_path / "m.tif", np.zeros((2, 4, 4), np.uint8), photometric="minisblack", metadata=None)
    with pytest.raises(rio.ImageFileError, match="2 pages"):
        rio.read_image(tmp_path / "m.tif")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((4, 4), np.inf), "finite"),
        (np.full((4, 4), np.nan), "finite"),
        (np.zeros((4, 4), np.uint8), "floats"),
        (np.zeros((2, 3, 4, 4)), "1, C, H, W"),
    ],
)
def test_bad_npy_images_are_errors(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=message):
        rio.read_image(tmp_path / "bad.npy")


def test_float_measurements_outside_0_1_are_read_as_they_are(tmp_path):
    """A noisy float measurement leaves [0, 1]; .npy and float TIFF files keep its values."""
    noisy = np.linspace(-0.25, 1.25, 16, dtype=np.float32).reshape(1, 4, 4)
    np.save(tmp_path / "y.npy", noisy)
    loaded = rio.load_image(tmp_path / "y.npy")
    assert loaded.bits == 32 and np.array_equal(loaded.image[0].numpy(), noisy)
    import tifffile

    tifffile.imwrite(tmp_path / "y.tif", noisy[0])
    assert np.array_equal(rio.read_image(tmp_path / "y.tif")[0].numpy(), noisy)


def test_unsupported_missing_or_unwritable_kinds(tmp_path):
    with pytest.raises(ValueError, match="unsupported"):
        rio.read_image(tmp_path / "a.gif")
    with pytest.raises(FileNotFoundError):
        rio.read_image(tmp_path / "missing.png")
    with pytest.raises(rio.ImageFileError, match="float32 as .tif"):
        rio.write_image(tmp_path / "a.png", rand((1, 3, 4, 4)), bits=32)
    with pytest.raises(rio.ImageFileError, match="JPEG holds grey or RGB"):
        rio.write_image(tmp_path / "a.jpg", rand((1, 3, 4, 4)), alpha=torch.ones(1, 1, 4, 4))
    assert list(tmp_path.iterdir()) == []


def test_writes_are_atomic_and_byte_identical(tmp_path):
    target = tmp_path / "out.png"
    x = rand((1, 3, 8, 8))
    rio.write_image(target, x)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        rio.write_image(target, torch.full((1, 1, 4, 4), float("nan")))
    assert target.read_bytes() == before
    for suffix in (".png", ".tif"):
        rio.write_image(tmp_path / f"1{suffix}", x, bits=16)
        rio.write_image(tmp_path / f"2{suffix}", x, bits=16)
        assert (tmp_path / f"1{suffix}").read_bytes() == (tmp_path / f"2{suffix}").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_outputs_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        rio.write_image(tmp_path / "a.png", rand((1, 1, 4, 4)))
        atomic_write(tmp_path / "b.txt", lambda tmp: tmp.write_text("b"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o640


def test_all_or_nothing_leaves_no_partial_set(tmp_path):
    (tmp_path / "y.json").mkdir()  # the sidecar's path is a folder
    with pytest.raises(OutputError, match="is a folder"):
        with all_or_nothing():
            rio.write_image(tmp_path / "y.png", rand((1, 1, 4, 4)))
            rio.write_json(tmp_path / "y.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.json"]
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        rio.write_image(tmp_path / "file" / "y.png", rand((1, 1, 4, 4)))
