"""Robustness evaluation: several attacks, several eps, one worst case per sample.

:func:`evaluate` measures clean accuracy with onnxruntime on the original
file, then runs every attack at every eps on the correctly classified samples
and reports, per eps, the robust accuracy of each attack and the per-sample
worst case over all of them (the AutoAttack convention: a sample is robust at
eps only if no attack broke it).  Only successes confirmed by onnxruntime
count.  :meth:`Evaluation.to_dict` gives the ``attack`` body of
``reports/SCHEMA.md``; ``on_cell`` lets a caller save progress after each
(eps, attack) pair and ``done`` resumes from saved pairs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.attacks.api import canonical, make_attack
from nnaudit.attacks.base import RunConfig, as_network, check_inputs, onnx_reference, resolve_device
from nnaudit.attacks.result import AttackResult
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.ir import Network


@dataclass(frozen=True)
class Cell:
    """One attack at one eps, over all ``N`` samples of the evaluation."""

    eps: float
    attack: str
    broken: np.ndarray  # bool (N,): confirmed adversarial (clean-misclassified samples are not attacked: False)
    mismatches: int  # torch-model successes onnxruntime did not confirm
    median_perturbation: dict[str, float] | None  # medians of l0/l2/linf over confirmed successes
    time_s: float
    result: AttackResult | None = None  # on the attacked subset; None for a resumed cell
    attacked: np.ndarray | None = None  # indices ``result`` rows belong to (None: the evaluation's ``attacked``)


@dataclass(frozen=True)
class Evaluation:
    """Clean accuracy and, per eps, robust accuracy per attack and worst case."""

    norm: Norm
    eps: tuple[float, ...]
    attacks: tuple[str, ...]
    x: np.ndarray  # float32 (N, *input_shape)
    y: np.ndarray  # int64 (N,)
    clean_correct: np.ndarray  # bool (N,), by onnxruntime
    attacked: np.ndarray  # int64 indices of the attacked (clean-correct) samples
    cells: dict[tuple[float, str], Cell] = field(default_factory=dict)
    device: str = "cpu"
    cascade: bool = False  # AutoAttack: each attack only on the samples the earlier ones left robust
    targeted: int | None = None  # targeted: each sample attacked towards its top-k other classes (k)

    @property
    def num_samples(self) -> int:
        return len(self.y)

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.mean())

    def broken(self, eps: float) -> np.ndarray:
        """``(N,)`` bool: broken by at least one attack at ``eps``."""
        masks = [self.cells[(eps, a)].broken for a in self.attacks if (eps, a) in self.cells]
        return np.logical_or.reduce(masks) if masks else np.zeros(self.num_samples, dtype=bool)

    @property
    def robust_accuracy(self) -> dict[float, float]:
        """eps -> worst-case robust accuracy over all attacks run."""
        return {e: float((self.clean_correct & ~self.broken(e)).mean()) for e in self.eps}

    def attack_robust_accuracy(self, eps: float, attack: str) -> float:
        return float((self.clean_correct & ~self.cells[(eps, attack)].broken).mean())

    def broken_by(self, eps: float) -> dict[int, str]:
        """Sample index -> the first attack (in run order) that broke it at ``eps``."""
        out: dict[int, str] = {}
        for a in self.attacks:
            cell = self.cells.get((eps, a))
            for i in [] if cell is None else np.flatnonzero(cell.broken):
                out.setdefault(int(i), a)
        return out

    def robust_after(self, eps: float) -> dict[str, float]:
        """Attack -> robust accuracy after it and every attack before it (AutoAttack's log)."""
        out, broken = {}, np.zeros(self.num_samples, dtype=bool)
        for a in self.attacks:
            if (eps, a) in self.cells:
                broken = broken | self.cells[(eps, a)].broken
                out[a] = float((self.clean_correct & ~broken).mean())
        return out

    def to_dict(self, *, examples: int = 4) -> dict[str, Any]:
        """The ``attack`` result body (reports/SCHEMA.md); ``examples`` per eps for the gallery."""
        from nnaudit.attacks.report import evaluation_body

        return evaluation_body(self, examples=examples)


def evaluate(network: Network | str | os.PathLike[str], x: np.ndarray, y: np.ndarray, *,
             attacks: Sequence[str] = ("pgd",), eps: Sequence[float] = (0.1,), norm: str | Norm = "linf",
             bounds: tuple[float, float] = (0.0, 1.0), device: str = "cpu", seed: int = 0,
             batch_size: int = 256, threads: int | None = None, options: dict[str, dict[str, Any]] | None = None,
             done: dict[tuple[float, str], Cell] | None = None,
             on_cell: Callable[[Evaluation], None] | None = None,
             on_batch: Callable[[str, float, int, int], None] | None = None,
             cascade: bool = False, targeted: int | None = None) -> Evaluation:
    """Run ``attacks`` at every ``eps`` on ``x`` ``(N, *input_shape)``, labels ``y`` ``(N,)``.

    ``options`` maps an attack name to config overrides (e.g.
    ``{"pgd": {"steps": 100}}``); ``done`` holds cells of an earlier,
    interrupted run to skip; ``on_cell(evaluation)`` is called after each new
    cell; ``on_batch(attack, eps, samples_done, samples_total)`` reports progress;
    ``threads`` sets torch's CPU threads during the attacks (1 is fastest for
    small networks on a busy machine).  ``cascade`` runs each attack only on the
    samples the earlier ones left robust (AutoAttack); ``targeted=k`` attacks each
    sample towards each of its ``k`` most likely other classes (success: the target is
    reached).  Every attack must work in ``norm`` itself (an L2 attack is never mixed
    into an L-inf worst case).
    Everything is checked (attack names, options, eps, data) before any attack runs.
    """
    net = as_network(network)
    norm = Norm.parse(norm)
    device = str(resolve_device(device))  # the record names the device that ran, never "auto"
    names = tuple(dict.fromkeys(canonical(a) for a in attacks))
    eps_list = tuple(dict.fromkeys(float(e) for e in eps))
    threats = {e: ThreatModel(norm=norm, eps=e, low=float(bounds[0]), high=float(bounds[1])) for e in eps_list}
    instances = _instances(names, eps_list, threats, options, targeted, net.output_size)
    x, y, _ = check_inputs(net, x, y, None, threats[eps_list[0]], where="evaluate")
    logits = onnx_reference(net).run(x)
    correct = logits.argmax(axis=1) == y
    ev = Evaluation(norm=norm, eps=eps_list, attacks=names, x=x, y=y, clean_correct=correct,
                    attacked=np.flatnonzero(correct), device=str(device), cascade=cascade, targeted=targeted)
    ev.cells.update({k: v for k, v in (done or {}).items() if k[0] in eps_list and k[1] in names})
    run = RunConfig(seed=seed, device=device, batch_size=batch_size, threads=threads)
    ranked = None if targeted is None else _ranked_targets(logits, y)
    for e in eps_list:
        for a in names:
            if (e, a) in ev.cells:
                continue
            ev.cells[(e, a)] = _run_cell(ev, net, instances[a], a, threats[e], run, on_batch, ranked)
            if on_cell is not None:
                on_cell(ev)
    return ev


def _instances(names: tuple[str, ...], eps_list: tuple[float, ...], threats: dict[float, ThreatModel],
               options: dict[str, dict[str, Any]] | None, targeted: int | None, classes: int) -> dict[str, Any]:
    """The attack objects, after checking names, options, norms and eps (ConfigError before any work)."""
    if not names or not eps_list:
        raise ConfigError("evaluate: expected at least one attack and one eps")
    if targeted is not None and not 1 <= targeted:
        raise ConfigError(f"evaluate: expected targeted (number of target classes) >= 1, got {targeted}")
    if targeted is not None and classes < 2:
        raise ConfigError(f"evaluate: a targeted attack needs at least 2 classes, the network has {classes}")
    opts = {canonical(k): v for k, v in (options or {}).items()}
    unknown = set(opts) - set(names)
    if unknown:
        raise ConfigError(f"evaluate: options given for attacks that are not run: {', '.join(sorted(unknown))}")
    instances = {a: make_attack(a, **opts.get(a, {})) for a in names}
    for inst in instances.values():
        for t in threats.values():
            inst.inner_threat(t)
    norm = threats[eps_list[0]].norm
    other = [a for a, inst in instances.items() if norm not in inst.native_norms]
    if other:
        own = ", ".join(f"{a} ({'/'.join(n.value for n in instances[a].native_norms)})" for a in other)
        raise ConfigError(f"attacks: {own}: not {norm.value} attacks; their results are never mixed into a "
                          f"{norm.value} worst case: run them on their own with their norm (e.g. --norm "
                          f"{instances[other[0]].native_norms[0].value})")
    return instances


def _ranked_targets(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(N, K - 1)``: other classes by decreasing clean logit (onnxruntime), ties by class number."""
    masked = np.asarray(logits, np.float64).copy()
    masked[np.arange(len(y)), y] = -np.inf
    return np.argsort(-masked, axis=1, kind="stable")[:, :-1]


def _run_cell(ev: Evaluation, net: Network, attack: Any, name: str, threat: ThreatModel, run: RunConfig,
              on_batch: Callable[[str, float, int, int], None] | None, ranked: np.ndarray | None) -> Cell:
    idx = ev.attacked
    if ev.cascade:
        idx = idx[~ev.broken(threat.eps)[idx]]
    broken = np.zeros(ev.num_samples, dtype=bool)
    if len(idx) == 0:
        return Cell(threat.eps, name, broken, 0, None, 0.0, None, idx)
    progress = None if on_batch is None else (lambda n: on_batch(name, threat.eps, n, len(idx)))
    if ranked is None:
        res = attack(net, ev.x[idx], ev.y[idx], threat, run=run, on_batch=progress)
    else:
        res = _targeted(ev, net, attack, idx, ranked, threat, run, progress)
    broken[idx] = res.success
    return Cell(threat.eps, name, broken, res.num_mismatches, res.median_norms(), res.time_s, res, idx)


def _targeted(ev: Evaluation, net: Network, attack: Any, idx: np.ndarray, ranked: np.ndarray, threat: ThreatModel,
              run: RunConfig, progress: Callable[[int], None] | None) -> AttackResult:
    """``attack`` towards each sample's 1st, 2nd, ... ``ev.targeted``-th most likely other class, each
    time on the samples no earlier target was reached for; rows of the run that reached a target win."""
    todo = np.arange(len(idx))
    merged: AttackResult | None = None
    for k in range(min(int(ev.targeted or 1), ranked.shape[1])):
        if len(todo) == 0:
            break
        rows = idx[todo]
        res = attack(net, ev.x[rows], ev.y[rows], threat, target=ranked[rows, k], run=run, on_batch=progress)
        merged = res if merged is None else _merge(merged, res, todo)
        todo = todo[~res.success]
    assert merged is not None
    return merged


def _merge(base: AttackResult, part: AttackResult, rows: np.ndarray) -> AttackResult:
    """``base`` with ``part``'s rows written at ``rows`` where ``part`` succeeded (times added)."""
    take = rows[part.success]
    arrays = {}
    for name in ("x_adv", "targets", "success", "model_success", "mismatch", "logits_adv"):
        a = getattr(base, name).copy()
        a[take] = getattr(part, name)[part.success]
        arrays[name] = a
    mism = arrays["mismatch"]
    mism[rows[~part.success]] |= part.mismatch[~part.success]
    norms = {k: v.copy() for k, v in base.norms.items()}
    for k in norms:
        norms[k][take] = part.norms[k][part.success]
    return dataclasses.replace(base, **arrays, norms=norms, time_s=base.time_s + part.time_s)


def cells_from_dict(body: dict[str, Any], num_samples: int) -> dict[tuple[float, str], Cell]:
    """Cells of a saved ``attack`` body (for resuming); needs the ``broken`` index lists."""
    cells = {}
    for entry in body.get("results", []):
        e = float(entry["eps"])
        for name, indices in entry.get("broken", {}).items():
            mask = np.zeros(num_samples, dtype=bool)
            mask[np.asarray(indices, dtype=np.int64)] = True
            med = entry.get("median_perturbation", {}).get(name)
            cells[(e, name)] = Cell(e, name, mask, int(entry.get("mismatches", {}).get(name, 0)), med,
                                    float(entry.get("time_s", {}).get(name, 0.0)))
    return cells


__all__ = ["Cell", "Evaluation", "cells_from_dict", "evaluate"]
