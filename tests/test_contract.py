"""The contract checks: every built-in linear operator passes them, and each check
catches the defect it is meant to catch in a deliberately broken operator."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from restore.operators.base import LinearOperator, Operator, SVDOperator
from restore.operators.contract import Check, all_passed, check_factory, check_operator, format_report
from restore.operators.identity import Denoise
from restore.operators.resize import Downsample
from restore.plugins import load_registry


#: Built-in linear operators as registered, with parameters that make every check apply.
BUILTINS = [
    ("inpaint", {"mask": "strokes", "seed": 1}),
    ("inpaint", {"mask": torch.ones(1, 16, 16).tril()}),
    ("blur", {"kernel": "motion", "size": 7, "seed": 2}),
    ("blur", {"kernel": "gaussian", "size": 5, "std": 0.7, "boundary": "reflect", "tol": 1e-12}),
    ("blur", {"kernel": "gaussian", "size": 5, "std": 0.7, "boundary": "valid", "tol": 1e-12}),
    ("sr", {"scale": 2}),
    ("sr", {"scale": 4, "method": "avgpool"}),
    ("colorize", {"weights": "bt601"}),
    ("denoise", {}),
    ("cs", {"ratio": 0.2, "block": 8, "seed": 3}),
    ("cs", {"ratio": 0.5, "basis": "orthogonal", "block": 4}),
]


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.check: c for c in checks}


@pytest.mark.parametrize("name, params", BUILTINS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BUILTINS)])
def test_builtin_linear_operators_pass_every_check(registry, name, params):
    checks = check_factory(registry.get("operator", name), params, shape=(3, 16, 16))
    assert all_passed(checks), format_report(checks)
    ran = {c.check for c in checks if c.passed is not None}
    expected = {"build", "forward", "batch", "gradient", "json", "dtype-float32", "dtype-bfloat16", "linearity",
                "adjoint", "pinv"}
    assert expected <= ran
    if name != "blur" or "boundary" not in params:  # reflect / valid have no SVD
        assert {"svd-shapes", "svd-v", "svd-u", "svd-reconstruct"} <= ran
    assert by_name(checks)["adjoint"].figure <= 1e-10


# ----------------------------------------------------------------------------- broken operators


class Scale(LinearOperator):
    """y = 2 x, with hooks to break one thing at a time."""

    name = "scale"

    def __init__(self, factor: float = 2.0, noise: Any = None) -> None:
        super().__init__(noise)
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return self.factor * x

    def adjoint(self, y: Tensor) -> Tensor:
        return self.factor * y

    def pinv(self, y: Tensor) -> Tensor:
        return y / self.factor

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor, **super().params()}


class WrongAdjoint(Scale):
    def adjoint(self, y: Tensor) -> Tensor:
        return 2.001 * y


class NotLinear(Scale):
    def forward(self, x: Tensor) -> Tensor:
        return self.factor * x + 0.01 * x**2


class WrongPinv(Scale):
    def pinv(self, y: Tensor) -> Tensor:
        return y / 1.9


class ForgetsParams(Scale):
    def params(self) -> dict[str, Any]:
        return Operator.params(self)


class AlwaysFloat64(Scale):
    def forward(self, x: Tensor) -> Tensor:
        return self.factor * x.double()


class CouplesBatch(Scale):
    def forward(self, x: Tensor) -> Tensor:
        return x - x.mean(0, keepdim=True)


class _WrongBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        return 3 * grad


class WrongGradient(Operator):
    name = "wrong-gradient"

    def forward(self, x: Tensor) -> Tensor:
        return _WrongBackward.apply(x)


class Crashes(Operator):
    name = "crashes"

    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("boom")


class BadSVD(SVDOperator):
    """Identity on (1, 2, 2) inputs whose V, or singular values, can be broken."""

    name = "bad-svd"

    def __init__(self, defect: str = "none", noise: Any = None, shape: Any = (1, 2, 2)) -> None:
        super().__init__(noise, shape)
        self.defect = defect

    def forward(self, x: Tensor) -> Tensor:
        return x

    adjoint = pinv = forward

    def singulars(self) -> Tensor:
        s = torch.ones(4, dtype=torch.float64)
        return 2 * s if self.defect == "singulars" else s

    def vt(self, x: Tensor) -> Tensor:
        c = x.flatten(1)
        return 1.1 * c if self.defect == "v" else c

    def v(self, c: Tensor) -> Tensor:
        return (c / 1.1 if self.defect == "v" else c).reshape(c.shape[0], 1, 2, 2)

    ut = vt
    u = v

    def params(self) -> dict[str, Any]:
        return {"defect": self.defect, **super().params()}


@pytest.mark.parametrize(
    "op, factory, failing",
    [
        (WrongAdjoint(), WrongAdjoint, {"adjoint", "gradient"}),
        (NotLinear(), NotLinear, {"linearity", "adjoint", "pinv", "gradient"}),
        (WrongPinv(), WrongPinv, {"pinv"}),
        (ForgetsParams(factor=3.0), ForgetsParams, {"json"}),
        (AlwaysFloat64(), AlwaysFloat64, {"dtype-float32", "dtype-bfloat16"}),
        (CouplesBatch(), CouplesBatch, {"batch", "adjoint", "gradient", "pinv"}),
        (WrongGradient(), WrongGradient, {"gradient"}),
        (BadSVD("v"), BadSVD, {"svd-v", "svd-u"}),  # scaled V, U: reconstruction still right
        (BadSVD("singulars"), BadSVD, {"svd-reconstruct"}),
    ],
    ids=["adjoint", "linearity", "pinv", "json", "dtype", "batch", "gradient", "svd-v", "svd-singulars"],
)
def test_each_check_catches_its_defect(op, factory, failing):
    checks = check_operator(op, shape=(2, 4, 4), factory=factory)
    failed = {c.check for c in checks if c.passed is False}
    assert failed == failing, format_report(checks)
    assert not all_passed(checks)


def test_the_correct_operator_passes():
    checks = check_operator(Scale(), shape=(2, 4, 4), factory=Scale)
    assert all_passed(checks) and by_name(checks)["adjoint"].figure == 0.0
    checks = check_operator(BadSVD("none"), factory=BadSVD)
    assert all_passed(checks) and by_name(checks)["svd-reconstruct"].passed


def test_a_crashing_operator_is_reported_not_raised():
    checks = check_operator(Crashes(), shape=(1, 4, 4))
    forward = by_name(checks)["forward"]
    assert forward.passed is False and "RuntimeError: boom" in forward.message
    assert by_name(checks)["adjoint"].passed is None  # not linear: skipped


def test_skips_are_reported_with_reasons():
    checks = by_name(check_operator(Denoise(), shape=(1, 4, 4), skip=("gradient",)))
    assert checks["gradient"] == Check("gradient", None, None, "skipped on request")
    assert checks["json"].passed is None and "factory" in checks["json"].message
    # An unbound SVD operator is checked bound to the shape; one that cannot be is skipped.
    assert checks["svd-v"].passed is True
    crops = by_name(check_operator(Downsample(scale=3), shape=(1, 4, 4)))
    assert crops["forward"].passed is False and "scale" in crops["forward"].message
    assert crops["svd-v"].passed is None and "scale" in crops["svd-v"].message


def test_check_factory_reports_build_errors(registry):
    checks = check_factory(registry.get("operator", "sr"), {"scale": 0})
    assert checks == [checks[0]] and checks[0].check == "build" and checks[0].passed is False
    assert "scale" in checks[0].message


def test_format_report():
    checks = [Check("adjoint", True, 1.5e-17, "dot test"), Check("pinv", False, 0.25, "Penrose"),
              Check("json", None, None, "no factory")]
    text = format_report(checks, title="scale")
    lines = text.splitlines()
    assert lines[0] == "scale"
    assert lines[1].startswith("PASS  adjoint") and "1.50e-17" in lines[1] and lines[1].endswith("dot test")
    assert lines[2].startswith("FAIL  pinv") and "2.50e-01" in lines[2]
    assert lines[3].startswith("SKIP  json")
    assert lines[-1] == "1 passed, 1 failed, 1 skipped"
    assert all_passed([checks[0], checks[2]]) and not all_passed(checks)


# ----------------------------------------------------------------------------- adjoint and pinv from the SVD


class MixThenGain(SVDOperator):
    """A third-party-style operator that states only forward and its SVD: y = G Q x per pixel,
    Q an orthogonal 3 x 3 colour mixing and G = diag(gains) with a zero gain, so V^T = Q per
    pixel, U = I and s = the gains; ``adjoint`` and ``pinv`` are left to SVDOperator."""

    name = "mix-then-gain"
    example = {"gains": [2.0, 0.5, 0.0]}

    def __init__(self, gains=(2.0, 0.5, 0.0), noise: Any = None, shape: Any = None) -> None:
        super().__init__(noise, shape)
        self.gains = [float(g) for g in gains]
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
        self.q = q

    def mix(self, x: Tensor, matrix: Tensor) -> Tensor:
        return torch.einsum("dc,bchw->bdhw", matrix.to(x.dtype), x)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.mix(x, torch.diag(torch.tensor(self.gains, dtype=torch.float64)) @ self.q)

    def singulars(self) -> Tensor:
        _, height, width = self.bound_shape()
        return torch.tensor(self.gains, dtype=torch.float64).repeat_interleave(height * width)

    def vt(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.mix(x, self.q).flatten(1)

    def v(self, c: Tensor) -> Tensor:
        return self.mix(c.reshape(c.shape[0], *self.bound_shape()), self.q.T)

    def ut(self, y: Tensor) -> Tensor:
        self.check_input(y)
        return y.flatten(1)

    def u(self, c: Tensor) -> Tensor:
        return c.reshape(c.shape[0], *self.bound_shape())

    def params(self) -> dict[str, Any]:
        return {"gains": self.gains, **super().params()}


def dense(apply, shape) -> Tensor:
    """The matrix of a linear map on (C, H, W) arrays, column j the image of basis vector j."""
    n = torch.Size(shape).numel()
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    return apply(basis).reshape(n, -1).T


def test_pinv_and_adjoint_follow_from_the_svd():
    checks = check_factory(MixThenGain)  # unbound example: checked bound, as a run binds it
    assert all_passed(checks), format_report(checks)
    assert "adjoint and pinv from the SVD: checked bound" in by_name(checks)["capabilities"].message
    shape = (3, 2, 3)
    op = MixThenGain(shape=shape)
    a = dense(op.forward, shape)
    assert torch.allclose(dense(op.adjoint, shape), a.T, atol=1e-12)
    assert torch.allclose(dense(op.pinv, shape), torch.linalg.pinv(a), atol=1e-12)
    assert torch.linalg.matrix_rank(a) == 12  # the zero gain drops one colour per pixel


def test_pinv_from_the_svd_says_it_needs_a_shape():
    with pytest.raises(ValueError, match=r"mix-then-gain: .*adjoint / pinv.*op\.bound_to"):
        MixThenGain().pinv(torch.zeros(1, 3, 2, 2, dtype=torch.float64))
