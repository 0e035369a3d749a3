"""Jacobian-based saliency map attack (JSMA, L0).

Papernot, McDaniel, Jha, Fredrikson, Celik, Swami, "The Limitations of Deep
Learning in Adversarial Settings", EuroS&P 2016 (Algorithm 3, pairs of
features).

Each iteration computes ``alpha = d z_t / dx`` (target logit) and
``beta = d (sum_{j != t} z_j) / dx`` and picks the pair of still-unused
features ``(p, q)`` maximising ``(alpha_p + alpha_q) * |beta_p + beta_q|`` with
``alpha_p + alpha_q > 0`` and ``beta_p + beta_q < 0`` (signs swapped for a
negative ``theta``); both features move by ``theta * (high - low)`` and leave
the search domain.  When no pair satisfies the sign conditions, the pair with
the largest ``alpha - beta`` is taken.  Untargeted: the target is the
runner-up class of the clean input.  Stops per sample once adversarial, or
after ``gamma`` of the features (or ``eps`` of them under a bounded L0
threat) have changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnaudit.attacks.base import Attack
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.errors import ConfigError

_PAIR_BUDGET = 1 << 22  # max (samples x features^2) scored at once


@dataclass(frozen=True)
class JSMAConfig:
    theta: float = 1.0  # change per selected feature, as a fraction of the input range (< 0 decreases)
    gamma: float = 0.1  # largest fraction of the features that may change (at least 2 features)


class JSMA(Attack):
    """JSMA with feature pairs (minimal L0)."""

    name = "jsma"
    native_norms = (Norm.L0,)
    minimal = True
    config_class = JSMAConfig

    def check_config(self) -> None:
        if self.config.theta == 0 or not 0 < self.config.gamma <= 1:
            raise ConfigError(f"jsma: expected theta != 0 and 0 < gamma <= 1, got {self.config}")

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        d = x[0].numel()
        budget = max(2, int(cfg.gamma * d))
        if threat.norm is Norm.L0 and threat.bounded:
            budget = min(budget, int(threat.eps))
        with torch.no_grad():
            target = criterion.targets if criterion.targeted else _runner_up(model(x), criterion.labels)
        adv = x.clone().flatten(1)
        up = cfg.theta > 0
        domain = adv < threat.high if up else adv > threat.low
        idx = torch.arange(len(x), device=x.device)
        for _ in range(budget // 2):
            cur = adv[idx].reshape((len(idx),) + x.shape[1:]).requires_grad_(True)
            logits = model(cur)
            keep = ~criterion.subset(idx).is_adversarial(logits.detach()) & (domain[idx].sum(1) >= 2)
            if not bool(keep.any()):
                break
            alpha, beta = _saliency_grads(logits, cur, target[idx])
            idx, alpha, beta = idx[keep], alpha[keep], beta[keep]
            p, q = _best_pairs(alpha, beta, domain[idx], up)
            rows = torch.stack([idx, idx])
            cols = torch.stack([p, q])
            change = cfg.theta * (threat.high - threat.low)
            adv[rows, cols] = (adv[rows, cols] + change).clamp(threat.low, threat.high)
            domain[rows, cols] = False
        return adv.reshape(x.shape)


def _runner_up(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.scatter(1, labels[:, None], float("-inf")).argmax(dim=1)


def _saliency_grads(logits: torch.Tensor, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``alpha`` (target-logit gradient) and ``beta`` (other logits), flat ``(b, d)``."""
    tgt = logits.gather(1, target[:, None])[:, 0]
    g_t = torch.autograd.grad(tgt.sum(), x, retain_graph=True)[0].flatten(1)
    g_all = torch.autograd.grad(logits.sum(), x)[0].flatten(1)
    return g_t, g_all - g_t


def _best_pairs(alpha: torch.Tensor, beta: torch.Tensor, domain: torch.Tensor, up: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(p, q)`` of the most salient admissible feature pair per row."""
    d = alpha.shape[1]
    chunk = max(1, _PAIR_BUDGET // (d * d))
    ps, qs = [], []
    sign = 1.0 if up else -1.0
    eye = torch.eye(d, dtype=torch.bool, device=alpha.device)
    for s in range(0, len(alpha), chunk):
        a, b, dom = sign * alpha[s:s + chunk], sign * beta[s:s + chunk], domain[s:s + chunk]
        A = a[:, :, None] + a[:, None, :]
        B = b[:, :, None] + b[:, None, :]
        allowed = dom[:, :, None] & dom[:, None, :] & ~eye
        strict = allowed & (A > 0) & (B < 0)
        score = torch.where(strict, A * -B, torch.full_like(A, float("-inf")))
        fallback = torch.where(allowed, A - B, torch.full_like(A, float("-inf")))
        has = strict.flatten(1).any(1)
        flat = torch.where(has[:, None], score.flatten(1), fallback.flatten(1)).argmax(dim=1)
        ps.append(flat // d)
        qs.append(flat % d)
    return torch.cat(ps), torch.cat(qs)
