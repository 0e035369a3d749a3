"""alpha(-beta)-CROWN: the lower ReLU slopes of backward substitution (alpha), and
the Lagrange multipliers of ReLU split constraints (beta), optimised by gradient
ascent on the bound they give.

Any slopes in [0, 1] and any multipliers >= 0 give a sound bound
(:func:`nnaudit.verify.backward.backward`), so the search needs no care for
soundness: it runs in :data:`OPT_DTYPE`, and the best iterate is evaluated
once more in float64.  :func:`nnaudit.verify.bounds.spec_lower` optimises a
property's rows with it (warm-started from the parent sub-domain in branch and
bound), :func:`~nnaudit.verify.bounds.compute_bounds` the intermediate bounds of
a root box.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nnaudit.networks.lower import Affine, Lowered
from nnaudit.verify.backward import backward
from nnaudit.verify.layer_bounds import LayerBounds, cast, each
from nnaudit.verify.limits import Limits

#: dtype of the alpha/beta gradient search; the bound itself is always evaluated in float64
#: with the slopes and multipliers found, so this affects only speed and tightness, never soundness.
OPT_DTYPE = torch.float32

State = dict[str, dict[int, torch.Tensor]]  # {"alpha": {k: (D, r, n_k)}, "beta": {k: (D, r, n_k)}}
Betas = dict[int, tuple[torch.Tensor, torch.Tensor]]  # node -> (multipliers (D, r, n_k), split signs (D, n_k))


def optimise_alpha(low: Lowered, bounds: LayerBounds, c: torch.Tensor, steps: int, lr: float,
                   splits: list[torch.Tensor | None] | None = None, upto: int | None = None,
                   target: Affine | None = None, init: State | None = None, limits: Limits | None = None,
                   enough: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, State, torch.Tensor, list[torch.Tensor | None]]:
    """alpha(-beta)-CROWN: gradient ascent on the lower ReLU slopes (in [0, 1],
    one per bounded row and neuron: each row's bound picks its own
    relaxation) and, where ReLUs are split, on the multipliers of the split
    constraints (>= 0).  Every choice of them gives a sound bound; per row, the
    iterate whose (float32) bound was best is evaluated in float64 and returned
    (with its input coefficients and recorded node coefficients).  The start
    counts as an iterate, so a warm start is never lost to the optimiser's
    first, large steps.  The state returned for warm starts is the *last*
    iterate, not the best: children started from the best one took 3.6x the
    sub-domains on mnist_fc 256x4 prop 3 eps 0.05 (the best is often the start
    itself, and the children then repeat their parent's steps).

    Bounds ``c @ target`` through the nodes before ``upto`` (default: the
    network output through all nodes).  ``init``: a warm start (see
    :func:`~nnaudit.verify.bounds.spec_lower`), e.g. the parent sub-domain's optimum, which the
    children's optimum is usually close to.  ``limits``: the deadline, checked at every step.
    ``enough`` ``(D, r)``: a sub-domain whose best bound exceeds it on every row (e.g. ``-d`` of a
    property ``C y + d > 0``: it is proved) leaves the later steps (:func:`_ascend`); its best
    iterate is evaluated in float64 with the others, so this saves time and never changes soundness."""
    upto = len(low.nodes) if upto is None else upto
    target = low.output if target is None else target
    work = cast(bounds, OPT_DTYPE)  # the search runs in OPT_DTYPE; only float64 evaluations count as bounds
    rows = c.shape[:2]
    alphas = _start_alphas(low, work, rows, upto, (init or {}).get("alpha", {}))
    betas = _start_betas(low, splits, rows, upto, (init or {}).get("beta", {}))
    c_work = c.to(OPT_DTYPE)
    full = _Active(work, c_work, alphas, betas)
    bound = lambda a: backward(low, a.work, upto, target, a.c, alphas=a.alphas, betas=a.betas or None)[0]  # noqa: E731
    best = _ascend(bound, full, steps, lr, limits or Limits(), enough)
    best_a = dict(zip(alphas, best[:len(alphas)]))
    best_b = dict(zip(betas, best[len(alphas):]))
    with torch.no_grad():  # the bound: the best slopes and multipliers, evaluated in float64
        final_a = {k: a.to(torch.float64) for k, a in best_a.items()}
        final_b = {k: (best_b[k].to(torch.float64), s.to(torch.float64)) for k, (_, s) in betas.items()}
        val, a_in, rec = backward(low, bounds, upto, target, c.to(torch.float64), alphas=final_a,
                                  betas=final_b or None, record=True)
    state = {"alpha": {k: a.detach() for k, a in alphas.items()}, "beta": {k: b.detach() for k, (b, _) in betas.items()}}
    return val, state, a_in, rec


def _start_alphas(low: Lowered, work: LayerBounds, rows: torch.Size, upto: int,
                  init: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """The first slopes ``(D, r, n_k)`` of each ReLU node before ``upto``: 1 where the upper bound
    outweighs the lower one, else 0 (CROWN's choice), or ``init``'s where it is not NaN."""
    alphas: dict[int, torch.Tensor] = {}
    for k, n in enumerate(low.nodes[:upto]):
        if n.kind == "relu":
            start = (work.pre_hi[k] > -work.pre_lo[k]).to(OPT_DTYPE)[:, None, :].expand(*rows, -1)
            if k in init:
                start = torch.where(torch.isnan(init[k]), start, init[k].to(OPT_DTYPE).clamp(0.0, 1.0))
            alphas[k] = start.clone().requires_grad_(True)
    return alphas


def _start_betas(low: Lowered, splits: list[torch.Tensor | None] | None, rows: torch.Size, upto: int,
                 init: dict[int, torch.Tensor]) -> Betas:
    """The first multipliers (0, or ``init``'s where it is not NaN) of each ReLU node before
    ``upto`` with a split in some sub-domain, with the split signs."""
    betas: Betas = {}
    for k, s in enumerate((splits or [])[:upto]):
        if s is not None and low.nodes[k].kind == "relu" and bool((s != 0).any()):
            sign = s.to(OPT_DTYPE)
            start = torch.zeros(rows + sign.shape[1:], dtype=OPT_DTYPE)
            if k in init:
                start = torch.nan_to_num(init[k].to(OPT_DTYPE), nan=0.0).clamp(min=0.0)
            betas[k] = (start.clone().requires_grad_(True), sign)
    return betas


class _Active:
    """The sub-domains still optimised: their bounds, rows, parameters and best iterate so far,
    cut out of the batch's (``idx``: their places in it; the parameters are new leaves).
    :meth:`store` writes parameters and best iterate back into the batch's."""

    def __init__(self, work: LayerBounds, c: torch.Tensor, alphas: dict[int, torch.Tensor], betas: Betas,
                 idx: torch.Tensor | None = None, best: list[torch.Tensor] | None = None,
                 best_val: torch.Tensor | None = None) -> None:
        self.work, self.c, self.alphas, self.betas = work, c, alphas, betas
        self.idx = torch.arange(c.shape[0]) if idx is None else idx
        # per row: the iterate with the best bound so far, and that bound (None: nothing scored yet)
        self.best = [p.detach().clone() for p in self.params] if best is None else best
        self.best_val = best_val

    @property
    def params(self) -> list[torch.Tensor]:
        return list(self.alphas.values()) + [b for b, _ in self.betas.values()]

    def score(self, val: torch.Tensor) -> None:
        """Keep, per row, the current parameters where ``val`` beats the best bound so far."""
        with torch.no_grad():
            better = torch.ones_like(val, dtype=torch.bool) if self.best_val is None else val > self.best_val
            self.best_val = val.detach().clone() if self.best_val is None else torch.where(better, val, self.best_val)
            for kept, p in zip(self.best, self.params):
                kept.copy_(torch.where(better[..., None], p, kept))

    def keep(self, rows: torch.Tensor) -> _Active:
        """Only the sub-domains ``rows`` (a boolean mask over these), with new parameter leaves."""
        d = self.c.shape[0]
        cut = lambda t: t[rows] if t.ndim and t.shape[0] == d else t  # noqa: E731  (shared tensors stay)
        alphas = {k: a.detach()[rows].requires_grad_(True) for k, a in self.alphas.items()}
        betas = {k: (b.detach()[rows].requires_grad_(True), sign[rows]) for k, (b, sign) in self.betas.items()}
        return _Active(each(self.work, cut), self.c[rows], alphas, betas, self.idx[rows], [b[rows] for b in self.best],
                       None if self.best_val is None else self.best_val[rows])

    def store(self, into: _Active) -> None:
        """Write these parameters and best iterates into ``into``'s (the whole batch's)."""
        with torch.no_grad():
            for whole, p in zip(into.params, self.params):
                whole[self.idx] = p.detach()
            for whole, b in zip(into.best, self.best):
                whole[self.idx] = b
            if self.best_val is not None:
                if into.best_val is None:
                    into.best_val = torch.full((len(into.c),) + self.best_val.shape[1:], -torch.inf)
                into.best_val[self.idx] = self.best_val


def _ascend(bound: Callable[[_Active], torch.Tensor], full: _Active, steps: int, lr: float,
            limits: Limits = Limits(), enough: torch.Tensor | None = None) -> list[torch.Tensor]:
    """``steps`` Adam steps up the bound ``(D, r)`` that ``bound(active)`` gives with the current
    slopes and multipliers (updated in place, kept in [0, 1] and >= 0; the last iterate is left in
    ``full``'s); returns, per row, the slopes then the multipliers of the iterate whose bound was
    best (the start and the iterate after the last step included).

    With ``enough`` ``(D, r)``, once at least :data:`DROP_SHARE` of the sub-domains still optimised
    have a best bound above it on every row (proved), they leave the batch: on a CIFAR-10 region's
    hull, half of a 512-sub-domain batch is proved after 3 of its 25 steps on average."""
    act, opt = full, Adam(full.params, lr)
    for i in range(steps + 1):  # steps updates; the iterate after the last is scored too, without a gradient
        limits.check_time()
        with torch.set_grad_enabled(i < steps):
            val = bound(act)
        act.score(val)
        if i == steps:
            break
        grads = torch.autograd.grad(-val.sum(), act.params)
        with torch.no_grad():
            opt.step(grads)
            for a in act.alphas.values():
                a.clamp_(0.0, 1.0)
            for b, _ in act.betas.values():
                b.clamp_(min=0.0)
        if enough is not None:
            act, opt = _drop_proved(act, opt, enough, full)
            if act is None:
                return full.best
    if act is not full:
        act.store(full)
    return full.best


#: share of the optimised sub-domains that must be proved before they leave the batch (cutting
#: the batch costs about one step's bookkeeping; 1/8 keeps that under a few per cent)
DROP_SHARE = 0.125


def _drop_proved(act: _Active, opt: Adam, enough: torch.Tensor, full: _Active) -> tuple[_Active | None, Adam]:
    """``act`` without its proved sub-domains, when there are enough of them (see :func:`_ascend`);
    None when every one is proved (what they had is stored in ``full`` first)."""
    assert act.best_val is not None
    need = enough[act.idx]
    proved = (act.best_val > need + 1e-4 * (1 + need.abs())).all(dim=-1)  # a margin for float64's re-evaluation
    n = int(proved.sum())
    if n < max(1, DROP_SHARE * len(act.idx)):
        return act, opt
    if act is not full:
        act.store(full)
    if n == len(act.idx):
        return None, opt
    rest = act.keep(~proved)
    return rest, opt.kept(rest.params, ~proved)


class Adam:
    """Adam (Kingma and Ba) on a few tensors, in place.  ``torch.optim.Adam`` would do
    the same, but its first use in a process imports torch's compiler stack (1.5 s,
    more than a whole mnist_fc verification's bounds)."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, (self.b1, self.b2), self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def kept(self, params: list[torch.Tensor], rows: torch.Tensor) -> Adam:
        """The same optimiser on ``params``, the rows ``rows`` of these parameters (moments kept)."""
        out = Adam(params, self.lr, (self.b1, self.b2), self.eps)
        out.m, out.v, out.t = [m[rows] for m in self.m], [v[rows] for v in self.v], self.t
        return out

    def step(self, grads: tuple[torch.Tensor, ...]) -> None:
        """One update of every parameter by its gradient ``grads[i]`` (a descent step)."""
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.lerp_(g, 1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)
