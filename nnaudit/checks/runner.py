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

from nnaudit.checks.adapters import Runner, RunSettings, prepare
from nnaudit.checks.outcome import CheckOutcome, Judgement, Status
from nnaudit.checks.kinds import Check
from nnaudit.errors import NnauditError

log = logging.getLogger(__name__)


def run_checks(checks: Sequence[Check], settings: RunSettings = RunSettings(), *,
               unknown_is_failure: bool = False,
               on_outcome: Callable[[CheckOutcome], None] | None = None) -> list[CheckOutcome]:
    """Prepare every check (raising NnauditError on bad input before any
    work), then run them in order; ``on_outcome`` is called after each."""
    runners = [(check, prepare(check, settings)) for check in checks]
    outcomes = []
    for check, go in runners:
        outcome = execute(check, go, unknown_is_failure=unknown_is_failure)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


def run_check(check: Check, settings: RunSettings = RunSettings(), *,
              unknown_is_failure: bool = False) -> CheckOutcome:
    """Prepare and run one check; bad input becomes an ``error`` outcome."""
    try:
        go = prepare(check, settings)
    except NnauditError as exc:
        return CheckOutcome(check.name, check.kind, Judgement(Status.ERROR, check.requirement, None,
                                                              f"{check.source}: {exc}"), source=check.source)
    return execute(check, go, unknown_is_failure=unknown_is_failure)


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
    if judgement.status is Status.INCONCLUSIVE and (unknown_is_failure or check.unknown_is_failure):
        judgement = dataclasses.replace(judgement, status=Status.FAILED,
                                        message="inconclusive, counted as a failure (unknown_is_failure): "
                                                + judgement.message)
    return CheckOutcome(check.name, check.kind, judgement, doc, time.perf_counter() - start, check.source)
