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

Under a gradient budget (``budget``), a restart runs only if what is left
pays for it in full; with ``overlap`` (the default) the last restart starts
as soon as the budget pays for it and for all that the one before may still
need, and runs side by side with it in one batch
(:class:`~nnaudit.attacks.iterates.Flight`): fewer passes (on a small
network a pass costs little more for 400 rows than for 100), never a weaker
attack.  Cross-entropy, the default loss, seeds the backward pass at the
logits with its closed-form gradient.

On a GPU, asking which rows are done stalls the device once per step, so
there done rows stay in the batch, frozen (their gradient is zeroed): the
same iterates per row, a few wasted gradients, no stalls.  That form runs its
restarts in turn.  By default (``graph``) each restart runs over the whole
batch, padded to a multiple of 64 rows, as one CUDA graph
(:mod:`~nnaudit.attacks.cuda_graphs`), captured on the first batch of that
shape and replayed for every later restart and batch: one launch instead of
some twenty per step, which is what a small network's step costs on a GPU.
Without ``graph`` the batch is compacted every :data:`SYNC_EVERY` steps when
at most half of it is left (fewer wasted gradients where the network is large
enough for them to matter).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch

from nnaudit.attacks import cuda_graphs, geometry
from nnaudit.attacks.base import Attack, check_auto_switches, logits_and_vjp
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.iterates import Best, Flight, Rows
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
    clean_first: bool = True  # the first restart starts at the clean input (stronger than noise on digits-cnn, weaker on mnist-net_256x4)
    random_start: bool = True  # the other restarts start at a uniform random point of the ball
    early_stop: bool = True  # drop a sample from the batch once it is adversarial
    budget: float | None = None  # cap on all restarts' gradients in units of steps x batch (>= 1; 1: a single start's); None: no cap
    overlap: bool = True  # under a budget: the last restart starts beside the one before once the budget pays for both (CPU form)
    masked: bool | None = None  # early stop by freezing done rows in the batch (no stall per step); None: on GPUs only
    graph: bool | None = None  # masked form: each restart over the whole (padded) batch as one CUDA graph; None: on CUDA (on the CPU: the same loop, eagerly)


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
        check_auto_switches(self.name, self.config, "masked", "graph")

    def leaves_adversarial_inputs(self) -> bool:
        # the clean start's first check finds them, and early stop keeps them as they are
        cfg = self.config
        return (cfg.clean_first or not cfg.random_start) and cfg.early_stop

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        best = Best(x.clone(), torch.full((len(x),), float("inf"), device=x.device))
        whole = Rows.of(x, criterion, geometry.box(x, threat))
        left = float("inf") if cfg.budget is None else cfg.budget * cfg.steps * len(x)  # gradients, one per row and step
        masked = cfg.masked if cfg.masked is not None else x.device.type != "cpu"
        if cfg.early_stop and masked:
            self._run_masked(model, whole, threat, gen, best, left)
        else:
            self._run_compacting(model, whole, threat, gen, best, left)
        return best.adv

    # -- the compacting form (CPU): done rows leave the batch at once -----------

    def _run_compacting(self, model: Callable, whole: Rows, threat: ThreatModel, gen: torch.Generator, best: Best,
                        left: float) -> None:
        """Every restart, done rows dropped from the batch as soon as they are done.

        A restart starts when the one before it has ended.  With ``overlap``
        under a budget, the last restart starts as soon as what is left of the
        budget pays in full for it and for all that the running one may still
        need: it then runs side by side with it, one forward and backward pass
        for both (on a small network a pass costs little more for 400 rows
        than for 100).  Either way every restart that runs is paid for in full;
        the last one, started early, runs for the samples not done then, a
        superset of those it would run for after the one before, and nothing
        comes after it that its extra gradients could starve: never a weaker
        attack.
        """
        cfg = self.config
        flight, launched, landed = Flight(), 0, 0
        side_by_side = cfg.overlap and cfg.budget is not None
        while True:
            while (launched < cfg.restarts and (not flight.segments or (side_by_side and launched == cfg.restarts - 1))
                   and self._launch(flight, whole, threat, gen, best, left, launched)):
                launched += 1
            if not flight.segments:
                return
            computed, ended = self._step(model, flight, threat, best)
            left -= computed
            for rows, adv in ended:
                # the only restart these samples will see: nothing to compare its final iterates with
                alone = landed == 0 and len(ended) == 1 and not flight.segments and \
                    (launched == cfg.restarts or len(rows.idx) * cfg.steps > left)
                self._land(model, rows, adv, best, alone)
                landed += 1

    def _launch(self, flight: Flight, whole: Rows, threat: ThreatModel, gen: torch.Generator, best: Best,
                left: float, r: int) -> bool:
        """Start restart ``r`` on the samples not done yet, if ``left`` gradients pay for it and
        for the running restarts in full; returns whether it started."""
        cfg = self.config
        steps, running = cfg.steps, flight.remaining(cfg.steps)
        # with early stop, the samples of a running restart are not done: at least that many to do
        fewest = max((seg.length for seg in flight.segments), default=1) if cfg.early_stop else 1
        if fewest * steps + running > left:
            return False
        todo = torch.nonzero(best.margin >= 0)[:, 0]
        if len(todo) == 0 or len(todo) * steps + running > left:
            return False
        rows = whole if len(todo) == len(whole.idx) else whole.take(todo)
        flight.launch(rows, self._start(whole, todo, threat, gen, r))
        return True

    def _step(self, model: Callable, flight: Flight, threat: ThreatModel,
              best: Best) -> tuple[int, list[tuple[Rows, torch.Tensor]]]:
        """One iterate of every running restart: check it, keep the adversarial ones, step the rows
        that go on, take out the restarts that took all their steps.  Returns the gradients
        computed and the ended restarts' rows and final iterates (oldest first).

        Each iterate costs one forward and one backward pass: the success check
        and the gradient come from the same logits.  With early stop a sample
        is done at its first adversarial iterate and its rows leave the batch
        at once, so later steps only pay for unbroken samples.
        """
        rows, computed = flight.rows, len(flight)
        assert rows is not None and flight.adv is not None
        adv = flight.adv
        logits, vjp = logits_and_vjp(model, adv)
        with torch.no_grad():
            keep = self._record(flight, adv, logits, rows.crit.is_adversarial(logits), best)
        if keep is not None and len(keep) == 0:
            flight.clear()
            return computed, []
        seed, sign = _logit_seed(self.config.loss, rows.crit, logits)
        grad = vjp(seed)
        with torch.no_grad():
            self._move(flight, grad, sign, threat)  # done rows too (kept already): cheaper than dropping their gradients
            if keep is not None:
                flight.take(keep)
            ended = []
            while flight.segments and flight.segments[0].done == self.config.steps:
                ended.append(flight.pop_first())
        return computed, ended

    def _record(self, flight: Flight, adv: torch.Tensor, logits: torch.Tensor, hit: torch.Tensor,
                best: Best) -> torch.Tensor | None:
        """Keep this step's adversarial iterates ``hit`` ``(n,)``.  Returns the positions of the rows
        that go on, None when all do (no success, or no early stop)."""
        rows = flight.rows
        assert rows is not None
        if not self.config.early_stop:
            if bool(hit.any()):
                for start, seg in flight.parts():
                    best.keep_better(adv.narrow(0, start, seg.length), logits.narrow(0, start, seg.length),
                                     hit.narrow(0, start, seg.length), rows.narrow(start, seg.length))
            return None
        pick = torch.nonzero(hit)[:, 0]
        if len(pick) == 0:
            return None
        if len(flight.segments) == 1:
            best.keep_first(adv, pick, rows)
            return torch.nonzero(~hit)[:, 0]
        best.keep_first(adv, _first_per_sample(pick, rows.idx, len(best.margin)), rows)
        return torch.nonzero(~best.done(rows.idx))[:, 0]  # a sample done in one restart leaves them all

    def _move(self, flight: Flight, grad: torch.Tensor, sign: float, threat: ThreatModel) -> None:
        """Step every running restart's iterates along ``grad`` with its own step size (in place)."""
        cfg = self.config
        rows, adv = flight.rows, flight.adv
        assert rows is not None and adv is not None
        alphas = [sign * self._alpha(threat) * _decay(cfg.schedule, seg.done, cfg.steps) for seg in flight.segments]
        if min(alphas) == max(alphas):
            flight.adv = geometry.step(adv, grad, alphas[0], rows.x, rows.box, threat)
        else:
            for (start, seg), alpha in zip(flight.parts(), alphas):
                part, view = rows.narrow(start, seg.length), adv.narrow(0, start, seg.length)
                moved = geometry.step(view, grad.narrow(0, start, seg.length), alpha, part.x, part.box, threat)
                if moved is not view:
                    view.copy_(moved)
        for seg in flight.segments:
            seg.done += 1

    def _land(self, model: Callable, rows: Rows, adv: torch.Tensor, best: Best, alone: bool) -> None:
        """Keep an ended restart's final iterates ``adv`` of ``rows`` where their margin beats what
        the sample has (one forward pass).  With early stop, a restart ``alone`` (the first to end,
        none beside it, none to follow) has nothing to be compared with, before or after: its
        iterates are stored without that pass (the base class checks every returned point).
        On digits-cnn that pass is 4% of a PGD-10 call at eps 0.05, where one restart is all the
        budget pays for."""
        with torch.no_grad():
            if alone and self.config.early_stop:
                best.store(adv, rows)
            else:
                best.keep_better(adv, model(adv), None, rows)

    def _start(self, whole: Rows, todo: torch.Tensor, threat: ThreatModel, gen: torch.Generator,
               r: int) -> torch.Tensor:
        """Restart ``r``'s first iterates for the samples ``todo``: their clean inputs, or random
        points of the ball.  The noise is drawn for every sample of the batch, so a sample's
        start does not depend on which others the restart runs for (nor on when it starts)."""
        cfg = self.config
        everyone = len(todo) == len(whole.idx)
        if not cfg.random_start or (r == 0 and cfg.clean_first):
            return whole.x.clone() if everyone else whole.x.index_select(0, todo)
        adv = geometry.random_start(whole.x, threat, gen)
        if whole.box is not None:
            adv.clamp_(min=whole.box[0], max=whole.box[1])  # exactly inside, like every later iterate
        return adv if everyone else adv.index_select(0, todo)

    def _alpha(self, threat: ThreatModel) -> float:
        return self.config.step_size if self.config.step_size is not None else 2.5 * threat.eps / self.config.steps

    # -- the masked form (GPU): done rows frozen in the batch -------------------

    def _run_masked(self, model: Callable, whole: Rows, threat: ThreatModel, gen: torch.Generator, best: Best,
                    left: float) -> None:
        """Every restart in turn (a restart runs only if ``left`` gradients pay for it in full)."""
        cfg = self.config
        graphed = cfg.graph if cfg.graph is not None else whole.x.device.type == "cuda"
        everyone = torch.arange(len(whole.idx), device=whole.x.device)
        for r in range(cfg.restarts):
            todo = torch.nonzero(best.margin >= 0)[:, 0]
            if len(todo) == 0 or len(todo) * cfg.steps > left:
                return
            if graphed:
                left -= self._restart_whole(model, whole, todo, self._start(whole, everyone, threat, gen, r), threat, best)
                continue
            rows = whole if len(todo) == len(whole.idx) else whole.take(todo)
            left -= self._restart_masked(model, rows, self._start(whole, todo, threat, gen, r), threat, best)

    def _restart_masked(self, model: Callable, rows: Rows, adv: torch.Tensor, threat: ThreatModel,
                        best: Best) -> int:
        """One restart with early stop, without a device stall per step (GPU).

        A row that becomes adversarial is frozen at that iterate (zero
        gradient; under L2, where the projection may round, the old iterate
        is put back) and stored when the batch is compacted or the restart
        ends.  Returns the gradients of live rows (frozen rows' gradients are
        computed and thrown away, and not counted: the budget counts the
        gradients the attack uses, as on the CPU).
        """
        cfg = self.config
        live = torch.ones(len(adv), dtype=torch.bool, device=adv.device)
        spent = torch.zeros((), dtype=torch.int64, device=adv.device)
        for i in range(cfg.steps):
            adv = self._masked_step(model, rows, adv, live, spent, i, threat)
            if (i + 1) % SYNC_EVERY == 0 and i + 1 < cfg.steps:
                left = int(live.sum())
                if left == 0 or 2 * left <= len(live):
                    best.keep_first(adv, torch.nonzero(~live)[:, 0], rows)
                    if left == 0:
                        return int(spent)
                    keep = torch.nonzero(live)[:, 0]
                    rows, adv, live = rows.take(keep), adv.index_select(0, keep), live.index_select(0, keep)
        self._end_masked(best, rows, adv, ~live, live, lambda: model(adv))
        return int(spent)

    def _end_masked(self, best: Best, rows: Rows, adv: torch.Tensor, done: torch.Tensor, live: torch.Tensor,
                    logits: Callable[[], torch.Tensor]) -> None:
        """End a masked restart: keep its ``done`` rows' adversarial iterates, and its ``live`` rows'
        final ones where they beat what the sample has (``logits()`` of ``adv``; with a single
        restart there is nothing to compare with, and they are stored without it)."""
        with torch.no_grad():
            best.keep_first(adv, torch.nonzero(done)[:, 0], rows)
            if self.config.restarts == 1:
                best.store_rows(adv, live, rows)
            else:
                best.keep_better(adv, logits(), live, rows)

    def _masked_step(self, model: Callable, rows: Rows, adv: torch.Tensor, live: torch.Tensor,
                     spent: torch.Tensor, i: int, threat: ThreatModel) -> torch.Tensor:
        """Step ``i`` of the masked form: rows adversarial at ``adv`` leave ``live`` (in place) and are
        frozen, the others move; ``spent`` counts the live rows' gradients (in place).  Returns the
        new iterates (``adv``'s storage may be reused).  Never waits for the device."""
        cfg = self.config
        logits, vjp = logits_and_vjp(model, adv)
        with torch.no_grad():
            spent += live.sum()
            live &= rows.crit.not_adversarial(logits)
        seed, sign = _logit_seed(cfg.loss, rows.crit, logits)
        grad = vjp(seed)
        with torch.no_grad():
            mask = live.view(-1, *([1] * (adv.dim() - 1)))
            grad.mul_(mask)
            old = adv.clone() if rows.box is None else None
            adv = geometry.step(adv, grad, sign * self._alpha(threat) * _decay(cfg.schedule, i, cfg.steps), rows.x,
                                rows.box, threat)
            if old is not None:
                adv = torch.where(mask, adv, old)
        return adv

    # -- the whole-batch form (CUDA graphs): one launch per restart -------------

    def _restart_whole(self, model: Callable, whole: Rows, todo: torch.Tensor, adv: torch.Tensor,
                       threat: ThreatModel, best: Best) -> int:
        """One restart of the masked form over every row of the batch, padded
        (:func:`~nnaudit.attacks.cuda_graphs.padding`; rows not in ``todo`` and padding frozen from
        the start), as one CUDA graph on CUDA (:class:`_WholeRestart`), eagerly elsewhere.  Same
        iterates per row as :meth:`_restart_masked`; returns the live rows' gradients."""
        pad = cuda_graphs.padding(len(whole.idx), adv.device)
        if pad is not None:  # padding: copies of row 0, never live
            whole, adv = whole.take(pad), adv.index_select(0, pad)
        live = torch.zeros(len(adv), dtype=torch.bool, device=adv.device).index_fill_(0, todo, True)
        inputs = (whole.keys, whole.data, adv, live)
        body = _WholeRestart(self, model, threat)
        if adv.device.type == "cuda":
            out_adv, out_live, spent, logits = cuda_graphs.replay(model, body.key(), body, inputs)
        else:
            out_adv, out_live, spent, logits = body(*inputs)
        self._end_masked(best, whole, out_adv, live & ~out_live, out_live, lambda: logits)
        return int(spent)


@dataclass(frozen=True)
class _WholeRestart:
    """All steps of one masked restart as a pure function of its tensors (capturable as a CUDA
    graph: no waits for the device, inputs left as they are)."""

    attack: PGD
    model: Callable
    threat: ThreatModel

    def key(self) -> tuple:
        """What the function bakes into its kernels besides its inputs' shapes."""
        return ("pgd-restart", self.attack.config, self.threat)

    def __call__(self, keys: torch.Tensor, data: torch.Tensor, adv: torch.Tensor,
                 live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(final iterates, rows still live, gradients of live rows, logits of the final iterates)``."""
        rows, adv, live = Rows.stacked(keys, data), adv.clone(), live.clone()
        spent = torch.zeros((), dtype=torch.int64, device=adv.device)
        for i in range(self.attack.config.steps):
            adv = self.attack._masked_step(self.model, rows, adv, live, spent, i, self.threat)
        with torch.no_grad():
            return adv, live, spent, self.model(adv)


def _logit_seed(loss: Loss | str, crit: Criterion, logits: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The gradient of the summed loss w.r.t. the (detached) logits, which seeds the
    backward pass to the input, and the sign of the step (1: descend the loss, -1:
    ascend it).

    Cross-entropy, the common case, has its closed form (:meth:`Criterion.ce_gradient`):
    no autograd at all (differentiating ``F.cross_entropy`` costs several times as much
    on a small batch on the CPU) and no negation: untargeted cross-entropy is ascended
    (sign -1), targeted descended.  Other losses are differentiated by autograd from
    the logits on, descended.
    """
    if Loss(loss) is Loss.CE:
        with torch.no_grad():
            return crit.ce_gradient(logits), (1.0 if crit.targeted else -1.0)
    leaf = logits.detach().requires_grad_(True)
    (seed,) = torch.autograd.grad(loss_fn(loss)(crit, leaf).sum(), leaf)
    return seed, 1.0


def _first_per_sample(pick: torch.Tensor, idx: torch.Tensor, batch: int) -> torch.Tensor:
    """The positions ``pick`` (ascending int64) whose sample (``idx`` of the position, one of
    ``batch``) has no earlier position in ``pick``: of a sample that several running restarts
    break at once, the oldest restart's iterate."""
    at = idx.index_select(0, pick)
    first = torch.full((batch,), len(idx), dtype=pick.dtype, device=pick.device)
    first.scatter_reduce_(0, at, pick, "amin")
    return pick[first.index_select(0, at) == pick]


def _decay(schedule: Schedule | str, i: int, steps: int) -> float:
    if Schedule(schedule) is Schedule.CONSTANT:
        return 1.0
    return 0.25 if i >= 0.75 * steps else 0.5 if i >= 0.5 * steps else 1.0
