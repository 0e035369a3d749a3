"""Projected gradient descent (PGD) under L-infinity and L2.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018.

From the clean input (first restart) or a random point of the eps-ball
(later restarts), repeat ``steps`` times:
``x <- Proj_ball(x - alpha * d(grad loss))`` with ``d`` the sign (L-inf) or
the normalised gradient (L2), then clip to the valid range.  A sample leaves
the batch at its first adversarial iterate (early stop) and skips later
restarts; an unbroken sample keeps its worst final iterate (lowest margin)
over the restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch

from nnaudit.attacks import geometry
from nnaudit.attacks.base import Attack
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.errors import ConfigError


class Loss(str, Enum):
    """Loss a gradient attack descends (see :class:`~nnaudit.attacks.criteria.Criterion`)."""

    CE = "ce"  # cross-entropy
    MARGIN = "margin"  # logit margin (CW loss, confidence 0)
    DLR = "dlr"  # difference of logits ratio (Croce & Hein 2020)


class Schedule(str, Enum):
    """How the step size changes over the steps of one restart."""

    CONSTANT = "constant"  # alpha every step
    STEP = "step"  # alpha, then alpha/2 after 50% and alpha/4 after 75% of the steps


@dataclass(frozen=True)
class PGDConfig:
    steps: int = 40  # gradient steps per restart
    restarts: int = 2  # restarts; each sample keeps its worst case, broken samples skip later restarts
    step_size: float | None = None  # absolute step alpha; None: 2.5 * eps / steps (Madry et al.)
    schedule: Schedule = Schedule.CONSTANT  # step-size schedule within a restart
    loss: Loss = Loss.CE  # loss to descend
    clean_first: bool = True  # the first restart starts at the clean input (stronger than noise on small nets)
    random_start: bool = True  # the other restarts start at a uniform random point of the ball
    early_stop: bool = True  # drop a sample from the batch once it is adversarial


def loss_fn(loss: Loss | str) -> Callable[[Criterion, torch.Tensor], torch.Tensor]:
    """The per-sample loss (to minimise) named by ``loss``."""
    kind = Loss(loss)
    return {Loss.CE: Criterion.ce, Loss.MARGIN: Criterion.margin, Loss.DLR: Criterion.dlr}[kind]


def check_steps(name: str, steps: int, restarts: int) -> None:
    if steps < 1 or restarts < 1:
        raise ConfigError(f"{name}: expected steps >= 1 and restarts >= 1, got steps={steps}, restarts={restarts}")


class PGD(Attack):
    """PGD with random start, restarts and a step-size schedule (L-inf or L2)."""

    name = "pgd"
    native_norms = (Norm.LINF, Norm.L2)
    config_class = PGDConfig

    def check_config(self) -> None:
        check_steps(self.name, self.config.steps, self.config.restarts)
        loss_fn(self.config.loss)
        Schedule(self.config.schedule)

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        best = x.clone()
        best_margin = torch.full((len(x),), float("inf"), device=x.device)
        for r in range(cfg.restarts):
            todo = torch.nonzero(best_margin >= 0)[:, 0]
            if len(todo) == 0:
                break
            noise = cfg.random_start and not (r == 0 and cfg.clean_first)
            self._restart(model, x, todo, criterion, threat, gen, best, best_margin, noise)
        return best

    def _restart(self, model: Callable, x: torch.Tensor, idx: torch.Tensor, criterion: Criterion,
                 threat: ThreatModel, gen: torch.Generator, best: torch.Tensor, best_margin: torch.Tensor,
                 noise: bool) -> None:
        """One restart on rows ``idx``; updates ``best``/``best_margin`` in place."""
        cfg = self.config
        loss = loss_fn(cfg.loss)
        alpha = cfg.step_size if cfg.step_size is not None else 2.5 * threat.eps / cfg.steps
        x0, crit = x[idx], criterion.subset(idx)
        adv = geometry.random_start(x0, threat, gen) if noise else x0.clone()
        live = torch.ones(len(idx), dtype=torch.bool, device=x.device)
        for i in range(cfg.steps + 1):
            adv = adv.detach().requires_grad_(True)
            logits = model(adv)
            margin = crit.margin(logits).detach()
            hit = (margin < 0) & live
            final = i == cfg.steps
            if final or bool(hit.any()):  # keep adversarial iterates, and every final one if better
                better = (margin < best_margin[idx]) & (hit | final)
                best[idx[better]] = adv.detach()[better]
                best_margin[idx[better]] = margin[better]
                if cfg.early_stop:
                    live &= ~hit
            if final or not bool(live.any()):
                return
            (grad,) = torch.autograd.grad(loss(crit, logits).sum(), adv)
            if int(live.sum()) < 0.75 * len(live):  # compact the batch once a quarter of it is done
                idx, x0, crit, adv, grad = idx[live], x0[live], crit.subset(live), adv[live], grad[live]
                live = live[live]
            step = alpha * _decay(cfg.schedule, i, cfg.steps) * live.reshape((-1,) + (1,) * (x.dim() - 1))
            adv = geometry.project(adv.detach() - step * geometry.direction(grad, threat.norm), x0, threat)


def _decay(schedule: Schedule | str, i: int, steps: int) -> float:
    if Schedule(schedule) is Schedule.CONSTANT:
        return 1.0
    return 0.25 if i >= 0.75 * steps else 0.5 if i >= 0.5 * steps else 1.0
