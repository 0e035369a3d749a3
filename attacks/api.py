"""The attack registry and the one-call functional API.

``ATTACKS`` maps the names used on the command line and in results
(``fgsm``, ``pgd``, ``apgd-ce``, ``apgd-dlr``, ``cw``, ``deepfool``, ``jsma``,
``apgd-t``, ``fab``, ``fab-t``, ``square``)
to an attack class and its preset options.  :func:`run_attack` runs one of them
from plain keyword arguments; ``fgsm``, ``pgd``, ``apgd``, ``cw``,
``deepfool`` and ``jsma`` are the same with the name filled in::

    from nnaudit.attacks import pgd
    res = pgd("model.onnx", x, y, eps=0.1, steps=40, restarts=2)
    res.success.mean(), res.norms["linf"].max()
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.attacks.result import AttackResult
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.attacks.base import Attack
    from nnaudit.networks.ir import Network

#: name -> (module, class, preset options)
ATTACKS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "fgsm": ("nnaudit.attacks.fast_gradient", "FGSM", {}),
    "pgd": ("nnaudit.attacks.projected_gradient", "PGD", {}),
    "apgd-ce": ("nnaudit.attacks.auto_pgd", "APGD", {"loss": "ce"}),
    "apgd-dlr": ("nnaudit.attacks.auto_pgd", "APGD", {"loss": "dlr"}),
    "cw": ("nnaudit.attacks.carlini_wagner", "CW", {}),
    "deepfool": ("nnaudit.attacks.deep_fool", "DeepFool", {}),
    "jsma": ("nnaudit.attacks.saliency_map", "JSMA", {}),
    "apgd-t": ("nnaudit.attacks.auto_pgd_targeted", "APGDT", {}),
    "fab": ("nnaudit.attacks.fab", "FAB", {}),
    "fab-t": ("nnaudit.attacks.fab", "FAB", {"targeted": True}),
    "square": ("nnaudit.attacks.square", "Square", {}),
}
_ALIASES = {"apgd": "apgd-ce"}


def canonical(name: str) -> str:
    """The registry name for ``name`` (case-insensitive; ``apgd`` is ``apgd-ce``)."""
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in ATTACKS:
        raise ConfigError(f"attacks: unknown attack {name!r}; expected one of {', '.join(ATTACKS)}")
    return key


def make_attack(name: str, **options: Any) -> Attack:
    """An attack instance by registry name, with options overriding its preset."""
    import importlib

    module, cls, preset = ATTACKS[canonical(name)]
    attack_cls = getattr(importlib.import_module(module), cls)
    return attack_cls(**{**preset, **options})


def run_attack(name: str, network: Network | str | os.PathLike[str], x: np.ndarray, y: np.ndarray, *,
               eps: float, norm: str | Norm = "linf", bounds: tuple[float, float] = (0.0, 1.0),
               target: np.ndarray | int | None = None, seed: int = 0, device: str = "cpu",
               batch_size: int = 256, threads: int | None = None, **options: Any) -> AttackResult:
    """Run attack ``name`` on ``x`` ``(B, *input_shape)`` with labels ``y`` ``(B,)``.

    ``eps`` is the radius under ``norm`` (``inf`` for minimal-norm attacks:
    cw, deepfool, jsma); ``bounds`` the valid input range; ``target`` makes
    it targeted; ``threads`` sets torch's CPU threads for the call; ``options`` are fields of the attack's config dataclass
    (e.g. ``steps``, ``restarts``, ``step_size``, ``loss``).
    """
    from nnaudit.attacks.base import RunConfig

    threat = ThreatModel(norm=Norm.parse(norm), eps=eps, low=float(bounds[0]), high=float(bounds[1]))
    attack = make_attack(name, **options)
    run = RunConfig(seed=seed, device=device, batch_size=batch_size, threads=threads)
    return attack(network, x, y, threat, target=target, run=run)


def _functional(name: str, summary: str) -> Callable[..., AttackResult]:
    def attack(network: Network | str | os.PathLike[str], x: np.ndarray, y: np.ndarray, **kwargs: Any) -> AttackResult:
        return run_attack(name, network, x, y, **kwargs)

    attack.__name__ = attack.__qualname__ = name.replace("-", "_")
    attack.__doc__ = f"{summary}\n\nSee :func:`run_attack` for the arguments (``eps=`` is required)."
    return attack


fgsm = _functional("fgsm", "FGSM (L-inf) / FGM (L2): one gradient step of size eps.")
pgd = _functional("pgd", "PGD (L-inf or L2) with random start, restarts and step-size schedule.")
apgd = _functional("apgd-ce", "APGD with cross-entropy loss (pass loss='dlr' for APGD-DLR).")
cw = _functional("cw", "Carlini-Wagner L2 with binary search over c (minimal-norm; eps may be inf).")
deepfool = _functional("deepfool", "DeepFool (L2 or L-inf, minimal-norm; eps may be inf).")
jsma = _functional("jsma", "JSMA (L0, feature pairs; eps counts changed features, may be inf).")
