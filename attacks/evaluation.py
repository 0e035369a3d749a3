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
             on_batch: Callable[[str, float, int, int], None] | None = None) -> Evaluation:
    """Run ``attacks`` at every ``eps`` on ``x`` ``(N, *input_shape)``, labels ``y`` ``(N,)``.

    ``options`` maps an attack name to config overrides (e.g.
    ``{"pgd": {"steps": 100}}``); ``done`` holds cells of an earlier,
    interrupted run to skip; ``on_cell(evaluation)`` is called after each new
    cell; ``on_batch(attack, eps, samples_done, samples_total)`` reports progress;
    ``threads`` sets torch's CPU threads during the attacks (1 is fastest for
    small networks on a busy machine).
    Everything is checked (attack names, options, eps, data) before any attack runs.
    """
    net = as_network(network)
    norm = Norm.parse(norm)
    device = str(resolve_device(device))  # the record names the device that ran, never "auto"
    names = tuple(dict.fromkeys(canonical(a) for a in attacks))
    eps_list = tuple(dict.fromkeys(float(e) for e in eps))
    if not names or not eps_list:
        raise ConfigError("evaluate: expected at least one attack and one eps")
    threats = {e: ThreatModel(norm=norm, eps=e, low=float(bounds[0]), high=float(bounds[1])) for e in eps_list}
    opts = {canonical(k): v for k, v in (options or {}).items()}
    unknown = set(opts) - set(names)
    if unknown:
        raise ConfigError(f"evaluate: options given for attacks that are not run: {', '.join(sorted(unknown))}")
    instances = {a: make_attack(a, **opts.get(a, {})) for a in names}
    for a, inst in instances.items():
        for t in threats.values():
            inst.inner_threat(t)
    x, y, _ = check_inputs(net, x, y, None, threats[eps_list[0]], where="evaluate")
    correct = onnx_reference(net).run(x).argmax(axis=1) == y
    ev = Evaluation(norm=norm, eps=eps_list, attacks=names, x=x, y=y, clean_correct=correct,
                    attacked=np.flatnonzero(correct), device=str(device))
    ev.cells.update({k: v for k, v in (done or {}).items() if k[0] in eps_list and k[1] in names})
    run = RunConfig(seed=seed, device=device, batch_size=batch_size, threads=threads)
    for e in eps_list:
        for a in names:
            if (e, a) in ev.cells:
                continue
            ev.cells[(e, a)] = _run_cell(ev, net, instances[a], a, threats[e], run, on_batch)
            if on_cell is not None:
                on_cell(ev)
    return ev


def _run_cell(ev: Evaluation, net: Network, attack: Any, name: str, threat: ThreatModel, run: RunConfig,
              on_batch: Callable[[str, float, int, int], None] | None) -> Cell:
    idx = ev.attacked
    broken = np.zeros(ev.num_samples, dtype=bool)
    if len(idx) == 0:
        return Cell(threat.eps, name, broken, 0, None, 0.0)
    progress = None if on_batch is None else (lambda n: on_batch(name, threat.eps, n, len(idx)))
    res = attack(net, ev.x[idx], ev.y[idx], threat, run=run, on_batch=progress)
    broken[idx] = res.success
    return Cell(threat.eps, name, broken, res.num_mismatches, res.median_norms(), res.time_s, res)


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
