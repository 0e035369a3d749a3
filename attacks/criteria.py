"""What counts as adversarial: the criterion object, and the losses attacks use.

Targeting is a criterion, not a mode switch on the attacks: a
:class:`Criterion` holds the true labels and, for a targeted attack, the
target classes.  Attacks only ask it for a loss or a margin; the base class
asks it whether a final output is adversarial (on the torch model and on
onnxruntime alike).

Conventions (``logits`` are ``(B, K)``; every loss is per sample, ``(B,)``,
and attacks MINIMISE it):

- :meth:`Criterion.margin` is negative exactly when the sample is adversarial
  (untargeted: ``z_y - max_{j != y} z_j``; targeted: ``max_{j != t} z_j - z_t``);
- :meth:`Criterion.ce` is the cross-entropy pushed the attack's way;
- :meth:`Criterion.dlr` is the difference-of-logits-ratio loss of Croce &
  Hein (2020), invariant to shifts and scaling of the logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class Criterion:
    """Misclassification of ``labels`` or, with ``targets``, classification as ``targets``.

    Both are int64 tensors ``(B,)`` on the attack's device.  ``subset`` gives
    the criterion of some rows (attacks drop samples that already succeeded).
    """

    labels: torch.Tensor
    targets: torch.Tensor | None = None

    @property
    def targeted(self) -> bool:
        return self.targets is not None

    def subset(self, index: torch.Tensor) -> Criterion:
        """The criterion of rows ``index`` (a bool mask or int64 row numbers)."""
        import torch

        if index.dtype == torch.bool:
            index = index.nonzero()[:, 0]
        return Criterion(self.labels.index_select(0, index),
                         None if self.targets is None else self.targets.index_select(0, index))

    def goal(self) -> torch.Tensor:
        """The class each row's loss is written around: the target or the label."""
        return self.labels if self.targets is None else self.targets

    def margin(self, logits: torch.Tensor) -> torch.Tensor:
        """``< 0`` iff adversarial; the CW / margin loss with confidence 0."""
        goal = self.goal()
        own = logits.gather(1, goal[:, None])[:, 0]
        others = logits.scatter(1, goal[:, None], float("-inf")).amax(dim=1)
        return own - others if self.targets is None else others - own

    def is_adversarial(self, logits: torch.Tensor) -> torch.Tensor:
        """Adversarial by arg-max (first maximum on ties, as NumPy/onnxruntime): ``(B,)`` bool."""
        pred = logits.argmax(dim=1)
        return pred != self.labels if self.targets is None else pred == self.targets

    def not_adversarial(self, logits: torch.Tensor) -> torch.Tensor:
        """``~is_adversarial(logits)`` in one comparison (per-step bookkeeping on GPUs)."""
        pred = logits.argmax(dim=1)
        return pred == self.labels if self.targets is None else pred != self.targets

    def ce(self, logits: torch.Tensor) -> torch.Tensor:
        """Cross-entropy to minimise: ``-CE(label)`` untargeted, ``CE(target)`` targeted."""
        import torch.nn.functional as F

        loss = F.cross_entropy(logits, self.goal(), reduction="none")
        return -loss if self.targets is None else loss

    def ce_gradient(self, logits: torch.Tensor) -> torch.Tensor:
        """Gradient of ``sum_i CE(logits_i, goal_i)`` w.r.t. ``logits``: ``softmax(logits) - onehot(goal)``,
        ``(B, K)``, in closed form (no autograd; seeds a backward pass).

        The softmax runs over the leading dim of the transposed logits: on the
        CPU, torch's softmax over a short last dim (a few classes) is several
        times slower than over a leading one.
        """
        import torch

        probs = torch.softmax(logits.t(), dim=0).t()
        return probs.scatter_add_(1, self.goal()[:, None], probs.new_full((len(probs), 1), -1.0))

    def dlr(self, logits: torch.Tensor) -> torch.Tensor:
        """DLR loss to minimise (Croce & Hein 2020, eq. 6; targeted version eq. 7).

        Needs at least 3 classes (4 for the targeted form); with fewer, the
        denominator falls back to the logit range so the loss stays defined.
        """
        srt, _ = logits.sort(dim=1)
        k = logits.shape[1]
        top = srt[:, -1]
        if self.targets is None:
            low = srt[:, -3] if k >= 3 else srt[:, 0]
            return self.margin(logits) / (top - low + 1e-12)
        low = 0.5 * (srt[:, -3] + srt[:, -4]) if k >= 4 else srt[:, 0]
        own = logits.gather(1, self.labels[:, None])[:, 0]
        tgt = logits.gather(1, self.targets[:, None])[:, 0]
        return (own - tgt) / (top - low + 1e-12)


def adversarial_numpy(logits: np.ndarray, labels: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
    """:meth:`Criterion.is_adversarial` for NumPy logits (onnxruntime outputs)."""
    pred = np.asarray(logits).reshape(len(logits), -1).argmax(axis=1)
    return pred != labels if targets is None else pred == targets
