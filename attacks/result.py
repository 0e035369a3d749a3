"""The one result type every attack returns.

An :class:`AttackResult` carries the adversarial inputs, which of them are
successes confirmed by onnxruntime on the original ONNX file, which ones the
torch model believed in but onnxruntime did not (conversion mismatches, never
counted as successes), the perturbation norms and the logits before and after.
All arrays are NumPy with the sample axis first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnaudit.attacks.threat import ThreatModel


@dataclass(frozen=True)
class AttackResult:
    """Outcome of one attack on a batch of ``B`` samples.

    - ``x``, ``x_adv``: float32 ``(B, *input_shape)``; ``x_adv`` is inside the
      threat model (checked in float64);
    - ``labels`` int64 ``(B,)``; ``targets`` int64 ``(B,)`` or None (untargeted);
    - ``success`` bool ``(B,)``: adversarial according to onnxruntime on the
      original file (the only successes that count);
    - ``model_success`` bool ``(B,)``: adversarial according to the torch model
      the attack differentiated;
    - ``mismatch`` bool ``(B,)``: ``model_success & ~success``;
    - ``norms``: ``"l0"``, ``"l2"``, ``"linf"`` -> float64 ``(B,)`` of ``x_adv - x``;
    - ``logits_clean``, ``logits_adv``: float64 ``(B, K)`` from onnxruntime.
    """

    attack: str
    threat: ThreatModel
    x: np.ndarray
    x_adv: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None
    success: np.ndarray
    model_success: np.ndarray
    mismatch: np.ndarray
    norms: dict[str, np.ndarray]
    logits_clean: np.ndarray
    logits_adv: np.ndarray
    time_s: float = 0.0
    device: str = "cpu"
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(len(self.x))

    @property
    def clean_correct(self) -> np.ndarray:
        """``(B,)`` bool: onnxruntime classifies the clean input as its label."""
        return self.logits_clean.argmax(axis=1) == self.labels

    @property
    def success_rate(self) -> float:
        """Confirmed successes over all samples."""
        return float(self.success.mean()) if self.num_samples else 0.0

    @property
    def robust_accuracy(self) -> float:
        """Fraction correctly classified and not broken (untargeted meaning)."""
        return float((self.clean_correct & ~self.success).mean()) if self.num_samples else 0.0

    @property
    def num_mismatches(self) -> int:
        return int(self.mismatch.sum())

    def median_norms(self) -> dict[str, float] | None:
        """Median L0/L2/L-infinity over confirmed successes; None when there are none."""
        if not self.success.any():
            return None
        return {k: float(np.median(v[self.success])) for k, v in self.norms.items()}

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest (no arrays)."""
        return {
            "attack": self.attack,
            "norm": self.threat.norm.value,
            "eps": self.threat.eps,
            "num_samples": self.num_samples,
            "targeted": self.targets is not None,
            "success_rate": self.success_rate,
            "robust_accuracy": self.robust_accuracy,
            "mismatches": self.num_mismatches,
            "median_perturbation": self.median_norms(),
            "time_s": self.time_s,
            "device": self.device,
            "seed": self.seed,
            "settings": dict(self.settings),
        }
