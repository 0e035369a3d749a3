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
from nnaudit.verify.layer_bounds import LayerBounds, cast
from nnaudit.verify.limits import Limits

#: dtype of the alpha/beta gradient search; the bound itself is always evaluated in float64
#: with the slopes and multipliers found, so this affects only speed and tightness, never soundness.
OPT_DTYPE = torch.float32

State = dict[str, dict[int, torch.Tensor]]  # {"alpha": {k: (D, r, n_k)}, "beta": {k: (D, r, n_k)}}
Betas = dict[int, tuple[torch.Tensor, torch.Tensor]]  # node -> (multipliers (D, r, n_k), split signs (D, n_k))


def optimise_alpha(low: Lowered, bounds: LayerBounds, c: torch.Tensor, steps: int, lr: float,
                   splits: list[torch.Tensor | None] | None = None, upto: int | None = None,
                   target: Affine | None = None, init: State | None = None, limits: Limits | None = None
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
    children's optimum is usually close to.  ``limits``: the deadline, checked at every step."""
    upto = len(low.nodes) if upto is None else upto
    target = low.output if target is None else target
    work = cast(bounds, OPT_DTYPE)  # the search runs in OPT_DTYPE; only float64 evaluations count as bounds
    rows = c.shape[:2]
    alphas = _start_alphas(low, work, rows, upto, (init or {}).get("alpha", {}))
    betas = _start_betas(low, splits, rows, upto, (init or {}).get("beta", {}))
    c_work = c.to(OPT_DTYPE)
    bound = lambda: backward(low, work, upto, target, c_work, alphas=alphas, betas=betas or None)[0]  # noqa: E731
    best = _ascend(bound, alphas, betas, steps, lr, limits or Limits())
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


def _ascend(bound: Callable[[], torch.Tensor], alphas: dict[int, torch.Tensor], betas: Betas,
            steps: int, lr: float, limits: Limits = Limits()) -> list[torch.Tensor]:
    """``steps`` Adam steps up the bound ``(D, r)`` that ``bound()`` gives with the current
    ``alphas`` and ``betas`` (updated in place, kept in [0, 1] and >= 0); returns, per row, the
    slopes then the multipliers of the iterate whose bound was best (the start and the
    iterate after the last step included)."""
    params = list(alphas.values()) + [b for b, _ in betas.values()]
    opt = Adam(params, lr)
    best = [p.detach().clone() for p in params]  # per row: the iterate with the best bound so far
    best_val: torch.Tensor | None = None
    for i in range(steps + 1):  # steps updates; the iterate after the last is scored too, without a gradient
        limits.check_time()
        with torch.set_grad_enabled(i < steps):
            val = bound()
        with torch.no_grad():
            better = torch.ones_like(val, dtype=torch.bool) if best_val is None else val > best_val
            best_val = val.detach() if best_val is None else torch.where(better, val, best_val)
            for kept, p in zip(best, params):
                kept.copy_(torch.where(better[..., None], p, kept))
        if i == steps:
            break
        grads = torch.autograd.grad(-val.sum(), params)
        with torch.no_grad():
            opt.step(grads)
            for a in alphas.values():
                a.clamp_(0.0, 1.0)
            for b, _ in betas.values():
                b.clamp_(min=0.0)
    return best


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

    def step(self, grads: tuple[torch.Tensor, ...]) -> None:
        """One update of every parameter by its gradient ``grads[i]`` (a descent step)."""
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.lerp_(g, 1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)
