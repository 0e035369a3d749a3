"""Declarative robustness checks for CI (``nnaudit check`` and the pytest plugin).

- :mod:`nnaudit.config` reads the checks file into the frozen check dataclasses
  of :mod:`.kinds`, each key read by its converter in :mod:`.keys`;
- :mod:`.adapters` binds each check kind (attack, regions, verify) to its run
  (:mod:`nnaudit.runs`);
- :mod:`.judge` compares results with requirements and writes the messages;
- :mod:`.runner` prepares and runs checks;
- :mod:`.output` prints the table and writes the JSON, JUnit and HTML outputs;
- :mod:`.outcome` holds the status enum, the outcome records and the exit codes;
- :mod:`.metrics` reads what a check measured from its result; :mod:`.baseline`
  compares a run with a previous one (JSON, or the results store: :mod:`.baseline_store`);
- :mod:`.progress` shows progress in CI logs; :mod:`.warm` loads each model once per run.

Names are resolved lazily so importing this package stays cheap.
"""

from __future__ import annotations

from nnaudit._lazy import lazy_getattr

_LAZY = {
    "Status": "nnaudit.checks.outcome",
    "Judgement": "nnaudit.checks.outcome",
    "CheckOutcome": "nnaudit.checks.outcome",
    "ExitPolicy": "nnaudit.checks.outcome",
    "RunSettings": "nnaudit.checks.adapters",
    "run_checks": "nnaudit.checks.runner",
    "run_check": "nnaudit.checks.runner",
    "judge_attack": "nnaudit.checks.judge",
    "judge_regions": "nnaudit.checks.judge",
    "judge_verify": "nnaudit.checks.judge",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)

