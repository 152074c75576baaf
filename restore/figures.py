"""Side-by-side comparison figures (Pillow only): measurement | restoration(s) | ground
truth | error map or the samples' std, one title above and one caption line below each panel,
and optionally a second row with the same crop of every panel enlarged.

Every panel is shown on the ground truth's pixel grid: a smaller measurement (SR) is
enlarged by pixel repetition (nearest neighbour, so nothing is invented), and the zoom row
enlarges the crop the same way.  Error and std maps are shown in a heat colour scale whose
top value is stated in the panel's title.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from restore.files import atomic_write

#: Heat scale anchors (black, purple, red, orange, pale yellow) at 0, 1/4, 1/2, 3/4, 1.
HEAT = np.array([[0, 0, 0], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
ZOOM_OUTLINE = (255, 0, 0)
GAP = 6
#: Narrowest panel on screen, in pixels: smaller images are enlarged by pixel repetition.
MIN_PANEL = 192


@dataclass(frozen=True)
class Panel:
    """One column: an image (1, C, H, W) on [0, 1], its title and a caption line."""

    title: str
    image: Tensor
    caption: str = ""


def heat(values: Tensor, top: float) -> Tensor:
    """(1, 1, H, W) values to (1, 3, H, W) colours on [0, 1]: 0 black ... ``top`` and above
    pale yellow, linear between the :data:`HEAT` anchors."""
    t = (values.detach().double().cpu() / max(top, 1e-12)).clamp(0, 1).numpy()[0, 0] * (len(HEAT) - 1)
    low = np.minimum(np.floor(t).astype(int), len(HEAT) - 2)
    frac = (t - low)[..., None]
    rgb = HEAT[low] * (1 - frac) + HEAT[low + 1] * frac
    return torch.from_numpy(rgb / 255).permute(2, 0, 1)[None].float()


def error_panel(restoration: Tensor, truth: Tensor, top: float = 0.25) -> Panel:
    """|restoration - truth| averaged over channels, heat scale from 0 to ``top``."""
    error = (restoration.double() - truth.double()).abs().mean(dim=1, keepdim=True)
    return Panel(f"|error|, 0 to {top:g}", heat(error, top), f"max {float(error.max()):.3f}")


def std_panel(std: Tensor) -> Panel:
    """The samples' standard deviation map (channels averaged; their spread, not a calibrated
    uncertainty: docs/STRATEGIES.md), heat scale 0 to its maximum."""
    mean_std = std.double().mean(dim=1, keepdim=True)
    top = float(mean_std.max())
    return Panel(f"std of the samples, 0 to {top:.3g}", heat(mean_std, top), f"mean {float(mean_std.mean()):.4f}")


def enlarge(image: Tensor, factor: int) -> Tensor:
    """Pixel repetition by an integer ``factor`` along height and width."""
    return image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1) if factor > 1 else image


def on_grid(image: Tensor, height: int, width: int) -> Tensor:
    """``image`` as (1, 3, height, width): grey repeated to RGB, an image smaller by an
    integer factor enlarged by pixel repetition; any other size is an error."""
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3):
        raise ValueError(f"a panel must be one grey or RGB image (1, 1 or 3, H, W), got {tuple(image.shape)}")
    image = image.expand(1, 3, *image.shape[-2:]) if image.shape[1] == 1 else image
    h, w = image.shape[-2:]
    if (h, w) == (height, width):
        return image
    if height % h or width % w or height // h != width // w:
        raise ValueError(f"a {h}x{w} panel does not fit the {height}x{width} ground truth by an integer factor")
    return enlarge(image, height // h)


def to_uint8(image: Tensor) -> np.ndarray:
    return (image[0].detach().double().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def check_zoom(zoom: Sequence[int], height: int, width: int) -> tuple[int, int, int]:
    """(top, left, size) of a square crop inside a height x width image, or a ValueError."""
    if len(zoom) != 3:
        raise ValueError(f"zoom must be TOP,LEFT,SIZE, got {list(zoom)}")
    top, left, size = (int(v) for v in zoom)
    if size < 1 or top < 0 or left < 0 or top + size > height or left + size > width:
        raise ValueError(f"zoom {top},{left},{size} (TOP,LEFT,SIZE) is not inside the {height}x{width} image")
    return top, left, size


def wrap(text: str, font, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels, at double spaces first
    (between metric values), then at single spaces; a word wider than the line stays whole."""
    lines: list[str] = []
    for part in [p for p in text.split("  ") if p] if text else []:
        if lines and font.getlength(f"{lines[-1]}  {part}") <= width:
            lines[-1] = f"{lines[-1]}  {part}"
            continue
        words = part.split(" ")
        lines.append(words[0])
        for word in words[1:]:
            if font.getlength(f"{lines[-1]} {word}") <= width:
                lines[-1] += f" {word}"
            else:
                lines.append(word)
    return lines


def compose(panels: Sequence[Panel], *, zoom: Optional[Sequence[int]] = None, caption: str = ""):
    """The figure as a PIL image: the panels side by side on the grid of the largest one
    (the ground truth's), each shown at least :data:`MIN_PANEL` pixels wide (small images
    enlarged by pixel repetition), titles above and captions below wrapped to the panel; a
    zoom row when ``zoom`` = (top, left, size) in ground-truth pixels is given (the crop
    outlined in red above, enlarged below); a ``caption`` line under everything."""
    from PIL import Image, ImageDraw, ImageFont

    height = max(int(p.image.shape[-2]) for p in panels)
    width = max(int(p.image.shape[-1]) for p in panels)
    box = None if zoom is None else check_zoom(zoom, height, width)
    factor = max(1, math.ceil(MIN_PANEL / width))
    w, h = width * factor, height * factor
    font = ImageFont.load_default(size=max(11, min(18, w // 24)))
    line = font.getbbox("Ag")[3] + 4
    titles = [wrap(p.title, font, w) for p in panels]
    captions = [wrap(p.caption, font, w) for p in panels]
    title_h, caption_h = line * max(map(len, titles)), line * max(map(len, captions))
    rows = 1 if box is None else 2
    canvas = Image.new("RGB", (len(panels) * (w + GAP) + GAP,
                               GAP + title_h + rows * (h + GAP) + caption_h + (line if caption else 0) + GAP),
                       BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, panel in enumerate(panels):
        x0 = GAP + i * (w + GAP)
        pixels = on_grid(panel.image, height, width)
        draw.multiline_text((x0, GAP), "\n".join(titles[i]), fill=INK, font=font, spacing=4)
        canvas.paste(Image.fromarray(to_uint8(enlarge(pixels, factor))), (x0, GAP + title_h))
        y_next = GAP + title_h + h + GAP
        if box is not None:
            top, left, size = box
            draw.rectangle((x0 + factor * left, GAP + title_h + factor * top, x0 + factor * (left + size) - 1,
                            GAP + title_h + factor * (top + size) - 1), outline=ZOOM_OUTLINE, width=max(1, w // 256))
            crop = pixels[..., top:top + size, left:left + size]
            canvas.paste(Image.fromarray(to_uint8(enlarge(crop, max(1, min(h, w) // size)))), (x0, y_next))
            y_next += h + GAP
        draw.multiline_text((x0, y_next), "\n".join(captions[i]), fill=INK, font=font, spacing=4)
    if caption:
        draw.text((GAP, canvas.height - GAP - line), caption, fill=INK, font=font)
    return canvas


def save_figure(figure, path: Path) -> Path:
    """Write a PIL figure as PNG, atomically."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: figures are written as .png")
    atomic_write(path, lambda tmp: figure.save(tmp, format="PNG"))
    return path


def comparison(path: Path, restorations: Sequence[tuple[str, Tensor, Mapping[str, float]]], truth: Tensor, *,
               measurement: Optional[Tensor] = None, std: Optional[Tensor] = None,
               box: Optional[Sequence[int]] = None, caption: str = "", error_of: int = 0) -> Path:
    """Write measurement | restorations (label, image, metric values) | ground truth | the
    posterior ``std`` when given, else the error of restoration ``error_of``; a PNG."""
    from restore.metrics.evaluate import format_values

    panels = [] if measurement is None else [Panel("measurement", measurement)]
    panels += [Panel(label, image, format_values(values)) for label, image, values in restorations]
    panels.append(Panel("ground truth", truth))
    panels.append(std_panel(std) if std is not None else error_panel(restorations[error_of][1], truth))
    return save_figure(compose(panels, zoom=box, caption=caption), path)
