"""The client's loop: skip what the store holds, run the rest, store each result as it arrives.

The client is the store's one writer.  Rows are committed job by job as the
executor hands them back, so ``kill -9`` of the client loses only the jobs
still running, and the same command run again submits only the items whose
keys are not stored yet.  A job redone by the cluster (its worker died) or
run twice for any reason is stored once: the store ignores a key it holds,
except that an error row gives way to a later result (a re-run retries the
items that raised).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from nnaudit.campaign.executor import Executor
from nnaudit.campaign.jobs import Job
from nnaudit.reports.store import JobStatus, ResultStore, StoredJob

log = logging.getLogger(__name__)


@dataclass
class CampaignStats:
    """What one run of a campaign did (counts of items, i.e. of store rows)."""

    items: int = 0        # items in the campaign
    skipped: int = 0      # already stored: not run again
    stored: int = 0       # new rows written by this run
    duplicates: int = 0   # rows that came back for keys already stored (a redone job), ignored
    errors: int = 0       # new error rows (an item that raised)
    retried: int = 0      # items whose stored row was an error, run again

    def line(self) -> str:
        """The counts in words, for the summary line."""
        return (f"{self.items} jobs: {self.stored} run now, {self.skipped} already stored"
                + (f" ({self.retried} retried after an error)" if self.retried else "")
                + (f", {self.errors} errors" if self.errors else ""))


def pending(jobs: Sequence[Job], store: ResultStore) -> tuple[list[Job], int, int]:
    """The jobs with only their items not in ``store`` (jobs left with none dropped), how many items were
    skipped, and how many of those pending are retried after an error.

    Items stored as errors are pending again: a later run retries them (a worker's transient fault, a
    memory budget raised since), and their result then replaces the error row."""
    out, skipped, retried, known = [], 0, 0, {}
    for job in jobs:
        sha = job.model.sha256 if job.model is not None else ""
        group = (sha, job.settings_hash)
        if group not in known:
            known[group] = (store.keys(sha, job.settings_hash, JobStatus.OK),
                            store.keys(sha, job.settings_hash, JobStatus.ERROR))
        have, errors = known[group]
        items = tuple(item for item in job.items if item.key not in have)
        skipped += len(job.items) - len(items)
        retried += sum(1 for item in items if item.key in errors)
        if items:
            out.append(job if len(items) == len(job.items) else replace(job, items=items))
    return out, skipped, retried


def run_campaign(executor: Executor, store: ResultStore, jobs: Sequence[Job], *,
                 on_rows: Callable[[list[StoredJob]], None] | None = None) -> CampaignStats:
    """Run the items of ``jobs`` not yet in ``store`` on ``executor``, storing every result as it arrives.

    ``on_rows(rows)`` is called after each job's rows are committed (progress)."""
    todo, skipped, retried = pending(jobs, store)
    stats = CampaignStats(items=sum(len(j.items) for j in jobs), skipped=skipped, retried=retried)
    for job in todo:
        if job.model is not None:
            store.add_model(job.model.sha256, job.model.path)
    for rows in executor.run(todo):
        new = store.put_many(rows)
        stats.stored += new
        stats.duplicates += len(rows) - new
        stats.errors += sum(1 for r in rows if r.status is JobStatus.ERROR) if new == len(rows) else 0
        if on_rows is not None:
            on_rows(rows)
    log.info("campaign: %s", stats.line())
    return stats
