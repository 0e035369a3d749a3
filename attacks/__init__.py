"""Gradient-based adversarial attacks on ONNX networks, validated by onnxruntime.

One module per attack (:mod:`.fast_gradient`, :mod:`.projected_gradient`,
:mod:`.auto_pgd`, :mod:`.auto_pgd_targeted`, :mod:`.fab`, :mod:`.square`,
:mod:`.carlini_wagner`, :mod:`.deep_fool`, :mod:`.saliency_map`; named so they never shadow the functions below), a base
class with the shared ``__call__`` (:mod:`.base`), one result type
(:mod:`.result`), the threat model (:mod:`.threat`), the registry and
functional API (:mod:`.api`) and the multi-attack evaluation
(:mod:`.evaluation`, serialised by :mod:`.report`).  Public names are resolved lazily
so ``import nnaudit.attacks`` does not import torch:

- ``fgsm``, ``pgd``, ``apgd``, ``cw``, ``deepfool``, ``jsma``, ``run_attack``:
  ``pgd(network, x, y, eps=0.1, steps=40)`` -> :class:`AttackResult`;
- ``evaluate(network, x, y, attacks=[...], eps=[...], norm="linf")`` ->
  :class:`Evaluation` (``.clean_accuracy``, ``.robust_accuracy``, ``.to_dict()``);
- ``autoattack(network, x, y, eps=[...], version="standard")``: AutoAttack's
  cascade (:mod:`.autoattack`), an :class:`Evaluation` with ``.broken_by(eps)``;
- ``minimize_in_box``: batched projected sign-gradient descent in a box
  (defined in :mod:`nnaudit.networks.box_search`, shared with the verifier's
  falsification phase);
- ``ThreatModel``, ``Norm``, ``RunConfig``, ``ATTACKS``, ``make_attack`` and
  the config dataclasses.
"""

from __future__ import annotations

from nnaudit._lazy import lazy_getattr

_LAZY = {
    "minimize_in_box": "nnaudit.networks.box_search",
    "fgsm": "nnaudit.attacks.api",
    "pgd": "nnaudit.attacks.api",
    "apgd": "nnaudit.attacks.api",
    "cw": "nnaudit.attacks.api",
    "deepfool": "nnaudit.attacks.api",
    "jsma": "nnaudit.attacks.api",
    "run_attack": "nnaudit.attacks.api",
    "make_attack": "nnaudit.attacks.api",
    "ATTACKS": "nnaudit.attacks.api",
    "evaluate": "nnaudit.attacks.evaluation",
    "autoattack": "nnaudit.attacks.autoattack",
    "Version": "nnaudit.attacks.autoattack",
    "APGDTConfig": "nnaudit.attacks.auto_pgd_targeted",
    "FABConfig": "nnaudit.attacks.fab",
    "SquareConfig": "nnaudit.attacks.square",
    "Evaluation": "nnaudit.attacks.evaluation",
    "AttackResult": "nnaudit.attacks.result",
    "ThreatModel": "nnaudit.attacks.threat",
    "Norm": "nnaudit.attacks.threat",
    "RunConfig": "nnaudit.attacks.base",
    "Attack": "nnaudit.attacks.base",
    "Criterion": "nnaudit.attacks.criteria",
    "FGSMConfig": "nnaudit.attacks.fast_gradient",
    "PGDConfig": "nnaudit.attacks.projected_gradient",
    "APGDConfig": "nnaudit.attacks.auto_pgd",
    "CWConfig": "nnaudit.attacks.carlini_wagner",
    "DeepFoolConfig": "nnaudit.attacks.deep_fool",
    "JSMAConfig": "nnaudit.attacks.saliency_map",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)

