r"""Checks that an operator keeps the contract of :mod:`restore.operators.base`.

They run on any registered operator, built-in or third-party, from tests and from
``restore check-operator``.  :func:`check_operator` returns a list of :class:`Check`
records ``(check, passed, figure, message)``: ``passed`` is True / False, or None
for a check that was skipped (the message says why); ``figure`` is the measured
error.  :func:`format_report` renders them as text, :func:`all_passed` sums them up.

Every numerical check runs in float64 on random inputs from a seeded generator
(uniform on [0, 1] for images, standard normal for measurements and directions).
Relative errors are normalized so they are meaningful whatever the scale:

* ``adjoint``: the dot-product test |<A x, y> - <x, A^T y>| / (||A x|| ||y||), which
  is at most the relative error of A^T y (Cauchy-Schwarz), unlike the ratio of the
  two inner products, which blows up when they happen to be near zero.
* ``pinv``: the four Penrose conditions A A+ A = A, A+ A A+ = A+, (A A+)^T = A A+,
  (A+ A)^T = A+ A (Penrose 1955), the first two as ||lhs - rhs|| / ||rhs|| on a
  random input, the symmetries as dot-product tests; the figure is the largest.
  Rounding in a pseudo-inverse is amplified by the condition number kappa = s_max / s_min
  of the singular values it inverts, so for SVD operators the threshold is
  max(``Tolerances.pinv``, 10 eps kappa), kappa taken over the singular values above the
  numerical-rank cutoff max(N, M) eps s_max (the rule of numpy's ``matrix_rank``); the
  message states it.  An *iterative* pseudo-inverse (the operator states
  ``pinv_tolerance``, e.g. CGLS's ``tol``) promises the normal-equation residual
  ||A^T (w - A A+ w)|| <= tol ||A^T w||, not the Penrose conditions: the check measures
  that residual (the figure) against the stated tolerance and reports the Penrose errors
  it reaches alongside.
* ``svd-*``: V and U are orthogonal (v o vt = id, vt o v = id, ||vt x|| = ||x||,
  likewise for u, ut), singular values are finite, >= 0 and at most min(N, M) of
  them, U diag(s) V^T x = A x, and V diag(s) U^T y = A^T y.
* ``gradient``: autograd against a central finite difference of f(x) = <A(x), w>
  along random directions d: |<grad f, d> - (f(x + e d) - f(x - e d)) / 2e|, relative
  to |<grad f, d>| + ||grad f|| ||d|| e^(1/2) (a randomized gradcheck; operators with
  surrogate gradients such as straight-through rounding are expected to fail it and
  may pass ``skip=("gradient",)``).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from restore.operators.base import Operator, SVDOperator, example_params
class Check(NamedTuple):
    """One check: its name, whether it passed (None: skipped), the measured figure, a message."""

    check: str
    passed: Optional[bool]
    figure: Optional[float]
    message: str


@dataclass(frozen=True)
class Tolerances:
    """Pass thresholds of the relative errors (float64 unless named otherwise)."""

    adjoint: float = 1e-10
    linearity: float = 1e-10
    pinv: float = 1e-8
    svd: float = 1e-10
    batch: float = 1e-12
    gradient: float = 1e-5
    float32: float = 1e-4
    bfloat16: float = 5e-2
    device: float = 1e-10


#: The per-item input shape used for operators not bound to one.
DEFAULT_SHAPE = (3, 64, 64)


def _rel(error: Tensor, scale: Tensor) -> float:
    scale = float(scale)
    return float(error) / scale if scale > 0 else (0.0 if float(error) == 0 else math.inf)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum()


class _Checker:
    """Runs the checks on one operator; each check catches its own errors."""

    def __init__(
        self,
        op: Operator,
        shape: Sequence[int],
        factory: Optional[Callable[..., Operator]],
        batch: int,
        seed: int,
        tolerances: Tolerances,
        skip: Iterable[str],
        note: str = "",
    ) -> None:
        self.op, self.factory, self.tol, self.skipped, self.note = op, factory, tolerances, set(skip), note
        self.exempt: dict[str, str] = dict(getattr(op, "contract_exempt", {}))
        self.shape = (batch, *shape)
        self.rng = torch.Generator().manual_seed(seed)
        self.results: list[Check] = []

    def image(self, shape: Optional[Sequence[int]] = None) -> Tensor:
        return torch.rand(tuple(shape or self.shape), generator=self.rng, dtype=torch.float64)

    def normal(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self.rng, dtype=torch.float64)

    def run(self, name: str, check: Optional[Callable[[], tuple[bool, Optional[float], str]]],
            why_not: str = "") -> None:
        """Run ``check`` and record it; ``None`` (not applicable), a name in ``skip`` or one the
        operator declares inapplicable (its ``contract_exempt`` mapping: check -> reason) records a skip."""
        if name in self.exempt:
            self.skip(name, f"exempt: {self.exempt[name]}")
            return
        if name in self.skipped or check is None:
            self.skip(name, "skipped on request" if name in self.skipped else why_not)
            return
        try:
            passed, figure, message = check()
        except Exception as exc:  # a failing check is reported, never fatal
            passed, figure, message = False, None, f"raised {type(exc).__name__}: {exc}"
        self.results.append(Check(name, passed, figure, message))

    def skip(self, name: str, why: str) -> None:
        self.results.append(Check(name, None, None, why))

    # ------------------------------------------------------------------ general
    def capabilities(self) -> tuple[bool, Optional[float], str]:
        caps = self.op.capabilities()
        problems = [f"{k} is not a bool" for k, v in caps.items() if not isinstance(v, bool)]
        if caps.get("has_svd") and not caps.get("linear"):
            problems.append("has_svd without linear")
        if caps.get("is_mask") and not caps.get("linear"):
            problems.append("is_mask without linear")
        for method in ("adjoint", "pinv") if caps.get("linear") else ():
            if not callable(getattr(self.op, method, None)):
                problems.append(f"linear but no {method}()")
        for method in ("singulars", "vt", "v", "ut", "u") if caps.get("has_svd") else ():
            if not callable(getattr(self.op, method, None)):
                problems.append(f"has_svd but no {method}()")
        return not problems, None, "; ".join(problems) or f"{caps}{self.note}"

    def forward(self) -> tuple[bool, Optional[float], str]:
        x = self.image()
        y1, y2 = self.op.forward(x), self.op.forward(x)
        if not isinstance(y1, Tensor):
            return False, None, f"forward returned {type(y1).__name__}, not a tensor"
        if y1.dtype != x.dtype or y1.shape[0] != x.shape[0]:
            return False, None, f"float64 input {tuple(x.shape)} gave {y1.dtype} {tuple(y1.shape)}"
        if not bool(torch.isfinite(y1).all()):
            return False, None, "non-finite output"
        return bool(torch.equal(y1, y2)), None, f"input {tuple(x.shape)} -> measurement {tuple(y1.shape)}; repeatable"

    def measure(self) -> tuple[bool, Optional[float], str]:
        x = self.image()
        draws = [self.op.measure(x, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
        same_shape = draws[0].shape == self.op.forward(x).shape
        return same_shape and bool(torch.equal(*draws)), None, f"noise {self.op.noise.to_json()}; same seed, same draw"

    def batch(self) -> tuple[bool, Optional[float], str]:
        x = self.image()
        together = self.op.forward(x)
        alone = torch.cat([self.op.forward(x[i : i + 1]) for i in range(x.shape[0])])
        error = _rel((together - alone).norm(), together.norm())
        return error <= self.tol.batch, error, "batch items are measured independently"

    def json(self) -> tuple[bool, Optional[float], str]:
        params = self.op.params()
        text = json.dumps(params)
        rebuilt = self.factory(**json.loads(text), **self.op.tensors())
        x = self.image()
        same = bool(torch.equal(rebuilt.forward(x), self.op.forward(x)))
        same_params = json.dumps(rebuilt.params(), sort_keys=True) == json.dumps(params, sort_keys=True)
        message = f"factory(**params, **tensors()) rebuilds it: params {text}"
        if not same_params:
            message += f"; rebuilt params differ: {json.dumps(rebuilt.params())}"
        return same and same_params, None, message

    def dtype(self, dtype: torch.dtype, tolerance: float) -> tuple[bool, Optional[float], str]:
        x = self.image()
        reference = self.op.forward(x)
        y = self.op.forward(x.to(dtype))
        if y.dtype != dtype:
            return False, None, f"{dtype} input gave {y.dtype} output"
        error = _rel((y.double() - reference).norm(), reference.norm())
        message = f"forward in {dtype} vs float64"
        if self.op.linear:
            w = self.normal(reference)
            adjoint, reference_adjoint = self.op.adjoint(w.to(dtype)), self.op.adjoint(w)
            if adjoint.dtype != dtype:
                return False, None, f"{dtype} measurement gave a {adjoint.dtype} adjoint"
            error = max(error, _rel((adjoint.double() - reference_adjoint).norm(), reference_adjoint.norm()))
            message += ", adjoint too"
        return error <= tolerance, error, message

    def device(self) -> tuple[bool, Optional[float], str]:
        x = self.image()
        reference = self.op.forward(x)
        y = self.op.forward(x.cuda())
        if y.device.type != "cuda":
            return False, None, f"a cuda input gave output on {y.device}"
        error = _rel((y.cpu() - reference).norm(), reference.norm())
        return error <= self.tol.device, error, "forward on cuda vs cpu (float64)"

    def gradient(self) -> tuple[bool, Optional[float], str]:
        x = self.image().requires_grad_(True)
        y = self.op.forward(x)
        w = self.normal(y)
        (grad,) = torch.autograd.grad(_dot(y, w), x)
        if grad.shape != x.shape or not bool(torch.isfinite(grad).all()):
            return False, None, "gradient has the wrong shape or non-finite entries"
        step, worst = 1e-6, 0.0
        with torch.no_grad():
            for _ in range(3):
                d = self.normal(x)
                numeric = (_dot(self.op.forward(x + step * d), w) - _dot(self.op.forward(x - step * d), w)) / (2 * step)
                analytic = _dot(grad, d)
                scale = analytic.abs() + grad.norm() * d.norm() * math.sqrt(step)
                worst = max(worst, _rel((analytic - numeric).abs(), scale))
        message = "directional derivatives of <A(x), w>: autograd vs central differences"
        if self.op.linear:
            adjoint = self.op.adjoint(w)
            worst = max(worst, _rel((grad - adjoint).norm(), adjoint.norm()))
            message += "; autograd's vector-Jacobian product = adjoint(w)"
        return worst <= self.tol.gradient, worst, message

    # ------------------------------------------------------------------ linear
    def linearity(self) -> tuple[bool, Optional[float], str]:
        x1, x2 = self.image(), self.image()
        a, b = 0.7, -1.3
        y1, y2 = self.op.forward(x1), self.op.forward(x2)
        combined = self.op.forward(a * x1 + b * x2) - a * y1 - b * y2
        error = _rel(combined.norm(), abs(a) * y1.norm() + abs(b) * y2.norm())
        return error <= self.tol.linearity, error, "A(a x1 + b x2) = a A x1 + b A x2"

    def adjoint(self) -> tuple[bool, Optional[float], str]:
        x = self.image()
        y = self.op.forward(x)
        w = self.normal(y)
        back = self.op.adjoint(w)
        if back.shape != x.shape:
            return False, None, f"adjoint of {tuple(w.shape)} has shape {tuple(back.shape)}, expected {tuple(x.shape)}"
        error = _rel((_dot(y, w) - _dot(x, back)).abs(), y.norm() * w.norm())
        return error <= self.tol.adjoint, error, "dot-product test |<A x, y> - <x, A^T y>| / (||A x|| ||y||)"

    def pinv(self) -> tuple[bool, Optional[float], str]:
        op = self.op
        x1, x2 = self.image(), self.image()
        y = op.forward(x1)
        w1, w2 = self.normal(y), self.normal(y)
        with warnings.catch_warnings(record=True) as self.pinv_warnings:  # reported in the message
            warnings.simplefilter("always")
            p = op.pinv(w1)
            errors = {
                "A A+ A = A": _rel((op.forward(op.pinv(y)) - y).norm(), y.norm()),
                "A+ A A+ = A+": _rel((op.pinv(op.forward(p)) - p).norm(), p.norm()),
                "(A A+)^T = A A+": _rel(
                    (_dot(op.forward(op.pinv(w1)), w2) - _dot(w1, op.forward(op.pinv(w2)))).abs(), w1.norm() * w2.norm()
                ),
                "(A+ A)^T = A+ A": _rel(
                    (_dot(op.pinv(op.forward(x1)), x2) - _dot(x1, op.pinv(op.forward(x2)))).abs(), x1.norm() * x2.norm()
                ),
            }
        penrose = "Penrose: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items())
        stated = getattr(op, "pinv_tolerance", None)
        if stated is not None:
            normal = op.adjoint(w1)
            reached = float(((op.adjoint(w1 - op.forward(p))).flatten(1).norm(dim=1)
                             / normal.flatten(1).norm(dim=1).clamp_min(torch.finfo(normal.dtype).tiny)).max())
            message = f"iterative pseudo-inverse: normal-equation residual {reached:.1e} (stated tolerance {stated:.1e}"
            if reached <= stated:
                return True, reached, f"{message}); {penrose}"
            # Stopping early is part of an iterative method's contract when it says so.
            stopped = [str(w.message) for w in self.pinv_warnings if issubclass(w.category, RuntimeWarning)]
            if stopped and reached < 1:
                return True, reached, f"{message}, not reached: {stopped[0]}; raise max_iter for more); {penrose}"
            return False, reached, f"{message}, not reached and no warning said so); {penrose}"
        worst = max(errors.values())
        threshold, basis = self.pinv_threshold()
        return worst <= threshold, worst, f"{penrose} (threshold {threshold:.1e}{basis})"

    def pinv_threshold(self) -> tuple[float, str]:
        """max(Tolerances.pinv, 10 eps kappa) and a note on kappa (see the module docstring)."""
        if not self.op.has_svd:
            return self.tol.pinv, ""
        bound, _ = _bound_for_svd(self.op, self.shape[1:])
        if bound is None:
            return self.tol.pinv, ""
        s = bound.singulars().double()
        eps = torch.finfo(torch.float64).eps
        if s.numel() == 0 or float(s.max()) == 0:
            return self.tol.pinv, ""
        n = max(math.prod(bound.shape), s.numel())
        kept = s[s > n * eps * s.max()]
        kappa = float(s.max() / kept.min())
        return max(self.tol.pinv, 10 * eps * kappa), f" = max({self.tol.pinv:.0e}, 10 eps kappa), kappa {kappa:.1e}"

    # ------------------------------------------------------------------ svd
    def svd_checks(self, op: SVDOperator) -> None:
        try:
            x = self.image((self.shape[0], *op.shape))
            y = op.forward(x)
        except Exception as exc:
            for name in SVD_CHECKS:
                self.run(name, None, f"forward of the bound operator raised {type(exc).__name__}: {exc}")
            return
        n, m = x[0].numel(), y[0].numel()

        def shapes() -> tuple[bool, Optional[float], str]:
            s = op.singulars()
            problems = []
            if s.dim() != 1 or s.numel() > min(n, m):
                problems.append(f"singulars has shape {tuple(s.shape)}, expected 1-D with at most "
                                f"min(N, M) = {min(n, m)}")
            if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
                problems.append("singular values must be finite and >= 0")
            if tuple(op.vt(x).shape) != (x.shape[0], n):
                problems.append(f"vt(x) has shape {tuple(op.vt(x).shape)}, expected {(x.shape[0], n)}")
            if tuple(op.ut(y).shape) != (y.shape[0], m):
                problems.append(f"ut(y) has shape {tuple(op.ut(y).shape)}, expected {(y.shape[0], m)}")
            span = f"{s.numel()} singular values in [{float(s.min()):.3g}, {float(s.max()):.3g}]"
            message = "; ".join(problems) or span
            return not problems, None, message

        def orthogonal(forward: Callable[[Tensor], Tensor], back: Callable[[Tensor], Tensor], z: Tensor):
            def check() -> tuple[bool, Optional[float], str]:
                coeffs = forward(z)
                c = self.normal(coeffs)
                errors = [
                    _rel((back(coeffs) - z).norm(), z.norm()),
                    _rel((coeffs.norm() - z.norm()).abs(), z.norm()),
                    _rel((forward(back(c)) - c).norm(), c.norm()),
                ]
                return max(errors) <= self.tol.svd, max(errors), "round trips both ways, norm preserved"

            return check

        def reconstruct() -> tuple[bool, Optional[float], str]:
            s = op.singulars()
            coeffs = op.vt(x)
            scaled = coeffs.new_zeros(coeffs.shape[0], m)
            scaled[:, : s.numel()] = coeffs[:, : s.numel()] * s.to(coeffs.dtype)
            forward_error = _rel((op.u(scaled) - y).norm(), y.norm())
            w = self.normal(y)
            via_svd = op.v(SVDOperator.scale_spectral(op.ut(w), s, n))
            adjoint = op.adjoint(w)
            adjoint_error = _rel((via_svd - adjoint).norm(), adjoint.norm())
            worst = max(forward_error, adjoint_error)
            message = f"U diag(s) V^T x = A x ({forward_error:.1e}), V diag(s) U^T y = A^T y ({adjoint_error:.1e})"
            return worst <= self.tol.svd, worst, message

        self.run("svd-shapes", shapes)
        self.run("svd-v", orthogonal(op.vt, op.v, x))
        self.run("svd-u", orthogonal(op.ut, op.u, self.normal(y)))
        self.run("svd-reconstruct", reconstruct)


SVD_CHECKS = ("svd-shapes", "svd-v", "svd-u", "svd-reconstruct")


def _bound_for_svd(op: Operator, shape: Sequence[int]) -> tuple[Optional[Operator], str]:
    """The operator itself when bound to a shape, else ``op.bound_to(shape)``."""
    if op.shape is not None:
        return op, ""
    try:
        return op.bound_to(shape), ""
    except Exception as exc:
        return None, f"binding it to shape {list(shape)} failed: {type(exc).__name__}: {exc}"


def check_operator(
    op: Operator,
    *,
    shape: Optional[Sequence[int]] = None,
    factory: Optional[Callable[..., Operator]] = None,
    batch: int = 2,
    seed: int = 0,
    tolerances: Tolerances = Tolerances(),
    skip: Iterable[str] = (),
) -> list[Check]:
    """Run every applicable contract check on ``op``.

    ``shape`` is the per-item input shape for an unbound operator (default
    :data:`DEFAULT_SHAPE`; a bound operator is checked at its own ``shape``); the SVD
    checks of an unbound operator run on ``op.bound_to(shape)``, and so do all checks of an
    unbound SVD operator whose ``adjoint`` or ``pinv`` is the one :class:`SVDOperator` derives
    from the SVD (which needs the image size, as in a run, where the engine binds the operator).
    ``factory`` (the registered factory) enables the JSON round trip.  Checks named in ``skip``
    are reported as skipped.
    """
    shape = tuple(op.shape) if op.shape is not None else tuple(shape or DEFAULT_SHAPE)
    note = ""
    derived = [m for m in ("adjoint", "pinv") if op.has_svd and getattr(type(op), m, None) is getattr(SVDOperator, m)]
    if op.shape is None and derived:
        bound, _ = _bound_for_svd(op, shape)
        if bound is not None:
            op, note = bound, f"; {' and '.join(derived)} from the SVD: checked bound to shape {list(shape)}"
    checker = _Checker(op, shape, factory, batch, seed, tolerances, skip, note)
    linear = op.linear
    checker.run("capabilities", checker.capabilities)
    checker.run("forward", checker.forward)
    checker.run("measure", checker.measure)
    checker.run("batch", checker.batch)
    checker.run("gradient", checker.gradient)
    checker.run("json", checker.json if factory is not None else None, "no factory given")
    checker.run("dtype-float32", lambda: checker.dtype(torch.float32, tolerances.float32))
    checker.run("dtype-bfloat16", lambda: checker.dtype(torch.bfloat16, tolerances.bfloat16))
    checker.run("device-cuda", checker.device if torch.cuda.is_available() else None, "CUDA is not available")
    checker.run("linearity", checker.linearity if linear else None, "not linear")
    checker.run("adjoint", checker.adjoint if linear else None, "not linear")
    checker.run("pinv", checker.pinv if linear else None, "not linear")
    if op.has_svd:
        bound, why_not = _bound_for_svd(op, shape)
        if bound is None:
            for name in SVD_CHECKS:
                checker.run(name, None, why_not)
        else:
            checker.svd_checks(bound)
    return checker.results


def check_factory(
    factory: Callable[..., Operator], params: Optional[Mapping[str, Any]] = None, **options: Any
) -> list[Check]:
    """Build ``factory(**params)`` and check it (options as :func:`check_operator`).  With
    ``params`` None the factory's declared example configuration is used
    (:func:`restore.operators.base.example_params`); a factory without one, or a build
    failure, is reported as a failed ``build`` check."""
    try:
        params = example_params(factory) if params is None else dict(params)
        op = factory(**params)
    except Exception as exc:
        return [Check("build", False, None, f"raised {type(exc).__name__}: {exc}")]
    return [Check("build", True, None, repr(op)), *check_operator(op, factory=factory, **options)]


def all_passed(checks: Iterable[Check]) -> bool:
    """True when no check failed (skipped ones do not count)."""
    return all(c.passed is not False for c in checks)


def format_report(checks: Iterable[Check], title: Optional[str] = None) -> str:
    """A readable table: status, check name, figure, message; then a summary line."""
    checks = list(checks)
    width = max([len(c.check) for c in checks] + [5])
    lines = [title] if title else []
    for c in checks:
        status = {True: "PASS", False: "FAIL", None: "SKIP"}[c.passed]
        figure = f"{c.figure:9.2e}" if c.figure is not None else " " * 9
        lines.append(f"{status}  {c.check:<{width}}  {figure}  {c.message}")
    counts = {s: sum(c.passed is s for c in checks) for s in (True, False, None)}
    lines.append(f"{counts[True]} passed, {counts[False]} failed, {counts[None]} skipped")
    return "\n".join(lines)
