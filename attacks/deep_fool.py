"""DeepFool (L2 and L-infinity).

Moosavi-Dezfooli, Fawzi, Frossard, "DeepFool: a simple and accurate method to
fool deep neural networks", CVPR 2016 (Algorithms 2 and 3).

At each iteration the network is linearised at the current point; the
closest linearised decision boundary ``k`` (untargeted: over all classes other
than the label; targeted: the target) is at distance
``|f_k| / ||w_k||_q`` with ``f_k = z_k - z_y``, ``w_k = grad f_k`` and ``q``
the dual norm (2 for L2, 1 for L-inf).  The minimal step onto it is added to
the total perturbation, and the point ``clip(x + (1 + overshoot) * r)`` is
tried, until it is adversarial or ``steps`` is reached.  Minimal-norm: no eps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnaudit.attacks import geometry
from nnaudit.attacks.base import Attack
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.errors import ConfigError


@dataclass(frozen=True)
class DeepFoolConfig:
    steps: int = 50  # maximum linearisation steps
    overshoot: float = 0.02  # push past the linearised boundary by this fraction


class DeepFool(Attack):
    """DeepFool under L2 (default) or L-inf; minimal-norm."""

    name = "deepfool"
    native_norms = (Norm.L2, Norm.LINF)
    minimal = True
    config_class = DeepFoolConfig

    def check_config(self) -> None:
        if self.config.steps < 1 or self.config.overshoot < 0:
            raise ConfigError(f"deepfool: expected steps >= 1 and overshoot >= 0, got {self.config}")

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        total = torch.zeros_like(x)
        out = x.clone()
        idx = torch.arange(len(x), device=x.device)
        for _ in range(cfg.steps):
            adv = geometry.clip_range(x[idx] + (1 + cfg.overshoot) * total[idx], threat).requires_grad_(True)
            logits = model(adv)
            crit = criterion.subset(idx)
            done = crit.is_adversarial(logits.detach())
            out[idx[done]] = adv.detach()[done]
            if bool(done.all()):
                return out
            keep = ~done
            idx = idx[keep]
            total[idx] += _boundary_step(logits, adv, crit, threat.norm)[keep]
        adv = geometry.clip_range(x[idx] + (1 + cfg.overshoot) * total[idx], threat)
        out[idx] = adv
        return out


def _boundary_step(logits: torch.Tensor, adv: torch.Tensor, crit: Criterion, norm: Norm) -> torch.Tensor:
    """Minimal step to the nearest linearised boundary, ``(b, *shape)``."""
    k = logits.shape[1]
    rows = (-1,) + (1,) * (adv.dim() - 1)
    grads = torch.stack([torch.autograd.grad(logits[:, j].sum(), adv, retain_graph=j < k - 1)[0] for j in range(k)], 1)
    own = crit.labels
    f = (logits - logits.gather(1, own[:, None])).detach()  # (b, K): z_k - z_y
    sel = torch.arange(len(adv), device=adv.device)
    w = grads - grads[sel, own][:, None]  # (b, K, *shape)
    wn = w.flatten(2).norm(p=1 if norm is Norm.LINF else 2, dim=2)  # dual norm
    dist = f.abs() / (wn + 1e-12)
    if crit.targeted:
        mask = torch.ones_like(dist, dtype=torch.bool).scatter(1, crit.targets[:, None], False)
    else:
        mask = torch.zeros_like(dist, dtype=torch.bool).scatter(1, own[:, None], True)
    best = dist.masked_fill(mask, float("inf")).argmin(dim=1)
    w_k, f_k, n_k = w[sel, best], f[sel, best].abs() + 1e-4, wn[sel, best] + 1e-12
    if norm is Norm.LINF:
        return (f_k / n_k).reshape(rows) * w_k.sign()
    return (f_k / n_k**2).reshape(rows) * w_k
