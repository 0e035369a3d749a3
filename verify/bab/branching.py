"""Where branch and bound splits a sub-domain in two.

- Input splitting (few inputs, e.g. ACAS Xu's 5): halve the dimension whose narrowing raises
  the lower bound of the sub-domain's most promising row (the best row of its worst open
  disjunct) fastest, ``(d lb / d lo_i - d lb / d hi_i) * width_i``, by autograd through the
  bounds (:attr:`SplitScore.GRADIENT`; fresh every ``gradient_every`` depths, a parent's
  reused in between).  It sees how a wide input loosens the intermediate ReLU relaxations;
  the smear score ``|a_i| * width_i`` of the final linear bound (``a``: that row's input
  coefficients) does not, and stands only where no width moves the bound.
- ReLU splitting (wide inputs, e.g. MNIST): fix the phase of the unstable neuron maximising
  ``w(lambda_j) * (-l_j u_j / (u_j - l_j))``: its coefficient in the optimised bound
  (``-lambda`` when negative, ``positive_weight * lambda`` when positive) times the
  height of its triangle relaxation (BaBSR-like).  The weight depends on the network
  (:func:`positive_weight`).  Children start from their parent's optimised slopes and
  multipliers (a warm start, memory-capped by ``warm_bytes``).

The measurements behind these choices, and the heuristics that lost, are in
``docs/verifier.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nnaudit.networks.lower import Lowered
from nnaudit.verify.bab.config import BabConfig, SplitScore
from nnaudit.verify.bab.queue import Chunk
from nnaudit.verify.bounds import LayerBounds, SpecBound, compute_bounds, spec_lower

#: ReLU scores: weight of a positive coefficient (the neuron's optimised lower line) against a
#: negative one (the triangle's upper line, whose whole height the split removes), on fully
#: connected networks; mnist_fc 256x4 prop 3 eps 0.05: 475 sub-domains with weight 1, 127 with
#: 0.5, 239 with 0.25, 1,471 with 0 (prop 11: 3,897 with 0.5, a timeout with 0)
POSITIVE_WEIGHT = 0.5
#: the same on networks with convolutions; oval21 cifar_base_kw img8194: 15,641 sub-domains
#: (52 s) with 0.5, 30,159 with 1, 1,691 (8 s) with 0
CONV_POSITIVE_WEIGHT = 0.0


def positive_weight(low: Lowered, config: BabConfig) -> float:
    """The weight of positive coefficients in the ReLU scores: ``config.positive_weight``, or by
    the network: :data:`CONV_POSITIVE_WEIGHT` when some ReLU acts on a feature map (a
    convolution's output), else :data:`POSITIVE_WEIGHT`.  Measured, not derived: the positive
    part steers splits to the dense layers' ReLUs, which pays on mnist_fc and not after
    convolutions (numbers above and in docs/verifier.md)."""
    if config.positive_weight is not None:
        return config.positive_weight
    spatial = any(n.kind == "relu" and sum(d > 1 for d in n.in_shape) > 1 for n in low.nodes)
    return CONV_POSITIVE_WEIGHT if spatial else POSITIVE_WEIGHT


class Brancher:
    """Splits sub-domains of one search (``c``, ``d``: the property's stacked rows)."""

    def __init__(self, low: Lowered, c: torch.Tensor, d: torch.Tensor, config: BabConfig, relu_mode: bool) -> None:
        self.low, self.c, self.d, self.cfg, self.relu_mode = low, c, d, config, relu_mode
        self.positive_weight = positive_weight(low, config)

    def split(self, sub: Chunk, sb: SpecBound, b: LayerBounds, idx: np.ndarray, rows: np.ndarray,
              pending: int) -> Chunk:
        """The two children of each sub-domain of ``sub`` (the batch's sub-domains ``idx``, whose
        most promising rows are ``rows``), left ones first; ``pending``: sub-domains queued."""
        if self.relu_mode:
            sub.warm = self._warm_start(sb, idx, pending)
        left, right = sub.take(np.arange(len(sub))), sub.take(np.arange(len(sub)))
        left.depth = left.depth + 1
        right.depth = right.depth + 1
        r = np.arange(len(sub))
        if not self.relu_mode:
            dim, sens = self._input_dims(sub, sb, idx, rows)
            if sens is not None:  # the gradient scores travel with the children, to be reused
                left.sens = right.sens = sens
            mid = (sub.lo[r, dim] + sub.hi[r, dim]) / 2
            left.hi = left.hi.copy()
            right.lo = right.lo.copy()
            left.hi[r, dim] = mid
            right.lo[r, dim] = mid
        else:
            node_k, neuron = self._pick_relu(sb, b, idx, rows, sub.splits)
            left.splits = [s.copy() for s in sub.splits]
            right.splits = [s.copy() for s in sub.splits]
            for k in set(node_k.tolist()):
                m = node_k == k
                left.splits[k][r[m], neuron[m]] = 1
                right.splits[k][r[m], neuron[m]] = -1
        return Chunk.join([left, right])

    def _input_dims(self, sub: Chunk, sb: SpecBound, idx: np.ndarray,
                    rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The input dimension to halve in each sub-domain of ``sub``, and the gradient scores'
        sensitivities (None with the smear score)."""
        a = np.abs(sb.a_in.detach().cpu().numpy()[idx, rows])
        width = sub.hi - sub.lo
        score = a * width
        score = np.where(score.max(axis=1, keepdims=True) > 0, score, width)
        sens = None
        if self.cfg.split_score is SplitScore.GRADIENT:  # the smear score stands where no width moves the bound
            sens = self.sensitivities(sub, rows)
            gains = sens * width
            score = np.where(gains.max(axis=1, keepdims=True) > 0, gains, score)
        return score.argmax(axis=1), sens

    def sensitivities(self, sub: Chunk, rows: np.ndarray) -> np.ndarray:
        """Per sub-domain and input dimension, how fast narrowing that dimension raises the lower
        bound of row ``rows``: ``d lb / d lo_i - d lb / d hi_i``, by autograd through a second bound
        pass (the one that decided the sub-domains runs without gradients).  Every
        ``gradient_every``-th depth; in between, a sub-domain reuses its parent's.  ``(D, n)``."""
        fresh = np.ones(len(sub), bool) if sub.sens is None else \
            (sub.depth % self.cfg.gradient_every == 0) | np.isnan(sub.sens).any(axis=1)
        sens = np.array(sub.sens, dtype=np.float64) if sub.sens is not None else np.zeros(sub.lo.shape)
        idx = np.flatnonzero(fresh)
        if len(idx) == 0:
            return sens
        x_lo = torch.tensor(sub.lo[idx], requires_grad=True)
        x_hi = torch.tensor(sub.hi[idx], requires_grad=True)
        with torch.enable_grad():
            b = compute_bounds(self.low, x_lo, x_hi, intermediate=self.cfg.intermediate)
            lower = spec_lower(self.low, b, self.c, self.d).lower
            picked = lower[torch.arange(len(idx)), torch.as_tensor(rows[idx])]
            g_lo, g_hi = torch.autograd.grad(picked.sum(), (x_lo, x_hi), allow_unused=True)
        g_lo = torch.zeros_like(x_lo) if g_lo is None else g_lo
        g_hi = torch.zeros_like(x_hi) if g_hi is None else g_hi
        sens[idx] = (g_lo - g_hi).detach().cpu().numpy()
        return sens

    def _warm_start(self, sb: SpecBound, idx: np.ndarray, pending: int) -> dict[str, dict[int, np.ndarray]] | None:
        """The optimised slopes and multipliers of sub-domains ``idx``, to start their children's
        optimisation from (float16: ~37 KB per sub-domain on mnist_fc 256x4); None once the
        queue's warm starts would pass ``warm_bytes``."""
        if sb.state is None:
            return None
        warm = {g: {k: v[idx].cpu().numpy().astype(np.float16) for k, v in part.items()} for g, part in sb.state.items()}
        per_domain = sum(v[0].nbytes for part in warm.values() for v in part.values())
        if (pending + 2 * len(idx)) * per_domain > self.cfg.warm_bytes:
            return None
        return warm

    def _pick_relu(self, sb: Any, b: LayerBounds, idx: np.ndarray, rows: np.ndarray,
                   splits: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The ReLU to split in each sub-domain ``idx``: (node index, neuron) arrays, by the
        BaBSR-like score of the module docstring."""
        scores, where = [], []
        for k, node in enumerate(self.low.nodes):
            coeff = sb.node_coeffs[k] if k < len(sb.node_coeffs) else None
            if node.kind != "relu" or coeff is None:
                continue
            lo, hi = b.pre_lo[k].cpu().numpy()[idx], b.pre_hi[k].cpu().numpy()[idx]
            raw = coeff.detach().cpu().numpy()[idx, rows]
            lam = np.maximum(-raw, 0) + self.positive_weight * np.maximum(raw, 0)
            unstable = (lo < 0) & (hi > 0) & (splits[k] == 0)
            height = np.where(unstable, -lo * hi / np.maximum(hi - lo, 1e-300), 0.0)
            scores.append(np.where(unstable, lam * height + 1e-12 * height, -1.0))
            where.append(np.stack([np.full(lo.shape[1], k), np.arange(lo.shape[1])]))
        score = np.concatenate(scores, axis=1)
        place = np.concatenate(where, axis=1)                                    # (2, N): node, neuron
        best = score.argmax(axis=1)
        return place[0, best], place[1, best]
