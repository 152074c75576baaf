r"""Sampling and training conditional denoising networks: SR3 (Saharia et al. 2021, "Image
Super-Resolution via Iterative Refinement") and Palette (Saharia et al. 2022, "Palette:
Image-to-Image Diffusion Models").

The network and its view (:class:`restore.diffusion.conditional.ConditionalNetwork`) see the
measurement through a condition image c(y) of the sample's size, concatenated with the noisy
image along channels; :func:`measurement_condition` makes c(y) from a problem:

* ``"upsample"`` (SR3): y upsampled to the target size by bicubic interpolation;
* ``"pinv"`` (Palette-style, any linear operator): the pseudo-inverse A^+ y,

both mapped to the prior's range; ``"auto"`` takes ``"upsample"`` when y is a smaller
image with the same channels and ``"pinv"`` otherwise.  A residual network models x - c(y)
and its samples are c(y) plus the sampled residual (the view's module docstring).  Bound to
c(y) the network is an ordinary denoiser, sampled with the shared samplers: ancestral DDPM
as in SR3 and Palette, or DDIM with ``eta``.

Training (:func:`train_conditional`) minimises the objective of Ho et al. 2020 (Alg. 1)
with the condition added, as SR3 does:

    E_{x0, y, t, eps} || target - f(cat[sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, c(y)], t) ||^2,

t uniform over the schedule's timesteps, y = A(x0) + n drawn from the operator, z0 the
variable the network diffuses (x0, or the residual x0 - c(y) of a residual network: SRDiff,
Li et al. 2022; :meth:`ConditionalNetwork.diffused`) and the target what it predicts: eps
(SR3's choice), or z0 itself for ``parametrization="x0"`` (Ho et al. 2020, Sec. 3.2's x0
alternative).  (SR3 conditions on a continuous noise level instead of t; on a discrete
schedule the two coincide.)
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restore.diffusion.conditional import CONDITIONS, ConditionalNetwork
from restore.diffusion.denoiser import Denoiser
from restore.diffusion.samplers import sample_ddim, sample_ddpm
from restore.events import StepCallback
from restore.operators.base import Operator
from restore.operators.noise import NoiseModel
from restore.operators.validation import check_choice, check_number
from restore.priors.base import Prior
from restore.strategies.base import Problem, Strategy, StrategyNotApplicable


#: (relative, absolute) tolerance of the noise level: |sigma - sigma_trained| <= 0.25 sigma_trained + 1/255.
NOISE_TOLERANCE = (0.25, 1 / 255)


def condition_mode(problem: Problem, shape: tuple[int, ...], mode: str) -> str:
    """Resolve ``"auto"`` and check that the operator supports the condition."""
    check_choice("conditional", "condition", mode, CONDITIONS)
    y = problem.y
    is_low_res = (y.dim() == len(shape) + 1 == 4 and y.shape[1] == shape[0]
                  and all(a <= b for a, b in zip(y.shape[-2:], shape[-2:])) and y.shape[-2:] != shape[-2:])
    if mode == "auto":
        mode = "upsample" if is_low_res else "pinv"
    if mode == "upsample" and not is_low_res:
        raise StrategyNotApplicable(f"condition 'upsample' needs y to be a smaller image with {shape[0]} channels; "
                                    f"got y of shape {tuple(y.shape)} for samples of shape {tuple(shape)}")
    if mode == "pinv" and not problem.operator.linear:
        raise StrategyNotApplicable(f"condition 'pinv' needs an operator that is linear; "
                                    f"{type(problem.operator).__name__} is not")
    return mode


def measurement_condition(problem: Problem, shape: tuple[int, ...], mode: str = "auto") -> Tensor:
    """The condition image c(y) in prior range, (B, C', H, W) with the H, W of ``shape``
    (see the module docstring)."""
    mode = condition_mode(problem, shape, mode)
    if mode == "upsample":
        image = F.interpolate(problem.y, size=tuple(shape[-2:]), mode="bicubic", align_corners=False)
    else:
        image = problem.operator.pinv(problem.y)
        if image[0].numel() != math.prod(shape):
            raise StrategyNotApplicable(f"condition 'pinv': A^+ y has {image[0].numel()} entries per item, "
                                        f"samples of shape {tuple(shape)} have {math.prod(shape)}")
        image = image.reshape(image.shape[0], *shape)  # flat for operators on vectors (matrix)
    return problem.prior.to_prior(image)


def _conditional_denoiser(prior: Prior) -> ConditionalNetwork:
    if not isinstance(prior.denoiser, ConditionalNetwork):
        raise StrategyNotApplicable(f"strategy 'conditional' needs a prior whose network is a ConditionalNetwork "
                                    f"(a network trained with the measurement); prior {prior.name!r} has "
                                    f"{type(prior.denoiser).__name__}")
    return prior.denoiser


def noise_mismatch(trained: float, noise: NoiseModel) -> Optional[str]:
    """Why a network trained on measurements with Gaussian noise ``trained`` (std on [0, 1])
    does not fit measurements with ``noise``, or None when it does: the noise must be
    Gaussian with a standard deviation within :data:`NOISE_TOLERANCE` of ``trained`` (so an
    8-bit file's rounding, q / sqrt(12) = 0.0011, and small misstatements pass).  The network
    sees c(y) as it was trained: noise it never saw is read as image detail, noise it
    expects and does not find is hallucinated."""
    if not noise.is_gaussian:
        return f"{type(noise).__name__} measurement noise, the network was trained on Gaussian noise"
    relative, absolute = NOISE_TOLERANCE
    if abs(noise.proxy_sigma - trained) > relative * trained + absolute:
        return f"measurement noise sigma {noise.proxy_sigma:g}, the network was trained on sigma {trained:g}"
    return None


def operator_mismatch(trained: Optional[dict], operator: Operator) -> Optional[str]:
    """Why a network trained for the operator ``trained`` (registry name and attributes, as
    ``config.json``'s ``measurement_operator`` records it) does not serve ``operator``, or
    None when it does (or when ``trained`` is None: not recorded)."""
    if trained is None:
        return None
    wanted = ", ".join(f"{k} {v}" for k, v in trained.items() if k != "name")
    described = f"{trained['name']}" + (f" ({wanted})" if wanted else "")
    if operator.name != trained["name"]:
        return f"the network was trained for {described}, the operator is {operator.name}"
    for key, value in trained.items():
        if key != "name" and getattr(operator, key, None) != value:
            return f"the network was trained for {described}, the operator has {key} {getattr(operator, key, None)}"
    return None


class Conditional(Strategy):
    """Sampling a conditional network (SR3 / Palette) bound to the measurement.

    ``eta``: None samples with ancestral DDPM steps (SR3, Palette); a number uses DDIM
    with that stochasticity (0 deterministic).  ``check_noise`` (default true): refuse a
    problem whose noise the network was not trained for (:func:`noise_mismatch`); false
    samples anyway.  A problem whose operator is not the one the network was trained for
    (:func:`operator_mismatch`) is always refused.
    """

    name = "conditional"
    needs_pixel_prior = True
    default_steps = 20  # the benchmark's budget for default-sr3x4 (docs/STRATEGIES.md)

    def __init__(self, eta: Optional[float] = None, check_noise: bool = True) -> None:
        self.eta = None if eta is None else check_number(self.name, "eta", eta, low=0.0, high=1.0)
        if not isinstance(check_noise, bool):
            raise ValueError(f"{self.name}: check_noise must be true or false, got {check_noise!r}")
        self.check_noise = check_noise

    def check(self, problem: Problem) -> None:
        super().check(problem)
        network = _conditional_denoiser(problem.prior)
        wrong_operator = operator_mismatch(network.measurement_operator, problem.operator)
        if wrong_operator:
            raise StrategyNotApplicable(f"strategy 'conditional': {wrong_operator}; a conditional network serves "
                                        "only the operator it was trained for")
        why = noise_mismatch(network.measurement_sigma, problem.operator.noise) if self.check_noise else None
        if why:
            raise StrategyNotApplicable(f"strategy 'conditional': {why}; train a network for this noise "
                                        f"(restore train sr3 --noise-sigma), or pass check_noise=false")
        if self.symmetry_group(problem) != "none":
            raise StrategyNotApplicable("strategy 'conditional': its network is bound to the measurement, which a "
                                        "symmetry average would not flip or turn with the input; use symmetry=none")

    def denoiser(self, problem: Problem, shape: tuple[int, ...]) -> Denoiser:
        network = _conditional_denoiser(problem.prior)
        return network.bind(measurement_condition(problem, shape, network.condition))

    def sample(self, problem: Problem, denoiser: Denoiser, x: Tensor, sigmas: Tensor, *,
               generator: Optional[torch.Generator] = None, callback: StepCallback = None) -> Tensor:
        if self.eta is None:
            return sample_ddpm(denoiser, x, sigmas, generator=generator, callback=callback)
        return sample_ddim(denoiser, x, sigmas, eta=self.eta, generator=generator, callback=callback)


def conditional_loss(prior: Prior, operator: Operator, images: Tensor, *,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    """The conditional denoising objective (module docstring) on a batch of clean ``images``
    in [0, 1]: y drawn from the operator, t uniform, one eps per image; the target is eps or
    the diffused clean variable z0, as the network's ``parametrization`` says."""
    model = _conditional_denoiser(prior)
    y = operator.measure(images, generator=generator)
    cond = measurement_condition(Problem(prior, operator, y), tuple(images.shape[1:]), model.condition)
    z0 = model.diffused(prior.to_prior(images), cond)
    abar = model.schedule.alphas_cumprod.to(z0.device)
    t = torch.randint(0, model.schedule.num_timesteps, (z0.shape[0],), generator=generator, device=z0.device)
    eps = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
    a = abar[t].to(z0.dtype).reshape(-1, *([1] * (z0.dim() - 1)))
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps
    predicted = model.network(torch.cat([z_t, cond], dim=1), t.to(z0.dtype))
    return F.mse_loss(predicted, eps if model.parametrization == "epsilon" else z0)


def train_conditional(prior: Prior, operator: Operator, images: Callable[[int, torch.Generator], Tensor], *,
                      steps: int = 300, batch_size: int = 32, lr: float = 1e-3,
                      generator: Optional[torch.Generator] = None) -> list[float]:
    """Train ``prior``'s conditional network (an ``nn.Module``) with Adam on
    :func:`conditional_loss`; ``images(batch_size, generator)`` draws clean training images in
    [0, 1].  Returns the loss of every step."""
    network = _conditional_denoiser(prior).network
    if not isinstance(network, nn.Module):
        raise TypeError(f"train_conditional: the network must be a torch.nn.Module, got {type(network).__name__}")
    generator = generator or torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    network.train()
    losses = []
    for _ in range(steps):
        loss = conditional_loss(prior, operator, images(batch_size, generator), generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    network.eval()
    return losses


STRATEGIES = {Conditional.name: Conditional}
