"""Blur kernels (point spread functions): Gaussian, seeded random camera-shake motion,
and user kernels from files.

Every kernel is a 2-D float64 tensor summing to 1.  Index (a, b) of a kernel of
size (h, w) is the offset (a - h // 2, b - w // 2) from the centre pixel.  Generators
take keyword options only and are registered in :data:`GENERATORS`.

One grammar names a kernel everywhere (``restore deblur --kernel``, ``restore degrade
--kernel``, ``restore batch --kernel``, ``restore.deblur(image, kernel)``):
:func:`kernel_params` reads ``gaussian[:STD[:SIZE]]``, ``motion[:SEED[:SIZE]]`` or a kernel
file.  One set of defaults: a Gaussian has std 3 and size 2 ceil(3 std) + 1 (three standard
deviations each side of the centre), a motion kernel size 61 and intensity 0.5.
"""
from __future__ import annotations

import cmath
import math
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from restore.operators.validation import ArraySource, check_int, check_number, load_array


def gaussian_size(std: float) -> int:
    """The default support of a Gaussian kernel: 2 ceil(3 std) + 1 pixels (the Gaussian to
    three standard deviations each side of the centre pixel; 19 for std 3)."""
    return 2 * math.ceil(3 * std) + 1


def gaussian_kernel(*, size: Optional[int] = None, std: float = 3.0) -> Tensor:
    """The sampled isotropic Gaussian k(a, b) ~ exp(-((a - c)^2 + (b - c)^2) / (2 std^2)),
    c = size // 2, on a size x size support, normalized to sum 1.

    std 3.0 is DPS's Gaussian deblurring setting (Chung et al. 2023, who use a 61 x 61
    support); the default size is :func:`gaussian_size`.
    """
    std = check_number("gaussian kernel", "std", std, low=0.0, low_inclusive=False)
    size = check_int("gaussian kernel", "size", gaussian_size(std) if size is None else size, low=1, odd=True)
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * std**2))
    k = torch.outer(g, g)
    return k / k.sum()


def _trajectory(length: float, intensity: float, steps: int, rng: torch.Generator) -> Tensor:
    """A random camera-shake trajectory: ``steps + 1`` complex positions (x = column,
    imaginary part = row) of a particle moving at constant speed length / steps.

    The velocity model of Boracchi & Foi 2012, "Modeling the performance of image
    restoration from motion blur" (IEEE TIP 21(8)), Sec. II-A: each step the velocity
    v gets a Gaussian kick, a centripetal pull -c x back to the start, and with small
    probability an abrupt shake that reverses it (turned by a random angle within
    +-0.5 rad); then its speed is reset.  The kicks, pull and shake probability all
    scale with ``intensity`` (0: a straight line); their base strengths are drawn per
    trajectory, as in the paper, so kernels of one intensity vary in character.
    """
    speed = length / steps
    uniform = lambda: torch.rand((), generator=rng, dtype=torch.float64).item()  # noqa: E731
    normal = lambda: torch.randn((), generator=rng, dtype=torch.float64).item()  # noqa: E731
    kick = intensity * (1.0 + 2.0 * uniform()) / math.sqrt(steps)
    pull = intensity * 0.5 * uniform() / length
    shake_probability = intensity * 3.0 * uniform() / steps
    velocity = cmath.exp(2j * math.pi * uniform())
    position = 0j
    points = [position]
    for _ in range(steps):
        change = kick * complex(normal(), normal()) - pull * position
        if uniform() < shake_probability:
            change += -2 * velocity * cmath.exp(1j * (uniform() - 0.5))
        velocity += change
        velocity /= abs(velocity) if velocity != 0 else 1.0
        position += speed * velocity
        points.append(position)
    return torch.tensor(points, dtype=torch.complex128)


def _splat(points: Tensor, size: int) -> Tensor:
    """Accumulate unit masses at sub-pixel positions (complex, column + i row) into a
    size x size grid by bilinear weights (the PSF sampling of Boracchi & Foi 2012)."""
    cols, rows = points.real, points.imag
    c0, r0 = cols.floor(), rows.floor()
    fc, fr = cols - c0, rows - r0
    grid = torch.zeros(size * size, dtype=torch.float64)
    for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        index = ((r0 + dr) * size + (c0 + dc)).long()
        grid.index_put_((index,), weight, accumulate=True)
    return grid.reshape(size, size)


def motion_kernel(*, size: int = 61, intensity: float = 0.5, seed: int = 0) -> Tensor:
    """A seeded random camera-shake motion-blur kernel (size x size, size odd).

    A trajectory of length ``size`` pixels (:func:`_trajectory`, 4 samples per pixel) is
    centred on its centroid, shrunk if needed so every sample lies at least one pixel
    inside the support, sampled bilinearly onto the grid and normalized to sum 1.
    ``intensity`` in [0, 1] sets how shaken the motion is: 0 is a straight line, 1 an
    erratic, often self-intersecting path.  The defaults (61, 0.5) are the motion
    deblurring setting of DPS (Chung et al. 2023), whose kernels come from a
    random-trajectory generator of the same kind.
    """
    size = check_int("motion kernel", "size", size, low=3, odd=True)
    intensity = check_number("motion kernel", "intensity", intensity, low=0.0)
    if intensity > 1:
        raise ValueError(f"motion kernel: intensity must be in [0, 1], got {intensity}")
    rng = torch.Generator(device="cpu").manual_seed(check_int("motion kernel", "seed", seed, low=0))
    points = _trajectory(size * (1 + intensity), intensity, round(4 * size * (1 + intensity)), rng)
    points = points - points.mean()
    reach = torch.maximum(points.real.abs(), points.imag.abs()).max().item()
    room = (size - 1) / 2 - 1
    if reach > room:
        points = points * (room / reach)
    grid = _splat(points + complex(size // 2, size // 2), size)
    return grid / grid.sum()


#: Kernel generators by name.
GENERATORS: dict[str, Callable[..., Tensor]] = {"gaussian": gaussian_kernel, "motion": motion_kernel}


def load_kernel(source: ArraySource) -> Tensor:
    """A user kernel from a tensor, an array, a ``.npy`` file or a greyscale image file,
    as given (not normalized), float64 (h, w).  Shapes (h, w), (1, h, w) and
    (1, 1, h, w) are accepted.  Errors name the parameter ``kernel``."""
    k, _ = load_array(source, "kernel")
    while k.dim() > 2 and k.shape[0] == 1:
        k = k[0]
    if k.dim() != 2:
        raise ValueError(f"kernel: expected a 2-D kernel, got shape {tuple(k.shape)}")
    if k.numel() == 0:
        raise ValueError(f"kernel: empty kernel of shape {tuple(k.shape)}")
    if not bool(torch.isfinite(k).all()):
        raise ValueError("kernel: contains NaN or infinite values")
    if not k.sum().item() > 0:
        raise ValueError(f"kernel: its entries sum to {k.sum().item():g}; a blur kernel needs a positive sum "
                         "(all zero?)")
    return k


def normalized(kernel: Tensor) -> Tensor:
    """The kernel divided by its sum (blur preserves the mean brightness)."""
    return kernel / kernel.sum()


def kernel_params(spec: str) -> dict[str, Any]:
    """Blur parameters (``kernel`` and the generator options given) from a kernel named in the
    one grammar: ``gaussian[:STD[:SIZE]]``, ``motion[:SEED[:SIZE]]`` (options left out take
    the generator's defaults, module docstring) or the path of a kernel file.  A ValueError
    states the grammar."""
    grammar = f"kernel {spec!r}: expected gaussian[:STD[:SIZE]], motion[:SEED[:SIZE]] or a kernel file"
    kind, _, rest = spec.partition(":")
    if kind not in GENERATORS:
        if not Path(spec).is_file():
            raise ValueError(f"{grammar} (no such file)")
        return {"kernel": spec}
    value, _, size = rest.partition(":")
    try:
        number = None if not value else float(value) if kind == "gaussian" else int(value)
        side = int(size) if size else None
    except ValueError:
        raise ValueError(f"{grammar}, with numbers") from None
    if kind == "gaussian" and number is not None and not (math.isfinite(number) and number > 0):
        raise ValueError(f"kernel {spec!r}: the Gaussian's std must be a finite number > 0")
    options = {} if number is None else {"std" if kind == "gaussian" else "seed": number}
    return {"kernel": kind, **options, **({} if side is None else {"size": side})}
