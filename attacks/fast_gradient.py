"""Fast gradient sign method (FGSM; FGM under L2).

Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial
Examples", ICLR 2015.

One step of size eps from the clean input along the sign of the loss
gradient (L-inf) or the normalised gradient (L2), clipped to the valid range:
``x_adv = clip(x - eps * d(grad loss(x)))`` (the loss is minimised, see
:mod:`~nnaudit.attacks.criteria`).  On a linear model this reaches the exact
worst case of the L-inf ball (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnaudit.attacks import geometry
from nnaudit.attacks.base import Attack
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.projected_gradient import Loss, loss_fn
from nnaudit.attacks.threat import Norm, ThreatModel


@dataclass(frozen=True)
class FGSMConfig:
    loss: Loss = Loss.CE  # loss whose gradient gives the step


class FGSM(Attack):
    """Single-step attack of size eps (L-inf: FGSM, L2: FGM)."""

    name = "fgsm"
    native_norms = (Norm.LINF, Norm.L2)
    config_class = FGSMConfig

    def check_config(self) -> None:
        loss_fn(self.config.loss)

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        x0 = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(self.config.loss)(criterion, model(x0)).sum(), x0)
        return geometry.project(x - threat.eps * geometry.direction(grad, threat.norm), x, threat)
