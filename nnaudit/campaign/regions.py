"""Region safety as a campaign: one job per image, results in the store, the ``regions`` document from it.

A job carries its image (``x[i]``, ``y[i]``: a few KB) and the run's
:class:`~nnaudit.verify.regions.run.RunPlan`; the worker checks every region
of it with :func:`nnaudit.verify.regions.api.check_image` and onnxruntime
confirms each counterexample on the model's file, as ``nnaudit regions``
does in one process.  The store key is ``image:INDEX``; the settings hash
leaves out which images were asked for, so a longer run (``--limit``) reuses
the images a shorter one stored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnaudit.campaign.executor import Executor
from nnaudit.campaign.jobs import Item, Job, JobKind, ModelRef
from nnaudit.campaign.runner import CampaignStats, run_campaign
from nnaudit.reports.store import JobStatus, ResultStore


@dataclass(frozen=True)
class RegionsCampaign:
    """What the client hands the campaign: the model, images, plan and the settings it records."""

    network: Any            # the loaded Network (its file and sha256 travel to the workers, not itself)
    x: np.ndarray           # (N, *input_shape)
    y: np.ndarray           # (N,)
    plan: Any               # RunPlan
    settings: dict[str, Any]   # the document's settings (regions_settings)


def model_ref(network: Any) -> ModelRef:
    """How workers load ``network``: its file, sha256 and input normalisation."""
    norm = getattr(network, "normalisation", None)
    return ModelRef(str(network.source), network.sha256, None if norm is None else tuple(norm.mean),
                    None if norm is None else tuple(norm.std))


def image_jobs(campaign: RegionsCampaign, digest: str) -> list[Job]:
    """One job per planned image."""
    ref = model_ref(campaign.network)
    return [Job(JobKind.REGIONS, ref, digest,
                (Item(f"image:{i}", (i, np.asarray(campaign.x[i]), int(campaign.y[i]))),), campaign.plan)
            for i in campaign.plan.indices]


def store_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that make the store's hash: the document's, without the image indices."""
    return {k: v for k, v in settings.items() if k not in ("indices", "num_images")}


def run_images(campaign: RegionsCampaign, executor: Executor, store: ResultStore, *,
               progress: Callable[[int, int], None] | None = None) -> tuple[list[dict[str, Any]], list[str], CampaignStats]:
    """Run the images not yet stored; returns the image entries in plan order, the error messages of images
    whose job raised (their entries have ``skipped`` saying so) and the campaign's counts."""
    digest = store.add_settings("regions", store_settings(campaign.settings))
    per_image = len(campaign.plan.regions) * (2 if campaign.plan.method == "both" else 1)
    stats = run_campaign(executor, store, image_jobs(campaign, digest),
                         on_rows=None if progress is None else lambda rows: progress(per_image * len(rows), _unsafe(rows)))
    images, errors = [], []
    sha = campaign.network.sha256
    for i in campaign.plan.indices:
        row = store.get(sha, digest, f"image:{i}")
        if row is None:
            raise AssertionError(f"image {i}: no stored result after the campaign")  # run_campaign stores every job
        if row.status is JobStatus.OK:
            images.append(row.result)
        else:
            errors.append(f"image {i}: {row.error}")
            images.append({"index": i, "label": int(campaign.y[i]), "predicted": None,
                           "shape": list(_layout(campaign).shape),
                           "x": np.asarray(campaign.x[i], dtype=np.float64).reshape(-1).tolist(), "regions": [],
                           "skipped": f"error: {row.error}"})
    return images, errors, stats


def run_image(network: Any, item: Item, job: Job) -> dict[str, Any]:
    """Check every region of one image on a worker; its ``regions`` document entry."""
    from nnaudit.verify.regions.api import check_image
    from nnaudit.verify.regions.layout import layout_of

    index, x, label = item.spec
    plan = job.params
    image = check_image(network, x, label, list(plan.regions), plan.manipulation, method=plan.method,
                        config=plan.config, ort=_session(job.model), index=index,
                        layout=plan.layout or layout_of(network))
    return image.to_dict()


@functools.lru_cache(maxsize=4)
def _session(ref: ModelRef) -> Any:
    """One onnxruntime session per model and worker process (a cache, like the model's)."""
    from nnaudit.campaign.jobs import load_model
    from nnaudit.networks.runtime import reference

    return reference(load_model(ref))


def _layout(campaign: RegionsCampaign) -> Any:
    from nnaudit.verify.regions.layout import layout_of

    return campaign.plan.layout or layout_of(campaign.network)


def _unsafe(rows: list[Any]) -> int:
    """How many regions of the stored image results ``rows`` are unsafe (progress)."""
    return sum(1 for row in rows for r in ((row.result or {}).get("regions") or []) if r.get("verdict") == "unsafe")
