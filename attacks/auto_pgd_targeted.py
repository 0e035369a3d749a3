"""APGD-T: Auto-PGD with the targeted DLR loss over the most likely other classes.

Croce & Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020 (Sec. 3.3 and 4).

The APGD loop of :mod:`~nnaudit.attacks.auto_pgd` (step ``2 * eps``, the
checkpoint schedule, momentum 0.75) run once per target class: the ``k``-th
most likely class other than the label on the clean input, for ``k = 1 ..
target_classes`` (9 by default, fewer when the model has fewer classes), each
with ``restarts`` random starts.  The loss is the targeted DLR loss of that
target; success is still untargeted (any class but the label), as in
AutoAttack.  Later targets only attack the samples not broken yet.  A
criterion that already carries targets (``target=`` in Python) attacks only
its own target and counts only that target as success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnaudit.attacks.auto_pgd import APGD
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.projected_gradient import Loss, check_steps
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.errors import ConfigError


@dataclass(frozen=True)
class APGDTConfig:
    steps: int = 100  # iterations per target and restart (the paper's N_iter)
    restarts: int = 1  # random starts per target class
    target_classes: int = 9  # most likely other classes attacked in turn (capped at classes - 1)
    loss: Loss = Loss.DLR  # the targeted DLR loss (the only loss of APGD-T)
    momentum: float = 0.75  # alpha of the paper
    rho: float = 0.75  # fraction of improving steps required between checkpoints


def ranked_targets(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Other classes by decreasing clean logit, ``(B, K - 1)``: column ``k`` is the ``k+1``-th most likely non-label."""
    masked = logits.scatter(1, labels[:, None], float("-inf"))
    return masked.argsort(dim=1, descending=True, stable=True)[:, :-1]


class APGDT(APGD):
    """APGD-T (targeted DLR over the top ``target_classes`` classes)."""

    name = "apgd-t"
    native_norms = (Norm.LINF, Norm.L2)
    config_class = APGDTConfig

    def check_config(self) -> None:
        check_steps(self.name, self.config.steps, self.config.restarts)
        if self.config.target_classes < 1:
            raise ConfigError(f"{self.name}: expected target_classes >= 1, got {self.config.target_classes}")
        if Loss(self.config.loss) is not Loss.DLR:
            raise ConfigError(f"{self.name}: the loss of APGD-T is the targeted DLR loss, got {self.config.loss!r}")

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        out = x.clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        if criterion.targeted:
            columns = criterion.targets[:, None]
        else:
            with torch.no_grad():
                ranked = ranked_targets(model(x), criterion.labels)
            columns = ranked[:, :min(self.config.target_classes, ranked.shape[1])]
        for k in range(columns.shape[1]):
            aim_all = Criterion(criterion.labels, columns[:, k].contiguous())
            for _ in range(self.config.restarts):
                idx = torch.nonzero(~done)[:, 0]
                if len(idx) == 0:
                    return out
                adv, ok = self._single_run(model, x[idx], criterion.subset(idx), threat, gen, aim_all.subset(idx))
                out[idx] = adv
                done[idx] = ok
        return out
