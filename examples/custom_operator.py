"""A custom operator: keep every other column (a linear operator with a pseudo-inverse), restored
with DPS, which needs only a differentiable forward model."""
import torch

import restore
from example_setup import arguments, photo, psnr


class EveryOtherColumn(restore.LinearOperator):
    """y = x[..., ::2]: the even columns.  A^T puts them back with zeros between; since A A^T = I,
    the pseudo-inverse is A^T."""

    name = "every-other-column"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., ::2]

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        out = y.new_zeros(*y.shape[:-1], 2 * y.shape[-1])
        out[..., ::2] = y
        return out

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.adjoint(y)


args = arguments(__doc__)
x = photo(args)
op = EveryOtherColumn()
result = restore.restore(op(x), op, prior=args.prior, method="dps", steps=args.steps or 100, seed=args.seed,
                         params={"zeta": 0.5})
print(f"PSNR {psnr(result.image, x):5.2f} dB ({result.nfe} NFE, {result.seconds:.1f} s)")
