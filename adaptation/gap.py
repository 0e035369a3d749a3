"""How much of the domain gap DANN closes, and the train-on-target bound it needs.

The gap of a shift is ``train_on_target - source_only`` (target accuracy of
the same network trained on the labelled target, against trained on the
labelled source only); DANN closes the fraction
``(dann - source_only) / (train_on_target - source_only)`` of it (1: as good
as having the target labels, 0: no gain, < 0: worse than not adapting).

``train_on_target`` trains the label path alone (no domain loss) on the
labelled target with as many SGD steps as the DANN run.  For a transductive
task (the scored target set is the training target itself) it is a k-fold
cross-validation: every target sample is scored by a model that did not see
its label.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nnaudit.adaptation.config import DannConfig
from nnaudit.adaptation.data import DomainData, Split
from nnaudit.adaptation.selection import Selection
from nnaudit.errors import DataError

FOLDS = 5


def gap_closed(source_only: float, dann: float, on_target: float) -> float | None:
    """Fraction of the gap ``on_target - source_only`` that ``dann`` closes;
    None when there is no gap to close (``on_target <= source_only``)."""
    gap = on_target - source_only
    if not gap > 0:
        return None
    return (dann - source_only) / gap


def _steps(n_source: int, n_target: int, config: DannConfig) -> int:
    """SGD steps of a DANN run on these set sizes (as the trainer counts them)."""
    return config.epochs * math.ceil(max(n_source, n_target) / (config.batch_size // 2))


def train_on_target(data: DomainData, config: DannConfig) -> float:
    """Target accuracy of the label path trained on the labelled target (see module doc)."""
    from nnaudit.adaptation.trainer import train_dann

    if data.target.y is None or data.target_eval.y is None:
        raise DataError(f"{data.name}: train-on-target needs target labels")
    steps = _steps(len(data.source), len(data.target), config)
    if not data.transductive:
        return _fit_and_score(data, data.target, data.target_eval, config, steps, train_dann)
    rng = np.random.default_rng([config.seed, 17])
    order = rng.permutation(len(data.target))
    hits = 0
    for fold in np.array_split(order, FOLDS):
        keep = np.setdiff1d(order, fold)
        train = Split(data.target.x[keep], data.target.y[keep])
        test = Split(data.target.x[fold], data.target.y[fold])
        hits += round(_fit_and_score(data, train, test, config, steps, train_dann) * len(fold))
    return hits / len(order)


def _fit_and_score(data: DomainData, train: Split, test: Split, config: DannConfig, steps: int, train_dann) -> float:
    per_epoch = math.ceil(len(train) / (config.batch_size // 2))
    # a fixed budget (select=last): here the "source" validation set is the scored target test set
    plain = dataclasses.replace(config, source_only=False, fixed_lambda=0.0, domain_weight=0.0, select=Selection.LAST,
                                a_distance_every=0, epochs=max(1, round(steps / per_epoch)))
    task = DomainData(f"{data.name}-on-target", train, train, data.num_classes, test, test)
    return float(train_dann(task, plain).final["dann"]["target_accuracy"])
