"""The gradient reversal layer (GRL) of DANN (Ganin et al., JMLR 2016, sec. 5).

Forward it is the identity; backward it multiplies the incoming gradient by
``-lambda``.  Placed between the feature extractor and the domain classifier
it lets one SGD step *minimise* the domain loss for the domain classifier and
*maximise* it for the feature extractor, which pushes the features towards
being indistinguishable between source and target.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class GradReverse(torch.autograd.Function):
    """``y = x`` forward, ``dL/dx = -lambda * dL/dy`` backward (any shape)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = float(lambda_)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output.neg() * ctx.lambda_, None


def grad_reverse(x: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    """Apply the gradient reversal to ``x`` (shape unchanged) with scale ``lambda_``."""
    return GradReverse.apply(x, lambda_)


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; the trainer sets ``lambda_`` each step.

    >>> grl = GradientReversal(0.5)
    >>> x = torch.ones(2, requires_grad=True); grl(x).sum().backward(); x.grad.tolist()
    [-0.5, -0.5]
    """

    def __init__(self, lambda_: float = 1.0) -> None:
        super().__init__()
        self.lambda_ = float(lambda_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_:g}"
