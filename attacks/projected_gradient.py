"""Projected gradient descent (PGD) under L-infinity and L2.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018.

From the clean input (first restart) or a random point of the eps-ball
(later restarts), repeat ``steps`` times:
``x <- Proj_ball(x - alpha * d(grad loss))`` with ``d`` the sign (L-inf) or
the normalised gradient (L2), then clip to the valid range.  A sample is
done at its first adversarial iterate (early stop: that iterate is returned,
done samples leave the batch, and skip later restarts); an unbroken sample
keeps its worst final iterate (lowest margin) over the restarts.

One forward and one backward pass per iterate: the success check and the
gradient come from the same logits, the step and projection run in place
without autograd, and an L-inf projection is one clamp to a box computed once.

On a GPU, asking which rows are done stalls the device once per step, so
there done rows stay in the batch, frozen (their gradient is zeroed), and the
batch is compacted only every :data:`SYNC_EVERY` steps when at most half of
it is left: the same iterates per row, a few wasted gradients, no stalls.
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


#: on a GPU, steps between the checks of how many rows are left (each check waits for the device)
SYNC_EVERY = 8


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
    budget: float | None = None  # cap on all restarts' gradients in units of steps x batch (>= 1; 1: a single start's); None: no cap
    masked: bool | None = None  # early stop by freezing done rows in the batch (no stall per step); None: on GPUs only


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
        if self.config.budget is not None and not self.config.budget >= 1:
            raise ConfigError(f"pgd: expected budget >= 1 (gradients, in units of steps x batch) or None, got {self.config.budget}")

    def leaves_adversarial_inputs(self) -> bool:
        # the clean start's first check finds them, and early stop keeps them as they are
        cfg = self.config
        return (cfg.clean_first or not cfg.random_start) and cfg.early_stop

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        best = _Best(x.clone(), torch.full((len(x),), float("inf"), device=x.device))
        whole = _Rows(torch.arange(len(x), device=x.device), x, criterion, geometry.box(x, threat))
        left = float("inf") if cfg.budget is None else cfg.budget * cfg.steps * len(x)  # gradients, one per row and step
        for r in range(cfg.restarts):
            todo = torch.nonzero(best.margin >= 0)[:, 0]
            if len(todo) == 0 or len(todo) * cfg.steps > left:  # a restart runs only if it can be paid in full
                break
            left -= self._restart(model, whole if len(todo) == len(x) else whole.take(todo), threat, gen, best, r)
        return best.adv

    def _restart(self, model: Callable, rows: _Rows, threat: ThreatModel, gen: torch.Generator, best: _Best,
                 r: int) -> int:
        """Restart number ``r`` on ``rows``; updates ``best`` in place; returns the
        gradients it computed (rows summed over steps).

        Each iterate costs one forward and one backward pass: the success check
        and the gradient come from the same logits.  With early stop a row is
        done at its first adversarial iterate and leaves the batch at once, so
        later steps only pay for unbroken rows.  With a single restart and early
        stop nothing is compared with a row's final iterate, so it is stored
        without a last forward pass (the base class checks every returned point).
        """
        cfg = self.config
        adv = self._start(rows, threat, gen, r)
        masked = cfg.masked if cfg.masked is not None else adv.device.type != "cpu"
        if cfg.early_stop and masked:
            return self._restart_masked(model, rows, adv, threat, best)
        alpha = self._alpha(threat)
        spent = 0
        for i in range(cfg.steps):
            adv.requires_grad_(True)
            logits = model(adv)
            spent += len(adv)
            with torch.no_grad():
                hit = rows.crit.is_adversarial(logits)
                done = self._record_hits(adv, logits, hit, rows, best) if bool(hit.any()) else None
            if done is not None and len(done) == 0:
                return spent
            objective, sign = _objective(cfg.loss, rows.crit, logits)
            (grad,) = torch.autograd.grad(objective, adv)
            with torch.no_grad():
                adv = adv.detach()
                if done is not None:
                    rows, adv, grad = rows.take(done), adv.index_select(0, done), grad.index_select(0, done)
                adv = geometry.step(adv, grad, sign * alpha * _decay(cfg.schedule, i, cfg.steps), rows.x, rows.box, threat)
        if cfg.restarts == 1 and cfg.early_stop:  # every row left has nothing kept to compare with
            best.store(adv, rows)
            return spent
        with torch.no_grad():  # the final iterate, where better than what the row has
            best.keep_better(adv, model(adv), torch.ones(len(adv), dtype=torch.bool, device=adv.device), rows)
        return spent

    def _start(self, rows: _Rows, threat: ThreatModel, gen: torch.Generator, r: int) -> torch.Tensor:
        """Restart ``r``'s first iterate: the clean input, or a random point of the ball."""
        cfg = self.config
        noise = cfg.random_start and not (r == 0 and cfg.clean_first)
        adv = geometry.random_start(rows.x, threat, gen) if noise else rows.x.clone()
        if noise and rows.box is not None:
            adv.clamp_(min=rows.box[0], max=rows.box[1])  # exactly inside, like every later iterate
        return adv

    def _alpha(self, threat: ThreatModel) -> float:
        return self.config.step_size if self.config.step_size is not None else 2.5 * threat.eps / self.config.steps

    def _restart_masked(self, model: Callable, rows: _Rows, adv: torch.Tensor, threat: ThreatModel,
                        best: _Best) -> int:
        """:meth:`_restart` with early stop, without a device stall per step (GPU).

        A row that becomes adversarial is frozen at that iterate (zero
        gradient; under L2, where the projection may round, the old iterate
        is put back) and stored when the batch is compacted or the restart
        ends.  Returns the gradients of live rows (frozen rows' gradients are
        computed and thrown away, and not counted: the budget counts the
        gradients the attack uses, as on the CPU).
        """
        cfg = self.config
        alpha = self._alpha(threat)
        live = torch.ones(len(adv), dtype=torch.bool, device=adv.device)
        spent = torch.zeros((), dtype=torch.int64, device=adv.device)
        for i in range(cfg.steps):
            adv.requires_grad_(True)
            logits = model(adv)
            with torch.no_grad():
                spent += live.sum()
                live &= rows.crit.not_adversarial(logits)
            objective, sign = _objective(cfg.loss, rows.crit, logits)
            (grad,) = torch.autograd.grad(objective, adv)
            with torch.no_grad():
                adv = adv.detach()
                mask = live.view(-1, *([1] * (adv.dim() - 1)))
                grad.mul_(mask)
                old = adv.clone() if rows.box is None else None
                adv = geometry.step(adv, grad, sign * alpha * _decay(cfg.schedule, i, cfg.steps), rows.x, rows.box, threat)
                if old is not None:
                    adv = torch.where(mask, adv, old)
            if (i + 1) % SYNC_EVERY == 0 and i + 1 < cfg.steps:
                left = int(live.sum())
                if left == 0 or 2 * left <= len(live):
                    best.keep_first(adv, ~live, rows)
                    if left == 0:
                        return int(spent)
                    keep = torch.nonzero(live)[:, 0]
                    rows, adv, live = rows.take(keep), adv.index_select(0, keep), live.index_select(0, keep)
        with torch.no_grad():
            best.keep_first(adv, ~live, rows)
            if cfg.restarts == 1:  # nothing kept to compare the unbroken rows' final iterate with
                best.store_rows(adv, live, rows)
            else:
                best.keep_better(adv, model(adv), live, rows)
        return int(spent)

    def _record_hits(self, adv: torch.Tensor, logits: torch.Tensor, hit: torch.Tensor, rows: _Rows,
                     best: _Best) -> torch.Tensor | None:
        """Keep the adversarial iterates ``hit``.  With early stop their rows are done:
        returns the positions of the rows that go on; without, None (all go on)."""
        if not self.config.early_stop:
            best.keep_better(adv, logits, hit, rows)
            return None
        best.keep_first(adv, hit, rows)
        return torch.nonzero(~hit)[:, 0]


@dataclass(frozen=True)
class _Rows:
    """The rows a restart works on: their numbers in the batch, clean inputs, criterion and L-inf box."""

    idx: torch.Tensor  # (b,) int64 row numbers in the attacked batch
    x: torch.Tensor  # (b, *shape) clean inputs
    crit: Criterion
    box: tuple[torch.Tensor, torch.Tensor] | None  # geometry.box of x (L-inf), else None

    def take(self, keep: torch.Tensor) -> _Rows:
        """The rows ``keep`` (int64 positions in this subset)."""
        box = None if self.box is None else (self.box[0].index_select(0, keep), self.box[1].index_select(0, keep))
        return _Rows(self.idx.index_select(0, keep), self.x.index_select(0, keep), self.crit.subset(keep), box)


@dataclass(frozen=True)
class _Best:
    """Per sample of the batch: the iterate kept so far and its margin (inf: none yet)."""

    adv: torch.Tensor  # (B, *shape)
    margin: torch.Tensor  # (B,); -inf: a first success kept under early stop; +inf: none yet, or not computed

    def keep_better(self, adv: torch.Tensor, logits: torch.Tensor, candidate: torch.Tensor, rows: _Rows) -> None:
        """Store the ``candidate`` rows of ``adv`` whose margin beats the kept one (in place)."""
        pick = torch.nonzero(candidate)[:, 0]
        at = rows.idx.index_select(0, pick)
        margin = rows.crit.subset(pick).margin(logits.detach().index_select(0, pick))
        better = torch.nonzero(margin < self.margin.index_select(0, at))[:, 0]
        if len(better):
            self.adv.index_copy_(0, at.index_select(0, better), adv.detach().index_select(0, pick.index_select(0, better)))
            self.margin.index_copy_(0, at.index_select(0, better), margin.index_select(0, better))

    def store_rows(self, adv: torch.Tensor, pick: torch.Tensor, rows: _Rows) -> None:
        """Store the ``pick`` rows (bool mask) of ``adv`` unconditionally (margin stays +inf)."""
        at = torch.nonzero(pick)[:, 0]
        self.adv.index_copy_(0, rows.idx.index_select(0, at), adv.detach().index_select(0, at))

    def store(self, adv: torch.Tensor, rows: _Rows) -> None:
        """Store ``adv`` for all ``rows`` unconditionally (their margin is not computed: stays +inf)."""
        self.adv.index_copy_(0, rows.idx, adv.detach())

    def keep_first(self, adv: torch.Tensor, hit: torch.Tensor, rows: _Rows) -> None:
        """Store the adversarial iterates ``hit`` of rows that are done with them (early stop).

        Their margin is recorded as -inf: adversarial, and never compared again
        (a done row's later iterates are never looked at and it is not
        restarted), which saves computing it for every first success.
        """
        pick = torch.nonzero(hit)[:, 0]
        at = rows.idx.index_select(0, pick)
        self.adv.index_copy_(0, at, adv.detach().index_select(0, pick))
        self.margin.index_fill_(0, at, float("-inf"))


def _objective(loss: Loss | str, crit: Criterion, logits: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The batch objective whose input gradient PGD follows, and the sign of the step:
    the sum of the per-sample losses to minimise (sign 1), except untargeted
    cross-entropy, the common case, which is maximised in one fused call
    without negating it (sign -1: one operation less per step, forward and back)."""
    if Loss(loss) is Loss.CE:
        import torch.nn.functional as F

        total = F.cross_entropy(logits, crit.goal(), reduction="sum")
        return total, (1.0 if crit.targeted else -1.0)
    return loss_fn(loss)(crit, logits).sum(), 1.0



def _decay(schedule: Schedule | str, i: int, steps: int) -> float:
    if Schedule(schedule) is Schedule.CONSTANT:
        return 1.0
    return 0.25 if i >= 0.75 * steps else 0.5 if i >= 0.5 * steps else 1.0
