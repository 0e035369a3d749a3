"""Campaigns: many coarse, independent jobs on local processes or a Dask cluster, results in a SQLite store.

- :mod:`.executor`: :class:`Executor` with two back ends (:class:`Backend`:
  embedded process pool, or ``dask.distributed`` via ``--scheduler`` /
  ``NNAUDIT_SCHEDULER``), results streamed back as jobs finish;
- :mod:`.jobs`: :class:`Job` (items of one kind on one model), how a worker
  runs it (models loaded once per worker, sha256 checked) and its rows;
- :mod:`.runner`: :func:`run_campaign`, the client's loop: skip stored keys,
  run the rest, commit each job's rows to the store (``nnaudit.reports.store``);
- :mod:`.verify_suite`, :mod:`.regions` and :mod:`.attack`: the ``verify-suite``,
  ``regions --store`` and ``attack --store`` campaigns (``check`` with a store
  runs its checks through the last two).

See docs/scale.md for how this grows to many machines.  Names are resolved lazily.
"""

from __future__ import annotations

from nnaudit._lazy import lazy_getattr

_LAZY = {
    "Backend": "nnaudit.campaign.executor",
    "Executor": "nnaudit.campaign.executor",
    "ExecutorConfig": "nnaudit.campaign.executor",
    "CampaignError": "nnaudit.campaign.executor",
    "Job": "nnaudit.campaign.jobs",
    "JobKind": "nnaudit.campaign.jobs",
    "run_campaign": "nnaudit.campaign.runner",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
