r"""What each built-in strategy needs, assumes, costs and achieves: the facts behind
``docs/STRATEGIES.md`` (whose tables are :func:`facts_table` and :func:`measured_table`, checked
by ``tests/test_catalog.py``) and behind the default method of each operator
(:func:`default_method`).

Measured figures are data, not code: :func:`posterior_results` reads them from the results
file of ``benchmarks/bench_posterior.py`` (``benchmarks/results/posterior_cpu.txt``) and
:func:`measured_table` renders them: the sliced Wasserstein distance (SW, 1000 directions)
between 2000 samples of the strategy and 2000 exact posterior samples of the reference
Gaussian mixture (25 components, d dimensions) observed through a random d_y x d matrix with
sigma_y = 0.1, mean over 20 problems.  The floor (two exact sample sets) and the prior are
listed per cell as ``exact (floor)`` and ``prior``.

Costs are per step at the strategy's default hyperparameters: ``nfe_per_step`` network
(denoiser) evaluations as the engine counts them, ``backward_per_step`` backward passes
through the network (vector-Jacobian products, each about twice a forward pass).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Optional, Union


@dataclass(frozen=True)
class StrategyFacts:
    """One strategy's row of the catalog."""

    name: str
    needs: str
    assumes: str
    fails: str
    nfe_per_step: float
    backward_per_step: float
    cost_note: str = ""


CATALOG: dict[str, StrategyFacts] = {f.name: f for f in (
    StrategyFacts(
        "ddrm", needs="linear operator with an SVD; pixel prior",
        assumes="Gaussian measurement noise (a Poisson model enters as its Gaussian proxy)",
        fails="with eta = 0.85 it under-disperses directions the measurement does not see; "
              "far from the posterior at d = 80 (SW near the prior's at 20-100 NFE)",
        nfe_per_step=1, backward_per_step=0),
    StrategyFacts(
        "ddnm", needs="linear operator with an SVD; pixel prior",
        assumes="a noiseless measurement (it projects onto A x = y exactly; warns otherwise)",
        fails="copies the measurement noise into the observed directions; under-disperses unobserved "
              "directions with eta = 0.85 (as DDRM)",
        nfe_per_step=1, backward_per_step=0, cost_note="times travel_repeat on travelled levels"),
    StrategyFacts(
        "ddnm+", needs="linear operator with an SVD; pixel prior",
        assumes="Gaussian measurement noise (a Poisson model enters as its Gaussian proxy)",
        fails="as DDNM on unobserved directions; over-trusts weakly observed ones (sigma_y / s_i above the "
              "step's noise: blur), where Eq. 19 reuses one noise realisation as fresh noise at every step; "
              "the best gradient-free method on the exact problems",
        nfe_per_step=1, backward_per_step=0, cost_note="times travel_repeat on travelled levels"),
    StrategyFacts(
        "pigdm", needs="linear operator with an SVD; pixel prior",
        assumes="Gaussian measurement noise; p(x0 | x_t) close to N(x0_hat, r_t^2 I)",
        fails="poor below about 100 NFE (SW at 20 NFE near the prior's); exact only for Gaussian priors",
        nfe_per_step=1, backward_per_step=1),
    StrategyFacts(
        "diffpir", needs="any linear operator (data step by the operator's prox_l2: closed form from an SVD or a "
                   "mask, conjugate gradients otherwise); pixel prior",
        assumes="Gaussian measurement noise; lambda tuned for deblurring",
        fails="the weakest gradient-free SVD method on the exact problems at every budget",
        nfe_per_step=1, backward_per_step=0),
    StrategyFacts(
        "dpir", needs="any linear operator (data step by the operator's prox_l2, as diffpir); pixel prior",
        assumes="Gaussian measurement noise (sigma_y sets alpha_k and the last level sigma_K); sigma geometric "
                "to max(sigma_y, 0.6/255) from the paper's 49/255 on masks (started from the biharmonic fill) "
                "or from 0.5 elsewhere (the largest error of the mid-grey start), lambda = 0.23 (the released code)",
        fails="returns a point estimate for fidelity (PSNR / SSIM), not a sample: no posterior spread, smooth "
              "textures; on a Gaussian prior its fixed point is the posterior mean for noise sqrt(lambda) sigma_y "
              "and prior covariance Sigma + sigma_K^2 I, not the exact one",
        nfe_per_step=1, backward_per_step=0,
        cost_note="20 steps by default, deterministic; the periodic self-ensemble is free; times the size of the "
                  "symmetry group when one is set"),
    StrategyFacts(
        "dps", needs="any differentiable operator (linear or not); zeta' for operators without a published task",
        assumes="the step zeta' (published per task) matters more than sigma_y, which DPS does not use "
                "(Poisson noise: weighted residual)",
        fails="does not use the noise level, so it over- or under-fits noisy measurements depending on zeta'; "
              "1000 steps needed for its best results",
        nfe_per_step=1, backward_per_step=1),
    StrategyFacts(
        "daps", needs="any differentiable operator; a noise level (or beta_y) for the likelihood",
        assumes="Gaussian likelihood of width beta_y (default: the noise model's Gaussian proxy)",
        fails="directions of small operator gain barely move within the Langevin steps: "
              "far from the posterior at d = 80",
        nfe_per_step=5, backward_per_step=0,
        cost_note="ode_steps NFE and langevin_steps (100) operator gradients per annealing level"),
    StrategyFacts(
        "repaint", needs="a binary masking operator (inpainting); pixel prior",
        assumes="a noiseless measurement (known pixels are copied, noise included; warns otherwise)",
        fails="cannot serve any other operator; expensive (resampling revisits levels)",
        nfe_per_step=9.64, backward_per_step=0,
        cost_note="250 levels with jump_length = jump_n_sample = 10: resampling visits each level about 10 times"),
    StrategyFacts(
        "conditional", needs="a conditional network trained for the operator (SR3 / Palette)",
        assumes="the measurement follows the operator and noise the network was trained with",
        fails="any other operator or noise level than its training",
        nfe_per_step=1, backward_per_step=0),
    StrategyFacts(
        "tweedie", needs="the denoise operator with white Gaussian noise of known sigma_y",
        assumes="white Gaussian noise (refuses anything else)",
        fails="returns the posterior mean E[x | y], not a sample: no posterior spread, smooth textures",
        nfe_per_step=1, backward_per_step=0,
        cost_note="one step in all (other steps are run as one, with a warning), times the size of the symmetry "
                  "group: 8 on dihedral priors such as default; times clipped_passes on integer data with clipped "
                  "samples"),
    StrategyFacts(
        "reverse-from-y", needs="the denoise operator with white Gaussian noise of known sigma_y",
        assumes="white Gaussian noise (refuses anything else): y is the forward process at sigma_y",
        fails="a true posterior sample, so its expected squared error is twice the posterior mean's (3 dB lower PSNR)",
        nfe_per_step=1, backward_per_step=0,
        cost_note="every step below sigma_y (the grid starts there, from y); plus clipped_passes once per measurement "
                  "on integer data with clipped samples, where it is above 1"),
    StrategyFacts(
        "classifier-guidance", needs="what the inner strategy needs, and a noise-aware classifier",
        assumes="the classifier was trained on the prior's noise schedule",
        fails="as the inner strategy; large scales leave the data manifold",
        nfe_per_step=1, backward_per_step=0,
        cost_note="plus one classifier forward and backward per NFE (counted in the reported cost)"),
)}


def facts(name: str) -> Optional[StrategyFacts]:
    """The catalog row of strategy ``name``, or None for strategies it does not know (plugins)."""
    return CATALOG.get(name)


Quality = Literal["fast", "high"]
Target = Literal["fidelity", "perceptual"]
QUALITIES: tuple[str, ...] = ("fast", "high")
TARGETS: tuple[str, ...] = ("fidelity", "perceptual")


@dataclass(frozen=True)
class Default:
    """A default run: ``method`` with hyperparameters ``params`` ((name, value) pairs) at
    ``steps``; ``samples`` > 1 (the fidelity target with a sampler) reports the mean of that
    many posterior samples as the estimate, drawn in antithetic pairs where ``antithetic``
    (sample 2j + 1 the negation of sample 2j's noise: :func:`restore.diffusion.randomness.antithetic_pairs`)."""

    method: str
    steps: int
    samples: int = 1
    params: tuple[tuple[str, Any], ...] = ()
    antithetic: bool = False

    @property
    def spec(self) -> str:
        """``method`` or ``method:name=value,...``, as ``benchmarks/restoration.py`` names it."""
        return self.method + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")

    @property
    def mean_phrase(self) -> str:
        """The estimate in words where it is a mean of samples (", mean of 8 samples in
        antithetic pairs"), else ""."""
        if self.samples == 1:
            return ""
        return f", mean of {self.samples} samples" + (" in antithetic pairs" if self.antithetic else "")


#: ``high``'s candidate on the operator kinds the benchmark measures: ``fast`` at this many times the steps.
HIGH_FACTOR = 5


def _both(fast: Default, high_steps: Optional[int] = None) -> dict[str, Default]:
    """``fast`` and, as ``high``, the same run at ``high_steps`` (None: ``fast`` itself, where the
    benchmark found that more steps do not help)."""
    return {"fast": fast, "high": fast if high_steps is None else
            replace(fast, steps=high_steps)}


#: DDNM+ started from DPIR's estimate at t0 = 0.2 (:mod:`restore.strategies.warm`): the mask sampler.
WARM_DDNM = (("warm_start", "dpir"), ("t0", 0.2))

#: The default run by operator kind (:func:`operator_kind`), target and quality, chosen by the rule of
#: docs/STRATEGIES.md ("Targets and default methods": the highest mean PSNR, or the lowest mean LPIPS of a
#: sample, within 60 s per 256 x 256 image; a run keeps its place until a challenger wins on both test sets at
#: its budget) from ``benchmarks/restoration.py``'s tables of all images of Kodak24 and CBSD68.  Which table
#: holds each benchmarked default's whole-set row is ``EVIDENCE`` of ``benchmarks/defaults_summary.py``
#: (``tests/test_defaults_summary.py`` fails on a default without it); docs/STRATEGIES.md tells how each
#: choice was made (screens on CBSD432 training crops, the challengers it beat).  ``high`` is 5x the steps
#: where that beat ``fast`` on the kind's mean on both sets, else ``fast``; ``svd``, ``linear`` and ``other``
#: were not measured on images.
DEFAULTS: dict[str, dict[str, dict[str, Default]]] = {
    "denoise": {"fidelity": _both(Default("tweedie", 1, params=(("clipped_passes", 4),))),
                "perceptual": {"fast": Default("reverse-from-y", 20, params=(("clipped_passes", 4),)),
                               "high": Default("ddrm", 100)}},
    "inpaint": {"fidelity": _both(Default("dpir", 40)),
                "perceptual": _both(Default("ddnm+", 20, params=WARM_DDNM), 100)},
    "inpaint-noisy": {"fidelity": _both(Default("ddnm+", 20, 2, params=WARM_DDNM, antithetic=True)),
                      "perceptual": _both(Default("ddnm+", 20, params=WARM_DDNM), 100)},
    "inpaint-hole": {"fidelity": _both(Default("ddnm+", 20, 8, antithetic=True)),
                     "perceptual": _both(Default("ddnm+", 20))},
    "inpaint-hole-noisy": {"fidelity": _both(Default("ddnm+", 20, 8, antithetic=True)),
                           "perceptual": _both(Default("ddnm+", 20))},
    "sr": {"fidelity": _both(Default("dpir", 20, params=(("lambda_", 0.1),))),
           "perceptual": _both(Default("ddrm", 20))},
    "deblur": {"fidelity": _both(Default("ddrm", 20, 8, antithetic=True)),
               "perceptual": _both(Default("ddrm", 20), 100)},
    "svd": {"fidelity": _both(Default("dpir", 20), 100), "perceptual": _both(Default("ddrm", 20), 100)},
    "linear": {"fidelity": _both(Default("dpir", 20), 100), "perceptual": _both(Default("dps", 100), 1000)},
    "other": {"fidelity": _both(Default("dps", 100), 1000), "perceptual": _both(Default("dps", 100), 1000)},
}

#: A mask whose hidden entries lie on average at least this many pixels from the nearest entry of
#: their channel that it keeps (:func:`hole_depth`) leaves holes in the image (kinds ``inpaint-hole``
#: and ``inpaint-hole-noisy``: boxes, strokes, an outpainted side), where a cold-started sample beats
#: the warm start; a shallower one samples the image sparsely (random dropout, Bayer), where DPIR's
#: estimate is close to the truth and the warm start wins.  Chosen on CBSD432 training crops
#: (docs/STRATEGIES.md, "Large holes want a cold start"): the depth, midway between two screened
#: masks, that loses the least LPIPS summed over the screen against the better start on each mask.
HOLE_DEPTH = 2.3


def operator_kind(operator: Any, shape: Optional[tuple[int, ...]] = None) -> str:
    """Which row of :data:`DEFAULTS` serves ``operator`` on images of ``shape`` (C, H, W):
    ``denoise`` (y = x + Gaussian noise); for a linear 0/1 mask with an SVD (inpainting, Bayer)
    :func:`mask_kind` of its :func:`hole_depth`; ``sr`` and ``deblur`` (linear with an SVD, of
    those tasks: the benchmark measures them apart), ``svd`` (other linear operators with an SVD:
    colorization, compressed sensing, matrices), ``linear`` (linear without an SVD: blur with a
    reflect or valid boundary, third-party operators) or ``other`` (nonlinear).

    A mask's kind needs the image shape (``shape``, else the operator's bound shape): a
    generated mask depends on the image size, and the mask is A(1) (a mask operator's
    A x = m * x); without either a mask operator raises ValueError."""
    caps = operator.capabilities()
    noise = operator.noise
    task = getattr(operator, "task", None)
    if task == "denoise" and noise.is_gaussian and not noise.noiseless:
        return "denoise"
    if caps.get("linear") and caps.get("has_svd"):
        if caps.get("is_mask"):
            return mask_kind(hole_depth(operator, shape), noise.is_gaussian and noise.noiseless)
        return {"super-resolution": "sr", "deblur": "deblur"}.get(task, "svd")
    return "linear" if caps.get("linear") else "other"


def mask_kind(depth: float, noiseless: bool) -> str:
    """The row of :data:`DEFAULTS` of a mask whose :func:`hole_depth` is ``depth``:
    ``inpaint-hole`` where it is at least :data:`HOLE_DEPTH` (holes: a cold-started sample beats
    the warm start), else ``inpaint`` (a sparse sampling); ``-noisy`` appended where the
    measurement is not ``noiseless`` (the benchmark's rule picks another estimator there; a
    mask read from a file is noiseless: the rounding of known pixels is not noise to a mask,
    :func:`restore.measurement.with_quantization_noise`)."""
    return "inpaint" + ("-hole" if depth >= HOLE_DEPTH else "") + ("" if noiseless else "-noisy")


def hole_depth(operator: Any, shape: Optional[tuple[int, ...]]) -> float:
    """How deep the holes of a mask operator are on images of ``shape`` (C, H, W): the mean, over
    the entries it hides (the zeros of its mask A(1)), of the chessboard distance in pixels to
    the nearest entry of the same channel that it keeps (1 next to a known pixel, diagonals
    included); an entry of a channel that keeps nothing counts max(H, W); 0 when nothing is
    hidden.  A random dropout of 30 to 95 % is 1.0 to 2.1 deep, a centred 8 x 8 box 1.875, a
    16 x 16 one 3.2, a 96 x 96 one 16.5 (the web page measures its painted mask the same way,
    ``maskDepth`` in ``restore/serve/static/app.js``).  Computed once per operator and shape
    (the operator's ``memo``): a run asks for its kind more than once."""
    shape = operator.shape if shape is None else shape
    if shape is None:
        raise ValueError(f"the default run for the mask operator {getattr(operator, 'name', operator)!r} depends on "
                         "the shape of its holes: give the image shape (C, H, W)")
    return operator.memo(("hole_depth", tuple(shape)), lambda: _mean_depth(operator, tuple(shape)))


def _mean_depth(operator: Any, shape: tuple[int, ...]) -> float:
    import torch
    from scipy.ndimage import distance_transform_cdt

    from restore.strategies.base import channels_by_mask

    hidden = (operator.forward(torch.ones(1, *shape)) == 0)[0].numpy()
    if not hidden.any():
        return 0.0
    total = 0.0
    for channels in channels_by_mask(hidden):  # one transform for the channels sharing a mask
        channel = hidden[channels[0]]
        if channel.all():
            total += len(channels) * channel.size * max(channel.shape)
        elif channel.any():
            total += len(channels) * float(distance_transform_cdt(channel, metric="chessboard")[channel].sum())
    return total / int(hidden.sum())


#: The default run of a conditional prior (:func:`is_conditional`), by target and quality: the
#: ``conditional`` strategy, the only one that samples such a network, at the 20 steps of the benchmark
#: that shipped ``default-sr3x4`` (``restoration_sr3_kodak24_cpu.md``, ``restoration_sr3_cbsd68_cpu.md``):
#: one sample for the perceptual target, the mean of 4 for fidelity (the estimate measured there);
#: ``high`` by the rule of :data:`DEFAULTS` (a win on both sets): 100 steps for a sample (LPIPS 0.3135
#: to 0.3078 on all 24 Kodak24 images, ``restoration_sr3_quality_kodak24_cpu.md``; 0.3176 to 0.3110 on
#: all 68 CBSD68 images, ``restoration_sr3_quality_cbsd68_cpu.md``), ``fast`` for the mean of 4 (PSNR
#: 25.23 to 24.75 at 100 steps on Kodak24).  Drawn in antithetic pairs the means of 2 and 4 beat as many
#: independent samples on both sets, and the mean of 4 in pairs the mean of 2 in pairs
#: (``restoration_sr3_antithetic_kodak24_cpu.md``, ``restoration_sr3_antithetic_cbsd68_cpu.md``): the
#: fidelity mean draws its 4 in pairs.
CONDITIONAL_DEFAULTS: dict[str, dict[str, Default]] = {
    "fidelity": _both(Default("conditional", 20, 4, antithetic=True)),
    "perceptual": _both(Default("conditional", 20), 20 * HIGH_FACTOR),
}


def is_conditional(prior: Any) -> bool:
    """Whether ``prior``'s network was trained with the measurement (its denoiser is a
    :class:`restore.diffusion.conditional.ConditionalNetwork`): only the ``conditional`` strategy
    samples it."""
    from restore.diffusion.conditional import ConditionalNetwork

    return isinstance(getattr(prior, "denoiser", None), ConditionalNetwork)


def default_method(operator: Any, quality: Quality = "fast", target: Target = "fidelity",
                   prior: Any = None, shape: Optional[tuple[int, ...]] = None) -> tuple[str, int]:
    """(strategy name, steps) of :func:`default_run`."""
    choice = default_run(operator, quality, target, prior, shape)
    return choice.method, choice.steps


def default_run(operator: Any, quality: Quality = "fast", target: Target = "fidelity", prior: Any = None,
                shape: Optional[tuple[int, ...]] = None) -> Default:
    """The default run for ``operator`` on images of ``shape`` (C, H, W; needed for masks,
    :func:`operator_kind`), ``quality`` and ``target``: :data:`DEFAULTS`; for a
    conditional ``prior`` (:func:`is_conditional`) :data:`CONDITIONAL_DEFAULTS`, whatever the
    operator (the strategy refuses one the network was not trained for, saying so).

    ``target`` (docs/STRATEGIES.md, the perception-distortion trade-off): ``fidelity`` wants
    the best PSNR / SSIM, i.e. an estimate of the posterior mean (an estimator, or the mean
    of ``samples`` posterior samples); ``perceptual`` the best LPIPS, i.e. one posterior
    sample.  ``quality`` is the budget within the target: ``fast`` is the rule's choice within
    60 s per 256 x 256 image on a 2-core CPU; ``high`` is the same run at 5x the steps where
    that beat ``fast`` on the benchmark (the perceptual target of blur and of the sparse masks,
    :data:`HOLE_DEPTH`), a challenger that won at that budget (denoising's DDRM at
    100 steps, where ``fast`` is ``reverse-from-y``), and ``fast`` itself where neither did (the
    perceptual target of SR and of the hole kinds, and the fidelity target: more steps of DPIR
    or of a sampler's mean scored no higher PSNR); on the kinds not measured on images it is 5x
    the steps.

    Linear operators without an SVD (blur with a non-circular boundary, third-party ones) get
    DPIR for fidelity (its data step by conjugate gradients) and DPS for perceptual; nonlinear
    ones DPS for both.  DPS takes its step size from the task the operator declares; an
    operator without one (``jpeg``, ``saturation``, plugins) needs ``zeta`` given, and DPS
    says so.
    """
    return kind_run(None if is_conditional(prior) else operator_kind(operator, shape), quality, target)


def kind_run(kind: Optional[str], quality: Quality = "fast", target: Target = "fidelity") -> Default:
    """The default run of the operator kind ``kind`` (a row of :data:`DEFAULTS`; None: a
    conditional prior's, :data:`CONDITIONAL_DEFAULTS`) for ``quality`` and ``target``."""
    if quality not in QUALITIES:
        raise ValueError(f"quality must be 'fast' or 'high', got {quality!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be 'fidelity' or 'perceptual', got {target!r}")
    return CONDITIONAL_DEFAULTS[target][quality] if kind is None else DEFAULTS[kind][target][quality]


#: What each operator kind of :data:`DEFAULTS` covers, for :func:`defaults_table`.
KINDS = {
    "denoise": "denoise with Gaussian noise",
    "inpaint": f"sparse masks with an SVD (random dropout, Bayer: holes under {HOLE_DEPTH} px deep), no noise",
    "inpaint-noisy": f"sparse masks with an SVD (holes under {HOLE_DEPTH} px deep), with measurement noise",
    "inpaint-hole": f"masks with holes (boxes, strokes, outpainting: at least {HOLE_DEPTH} px deep), no noise",
    "inpaint-hole-noisy": f"masks with holes (at least {HOLE_DEPTH} px deep), with measurement noise",
    "sr": "super-resolution",
    "deblur": "circular blur",
    "svd": "other linear with an SVD (colorize, cs, matrix; denoise without noise)",
    "linear": "linear without an SVD (reflect / valid blur, third-party operators)",
    "other": "nonlinear (nonlinear blur, phase retrieval, JPEG, saturation)",
}


def defaults_table() -> str:
    """:data:`DEFAULTS` as a Markdown table: one row per operator kind, one column per target
    and quality; last, the row of a conditional prior (:data:`CONDITIONAL_DEFAULTS`)."""
    def cell(choice: Default) -> str:
        params = f" ({', '.join(f'{k} = {v}' for k, v in choice.params)})" if choice.params else ""
        return f"`{choice.method}`{params}, {choice.steps} step{'s' if choice.steps > 1 else ''}{choice.mean_phrase}"

    head = ["operator", *[f"{t}, `{q}`" for t in TARGETS for q in QUALITIES]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind, rows in DEFAULTS.items():
        lines.append("| " + " | ".join([KINDS[kind], *[cell(rows[t][q]) for t in TARGETS for q in QUALITIES]]) + " |")
    conditional = [cell(CONDITIONAL_DEFAULTS[t][q]) for t in TARGETS for q in QUALITIES]
    lines.append("| " + " | ".join(["any, with a conditional prior (`default-sr3x4`)", *conditional]) + " |")
    return "\n".join(lines)


#: The reference rows of the posterior benchmark: a second exact sample set (the floor) and prior samples.
REFERENCE = ("exact (floor)", "prior")


def facts_table() -> str:
    """The catalog as a Markdown table: needs, assumptions, failure modes and cost per strategy."""
    head = ["strategy", "needs", "assumes", "where it fails", "NFE / step", "backward / step"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fact in CATALOG.values():
        cost = f"{fact.nfe_per_step:g}" + (f" ({fact.cost_note})" if fact.cost_note else "")
        cells = [fact.needs, fact.assumes, fact.fails, cost]
        lines.append("| " + " | ".join([f"`{fact.name}`", *[c.replace("|", "\\|") for c in cells],
                                        f"{fact.backward_per_step:g}"]) + " |")
    return "\n".join(lines)


def posterior_results(path: Union[str, Path]) -> dict[tuple[str, str, str], float]:
    """The mean SW of every measured row of a ``benchmarks/bench_posterior.py`` results table:
    (strategy, cell "d x d_y", NFE or "-" for the reference rows) -> SW.  Rows a strategy was
    not applicable to ("n/a: ...") are left out."""
    rows = {}
    for line in Path(path).read_text().splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) >= 5 and cols[0].isdigit() and re.match(r"^[\d.]+ ±", cols[4]):
            rows[(cols[2], f"{cols[0]}x{cols[1]}", cols[3])] = float(cols[4].split("±")[0])
    return rows


def measured_table(results: Union[str, Path]) -> str:
    """SW to the exact posterior (mean over the benchmark's problems) from the ``results`` file
    (:func:`posterior_results`): one row per strategy and NFE budget (the catalog's order, then
    strategies it does not know), one column per cell, the floor and prior rows first; "-"
    where not run."""
    rows = posterior_results(results)
    cells = list(dict.fromkeys(cell for _, cell, _ in rows))
    measured = list(dict.fromkeys(name for name, _, nfe in rows if nfe != "-"))
    head = ["strategy", "NFE", *[f"d={c.split('x')[0]}, d_y={c.split('x')[1]}" for c in cells]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(label: str, nfe: str) -> str:
        values = [f"{rows[(label.strip('`'), c, nfe)]:.2f}" if (label.strip("`"), c, nfe) in rows else "-"
                  for c in cells]
        return "| " + " | ".join([label, nfe, *values]) + " |"

    lines += [line(name, "-") for name in REFERENCE]
    for name in [n for n in CATALOG if n in measured] + sorted(n for n in measured if n not in CATALOG):
        budgets = sorted({int(nfe) for s, _, nfe in rows if s == name and nfe != "-"})
        lines += [line(f"`{name}`", str(n)) for n in budgets]
    return "\n".join(lines)
