"""FAB and FAB-T: the fast adaptive boundary attack, minimal norm, L-infinity, L2 and L1.

Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive
boundary attack", ICML 2020; FAB-T is the targeted form of "Reliable
evaluation of adversarial robustness ..." (ICML 2020), used in AutoAttack.

Each step linearises the decision boundary at the iterate ``x_i``: per
candidate class ``j``, ``f_j(z) ~ df_j + w_j . (z - x_i)`` with
``df_j = z_j - z_y`` (FAB: every other class, the closest hyperplane
chosen; FAB-T: the one target).  ``d1`` and ``d2`` are the minimal-norm
steps from ``x_i`` and from the clean ``x`` onto that hyperplane inside the
valid range (:func:`project_on_hyperplane`), and the next iterate is
``clip((1 - a)(x_i + eta d1) + a (x + eta d2))`` with
``a = min(|d1| / (|d1| + |d2|), alpha_max)``.  An adversarial iterate is
kept when it is the smallest so far and the search moves back towards ``x``
(``x + beta (x_i - x)``).  Success is untargeted in both forms (as in
AutoAttack); FAB-T runs once per target class, the ``k``-th most likely
non-label class of the clean input, ``k = 1 .. target_classes``.

Under L1 the closest hyperplane is measured with the dual norm (the largest
``|w_i|``) and the projection onto it moves the coordinates with the largest
``|w_i|`` first, each as far as the valid range lets it, until the plane is
reached (:func:`project_on_hyperplane`): the minimal-L1 step, sparse.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnaudit.attacks.auto_pgd_targeted import ranked_targets
from nnaudit.attacks.base import Attack, logits_and_vjp
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.geometry import l2
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.errors import ConfigError

DEFAULT_START_RADIUS = {Norm.LINF: 0.3, Norm.L2: 1.0, Norm.L1: 5.0}  # random-start radius when eps is inf (the reference's)


@dataclass(frozen=True)
class FABConfig:
    steps: int = 100  # iterations per restart (and per target class for FAB-T)
    restarts: int = 1  # the first starts at x, later ones at a random point half-way to the best found
    targeted: bool = False  # FAB-T: one target class at a time (the top target_classes classes)
    target_classes: int = 9  # FAB-T: most likely other classes attacked in turn (capped at classes - 1)
    alpha_max: float = 0.1  # largest weight of the step from the clean input
    eta: float = 1.05  # overshoot of each projection
    beta: float = 0.9  # backward step towards x after an adversarial iterate


class FAB(Attack):
    """FAB (untargeted, closest hyperplane) or FAB-T (``targeted=True``); minimal-norm."""

    name = "fab"
    native_norms = (Norm.LINF, Norm.L2, Norm.L1)
    minimal = True
    config_class = FABConfig

    def check_config(self) -> None:
        c = self.config
        if c.steps < 1 or c.restarts < 1 or c.target_classes < 1:
            raise ConfigError(f"{self.name}: expected steps, restarts and target_classes >= 1, "
                              f"got {c.steps}, {c.restarts}, {c.target_classes}")
        if not (0.0 <= c.alpha_max <= 1.0 and c.eta >= 1.0 and 0.0 < c.beta <= 1.0):
            raise ConfigError(f"{self.name}: expected 0 <= alpha_max <= 1, eta >= 1 and 0 < beta <= 1, "
                              f"got {c.alpha_max}, {c.eta}, {c.beta}")
        if not isinstance(c.targeted, bool):
            raise ConfigError(f"{self.name}: expected targeted true or false, got {c.targeted!r}")
        self.name = "fab-t" if c.targeted else "fab"

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        best = x.clone()
        size = torch.full((len(x),), math.inf, device=x.device, dtype=torch.float64)
        for aim in self._aims(model, x, criterion):
            for r in range(self.config.restarts):
                idx = torch.nonzero(~(torch.isfinite(size) & (size <= threat.eps)))[:, 0]  # not broken inside the ball
                if len(idx) == 0:
                    return best
                adv, found = self._single_run(model, x[idx], criterion.subset(idx), aim and aim.subset(idx), threat,
                                              gen, size[idx], random_start=r > 0)
                norm = _norm(adv - x[idx], threat.norm).double()
                better = found & (norm < size[idx])
                best[idx[better]], size[idx[better]] = adv[better], norm[better]
        return best

    def _aims(self, model: Callable, x: torch.Tensor, criterion: Criterion) -> list[Criterion | None]:
        """The criteria the linearisation is written around: None (every class, FAB) or one target each."""
        if criterion.targeted:
            return [criterion]
        if not self.config.targeted:
            return [None]
        with torch.no_grad():
            ranked = ranked_targets(model(x), criterion.labels)
        k = min(self.config.target_classes, ranked.shape[1])
        return [Criterion(criterion.labels, ranked[:, j].contiguous()) for j in range(k)]

    def _single_run(self, model: Callable, x0: torch.Tensor, crit: Criterion, aim: Criterion | None,
                    threat: ThreatModel, gen: torch.Generator, size: torch.Tensor,
                    random_start: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One FAB run; returns (smallest adversarial point per sample, found mask)."""
        cfg = self.config
        rows = (-1,) + (1,) * (x0.dim() - 1)
        x1 = _start(x0, threat, gen, size) if random_start else x0.clone()
        best, best_size = x0.clone(), torch.full((len(x0),), math.inf, device=x0.device)
        flat0 = x0.flatten(1)
        for _ in range(cfg.steps):
            df, w = _closest_hyperplane(model, x1, crit, aim, threat.norm)
            b = w.mul(x1.flatten(1)).sum(1) - df  # the hyperplane {z : w . z = b}
            both = project_on_hyperplane(torch.cat((x1.flatten(1), flat0)), torch.cat((w, w)), torch.cat((b, b)),
                                         threat)
            d1, d2 = both[:len(x0)].reshape(x0.shape), both[len(x0):].reshape(x0.shape)
            a1 = _norm(d1, threat.norm).clamp_min(1e-8)
            a2 = _norm(d2, threat.norm).clamp_min(1e-8)
            alpha = (a1 / (a1 + a2)).clamp(0.0, cfg.alpha_max).reshape(rows)
            x1 = ((x1 + cfg.eta * d1) * (1 - alpha) + (x0 + cfg.eta * d2) * alpha).clamp(threat.low, threat.high)
            with torch.no_grad():
                adv = crit.is_adversarial(model(x1))
            if bool(adv.any()):
                norm = _norm(x1 - x0, threat.norm)
                keep = adv & (norm < best_size)
                best[keep], best_size[keep] = x1[keep], norm[keep]
                x1 = torch.where(adv.reshape(rows), x0 + (x1 - x0) * cfg.beta, x1)
        return best, torch.isfinite(best_size)


def _closest_hyperplane(model: Callable, x1: torch.Tensor, crit: Criterion, aim: Criterion | None,
                        norm: Norm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(df (B,), w (B, n))`` of the boundary ``z_j - z_y`` closest in the linearisation:
    the target's for ``aim``, else over every class ``j != y`` (one replicated backward pass)."""
    b = len(x1)
    if aim is not None:
        logits, vjp = logits_and_vjp(model, x1)
        seed = torch.zeros_like(logits)
        seed.scatter_(1, aim.targets[:, None], 1.0).scatter_(1, aim.labels[:, None], -1.0)
        df = (logits * seed).sum(1)
        return df, vjp(seed).flatten(1)
    with torch.no_grad():
        k = model(x1[:1]).shape[1]
    reps = x1.repeat_interleave(k, dim=0)
    logits, vjp = logits_and_vjp(model, reps)
    seed = torch.eye(k, device=x1.device, dtype=logits.dtype).repeat(b, 1)
    seed.scatter_add_(1, crit.labels.repeat_interleave(k)[:, None], -torch.ones((b * k, 1), device=x1.device,
                                                                                 dtype=logits.dtype))
    df = (logits * seed).sum(1).reshape(b, k)
    w = vjp(seed).flatten(1).reshape(b, k, -1)
    dual = w.abs().sum(2) if norm is Norm.LINF else w.abs().amax(2) if norm is Norm.L1 else w.norm(dim=2)
    dist = df.abs() / (dual + 1e-12)
    dist.scatter_(1, crit.labels[:, None], math.inf)  # j = y is no boundary
    j = dist.argmin(dim=1)
    rows = torch.arange(b, device=x1.device)
    return df[rows, j], w[rows, j]


def project_on_hyperplane(p: torch.Tensor, w: torch.Tensor, b: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """Minimal-norm ``d`` ``(B, n)`` with ``w . (p + d) = b`` and ``p + d`` in ``[low, high]``, exactly.

    The box-constrained solution is ``d_i = clip(t s_i, lb_i, ub_i)`` with ``s = sign(w)``
    (L-inf) or ``s = w`` (L2) for the smallest ``t >= 0`` reaching the plane.  Each
    coordinate adds ``a_i min(t, beta_i)`` to ``w . d`` (L-inf: ``a = |w|``, ``beta`` the
    room in the box; L2: ``a = w^2``, ``beta`` the room over ``|w|``), a concave piecewise
    linear function of ``t``: one sort of the breakpoints and two cumulative sums give ``t``.
    When the box cannot reach the plane, the box corner closest to it is returned (the
    reference does the same).  L1: :func:`_l1_step`.  Rows are independent; ``p``, ``w`` flat
    ``(B, n)``, ``b`` ``(B,)``.
    """
    c = b - (w * p).sum(1)
    w = w * torch.where(c < 0, -1.0, 1.0).to(w.dtype)[:, None]
    c = c.abs()[:, None]
    lb, ub = threat.low - p, threat.high - p
    room = torch.where(w > 0, ub, -lb)  # >= 0: how far coordinate i may move the plane's way
    if threat.norm is Norm.L1:
        return _l1_step(w, c, room).clamp(min=lb, max=ub)
    if threat.norm is Norm.LINF:
        s, a, beta = w.sign(), w.abs(), room
    else:
        s, a = w, w * w
        beta = torch.where(w == 0, torch.zeros_like(room), room / w.abs().clamp_min(1e-30))
    beta, order = beta.sort(dim=1)
    a = a.gather(1, order)
    cum_ab, cum_a = (a * beta).cumsum(1), a.cumsum(1)
    total = cum_a[:, -1:]
    reached = cum_ab + beta * (total - cum_a)  # w . d at each breakpoint, nondecreasing
    k = (reached < c).sum(1, keepdim=True)  # breakpoints passed before the plane is reached
    before = (k - 1).clamp_min(0)
    prev_ab = torch.where(k > 0, cum_ab.gather(1, before), torch.zeros_like(c))
    prev_a = torch.where(k > 0, cum_a.gather(1, before), torch.zeros_like(c))
    t = (c - prev_ab) / (total - prev_a).clamp_min(1e-30)
    t = torch.where(k >= beta.shape[1], beta[:, -1:], t)  # unreachable: every coordinate at its bound
    return (t * s).clamp(min=lb, max=ub)


def _l1_step(w: torch.Tensor, c: torch.Tensor, room: torch.Tensor) -> torch.Tensor:
    """The minimal-L1 ``d`` ``(B, n)`` with ``w . d = c`` (``c`` ``(B, 1)`` >= 0) and ``0 <= d_i sign(w_i)
    <= room_i``: a fractional knapsack.  A unit of L1 moves the plane by ``|w_i|`` along coordinate
    ``i``, so the coordinates are taken by decreasing ``|w_i|``, each to its room, the last one only
    as far as the plane; when all of them cannot reach it, every coordinate goes to its room."""
    a = w.abs()
    a_sorted, order = a.sort(dim=1, descending=True)
    room_sorted = room.gather(1, order)
    reach = (a_sorted * room_sorted).cumsum(1)  # w . d with the first j + 1 coordinates at their room
    full = (reach < c).sum(1, keepdim=True)  # coordinates used to their room
    n = a.shape[1]
    before = torch.where(full > 0, reach.gather(1, (full - 1).clamp_min(0)), torch.zeros_like(c))
    last = full.clamp_max(n - 1)
    part = ((c - before) / a_sorted.gather(1, last).clamp_min(1e-30)).clamp(min=0).minimum(room_sorted.gather(1, last))
    pos = torch.arange(n, device=w.device)[None, :]
    amount = torch.where(pos < full, room_sorted, torch.where(pos == full, part, torch.zeros_like(room_sorted)))
    return torch.zeros_like(w).scatter(1, order, amount) * w.sign()


def _norm(d: torch.Tensor, norm: Norm) -> torch.Tensor:
    flat = d.flatten(1)
    if norm is Norm.L1:
        return flat.abs().sum(1)
    return flat.abs().amax(1) if norm is Norm.LINF else l2(flat)


def _start(x0: torch.Tensor, threat: ThreatModel, gen: torch.Generator, size: torch.Tensor) -> torch.Tensor:
    """A random point at half of ``min(best size so far, eps)`` around ``x0`` (the reference's restart)."""
    radius = threat.eps if threat.bounded else DEFAULT_START_RADIUS[threat.norm]
    r = size.to(x0.dtype).clamp(max=radius).reshape((-1,) + (1,) * (x0.dim() - 1))
    if threat.norm is Norm.LINF:
        t = 2 * torch.rand(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype) - 1
        t = t / t.flatten(1).abs().amax(1).clamp_min(1e-12).reshape(r.shape)
    else:
        t = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        t = t / _norm(t, threat.norm).clamp_min(1e-12).reshape(r.shape)
    return (x0 + 0.5 * r * t).clamp(threat.low, threat.high)
