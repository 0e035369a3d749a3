"""The ``adapt`` body of the nnaudit result format (reports/SCHEMA.md).

One function turns a finished :class:`~nnaudit.adaptation.trainer.DannRun`
into the JSON body the report renders: per-epoch curves, the final
source-only vs DANN comparison, the 2-D PCA of source/target features before
(source-only model) and after (DANN) adaptation, and for 2-D inputs the
decision boundaries of both models on a grid (target points marked right or
wrong per model), and the gap table: source-only / DANN / train-on-target.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnaudit.adaptation.data import DomainData
from nnaudit.adaptation.gap import gap_closed
from nnaudit.adaptation.metrics import boundary_grid, pca_2d

MAX_PCA_POINTS = 300
GRID_SIZE = 60


def adapt_body(run: Any, data: DomainData, export: Any = None, on_target: float | None = None) -> dict[str, Any]:
    """The ``adapt`` result body of ``run`` on ``data``; ``export`` is an
    :class:`~nnaudit.adaptation.export.ExportResult` or None; ``on_target`` the
    train-on-target accuracy (:func:`~nnaudit.adaptation.gap.train_on_target`), when measured."""
    body: dict[str, Any] = {
        "task": data.name,
        "device": run.device,
        "epochs": run.epochs,
        "final": run.final,
        "features": {"pca": _pca(run, data)},
        "time_s": round(run.time_s, 3),
        "time_per_epoch_s": None if run.time_per_epoch_s is None else round(run.time_per_epoch_s, 4),
        "resumed_from_epoch": run.resumed_from,
        "export": export.to_dict() if export is not None else None,
    }
    if data.input_shape == (2,):
        body["decision_boundary"] = decision_boundary(run, data)
    body["gap"] = gap_record(run.final, on_target, transductive=data.transductive)
    return body


def gap_record(final: dict[str, Any], on_target: float | None, *, transductive: bool = False) -> dict[str, Any]:
    """Target accuracy of source-only, DANN and train-on-target, and the fraction
    of the gap DANN closes (None where a number is missing or there is no gap)."""
    so = (final.get("source_only") or {}).get("target_accuracy")
    da = (final.get("dann") or {}).get("target_accuracy")
    closed = gap_closed(so, da, on_target) if None not in (so, da, on_target) else None
    return {"source_only": so, "dann": da, "train_on_target": on_target,
            "closed": None if closed is None else round(closed, 6), "transductive": transductive}


def partial_body(task: str, device: str, epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """The body while a run is in progress: the epochs so far, no final."""
    return {"task": task, "device": device, "epochs": list(epochs), "final": None,
            "features": None, "export": None}


def _pca(run: Any, data: DomainData) -> dict[str, Any]:
    s, t = data.source_eval.x, data.target_eval.x
    seed = run.config.seed
    after = pca_2d(run.features(s), run.features(t), max_points=MAX_PCA_POINTS, seed=seed)
    before = None
    if run.source_only is not None:
        before = pca_2d(run.features(s, model="source_only"), run.features(t, model="source_only"),
                        max_points=MAX_PCA_POINTS, seed=seed)
    return {"before": before, "after": after}


def decision_boundary(run: Any, data: DomainData, size: int = GRID_SIZE) -> dict[str, Any]:
    """Predicted class of each model on a ``size`` x ``size`` grid over the
    training points; ``dann[i][j]`` is the class at ``(grid_x[j], grid_y[i])``."""
    pts = np.concatenate([data.source.x, data.target.x])
    gx, gy = boundary_grid(pts, size=size)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
    out: dict[str, Any] = {"grid_x": np.round(gx, 5).tolist(), "grid_y": np.round(gy, 5).tolist()}
    for name in ("dann", "source_only"):
        if name == "source_only" and run.source_only is None:
            out[name] = None
            continue
        out[name] = run.logits(grid, model=name).argmax(axis=1).reshape(size, size).tolist()
    out["source"] = {"x": np.round(data.source.x, 5).tolist(), "y": data.source.y.tolist()}
    out["target"] = {"x": np.round(data.target.x, 5).tolist()}
    if data.target.y is not None:  # for colouring right and wrong predictions; never used in training
        out["target"]["y"] = data.target.y.tolist()
        out["target"]["correct"] = {
            name: (run.logits(data.target.x, model=name).argmax(axis=1) == data.target.y).tolist()
            for name in ("dann", "source_only") if out[name] is not None}
    return out
