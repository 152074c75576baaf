"""Training a noise-aware classifier for classifier guidance (``restore train classifier``).

Dhariwal & Nichol 2021 (Sec. 4): a classifier p(c | x_t, t) trained with cross-entropy on
noisy images x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t uniform over a discrete VP
schedule, x0 in [-1, 1]; its input-gradient guides sampling (:mod:`restore.diffusion.classifier`,
:mod:`restore.strategies.guidance`).  The network is the guided-diffusion encoder classifier
with the average-pooling head (:mod:`restore.priors.classifier` format).
Validation: accuracy on a held-out folder of the same classes at t = 0, 250, 500, 750
(a fixed noise draw per image).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from restore.diffusion.schedules import VPDiscrete
from restore.files import atomic_write
from restore.priors.classifier import classifier_network, save_classifier
from restore.training.data import LabelledCropSampler
from restore.training.export import model_card
from restore.training.prior import to_prior

SCHEDULE = {"type": "vp", "beta_schedule": "linear", "num_timesteps": 1000}
VALIDATION_TIMESTEPS = (0, 250, 500, 750)


class ClassifierTask:
    """The noisy classifier as a :class:`restore.training.loop.Task`."""

    def __init__(self, architecture: dict, data: LabelledCropSampler, data_name: str,
                 validation: Sequence[tuple[Tensor, int]] = (), validation_name: str = "",
                 card: dict | None = None, seed: int = 0) -> None:
        self.architecture = {**architecture, "out_channels": len(data.classes)}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.network = classifier_network(self.architecture)
        self.schedule = VPDiscrete.named(SCHEDULE["beta_schedule"], SCHEDULE["num_timesteps"])
        self.data, self.data_name = data, data_name
        self.validation, self.validation_name = list(validation), validation_name
        self.card = card or {}

    def identity(self) -> dict:
        return {"task": "classifier", "architecture": self.architecture, "classes": self.data.classes,
                "data": self.data_name, "crop": self.data.size}

    def batch(self, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        crops, labels = self.data.sample(size, generator)
        return to_prior(crops), labels

    def noisy(self, x0: Tensor, t: Tensor, generator: torch.Generator) -> Tensor:
        abar = self.schedule.alphas_cumprod.to(x0.device)[t].to(x0.dtype).reshape(-1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    def loss(self, network: Callable, batch: tuple[Tensor, Tensor], generator: torch.Generator) -> Tensor:
        x0, labels = batch
        t = torch.randint(0, self.schedule.num_timesteps, (x0.shape[0],), generator=generator,
                          device=generator.device).to(x0.device)
        return F.cross_entropy(network(self.noisy(x0, t, generator), t.to(x0.dtype)), labels)

    def validate(self, network) -> dict[str, float]:
        if not self.validation:
            return {}
        device = next(network.parameters()).device
        figures = {}
        for t in VALIDATION_TIMESTEPS:
            correct = 0
            for i, (image, label) in enumerate(self.validation):
                x0 = to_prior(image.to(device))
                ts = torch.full((1,), t, device=device)
                logits = network(self.noisy(x0, ts, torch.Generator().manual_seed(i)), ts.float())
                correct += int(logits.argmax(1).item() == label)
            figures[f"accuracy_t{t}"] = 100.0 * correct / len(self.validation)
        return figures

    def export(self, out: Path, state: dict[str, Tensor], record: dict) -> None:
        network = classifier_network(self.architecture)
        network.load_state_dict(state)
        save_classifier(out, network, self.architecture, self.data.classes, SCHEDULE)
        extra = {"title": "restore noise-aware classifier (for classifier guidance)",
                 "summary": f"Classes: {', '.join(self.data.classes)}. Use it with strategy classifier-guidance.",
                 "objective": "cross-entropy on x_t of a VP linear 1000 schedule (Dhariwal & Nichol 2021)",
                 "validation_title": "accuracy %, noisy held-out images at timestep t", **self.card}
        text = model_card(f"ADM encoder classifier {self.architecture}", network, self.data_name,
                          self.validation_name, record, extra)
        atomic_write(Path(out) / "MODEL_CARD.md", lambda tmp: tmp.write_text(text))


def load_labelled_validation(folder: Path, classes: Sequence[str], channels: int, crop: int | None
                             ) -> list[tuple[Tensor, int]]:
    """Every image of ``folder/<class>/`` as ((1, C, H, W) in [0, 1], label), for the given classes."""
    from restore.training.data import load_validation

    items = []
    for label, name in enumerate(classes):
        sub = Path(folder) / name
        if not sub.is_dir():
            raise FileNotFoundError(f"validation folder {folder} lacks the class subfolder {name!r}")
        items += [(image, label) for image in load_validation(sub, channels, 10**9, crop)]
    return items
