"""Auto-PGD (APGD) with cross-entropy or DLR loss, L-infinity and L2.

Croce & Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020 (Algorithm 1).

A step-size-free PGD: momentum 0.75, initial step ``2 * eps`` halved per
sample at checkpoints ``w_j`` (``p_0 = 0``, ``p_1 = 0.22``,
``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``) when fewer than 75% of
the steps since the last checkpoint increased the loss, or when the step was
not reduced and the best loss did not improve; after a halving the iterate
restarts from the best point.  Each sample keeps its first adversarial
iterate; the loop ends when every sample is adversarial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnaudit.attacks import geometry
from nnaudit.attacks.base import Attack, logits_and_vjp
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.projected_gradient import Loss, check_steps, loss_fn
from nnaudit.attacks.threat import Norm, ThreatModel


@dataclass(frozen=True)
class APGDConfig:
    steps: int = 100  # iterations per restart (the paper's N_iter)
    restarts: int = 1  # random restarts; later restarts only attack samples not yet broken
    loss: Loss = Loss.CE  # "ce" (APGD-CE) or "dlr" (APGD-DLR)
    momentum: float = 0.75  # alpha of the paper
    rho: float = 0.75  # fraction of improving steps required between checkpoints


class APGD(Attack):
    """APGD-CE / APGD-DLR; ``name`` follows the loss."""

    name = "apgd"
    native_norms = (Norm.LINF, Norm.L2)
    config_class = APGDConfig

    def check_config(self) -> None:
        check_steps(self.name, self.config.steps, self.config.restarts)
        self.name = f"apgd-{Loss(self.config.loss).value}"
        loss_fn(self.config.loss)

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        out = x.clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.config.restarts):
            idx = torch.nonzero(~done)[:, 0]
            if len(idx) == 0:
                break
            adv, ok = self._single_run(model, x[idx], criterion.subset(idx), threat, gen)
            out[idx] = adv
            done[idx] = ok
        return out

    def _single_run(self, model: Callable, x: torch.Tensor, crit: Criterion, threat: ThreatModel,
                    gen: torch.Generator, aim: Criterion | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Algorithm 1 on one batch; returns (best point per sample, adversarial mask).

        ``crit`` judges success; ``aim`` (default ``crit``) is what the loss is written
        around (APGD-T: the same labels with a target class, success still untargeted).
        """
        cfg = self.config
        n = cfg.steps
        k, k_min, k_decr = max(int(0.22 * n), 1), max(int(0.06 * n), 1), max(int(0.03 * n), 1)
        gain_fn = loss_fn(cfg.loss)  # minimised loss; the "gain" below is its negative
        adv = geometry.random_start(x, threat, gen)
        gain, grad, is_adv = _gain_and_grad(model, adv, crit, gain_fn, aim)
        best_adv, found = adv.clone(), is_adv.clone()
        x_best, grad_best, gain_best = adv.clone(), grad.clone(), gain.clone()
        step = torch.full((len(x),), 2.0 * threat.eps, device=x.device)
        rows = (-1,) + (1,) * (x.dim() - 1)
        prev = adv.clone()
        history = [gain.clone()]
        reduced = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        gain_best_check = gain_best.clone()
        since = 0
        for i in range(n):
            if bool(found.all()):
                break
            a = cfg.momentum if i > 0 else 1.0
            z = geometry.project(adv + step.reshape(rows) * geometry.direction(grad, threat.norm), x, threat)
            new = geometry.project(adv + a * (z - adv) + (1 - a) * (adv - prev), x, threat)
            prev, adv = adv, new
            gain, grad, is_adv = _gain_and_grad(model, adv, crit, gain_fn, aim)
            fresh = is_adv & ~found
            best_adv[fresh], found = adv[fresh], found | is_adv
            up = gain > gain_best
            x_best[up], grad_best[up], gain_best[up] = adv[up], grad[up], gain[up]
            history.append(gain.clone())
            since += 1
            if since == k:
                steps_up = sum((history[-j] > history[-j - 1]).float() for j in range(1, k + 1))
                halve = (steps_up <= k * cfg.rho) | (~reduced & (gain_best_check >= gain_best))
                reduced, gain_best_check = halve.clone(), gain_best.clone()
                step[halve] /= 2.0
                adv[halve], grad[halve] = x_best[halve], grad_best[halve]
                k, since = max(k - k_decr, k_min), 0
        return torch.where(found.reshape(rows), best_adv, x_best), found


def _gain_and_grad(model: Callable, adv: torch.Tensor, crit: Criterion, loss: Callable,
                   aim: Criterion | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gain (= -loss of ``aim``, default ``crit``) to maximise, its gradient and ``crit``'s adversarial mask at ``adv``."""
    logits, vjp = logits_and_vjp(model, adv)  # a dense chain's gradient by hand, else autograd
    z = logits.requires_grad_(True)
    gain = -loss(crit if aim is None else aim, z)
    (seed,) = torch.autograd.grad(gain.sum(), z)
    return gain.detach(), vjp(seed).detach(), crit.is_adversarial(logits.detach())
