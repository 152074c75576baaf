"""Prior spec strings, one syntax everywhere (CLI, Python API, configs)::

    SCHEME[:BODY][?KEY=VALUE&KEY=VALUE]

The scheme picks a loader registered through the ``restore_prior_formats`` hook; the
loader receives the whole string.  Built-in schemes:

    default                       the embedded natural-image prior (colour, any size;
                                  priors/weights/default/MODEL_CARD.md)
    unet:DIR                      the project's compact UNet (model.safetensors + config.json)
    adm:PATH[:PRESET]             a guided-diffusion checkpoint; PRESET a preset name
                                  (e.g. ffhq256-dps) or a create_model config .json; no PRESET:
                                  config inferred from the weights.  PATH must not contain ':'.
    diffusers:DIR                 a diffusers UNet2DModel folder, pixel or latent (VQ / KL)
    gmm:D[:SEED], gaussian:SHAPE[:STD]   analytic priors

Options after ``?`` are scheme-specific.  ``class=207`` (one label for every batch item)
or ``class=207,1,5`` (one per batch item) sets the labels of class-conditional ADM and
diffusers models.  The labels live in ``prior.info["class_labels"]`` (a LongTensor of
shape (1,) or (B,)); assign a new tensor there to change them between runs.  A
class-conditional prior without labels raises when called.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from restore.plugins import Registry, UnknownItemError, default_registry
from restore.priors.base import Prior


@dataclass(frozen=True)
class PriorSpec:
    """A parsed spec: ``scheme``, ``body`` (text between the first ':' and '?') and ``options``."""

    text: str
    scheme: str
    body: str = ""
    options: dict[str, str] = field(default_factory=dict)

    def check_options(self, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise ValueError(f"prior spec {self.text!r}: unknown option(s) {', '.join(unknown)}; "
                             f"{self.scheme} takes {', '.join(allowed) if allowed else 'no options'}")

    def require_body(self, what: str) -> str:
        if not self.body:
            raise ValueError(f"prior spec {self.text!r}: expected {self.scheme}:{what}")
        return self.body

    def float_option(self, key: str) -> Optional[float]:
        if key not in self.options:
            return None
        try:
            return float(self.options[key])
        except ValueError:
            raise ValueError(f"prior spec {self.text!r}: option {key}={self.options[key]!r} is not a number") from None


def parse_spec(spec: str) -> PriorSpec:
    """Split ``SCHEME[:BODY][?K=V&...]``; see the module docstring."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a prior spec must be a non-empty string, got {spec!r}")
    main, _, query = spec.strip().partition("?")
    scheme, _, body = main.partition(":")
    options: dict[str, str] = {}
    for item in query.split("&") if query else []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"prior spec {spec!r}: option {item!r} is not KEY=VALUE")
        options[key] = value
    return PriorSpec(spec, scheme, body, options)


def prior_channels(prior: Prior) -> Optional[int]:
    """Image channels a prior models: ``info['channels']``, else the first entry of ``shape``
    (pixel priors; a latent prior's shape is in latent space)."""
    if "channels" in prior.info:
        return int(prior.info["channels"])
    return None if prior.shape is None or prior.latent else int(prior.shape[0])


def load_prior(spec: str, *, device=None, dtype: Optional[torch.dtype] = None, registry: Optional[Registry] = None,
               channels: Optional[int] = None) -> Prior:
    """The prior named by ``spec``, resolved through the registry's prior formats.

    ``channels``: the image channel count the caller will feed; a prior modelling a
    different count is refused here rather than failing inside the network.
    """
    parsed = parse_spec(spec)
    registry = registry or default_registry()
    if parsed.scheme not in registry.names("prior"):
        raise UnknownItemError(f"unknown prior scheme {parsed.scheme!r} in spec {spec!r}; "
                               f"known schemes: {', '.join(registry.names('prior'))}")
    prior = registry.get("prior", parsed.scheme)(spec, device=device, dtype=dtype)
    have = prior_channels(prior)
    if channels is not None and have is not None and have != channels:
        raise ValueError(f"wrong channel count: prior {spec!r} models {have}-channel images, "
                         f"the input has {channels}")
    return prior


def parse_class_labels(spec: PriorSpec) -> Optional[Tensor]:
    """The ``class=`` option as a LongTensor (shape (n,)), or None when absent."""
    if "class" not in spec.options:
        return None
    try:
        labels = [int(v) for v in spec.options["class"].split(",")]
    except ValueError:
        raise ValueError(f"prior spec {spec.text!r}: class={spec.options['class']!r} must be "
                         "an integer or comma-separated integers") from None
    return torch.tensor(labels, dtype=torch.long)


class LabelledNetwork:
    """``network(x, t, y=labels)`` with the labels read from ``info['class_labels']`` at each call
    (one label broadcast over the batch, or one per batch item)."""

    def __init__(self, network: Callable[..., Tensor], info: dict[str, Any]) -> None:
        self.network = network
        self.info = info

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        labels = self.info.get("class_labels")
        if labels is None:
            raise ValueError("this prior is class-conditional: give labels with the spec option ?class=N "
                             "or set prior.info['class_labels'] = torch.tensor([...])")
        labels = torch.as_tensor(labels, dtype=torch.long, device=x.device).reshape(-1)
        if labels.numel() == 1:
            labels = labels.expand(x.shape[0])
        elif labels.numel() != x.shape[0]:
            raise ValueError(f"{labels.numel()} class labels for a batch of {x.shape[0]}")
        return self.network(x, t, y=labels)


def conditioned(network: Callable[..., Tensor], class_conditional: bool, spec: PriorSpec,
                info: dict[str, Any]) -> Callable[[Tensor, Tensor], Tensor]:
    """``network`` as a callable of (x, t): with labels from ``info`` when class-conditional.
    Stores the ``class=`` option in ``info``; refuses it for unconditional networks."""
    labels = parse_class_labels(spec)
    if not class_conditional:
        if labels is not None:
            raise ValueError(f"prior spec {spec.text!r}: class= given but the model is not class-conditional")
        return network
    info["class_labels"] = labels
    return LabelledNetwork(network, info)

