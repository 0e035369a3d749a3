"""Verification: complete VNN-LIB verification and region safety (DLV).

Public names are resolved lazily so ``import nnaudit.verify`` does not import
torch or z3:

- ``verify_property`` (:mod:`nnaudit.verify.engine`): decide one property —
  holds, violated with a checked counterexample, or unknown/timeout;
- ``Box``, ``robustness_property`` (:mod:`nnaudit.verify.spec`): programmatic
  properties;
- ``write_vnnlib``, ``local_robustness_property`` (:mod:`nnaudit.verify.vnnlib_write`): a
  property written as VNN-LIB (round-trips through the parser);
- ``check_image`` (:mod:`nnaudit.verify.regions.api`): safety of every region
  of one image under discretized manipulations (DLV); the region-safety engine
  is the subpackage :mod:`nnaudit.verify.regions`.
"""

from __future__ import annotations

from nnaudit._lazy import lazy_getattr

_LAZY = {
    "verify_property": "nnaudit.verify.engine",
    "Box": "nnaudit.verify.spec",
    "robustness_property": "nnaudit.verify.spec",
    "Verdict": "nnaudit.verify.results",
    "check_image": "nnaudit.verify.regions.api",
    "local_robustness_property": "nnaudit.verify.vnnlib_write",
    "write_vnnlib": "nnaudit.verify.vnnlib_write",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)

