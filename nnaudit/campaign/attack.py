"""Robust accuracy as a campaign: one job per batch of samples, results in the store, ONE ``attack`` document.

A job carries its batch (``x[lo:hi]``, ``y[lo:hi]``) and the run's
:class:`~nnaudit.runs.attack.AttackRun`; the worker runs the same
:func:`nnaudit.attacks.evaluation.evaluate` as ``nnaudit attack`` on it
(onnxruntime re-checks every success there) with a seed derived from the run's
seed and the batch number (:func:`batch_seed`), and returns, per (eps,
attack), the GLOBAL indices it broke with the per-sample norms of those
confirmed successes, its mismatches and time, and its first gallery examples.
:func:`merge` puts the batches back together: broken sets are the union,
medians are taken over all the per-sample norms (exact, not a median of
medians), times and mismatches are summed, and the gallery is the first
``examples`` broken samples per eps, as in one process.

The store key is ``samples:LO-HI:DIGEST`` (DIGEST: sha256 of the batch's
``x`` and ``y``), so the same command again skips stored batches and other
data is never taken for stored results; the settings hash holds every option
that changes a batch's result (not the data's name or ``--limit``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnaudit.campaign.executor import CampaignError, Executor
from nnaudit.campaign.jobs import Item, Job, JobKind
from nnaudit.campaign.regions import model_ref
from nnaudit.campaign.runner import CampaignStats, run_campaign
from nnaudit.reports.store import JobStatus, ResultStore

#: samples per job unless --chunk says otherwise (coarse: the attacks' own batch is 256)
DEFAULT_CHUNK = 128
NORMS = ("l0", "l2", "linf")   # always measured; a result may add more (FAB in L1: "l1")


@dataclass(frozen=True)
class AttackCampaign:
    """What the client hands the campaign: the model, the samples and the run."""

    network: Any            # the loaded Network (its file and sha256 travel to the workers, not itself)
    x: np.ndarray           # (N, *input_shape)
    y: np.ndarray           # (N,)
    config: Any             # nnaudit.runs.attack.AttackRun
    chunk: int = DEFAULT_CHUNK   # samples per job


def batch_seed(seed: int, batch: int) -> int:
    """The seed of batch number ``batch`` of a run seeded ``seed`` (deterministic, independent per batch)."""
    return int(np.random.SeedSequence([int(seed) & (2**63 - 1), int(batch)]).generate_state(1, np.uint64)[0]
               & (2**63 - 1))


def store_settings(campaign: AttackCampaign) -> dict[str, Any]:
    """What makes the store's settings hash: every option that changes a batch's result."""
    c = campaign.config
    plan = c.settings(0)
    plan.pop("num_samples")
    return {"kind": "attack", **plan, "seed": c.seed, "device": c.device, "batch_size": c.batch_size,
            "examples": c.examples, "chunk": campaign.chunk}


def batch_jobs(campaign: AttackCampaign, digest: str) -> list[Job]:
    """One job per ``chunk`` samples, in sample order."""
    ref = model_ref(campaign.network)
    jobs = []
    for number, lo in enumerate(range(0, len(campaign.y), campaign.chunk)):
        hi = min(len(campaign.y), lo + campaign.chunk)
        x, y = np.ascontiguousarray(campaign.x[lo:hi]), np.ascontiguousarray(campaign.y[lo:hi])
        data = hashlib.sha256(x.tobytes() + np.asarray(y, np.int64).tobytes()).hexdigest()[:16]
        jobs.append(Job(JobKind.ATTACK, ref, digest, (Item(f"samples:{lo}-{hi}:{data}", (lo, number, x, y)),),
                        campaign.config))
    return jobs


def run_batches(campaign: AttackCampaign, executor: Executor, store: ResultStore, *,
                progress: Callable[[int], None] | None = None) -> tuple[list[dict[str, Any]], CampaignStats]:
    """Run the batches not yet stored; returns every batch's result in sample order and the campaign's counts.

    CampaignError naming the batches when a job raised (their error rows stay in the store)."""
    digest = store.add_settings("attack", store_settings(campaign))
    jobs = batch_jobs(campaign, digest)
    sizes = {job.items[0].key: len(job.items[0].spec[3]) for job in jobs}
    stats = run_campaign(executor, store, jobs, on_rows=None if progress is None else
                         lambda rows: progress(sum(sizes.get(r.key, 0) for r in rows)))
    results, errors = [], []
    for job in jobs:
        row = store.get(campaign.network.sha256, digest, job.items[0].key)
        if row is None:
            raise AssertionError(f"{job.items[0].key}: no stored result after the campaign")
        if row.status is JobStatus.OK:
            results.append(row.result)
        else:
            errors.append(f"{row.key.rsplit(':', 1)[0]}: {row.error}")
    if errors:
        raise CampaignError(f"attack campaign: {len(errors)} of {len(jobs)} batches raised, so no robust accuracy "
                            f"can be given ({'; '.join(errors[:3])}); their errors are kept in {store.path}")
    return results, stats


def run_batch(network: Any, item: Any, job: Job) -> dict[str, Any]:
    """Attack one batch on a worker; what :func:`merge` needs of it (indices global)."""
    from nnaudit.attacks.evaluation import evaluate

    lo, number, x, y = item.spec
    c = job.params
    names, options, cascade = c.plan()
    ev = evaluate(network, x, y, attacks=list(names), eps=list(c.eps), norm=c.norm, bounds=c.bounds,
                  device=c.device, seed=batch_seed(c.seed, number), batch_size=c.batch_size, threads=None,
                  options=options or None, cascade=cascade, targeted=c.targets())
    cells = []
    for (eps, attack), cell in ev.cells.items():
        res = cell.result
        ok = np.zeros(0, dtype=bool) if res is None else res.success
        norms = {k: v[ok].tolist() for k, v in res.norms.items()} if res is not None else {k: [] for k in NORMS}
        cells.append({"eps": eps, "attack": attack, "broken": (np.flatnonzero(cell.broken) + lo).tolist(),
                      "norms": norms, "mismatches": int(cell.mismatches), "time_s": float(cell.time_s)})
    examples = ev.to_dict(examples=c.examples)["examples"]
    for ex in examples:
        ex["index"] += lo
    return {"start": lo, "count": len(y), "seed": batch_seed(c.seed, number), "device": ev.device,
            "attacks": list(ev.attacks), "eps": list(ev.eps), "norm": ev.norm.value,
            "clean_correct": (np.flatnonzero(ev.clean_correct) + lo).tolist(), "cells": cells, "examples": examples}


def merge(campaign: AttackCampaign, batches: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """The :class:`~nnaudit.attacks.evaluation.Evaluation` of all the batches (cells without per-sample
    results) and the gallery examples chosen as one process chooses them."""
    from nnaudit.attacks.evaluation import Cell, Evaluation
    from nnaudit.attacks.threat import Norm

    n = len(campaign.y)
    first = batches[0]
    correct = np.zeros(n, dtype=bool)
    broken: dict[tuple[float, str], np.ndarray] = {}
    norms: dict[tuple[float, str], dict[str, list[float]]] = {}
    counts: dict[tuple[float, str], list[float]] = {}
    for batch in batches:
        correct[np.asarray(batch["clean_correct"], dtype=np.int64)] = True
        for cell in batch["cells"]:
            key = (float(cell["eps"]), cell["attack"])
            broken.setdefault(key, np.zeros(n, dtype=bool))[np.asarray(cell["broken"], dtype=np.int64)] = True
            for k, values in cell["norms"].items():   # l0/l2/linf, and l1 for an L1 run
                norms.setdefault(key, {m: [] for m in NORMS}).setdefault(k, []).extend(values)
            total = counts.setdefault(key, [0, 0.0])
            total[0] += cell["mismatches"]
            total[1] += cell["time_s"]
    cells = {key: Cell(key[0], key[1], mask, int(counts[key][0]), _medians(norms[key]), float(counts[key][1]))
             for key, mask in broken.items()}
    ev = Evaluation(norm=Norm.parse(first["norm"]), eps=tuple(float(e) for e in first["eps"]),
                    attacks=tuple(first["attacks"]), x=np.asarray(campaign.x), y=np.asarray(campaign.y),
                    clean_correct=correct, attacked=np.flatnonzero(correct), cells=cells, device=first["device"],
                    cascade=campaign.config.plan()[2], targeted=campaign.config.targets())
    gallery = []
    for eps in ev.eps:
        chosen = [ex for batch in batches for ex in batch["examples"] if float(ex["eps"]) == eps]
        gallery += chosen[:campaign.config.examples]
    return ev, gallery


def _medians(norms: dict[str, list[float]]) -> dict[str, float] | None:
    """Medians of the per-sample norms of all confirmed successes (None when there are none)."""
    if not norms["l0"]:
        return None
    return {k: float(np.median(np.asarray(v, dtype=np.float64))) for k, v in norms.items()}
