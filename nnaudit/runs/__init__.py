"""One function per kind of run, returning ``(result, document)``: the glue every front end shares.

- :func:`run_verify` (:mod:`.verify`): VNN-LIB properties through the complete verifier;
- :func:`run_regions` (:mod:`.regions`): region safety of many images;
- :func:`run_attack` (:mod:`.attack`): robust accuracy under adversarial attacks.

``nnaudit verify|regions|attack``, ``nnaudit check`` (:mod:`nnaudit.checks.adapters`),
the ``nnaudit`` pytest fixture and ``nnaudit demo`` all call these, so a run
gives the same result objects and the same versioned JSON document
(reports/SCHEMA.md) whichever way it was started.  :mod:`.record` builds the
document, writes it as the work goes (``complete: false`` until the end) and
resumes a run from its file: work already recorded there is kept, not redone.

Names are resolved lazily so importing this package stays cheap.
"""

from __future__ import annotations

from nnaudit._lazy import lazy_getattr

_LAZY = {
    "Record": "nnaudit.runs.record",
    "run_verify": "nnaudit.runs.verify",
    "VerifyRun": "nnaudit.runs.verify",
    "run_regions": "nnaudit.runs.regions",
    "RegionsRun": "nnaudit.runs.regions",
    "regions_settings": "nnaudit.runs.regions",
    "run_attack": "nnaudit.runs.attack",
    "AttackRun": "nnaudit.runs.attack",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
