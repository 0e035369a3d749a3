"""The resumable runner of region safety over many images.

It builds the ``regions`` result document (``reports/SCHEMA.md``), checks
every region of every image with :func:`nnaudit.verify.regions.api.regions`,
and writes the JSON atomically after every image and every few regions, so a
crash or Ctrl-C leaves a valid file with ``complete: false``.  With
``resume=True`` an existing file is continued: its model sha256 and settings
must match the run's, finished regions are kept and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnaudit.errors import ConfigError
from nnaudit.verify.regions.api import RegionConfig, check_image, method_list
from nnaudit.verify.regions.result import ImageResult, RegionResult
from nnaudit.verify.regions.spec import ImageLayout, ImageRegion, Manipulation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """What to check: images by index, regions, manipulation, method."""

    indices: tuple[int, ...]
    regions: tuple[ImageRegion, ...]
    manipulation: Manipulation
    method: str
    grid: tuple[int, int] | None
    patch: int | None
    config: RegionConfig
    flush_every: int = 8       # write the JSON after this many new region results


def settings_of(plan: RunPlan, data: str) -> dict[str, Any]:
    """The ``settings`` header of the result: everything a resume must match."""
    return {"data": data, "indices": list(plan.indices), "grid": None if plan.grid is None else list(plan.grid),
            "patch": plan.patch, "method": plan.method, "manipulation": plan.manipulation.to_dict(),
            **plan.config.to_dict()}


def new_document(network: Any, plan: RunPlan, data: str) -> dict[str, Any]:
    from nnaudit.reports.schema import new_result

    doc = new_result("regions", network=network, settings=settings_of(plan, data),
                     seeds={"attack": plan.config.exact.seed})
    doc.update(manipulation=plan.manipulation.to_dict(), grid=None if plan.grid is None else list(plan.grid),
               patch=plan.patch, methods=method_list(plan.method), images=[])
    return doc


def load_for_resume(path: Path, network: Any, plan: RunPlan, data: str) -> dict[str, Any]:
    """The existing document at ``path``, checked against this run."""
    from nnaudit.reports.schema import read_result

    doc = read_result(path, kind="regions")
    have = (doc.get("model") or {}).get("sha256")
    if have != network.sha256:
        raise ConfigError(f"{path}: cannot resume: it was made with a model of sha256 {str(have)[:12]}…, "
                          f"this model is {network.sha256[:12]}…")
    want = settings_of(plan, data)
    diff = sorted(k for k in set(want) | set(doc.get("settings", {})) if doc["settings"].get(k) != want.get(k))
    if diff:
        raise ConfigError(f"{path}: cannot resume: settings differ in {', '.join(diff)} "
                          f"(file: {[doc['settings'].get(k) for k in diff]}, now: {[want.get(k) for k in diff]})")
    return doc


def run(network: Any, x: np.ndarray, y: np.ndarray, plan: RunPlan, *, data: str, json_path: Path | None,
        resume: bool = False, progress: Callable[[int], None] | None = None,
        ort: Any = None) -> tuple[dict[str, Any], list[ImageResult]]:
    """Check every planned region; returns the document and the image results.

    ``progress(n)`` is called with the number of region results just added
    (including ones kept from a resumed file).  On KeyboardInterrupt the
    document is written with ``complete: false`` and the interrupt re-raised.
    """
    from nnaudit.networks.runtime import OnnxRuntimeModel
    from nnaudit.reports.schema import finish, write_json

    if resume and json_path is not None and json_path.exists():
        doc = load_for_resume(json_path, network, plan, data)
    else:
        doc = new_document(network, plan, data)
    ort = ort if ort is not None else OnnxRuntimeModel(network.source)
    previous = {int(im["index"]): im for im in doc["images"]}
    doc["images"] = []
    results: list[ImageResult] = []
    pending = [0]

    def save(complete: bool = False) -> None:
        if json_path is not None:
            write_json(finish(doc, complete=complete) if complete else dict(doc, complete=False), json_path)

    try:
        for index in plan.indices:
            old = previous.get(index)
            done = {} if old is None else {(r["id"], r["method"]): RegionResult.from_dict(r) for r in old["regions"]}
            if progress is not None and done:
                progress(len(done))
            doc["images"].append(old or {"index": index, "label": int(y[index]), "predicted": None,
                                         "shape": image_shape(network), "x": np.asarray(x[index], dtype=np.float64).reshape(-1),
                                         "regions": []})
            slot = len(doc["images"]) - 1

            def on_result(res: RegionResult, slot: int = slot) -> None:
                doc["images"][slot]["regions"].append(res.to_dict())
                pending[0] += 1
                if progress is not None:
                    progress(1)
                if pending[0] >= plan.flush_every:
                    pending[0] = 0
                    save()

            image = check_image(network, x[index], int(y[index]), list(plan.regions), plan.manipulation,
                            method=plan.method, config=plan.config, ort=ort, index=index, done=done,
                            on_result=on_result)
            doc["images"][slot] = image.to_dict()
            if image.skipped and progress is not None:
                progress(len(plan.regions) * len(method_list(plan.method)) - len(done))
            results.append(image)
            save()
    except KeyboardInterrupt:
        save()
        raise
    save(complete=True)
    return doc, results


def image_shape(network: Any) -> list[int]:
    """The ``shape`` recorded for an image: ``[H, W]`` for one channel, else the input shape."""
    layout = ImageLayout.from_input_shape(network.input_shape)
    return [layout.height, layout.width] if layout.channels == 1 else list(network.input_shape)


def summary(results: Sequence[ImageResult]) -> dict[str, dict[str, int]]:
    """``{method: {verdict: count}}`` over all images."""
    out: dict[str, dict[str, int]] = {}
    for im in results:
        for m, counts in im.counts().items():
            tgt = out.setdefault(m, dict.fromkeys(counts, 0))
            for k, v in counts.items():
                tgt[k] += v
    return out
