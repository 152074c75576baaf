"""Crop to mask: only padded boxes around the holes are restored; every known pixel is the input's."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import restore
from restore.cli import app
from restore.cropping import AUTO_PIXELS, PADDING, fill_boxes, merge_boxes
from restore.hookspecs import hookimpl
from restore.plugins import default_registry
from restore.priors.native import NativeConfig, save_native
from restore.priors.unet import CompactUNet, UNetConfig


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    torch.manual_seed(0)
    net = CompactUNet(UNetConfig(channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4))
    return restore.load_prior(f"unet:{save_native(tmp_path_factory.mktemp('p'), net, NativeConfig(net.config))}")


class Shapes:
    """Records the sample shape of every run the solver starts."""

    def __init__(self):
        self.shapes = []

    @hookimpl
    def restore_run_start(self, info):
        self.shapes.append(tuple(info["shape"]))


def known_with_holes(height, width, holes):
    known = torch.ones(1, height, width)
    for top, left, h, w in holes:
        known[:, top:top + h, left:left + w] = 0
    return known


def test_boxes_are_padded_clipped_and_merged():
    known = known_with_holes(400, 600, [(10, 10, 5, 5), (300, 400, 20, 30), (300, 460, 4, 4)])
    assert fill_boxes(known, padding=20) == [(0, 0, 35, 35), (280, 380, 340, 484)]
    assert fill_boxes(torch.ones(3, 8, 8)) == []
    assert merge_boxes([(0, 0, 10, 10), (5, 20, 15, 30), (8, 8, 12, 22)]) == [(0, 0, 15, 30)]
    assert merge_boxes([(0, 0, 10, 10), (10, 0, 20, 10)]) == [(0, 0, 10, 10), (10, 0, 20, 10)]  # touching only


def test_large_photo_costs_its_boxes_and_keeps_known_pixels_bit_for_bit(prior):
    """Auto crop above AUTO_PIXELS: the solver sees only the two padded boxes, never the photo."""
    height, width = 1100, 1000
    assert height * width > AUTO_PIXELS
    photo = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    holes = [(100, 120, 20, 30), (900, 700, 10, 10)]
    known = known_with_holes(height, width, holes)
    shapes = Shapes()
    result = restore.inpaint(photo, 1 - known, prior=prior, steps=2, seed=0, listeners=[shapes])  # 1 = fill
    assert shapes.shapes == [(3, 20 + 2 * PADDING, 30 + 2 * PADDING), (3, 10 + 2 * PADDING, 10 + 2 * PADDING)]
    fill = known[0].numpy() == 0
    assert np.array_equal(result.image[~fill], photo[~fill])
    assert not np.array_equal(result.image[fill], photo[fill])
    assert result.provenance["crop_to_mask"]["boxes"] == [[36, 56, 184, 214], [836, 636, 974, 774]]
    assert result.provenance["operator"]["name"] == "inpaint" and result.nfe > 0


def test_crop_to_mask_on_a_small_image_with_samples(prior):
    photo = np.random.default_rng(1).integers(0, 65536, (200, 260, 3), dtype=np.uint16)
    known = known_with_holes(200, 260, [(90, 100, 12, 12)])
    shapes = Shapes()
    result = restore.inpaint(photo, 1 - known, prior=prior, method="ddnm+", steps=2, seed=3, samples=2,
                             crop_to_mask=True, listeners=[shapes])  # a sampler: the samples differ
    assert shapes.shapes == [(3, 12 + 2 * PADDING, 12 + 2 * PADDING)]
    fill = known[0].numpy() == 0
    for image in (result.image, *result.samples):
        assert image.dtype == np.uint16 and np.array_equal(image[~fill], photo[~fill])
    assert result.std[~fill].max() == 0 and result.std[fill].max() > 0
    assert restore.inpaint(photo, 1 - known, prior=prior, steps=2, seed=0, listeners=[shapes]).provenance.get(
        "crop_to_mask") is None  # small image, default: the whole image
    assert shapes.shapes[-1] == (3, 200, 260)


def test_a_crop_keeps_the_default_run_of_the_whole_image(prior):
    """The default run follows how deep the mask's holes are (catalog.operator_kind), decided once
    on the whole image: the crop around a lone missing pixel, a sparse mask of its own, restores
    with the cold start of the image's deep hole.  The record is the first box's: the pixel's."""
    from restore.strategies.catalog import HOLE_DEPTH, hole_depth

    side, hole = 400, 200
    known = known_with_holes(side, side, [(20, 20, 1, 1), (180, 180, hole, hole)])
    speck = known[:, :20 + 1 + PADDING, :20 + 1 + PADDING]
    inpaint = default_registry().get("operator", "inpaint")
    assert hole_depth(inpaint(mask=speck), (3, *speck.shape[1:])) < HOLE_DEPTH <= hole_depth(inpaint(mask=known),
                                                                                             (3, side, side))
    photo = np.random.default_rng(3).integers(0, 256, (side, side, 3), dtype=np.uint8)
    result = restore.inpaint(photo, 1 - known, prior=prior, steps=2, seed=0, target="perceptual", crop_to_mask=True)
    assert result.provenance["crop_to_mask"]["boxes"] == [[0, 0, 20 + 1 + PADDING, 20 + 1 + PADDING],
                                                          [180 - PADDING, 180 - PADDING, side, side]]
    assert "warm_start" not in result.provenance["strategy"]["params"]  # the hole kind's cold start


def test_crop_to_mask_needs_a_user_mask(prior):
    with pytest.raises(ValueError, match="crop to mask needs inpainting with a mask"):
        restore.inpaint(torch.rand(1, 3, 16, 16), "box", prior=prior, steps=2, crop_to_mask=True)


def test_cli_crop_to_mask(tmp_path, prior):
    photo = np.random.default_rng(2).integers(0, 256, (160, 180, 3), dtype=np.uint8)
    mask = np.zeros((160, 180), np.uint8)
    mask[70:80, 60:75] = 255  # white = fill
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    spec = f"unet:{prior.info['path']}"
    result = CliRunner().invoke(app, ["inpaint", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"),
                                      "--crop-to-mask", "--prior", spec, "--steps", "2", "--seed", "0",
                                      "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    restored = np.asarray(Image.open(out))
    assert np.array_equal(restored[mask == 0], photo[mask == 0])
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["crop_to_mask"] == {"boxes": [[6, 0, 144, 139]], "padding": PADDING}
