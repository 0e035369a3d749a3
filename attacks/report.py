"""An :class:`~nnaudit.attacks.evaluation.Evaluation` as the ``attack`` JSON body.

The one place the attack results are serialised (reports/SCHEMA.md,
``attack``).  ``cascade`` (AutoAttack: ``broken`` sets are disjoint, each
sample credited to the first attack that broke it, and ``robust_after`` gives
the robust accuracy after each attack of the cascade) and ``targeted`` (the
number of target classes, or null) describe how the attacks ran (present only when set).  Per eps: ``robust_accuracy`` and ``success_rate`` (both as
fractions of ALL samples, so ``clean_accuracy - robust = success``) per attack
and ``worst``; ``median_perturbation`` (l0/l2/linf over confirmed successes,
null when none), ``time_s`` and ``mismatches`` per attack; and ``broken``,
the sample indices each attack broke (what ``--resume`` restores).  The
gallery ``examples`` show, per eps, the first broken samples with the attack
that found the smallest perturbation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.attacks.evaluation import Evaluation


def evaluation_body(ev: Evaluation, *, examples: int = 4) -> dict[str, Any]:
    return {
        "num_samples": ev.num_samples,
        "clean_accuracy": ev.clean_accuracy,
        "norm": ev.norm.value,
        "eps": list(ev.eps),
        "attacks": list(ev.attacks),
        **({"cascade": True} if ev.cascade else {}),
        **({"targeted": ev.targeted} if ev.targeted else {}),
        "results": [_eps_entry(ev, e) for e in ev.eps if any((e, a) in ev.cells for a in ev.attacks)],
        "examples": [ex for e in ev.eps for ex in _examples(ev, e, examples)],
    }


def _eps_entry(ev: Evaluation, eps: float) -> dict[str, Any]:
    cells = {a: ev.cells[(eps, a)] for a in ev.attacks if (eps, a) in ev.cells}
    n = max(ev.num_samples, 1)
    worst = ev.broken(eps)
    return {
        "eps": eps,
        "robust_accuracy": {"worst": float((ev.clean_correct & ~worst).sum() / n),
                            **{a: ev.attack_robust_accuracy(eps, a) for a in cells}},
        "success_rate": {"worst": float(worst.sum() / n), **{a: float(c.broken.sum() / n) for a, c in cells.items()}},
        "median_perturbation": {a: c.median_perturbation for a, c in cells.items()},
        "time_s": {a: c.time_s for a, c in cells.items()},
        "mismatches": {a: c.mismatches for a, c in cells.items()},
        "broken": {a: np.flatnonzero(c.broken).tolist() for a, c in cells.items()},
        **({"robust_after": ev.robust_after(eps)} if ev.cascade else {}),
    }


def _examples(ev: Evaluation, eps: float, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` broken samples at ``eps``, each with its smallest-perturbation attack."""
    out: list[dict[str, Any]] = []
    positions: dict[str, dict[int, int]] = {}
    for g in np.flatnonzero(ev.broken(eps)):
        if len(out) >= limit:
            break
        best = None
        for a in ev.attacks:
            cell = ev.cells.get((eps, a))
            if cell is None or cell.result is None or not cell.broken[g]:
                continue
            if a not in positions:
                rows = ev.attacked if cell.attacked is None else cell.attacked
                positions[a] = {int(h): i for i, h in enumerate(rows)}
            i = positions[a][int(g)]
            size = float(cell.result.norms[ev.norm.value][i])
            if best is None or size < best[0]:
                best = (size, a, cell.result, i)
        if best is not None:
            out.append(_example(int(g), eps, best[1], best[2], best[3]))
    return out


def _example(index: int, eps: float, attack: str, res: Any, i: int) -> dict[str, Any]:
    p_clean, p_adv = _softmax(res.logits_clean[i]), _softmax(res.logits_adv[i])
    return {
        "index": index, "eps": eps, "attack": attack, "label": int(res.labels[i]),
        "pred_clean": int(p_clean.argmax()), "pred_adv": int(p_adv.argmax()),
        "conf_clean": float(p_clean.max()), "conf_adv": float(p_adv.max()),
        "norms": {k: float(v[i]) for k, v in res.norms.items()},
        "shape": list(res.x.shape[1:]),
        "x": res.x[i].astype(np.float64).ravel().tolist(),
        "x_adv": res.x_adv[i].astype(np.float64).ravel().tolist(),
    }


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64).ravel()
    e = np.exp(z - z.max())
    return e / e.sum()
