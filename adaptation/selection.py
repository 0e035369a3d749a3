"""Model selection without target labels: which epoch's weights a run keeps.

``Selection.LAST`` keeps the last epoch (the paper's fixed budget).
``Selection.ENTROPY`` keeps, over the second half of training, the epoch with
the lowest source validation error plus the mean entropy of the predictions
on the unlabelled training target (normalised by ``log C``, so in [0, 1]):
a misaligned target region sits near the decision boundary and gets
uncertain predictions (the "low-density separation" view of adaptation).
``Selection.BOUND`` keeps, over the second half of training, the epoch with
the lowest estimate of Ben-David et al.'s target-error bound
``source error + 1/2 d_A``: the source validation error plus the domain
separability ``2 * domain_accuracy - 1`` seen by the run's own domain
classifier on the scored source and target *inputs* (no target labels).
The source-only baseline is selected by its source validation error over
the same epochs, so both models get the same kind of choice.
"""

from __future__ import annotations

import copy
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # config.py imports this module, and importing the config must not import torch
    from torch import nn


class Selection(str, Enum):
    """Which epoch's weights a run keeps."""

    LAST = "last"
    BOUND = "bound"
    ENTROPY = "entropy"


def bound_score(record: dict[str, Any]) -> float:
    """``source error + max(0, 2 * domain_accuracy - 1)`` of a DANN epoch record."""
    d = record["dann"]
    return (1.0 - d["source_accuracy"]) + max(0.0, 2.0 * d["domain_accuracy"] - 1.0)


def entropy_score(record: dict[str, Any]) -> float:
    """``source error + normalised mean target prediction entropy`` of a DANN epoch record."""
    d = record["dann"]
    return (1.0 - d["source_accuracy"]) + d["target_entropy"]


_SCORES = {Selection.BOUND: bound_score, Selection.ENTROPY: entropy_score}


class Selector:
    """Keeps the weights of the best epoch so far of DANN and of the baseline."""

    def __init__(self, mode: Selection, epochs: int) -> None:
        self.mode, self.start = mode, epochs // 2
        self.best: dict[str, Any] = {}

    def update(self, record: dict[str, Any], dann: nn.Module, base: nn.Module | None) -> None:
        """Offer the weights after epoch ``record["epoch"]``."""
        if self.mode is Selection.LAST or record["epoch"] <= self.start:
            return
        scores = {"dann": _SCORES[self.mode](record)}
        if base is not None:
            scores["source_only"] = 1.0 - record["source_only"]["source_accuracy"]
        for name, model in (("dann", dann), ("source_only", base)):
            if name in scores and (name not in self.best or scores[name] < self.best[name]["score"]):
                self.best[name] = {"score": scores[name], "epoch": record["epoch"],
                                   "state": copy.deepcopy(model.state_dict())}

    def restore(self, dann: nn.Module, base: nn.Module | None) -> dict[str, int]:
        """Load the kept weights; returns the selected epoch per model."""
        chosen = {}
        for name, model in (("dann", dann), ("source_only", base)):
            if model is not None and name in self.best:
                model.load_state_dict(self.best[name]["state"])
                chosen[name] = self.best[name]["epoch"]
        return chosen

    def state_dict(self) -> dict[str, Any]:
        return self.best

    def load_state_dict(self, best: dict[str, Any] | None) -> None:
        self.best = dict(best or {})
