"""Carlini-Wagner L2 attack with binary search over the constant c.

Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks",
IEEE S&P 2017.

Optimises ``w`` with Adam, where ``x' = low + (high - low) * (tanh(w) + 1) / 2``
stays in the valid range by construction, minimising
``||x' - x||_2^2 + c * max(margin(x'), -kappa)`` per sample.  After each of
``binary_search_steps`` rounds, ``c`` is lowered for samples that succeeded
and raised (x10 until an upper bound is known) for the others; the smallest
successful perturbation over all rounds is returned (every iterate counts,
including the point each round's last Adam step moves to).  A minimal-norm attack:
under a bounded threat model the result is projected into the ball and
re-checked by the base class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnaudit.attacks.base import Attack
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.errors import ConfigError


@dataclass(frozen=True)
class CWConfig:
    binary_search_steps: int = 6  # rounds of the search over c
    steps: int = 100  # Adam steps per round
    lr: float = 0.01  # Adam learning rate
    initial_const: float = 0.1  # first value of c
    kappa: float = 0.0  # confidence: required margin of the adversarial class
    abort_early: bool = True  # end a round when the loss stops decreasing (checked every steps/10)


class CW(Attack):
    """Carlini-Wagner L2 (minimal-norm)."""

    name = "cw"
    native_norms = (Norm.L2,)
    minimal = True
    config_class = CWConfig

    def check_config(self) -> None:
        c = self.config
        if c.binary_search_steps < 1 or c.steps < 1 or c.lr <= 0 or c.initial_const <= 0 or c.kappa < 0:
            raise ConfigError(f"cw: expected binary_search_steps, steps >= 1 and lr, initial_const > 0, kappa >= 0, got {c}")

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        n = len(x)
        const = torch.full((n,), cfg.initial_const, device=x.device)
        lower = torch.zeros(n, device=x.device)
        upper = torch.full((n,), float("inf"), device=x.device)
        best_adv, best_l2 = x.clone(), torch.full((n,), float("inf"), device=x.device)
        for _ in range(cfg.binary_search_steps):
            succeeded = self._round(model, x, criterion, threat, const, best_adv, best_l2)
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)
        return best_adv

    def _round(self, model: Callable, x: torch.Tensor, crit: Criterion, threat: ThreatModel,
               const: torch.Tensor, best_adv: torch.Tensor, best_l2: torch.Tensor) -> torch.Tensor:
        """One Adam run at fixed ``const``; updates the best in place; returns success per sample.

        Every iterate is checked, including the one the last Adam step produces
        (one extra forward pass without gradient): an adversarial point found
        at any step is kept if it is the smallest so far.
        """
        cfg = self.config
        span = threat.high - threat.low
        w = torch.atanh(((x - threat.low) / span * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)).detach().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=cfg.lr, fused=w.device.type in ("cpu", "cuda"))
        succeeded = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        check_every, last = max(cfg.steps // 10, 1), float("inf")
        for step in range(cfg.steps):
            adv = threat.low + span * (torch.tanh(w) + 1) / 2
            logits = model(adv)
            margin = crit.margin(logits)
            l2sq = (adv - x).flatten(1).pow(2).sum(1)
            loss = (l2sq + const * margin.clamp(min=-cfg.kappa)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            succeeded |= self._keep(adv, logits, margin, l2sq, crit, best_adv, best_l2)
            # every steps/10 steps (from the first), stop once the loss has increased
            if cfg.abort_early and step % check_every == 0:
                total = float(loss.detach())
                if total > last:
                    break
                last = total
        with torch.no_grad():  # the point the last Adam step moved to
            adv = threat.low + span * (torch.tanh(w) + 1) / 2
            logits = model(adv)
            l2sq = (adv - x).flatten(1).pow(2).sum(1)
            succeeded |= self._keep(adv, logits, crit.margin(logits), l2sq, crit, best_adv, best_l2)
        return succeeded

    def _keep(self, adv: torch.Tensor, logits: torch.Tensor, margin: torch.Tensor, l2sq: torch.Tensor,
              crit: Criterion, best_adv: torch.Tensor, best_l2: torch.Tensor) -> torch.Tensor:
        """Keep the successful rows of ``adv`` smaller than the best so far (in place); returns success ``(b,)``."""
        with torch.no_grad():
            ok = crit.is_adversarial(logits) & (margin <= -self.config.kappa)
            l2 = l2sq.sqrt()
            better = ok & (l2 < best_l2)
            if adv.device.type != "cpu":  # masked copies: no wait for the GPU at every step
                best_adv.copy_(torch.where(better.view(-1, *([1] * (adv.dim() - 1))), adv.detach(), best_adv))
                best_l2.copy_(torch.where(better, l2, best_l2))
                return ok
            rows = torch.nonzero(better)[:, 0]
            if len(rows):
                best_adv.index_copy_(0, rows, adv.detach().index_select(0, rows))
                best_l2.index_copy_(0, rows, l2.index_select(0, rows))
        return ok
