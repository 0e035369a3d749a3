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

On CUDA (``graph``) each round runs as one CUDA graph
(:mod:`~nnaudit.attacks.cuda_graphs`) over the batch padded to a multiple of 64 rows:
Adam written out (torch's formula), the early abort a flag that freezes the
round from the step it is raised on (what the loop's ``break`` does), every
step's best kept by masked copies.  A small network's step on a GPU costs
what its launches cost, and the graph launches a round at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnaudit.attacks import cuda_graphs
from nnaudit.attacks.base import Attack, check_auto_switches
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
    graph: bool | None = None  # each round over the whole (padded) batch as one CUDA graph; None: on CUDA (on the CPU: the same loop, eagerly)


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
        check_auto_switches(self.name, c, "graph")

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        n = len(x)
        const = torch.full((n,), cfg.initial_const, device=x.device)
        lower = torch.zeros(n, device=x.device)
        upper = torch.full((n,), float("inf"), device=x.device)
        best_adv, best_l2 = x.clone(), torch.full((n,), float("inf"), device=x.device)
        graphed = cfg.graph if cfg.graph is not None else x.device.type == "cuda"
        for _ in range(cfg.binary_search_steps):
            if graphed:
                succeeded = self._round_whole(model, x, criterion, threat, const, best_adv, best_l2)
            else:
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
        w = _to_w(x, threat).detach().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=cfg.lr, fused=w.device.type in ("cpu", "cuda"))
        succeeded = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        check_every, last = max(cfg.steps // 10, 1), float("inf")
        for step in range(cfg.steps):
            adv = _from_w(w, threat)
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
            adv = _from_w(w, threat)
            logits = model(adv)
            l2sq = (adv - x).flatten(1).pow(2).sum(1)
            succeeded |= self._keep(adv, logits, crit.margin(logits), l2sq, crit, best_adv, best_l2)
        return succeeded

    def _keep(self, adv: torch.Tensor, logits: torch.Tensor, margin: torch.Tensor, l2sq: torch.Tensor,
              crit: Criterion, best_adv: torch.Tensor, best_l2: torch.Tensor) -> torch.Tensor:
        """Keep the successful rows of ``adv`` smaller than the best so far (in place); returns success ``(b,)``."""
        with torch.no_grad():
            if adv.device.type != "cpu":  # masked copies: no wait for the GPU at every step
                return _keep_masked(adv, logits, margin, l2sq, crit, self.config.kappa, best_adv, best_l2, None)
            ok = crit.is_adversarial(logits) & (margin <= -self.config.kappa)
            l2 = l2sq.sqrt()
            better = ok & (l2 < best_l2)
            rows = torch.nonzero(better)[:, 0]
            if len(rows):
                best_adv.index_copy_(0, rows, adv.detach().index_select(0, rows))
                best_l2.index_copy_(0, rows, l2.index_select(0, rows))
        return ok

    def _round_whole(self, model: Callable, x: torch.Tensor, crit: Criterion, threat: ThreatModel,
                     const: torch.Tensor, best_adv: torch.Tensor, best_l2: torch.Tensor) -> torch.Tensor:
        """:meth:`_round` over the padded batch (:func:`~nnaudit.attacks.cuda_graphs.padding`: copies of row 0 that
        count in no loss and are never kept), as one CUDA graph on CUDA (:class:`_WholeRound`),
        eagerly elsewhere; updates the best in place, returns success per sample."""
        n = len(x)
        targets = crit.targets if crit.targets is not None else crit.labels  # a placeholder when untargeted
        inputs = [x, crit.labels, targets, const, best_adv, best_l2, torch.ones(n, device=x.device)]
        pad = cuda_graphs.padding(n, x.device)
        if pad is not None:
            inputs = [t.index_select(0, pad) for t in inputs]
            inputs[-1][n:] = 0.0
        body = _WholeRound(self, model, threat, crit.targets is not None)
        if x.device.type == "cuda":
            adv, l2, ok = cuda_graphs.replay(model, body.key(), body, inputs)
        else:
            adv, l2, ok = body(*inputs)
        best_adv.copy_(adv[:n])
        best_l2.copy_(l2[:n])
        return ok[:n].clone()


@dataclass(frozen=True)
class _WholeRound:
    """All steps of one CW round as a pure function of its tensors (capturable as a CUDA graph:
    no waits for the device, inputs left as they are)."""

    attack: CW
    model: Callable
    threat: ThreatModel
    targeted: bool

    def key(self) -> tuple:
        """What the function bakes into its kernels besides its inputs' shapes."""
        return ("cw-round", self.attack.config, self.threat, self.targeted)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, const: torch.Tensor,
                 best_adv: torch.Tensor, best_l2: torch.Tensor,
                 real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(best points, their L2 norms, success per row)`` after the round; ``real`` (1.0 or 0.0
        per row) leaves padding out of the loss the early abort watches."""
        cfg = self.attack.config
        crit = Criterion(labels, targets if self.targeted else None)
        best_adv, best_l2 = best_adv.clone(), best_l2.clone()
        w = _to_w(x, self.threat)
        m, v = torch.zeros_like(w), torch.zeros_like(w)
        succeeded = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        active = torch.ones((), dtype=torch.bool, device=x.device)  # no early abort yet
        last = torch.full((), float("inf"), device=x.device)
        check_every = max(cfg.steps // 10, 1)
        for step in range(cfg.steps):
            leaf = w.detach().requires_grad_(True)
            adv = _from_w(leaf, self.threat)
            logits = self.model(adv)
            margin = crit.margin(logits)
            l2sq = (adv - x).flatten(1).pow(2).sum(1)
            rows = l2sq + const * margin.clamp(min=-cfg.kappa)
            (grad,) = torch.autograd.grad(rows.sum(), leaf)
            with torch.no_grad():
                w, m, v = _adam(w, m, v, grad, step + 1, cfg.lr, active)
                succeeded |= _keep_masked(adv, logits, margin, l2sq, crit, cfg.kappa, best_adv, best_l2, active)
                if cfg.abort_early and step % check_every == 0:
                    total = (rows * real).sum()
                    active = active & ~(total > last)
                    last = total
        with torch.no_grad():  # the point the last Adam step moved to
            adv = _from_w(w, self.threat)
            logits = self.model(adv)
            l2sq = (adv - x).flatten(1).pow(2).sum(1)
            succeeded |= _keep_masked(adv, logits, crit.margin(logits), l2sq, crit, cfg.kappa, best_adv, best_l2, None)
        return best_adv, best_l2, succeeded


def _to_w(x: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """The ``w`` with ``_from_w(w) = x`` (up to the clamp that keeps ``atanh`` finite)."""
    return torch.atanh(((x - threat.low) / (threat.high - threat.low) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))


def _from_w(w: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """``x' = low + (high - low) * (tanh(w) + 1) / 2``: inside the valid range for every ``w``."""
    return threat.low + (threat.high - threat.low) * (torch.tanh(w) + 1) / 2


#: Adam's coefficients (torch's defaults, which the eager round's optimiser uses)
BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def _adam(w: torch.Tensor, m: torch.Tensor, v: torch.Tensor, grad: torch.Tensor, t: int, lr: float,
          active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adam's step ``t`` (from 1) as ``torch.optim.Adam`` takes it, where ``active`` (a bool
    scalar tensor); else everything stays.  Returns new ``(w, m, v)``."""
    b1, b2 = BETAS
    m_new = m * b1 + grad * (1 - b1)
    v_new = v * b2 + grad * grad * (1 - b2)
    denom = (v_new.sqrt() / (1 - b2 ** t) ** 0.5).add_(ADAM_EPS)
    w_new = w - (lr / (1 - b1 ** t)) * m_new / denom
    return torch.where(active, w_new, w), torch.where(active, m_new, m), torch.where(active, v_new, v)


def _keep_masked(adv: torch.Tensor, logits: torch.Tensor, margin: torch.Tensor, l2sq: torch.Tensor, crit: Criterion,
                 kappa: float, best_adv: torch.Tensor, best_l2: torch.Tensor,
                 active: torch.Tensor | None) -> torch.Tensor:
    """Keep the successful rows of ``adv`` smaller than the best so far by masked copies (in place,
    only where ``active``); returns success ``(b,)``."""
    ok = crit.is_adversarial(logits) & (margin <= -kappa)
    if active is not None:
        ok = ok & active
    l2 = l2sq.sqrt()
    better = ok & (l2 < best_l2)
    best_adv.copy_(torch.where(better.view(-1, *([1] * (adv.dim() - 1))), adv.detach(), best_adv))
    best_l2.copy_(torch.where(better, l2, best_l2))
    return ok
