"""AutoAttack: the standard evaluation as a cascade of attacks.

Croce & Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020; the budgets are those
of the reference implementation (fra31/auto-attack, ``autoattack.py``).

``version`` picks the attacks and budgets (:data:`PLANS`): ``standard`` is
APGD-CE (no restarts) -> APGD-T (9 target classes) -> FAB-T (9 target
classes) -> Square (5000 queries), each 100 iterations; ``plus`` adds
APGD-DLR and untargeted FAB with 5 restarts; ``rand`` is APGD-CE and
APGD-DLR (the reference's 20 EOT samples are not run: ONNX models here are
deterministic, so one gradient is the expectation).  In the cascade each
attack only runs on the samples no earlier attack broke at that eps, so the
``broken`` sets are disjoint and each sample is credited to the first attack
that broke it, as AutoAttack's log does.  :func:`expand` turns the name
``autoattack`` (alias ``standard``) of the command line and checks files into
the plan; :func:`autoattack` runs it from Python.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.attacks.evaluation import Evaluation
    from nnaudit.networks.ir import Network

NAMES = ("autoattack", "standard")  # what --attacks accepts for the cascade
TARGETED = ("apgd-t", "fab-t")  # attacks with a number of target classes


class Version(str, Enum):
    """AutoAttack's versions (the value is the spelling of ``--version``)."""

    STANDARD = "standard"
    PLUS = "plus"
    RAND = "rand"

    @classmethod
    def parse(cls, value: str | Version) -> Version:
        try:
            return cls(str(value.value if isinstance(value, Version) else value).strip().lower())
        except ValueError:
            raise ConfigError(f"version: expected one of standard, plus, rand, got {value!r}") from None


#: version -> attacks in cascade order with the reference's budgets
PLANS: dict[Version, tuple[tuple[str, dict[str, Any]], ...]] = {
    Version.STANDARD: (
        ("apgd-ce", {"steps": 100, "restarts": 1}),
        ("apgd-t", {"steps": 100, "restarts": 1, "target_classes": 9}),
        ("fab-t", {"steps": 100, "restarts": 1, "target_classes": 9}),
        ("square", {"queries": 5000, "restarts": 1, "p_init": 0.8}),
    ),
    Version.PLUS: (
        ("apgd-ce", {"steps": 100, "restarts": 5}),
        ("apgd-dlr", {"steps": 100, "restarts": 5}),
        ("fab", {"steps": 100, "restarts": 5}),
        ("square", {"queries": 5000, "restarts": 1, "p_init": 0.8}),
        ("apgd-t", {"steps": 100, "restarts": 1, "target_classes": 9}),
        ("fab-t", {"steps": 100, "restarts": 1, "target_classes": 9}),
    ),
    Version.RAND: (
        ("apgd-ce", {"steps": 100, "restarts": 1}),
        ("apgd-dlr", {"steps": 100, "restarts": 1}),
    ),
}


def is_cascade(attacks: Sequence[str]) -> bool:
    """True when ``attacks`` names the AutoAttack cascade (alone; ConfigError when mixed with others)."""
    names = [a.strip().lower() for a in attacks]
    if not any(a in NAMES for a in names):
        return False
    if len(names) != 1:
        raise ConfigError(f"attacks: autoattack runs its own cascade of attacks and is given alone, "
                          f"got {', '.join(attacks)}")
    return True


def run_names(attacks: Sequence[str], version: str | Version = Version.STANDARD) -> tuple[str, ...]:
    """The attacks ``attacks`` runs: the plan of ``version`` for ``autoattack``, else ``attacks`` themselves."""
    return tuple(n for n, _ in PLANS[Version.parse(version)]) if is_cascade(attacks) else tuple(attacks)


def expand(attacks: Sequence[str], version: str | Version = Version.STANDARD, options: dict[str, dict[str, Any]] | None = None,
           *, target_classes: int | None = None) -> tuple[tuple[str, ...], dict[str, dict[str, Any]], bool]:
    """``(names, options, cascade)`` to run: the plan of ``version`` when ``attacks`` is ``autoattack``
    (its presets under the caller's ``options``; ``target_classes`` sets APGD-T's and FAB-T's), else as given."""
    from nnaudit.attacks.api import canonical

    opts = {canonical(k): dict(v) for k, v in (options or {}).items()}
    if not is_cascade(attacks):
        names = tuple(dict.fromkeys(canonical(a) for a in attacks))
        for a in names:
            if a in TARGETED and target_classes is not None:
                opts[a] = {"target_classes": target_classes, **opts.get(a, {})}
        return names, opts, False
    plan = PLANS[Version.parse(version)]
    names = tuple(name for name, _ in plan)
    unknown = set(opts) - set(names)
    if unknown:
        raise ConfigError(f"options: autoattack ({Version.parse(version).value}) runs {', '.join(names)}; "
                          f"options given for {', '.join(sorted(unknown))}")
    merged = {}
    for name, preset in plan:
        extra = {"target_classes": target_classes} if target_classes is not None and "target_classes" in preset else {}
        merged[name] = {**preset, **extra, **opts.get(name, {})}
    return names, merged, True


def autoattack(network: Network | str | os.PathLike[str], x: np.ndarray, y: np.ndarray, *, eps: Sequence[float],
               norm: str = "linf", version: str | Version = Version.STANDARD, bounds: tuple[float, float] = (0.0, 1.0),
               seed: int = 0, device: str = "cpu", batch_size: int = 256, threads: int | None = None,
               options: dict[str, dict[str, Any]] | None = None) -> Evaluation:
    """AutoAttack's evaluation of ``x`` ``(N, *input_shape)``, labels ``y`` ``(N,)``, at each of ``eps``.

    ``ev.robust_accuracy[eps]`` is AutoAttack's robust accuracy; ``ev.broken_by(eps)`` names, per
    sample, the attack of the cascade that broke it (every success confirmed by onnxruntime).
    """
    from nnaudit.attacks.evaluation import evaluate

    names, opts, _ = expand(["autoattack"], version, options)
    return evaluate(network, x, y, attacks=names, eps=eps, norm=norm, bounds=bounds, device=device, seed=seed,
                    batch_size=batch_size, threads=threads, options=opts, cascade=True)
