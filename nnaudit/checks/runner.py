"""Run the checks of a checks file: prepare all (bad input fails first), then run each.

:func:`run_checks` is what ``nnaudit check`` calls; the pytest items call
:func:`run_check` one check at a time.  A check that raises becomes an
``error`` outcome naming the check, so one broken check never hides the
others' results.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nnaudit.checks.adapters import Runner, RunSettings, naming_key, prepare
from nnaudit.checks.outcome import CheckOutcome, Judgement, Status
from nnaudit.checks.kinds import Check
from nnaudit.checks.baseline import Baseline, apply, open_baseline
from nnaudit.checks.warm import RunCache
from nnaudit.errors import NnauditError

log = logging.getLogger(__name__)


def run_checks(checks: Sequence[Check], settings: RunSettings = RunSettings(), *,
               unknown_is_failure: bool = False,
               on_outcome: Callable[[CheckOutcome], None] | None = None,
               cache: RunCache | None = None) -> list[CheckOutcome]:
    """Prepare every check (raising NnauditError on bad input, a missing
    baseline included, before any work), loading each model and data set once
    (:class:`RunCache`), then run them in order and compare each with its
    baseline; ``on_outcome`` is called after each."""
    baselines = open_baselines(checks, settings)
    cache = cache if cache is not None else RunCache()
    runners = [(check, _prepare_named(check, settings, cache)) for check in checks]
    outcomes = []
    for check, go in runners:
        outcome = execute(check, go, unknown_is_failure=unknown_is_failure)
        base = baselines.get(baseline_of(check, settings))
        if base is not None:
            outcome = inconclusive_policy(apply(outcome, base, max_drop=check.max_drop), check, unknown_is_failure)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


def _prepare_named(check: Check, settings: RunSettings, cache: RunCache) -> Runner:
    """:func:`prepare`, with bad input also naming the checks file and the check (issue #23)."""
    with naming_key(check):
        return prepare(check, settings, cache)


def baseline_of(check: Check, settings: RunSettings) -> Path | None:
    """The baseline ``check`` is compared with: ``--baseline``, else the check's ``baseline`` key."""
    return (settings.baseline or check.baseline) if settings.use_baseline else None


def open_baselines(checks: Sequence[Check], settings: RunSettings) -> dict[Path | None, Baseline]:
    """Every baseline the checks name, read once (ConfigError naming the file when one is missing or bad)."""
    refs = {baseline_of(c, settings) for c in checks} - {None}
    return {ref: open_baseline(ref) for ref in sorted(refs, key=str)}


def run_check(check: Check, settings: RunSettings = RunSettings(), *, unknown_is_failure: bool = False,
              cache: RunCache | None = None) -> CheckOutcome:
    """Prepare and run one check (compared with its baseline, if any); bad input becomes an ``error`` outcome."""
    try:
        base = open_baselines([check], settings).get(baseline_of(check, settings))
        go = prepare(check, settings, cache)
    except NnauditError as exc:
        return CheckOutcome(check.name, check.kind, Judgement(Status.ERROR, check.requirement, None,
                                                              f"{check.source}: {exc}"), source=check.source)
    outcome = execute(check, go, unknown_is_failure=unknown_is_failure)
    if base is None:
        return outcome
    return inconclusive_policy(apply(outcome, base, max_drop=check.max_drop), check, unknown_is_failure)


def execute(check: Check, go: Runner, *, unknown_is_failure: bool = False) -> CheckOutcome:
    """Run a prepared check and apply the inconclusive policy."""
    start = time.perf_counter()
    doc = None
    try:
        judgement, doc = go()
    except NnauditError as exc:
        judgement = Judgement(Status.ERROR, check.requirement, None, f"{check.source}: {exc}")
    except Exception as exc:  # a bug in a tool must not hide the other checks' results
        log.exception("check %s crashed", check.name)
        judgement = Judgement(Status.ERROR, check.requirement, None,
                              f"{check.source}: internal error {type(exc).__name__}: {exc}")
    outcome = CheckOutcome(check.name, check.kind, judgement, doc, time.perf_counter() - start, check.source)
    return inconclusive_policy(outcome, check, unknown_is_failure)


def inconclusive_policy(outcome: CheckOutcome, check: Check, unknown_is_failure: bool) -> CheckOutcome:
    """An inconclusive outcome counted as a failure with ``unknown_is_failure`` (the option or the check's key)."""
    judgement = outcome.judgement
    if judgement.status is Status.INCONCLUSIVE and (unknown_is_failure or check.unknown_is_failure):
        judgement = dataclasses.replace(judgement, status=Status.FAILED,
                                        message="inconclusive, counted as a failure (unknown_is_failure): "
                                                + judgement.message)
    return dataclasses.replace(outcome, judgement=judgement)
