"""Verification: complete VNN-LIB verification and region safety (DLV).

Public names are resolved lazily so ``import nnaudit.verify`` does not import
torch or z3:

- ``verify_property`` (:mod:`nnaudit.verify.engine`): decide one property —
  holds, violated with a checked counterexample, or unknown/timeout;
- ``Box``, ``robustness_property`` (:mod:`nnaudit.verify.spec`): programmatic
  properties;
- ``regions`` (:mod:`nnaudit.verify.region_api`): safety of image regions
  under discretized manipulations (DLV).
"""

from __future__ import annotations

from nnaudit._lazy import lazy_getattr

_LAZY = {
    "verify_property": "nnaudit.verify.engine",
    "Box": "nnaudit.verify.spec",
    "robustness_property": "nnaudit.verify.spec",
    "Verdict": "nnaudit.verify.results",
    "regions": "nnaudit.verify.region_api",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)

