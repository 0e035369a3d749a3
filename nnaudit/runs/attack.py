"""``run_attack``: robust accuracy under adversarial attacks, and its ``attack`` document.

The attacks run in :func:`nnaudit.attacks.evaluation.evaluate`, one cell
(attack, eps) at a time; the document's body is refreshed and written after
every cell when the record has a JSON path.  Resuming keeps the cells
already in the file (it must also be of the same number of samples) and
runs only the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.runs.record import Record, finish, open_document, save

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.attacks.evaluation import Evaluation


@dataclass(frozen=True)
class AttackRun:
    """What to attack with: attacks, radii, threat model and how to run them."""

    attacks: tuple[str, ...] = ("pgd",)                 # registry names (nnaudit.attacks.ATTACKS)
    eps: tuple[float, ...] = (0.1,)                     # radii (for l0: numbers of changed values)
    norm: str = "linf"                                  # linf, l2 or l0
    bounds: tuple[float, float] = (0.0, 1.0)            # valid input range
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-attack overrides, e.g. {"pgd": {"steps": 100}}
    seed: int = 0                                       # random starts
    device: str = "cpu"                                 # cpu, cuda, cuda:N or auto
    batch_size: int = 256                               # samples attacked together
    threads: int | None = None                          # torch CPU threads (None: torch's choice)
    examples: int = 4                                   # adversarial examples per eps kept in the gallery
    version: str = "standard"                           # AutoAttack version when attacks is ("autoattack",)
    targeted: bool = False                              # attack each sample towards its top target_classes classes
    target_classes: int | None = None                   # targets per sample (targeted; APGD-T, FAB-T); None: 9

    def plan(self) -> tuple[tuple[str, ...], dict[str, dict[str, Any]], bool]:
        """``(attack names, options, cascade)`` to run (``autoattack`` expanded; ConfigError on bad names)."""
        from nnaudit.attacks.autoattack import expand

        return expand(self.attacks, self.version, self.options, target_classes=self.target_classes)

    def targets(self) -> int | None:
        """Target classes per sample for a targeted run (None: untargeted)."""
        return (self.target_classes or 9) if self.targeted else None

    def settings(self, count: int) -> dict[str, Any]:
        """The ``settings`` recorded for this run on ``count`` samples (attack names as the registry spells them)."""
        from nnaudit.attacks.autoattack import Version
        from nnaudit.attacks.threat import Norm

        names, options, cascade = self.plan()
        return {"attacks": list(names), "eps": list(dict.fromkeys(float(e) for e in self.eps)),
                "norm": Norm.parse(self.norm).value, "range": list(self.bounds), "options": options or {},
                "num_samples": int(count), "autoattack": Version.parse(self.version).value if cascade else None,
                "targeted": self.targets()}


def run_attack(network: Any, x: np.ndarray, y: np.ndarray, config: AttackRun = AttackRun(), record: Record = Record(),
               *, progress: Callable[[str, float, int, int], None] | None = None) -> tuple[Evaluation, dict[str, Any]]:
    """Run every attack at every eps on ``x`` ``(N, *input_shape)``, labels ``y`` ``(N,)``.

    Settings default to :meth:`AttackRun.settings`, seeds to
    ``{"attack": seed}``, the recorded device to the one attacked on;
    ``progress(attack, eps, samples_done, samples_total)`` after each batch.
    Returns the :class:`~nnaudit.attacks.evaluation.Evaluation` and the document.
    """
    from nnaudit.attacks.evaluation import cells_from_dict, evaluate

    record = record.filled(settings=config.settings(len(y)), seeds={"attack": config.seed}, device=config.device)
    doc, saved = open_document("attack", network, record, body={}, match={"num_samples": len(y)})

    def cell_done(ev: Evaluation) -> None:
        doc.update(ev.to_dict(examples=config.examples))
        save(doc, record)

    names, options, cascade = config.plan()
    ev = evaluate(network, x, y, attacks=list(names), eps=list(config.eps), norm=config.norm,
                  bounds=config.bounds, device=config.device, seed=config.seed, batch_size=config.batch_size,
                  threads=config.threads, options=options or None,
                  done=None if saved is None else cells_from_dict(saved, len(y)),
                  on_cell=cell_done if record.json_path is not None else None, on_batch=progress,
                  cascade=cascade, targeted=config.targets())
    doc.update(ev.to_dict(examples=config.examples))
    return ev, finish(doc, record)


def run_attack_campaign(network: Any, x: np.ndarray, y: np.ndarray, config: AttackRun, record: Record,
                        campaign: Any, *, chunk: int | None = None,
                        progress: Callable[[int], None] | None = None) -> tuple[Evaluation, dict[str, Any], Any]:
    """:func:`run_attack` as a campaign: one job per ``chunk`` samples on the executor of ``campaign`` (a
    :class:`~nnaudit.runs.regions.CampaignSetup`), each batch's result in its store as it arrives (batches
    stored by an earlier run with the same settings are not attacked again), merged into one document.

    The document means what :func:`run_attack`'s does (nnaudit.campaign.attack); random attacks draw with
    a seed per batch, so their numbers may differ from a one-process run's.  ``progress(n)`` is called with
    the samples of each batch done.  Returns the evaluation (cells without per-sample results), the document
    and the campaign's counts (:class:`~nnaudit.campaign.runner.CampaignStats`).  CampaignError when a batch
    raised."""
    from nnaudit.campaign.attack import DEFAULT_CHUNK, AttackCampaign, merge, run_batches
    from nnaudit.campaign.executor import Executor, ExecutorConfig
    from nnaudit.errors import ConfigError
    from nnaudit.reports.store import ResultStore

    if chunk is not None and chunk < 1:
        raise ConfigError(f"--chunk: expected a number of samples >= 1, got {chunk}")
    if len(y) == 0:
        raise ConfigError("attack: no samples to attack")
    record = record.filled(settings=config.settings(len(y)), seeds={"attack": config.seed}, device=config.device)
    doc, _ = open_document("attack", network, replace(record, resume=False), body={})
    job = AttackCampaign(network, np.asarray(x), np.asarray(y), config, chunk or DEFAULT_CHUNK)
    with ResultStore(campaign.store) as store, Executor(campaign.executor or ExecutorConfig()) as executor:
        batches, stats = run_batches(job, executor, store, progress=progress)
    ev, gallery = merge(job, batches)
    doc.update({**ev.to_dict(examples=0), "examples": gallery})
    return ev, finish(doc, record), stats
