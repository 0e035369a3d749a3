"""The binding of each check kind to its run: ``prepare_*`` per kind.

A ``prepare_*`` function turns a check of the checks file into a
zero-argument callable after loading and checking everything it needs
(model, data, properties, attack options) -- so bad input is reported before
any check runs.  The callable runs the check through the kind's run function
(:mod:`nnaudit.runs`: ``run_attack``, ``run_regions``, ``run_verify``), which
the pytest fixture and the command line call too, so checks and hand-written
tests produce the same result objects and documents; then it judges the
document against the check's requirement.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nnaudit.checks.judge import judge_attack, judge_regions, judge_verify
from nnaudit.checks.outcome import Judgement
from nnaudit.checks.kinds import AttackCheck, Check, RegionsCheck, VerifyCheck
from nnaudit.checks.progress import Progress
from nnaudit.checks.warm import RunCache
from nnaudit.errors import ConfigError, NnauditError
from nnaudit.networks.devices import device_name
from nnaudit.runs.attack import AttackRun, run_attack, run_attack_campaign
from nnaudit.runs.record import Record
from nnaudit.runs.regions import RegionsRun, check_range, run_regions, run_regions_campaign
from nnaudit.runs.verify import VerifyRun, check_pixel_boxes, run_verify

Runner = Callable[[], tuple[Judgement, dict[str, Any]]]


@dataclass(frozen=True)
class RunSettings:
    """Overrides from the command line or pytest options (None: keep the file's value)."""

    device: str | None = None     # --device / --nnaudit-device
    timeout: float | None = None  # --timeout / --nnaudit-timeout: seconds per property or region
    command: str = ""             # recorded as the nested documents' ``command``
    baseline: Path | None = None  # --baseline: a previous check result JSON (None: each check's own, if any)
    use_baseline: bool = True     # False (--no-baseline): compare with no baseline at all
    progress: Progress = field(default_factory=Progress)  # how long checks show progress (default: not at all)
    campaign: Any = None          # --store/--scheduler/--workers or [defaults] store: attack and regions checks
                                  # run as campaigns (nnaudit.runs.regions.CampaignSetup; None: in this process)


# ------------------------------------------------------------------ shared loading


def load_network(model: Any, normalisation: Any = None) -> Any:
    """A Network from a Network, an ONNX path or a zoo name (a path that exists wins), with
    ``normalisation`` (a :class:`~nnaudit.networks.Normalisation`; None: none) in front."""
    from nnaudit.networks import load, normalised, zoo

    if hasattr(model, "layers") and hasattr(model, "input_shape"):
        return model if normalisation is None else normalised(model, normalisation)
    path = Path(model)
    if not path.exists() and isinstance(model, str) and model in zoo.names():
        path = zoo.path(model)
    return load(path, normalisation=normalisation)


def load_samples(net: Any, data: Any, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x (N, *input_shape) float32, y (N,) int64)`` from a bundled name, an .npz or ``(x, y)``."""
    from nnaudit.networks.datasets import load_data, validate_arrays

    if isinstance(data, (str, os.PathLike)):
        x, y = load_data(data, tuple(net.input_shape), num_classes=net.output_size)
    else:
        x, y = data
        x, y = validate_arrays(np.asarray(x), np.atleast_1d(np.asarray(y)), tuple(net.input_shape), net.output_size,
                         "data given to nnaudit")
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


# ------------------------------------------------------------------ attack


def prepare_attack(check: AttackCheck, run: RunSettings, cache: RunCache) -> Runner:
    from nnaudit.attacks.api import make_attack

    net = cache.network(check.model, check.mean, check.std)
    x, y = cache.samples(net, check.data, check.limit)
    config = AttackRun(attacks=check.attacks, eps=check.eps, norm=check.norm, bounds=check.bounds,
                       options=check.options, seed=check.seed, device=run.device or check.device, threads=1,
                       version=check.version, targeted=check.targeted, target_classes=check.target_classes)
    names, options, _ = config.plan()
    for name in names:
        make_attack(name, **options.get(name, {}))  # bad options fail here, before any work

    def go() -> tuple[Judgement, dict[str, Any]]:
        cells = len(names) * len(set(check.eps))
        ticker = run.progress.start(check.name, cells * len(x), "samples attacked")
        try:
            if run.campaign is None:
                _, doc = run_attack(net, x, y, config, Record(command=run.command or None),
                                    progress=None if ticker is None else _attack_progress(ticker, cells))
            else:
                if ticker is not None:
                    ticker.total = len(x)
                _, doc, _ = run_attack_campaign(net, x, y, config, Record(command=run.command or None), run.campaign,
                                                progress=None if ticker is None else ticker.advance)
        finally:
            if ticker is not None:
                ticker.close()
        return judge_attack(doc, min_robust_accuracy=check.min_robust_accuracy,
                            min_clean_accuracy=check.min_clean_accuracy), doc

    return go


# ------------------------------------------------------------------ regions


def _attack_progress(ticker: Any, cells: int) -> Callable[[str, float, int, int], None]:
    """``run_attack``'s per-batch callback (samples done within one attack and eps, of those
    attacked: the correctly classified ones) as steps of a ticker over ``cells`` (attack, eps)."""
    seen: dict[tuple[str, float], int] = {}

    def step(attack: str, eps: float, done: int, total: int) -> None:
        ticker.total = cells * total
        before = seen.get((attack, eps), 0)
        seen[(attack, eps)] = done
        ticker.advance(max(0, done - before))

    return step


def prepare_regions(check: RegionsCheck, run: RunSettings, cache: RunCache) -> Runner:
    from nnaudit.verify.regions.api import method_list
    from nnaudit.verify.regions.spec import ImageLayout

    net = cache.network(check.model, check.mean, check.std)
    x, y = cache.samples(net, check.data, check.limit)
    with naming_key(check, "device"):  # a GPU asked for and missing: before any work
        device = device_name(run.device or check.device)
    config = RegionsRun(grid=check.grid, patch=check.patch, step=check.step, steps=check.steps, budget=check.budget,
                        budget_norm=check.budget_norm, method=check.method, timeout=run.timeout or check.timeout,
                        seed=check.seed, device=device)
    ImageLayout.from_input_shape(net.input_shape)  # not an image: fails here
    method_list(check.method)
    with naming_key(check, "patch" if check.patch is not None else "grid"):
        plan = config.plan(net, len(x))          # a grid or patch that does not fit the image: fails here
    with naming_key(check, "data"):
        check_range(net, x, plan)  # data outside the clip range: fails here
    record = Record(device=device, command=run.command or None)
    total = len(x) * len(plan.regions) * len(method_list(check.method))

    def go() -> tuple[Judgement, dict[str, Any]]:
        ticker = run.progress.start(check.name, total, "regions", "unsafe")
        try:
            if run.campaign is None:
                _, doc = run_regions(net, x, y, config, record, progress=None if ticker is None else ticker.advance)
            else:
                # the settings of `nnaudit regions --store` (they name the data: the store's images are keyed
                # by index, so two checks on other data must not share a settings hash)
                _, doc, _ = run_regions_campaign(net, x, y, plan, replace(record, data=str(check.data)),
                                                 run.campaign, progress=None if ticker is None else ticker.advance)
        finally:
            if ticker is not None:
                ticker.close()
        return judge_regions(doc["images"], max_unsafe_regions=check.max_unsafe_regions), doc

    return go


# ------------------------------------------------------------------ verify


def prepare_verify(check: VerifyCheck, run: RunSettings, cache: RunCache) -> Runner:
    from nnaudit.verify.vnnlib import parse

    net = cache.network(check.model, check.mean, check.std)
    with naming_key(check, "property"):   # a file that is not VNN-LIB, or not this network's
        for path in check.properties:
            parse(path).check_network(net.input_size, net.output_size, where=str(path))
        check_pixel_boxes(net, check.properties)
    with naming_key(check, "device"):  # a GPU asked for and missing: before any work
        device = device_name(run.device or check.device)
    config = VerifyRun(timeout=run.timeout or check.timeout, seed=check.seed, device=device)
    record = Record(device=device, command=run.command or None)

    def go() -> tuple[Judgement, dict[str, Any]]:
        _, doc = run_verify(net, check.properties, config, record)
        return judge_verify(doc["instances"], expect=check.expect), doc

    return go


@contextmanager
def naming_key(check: Check, key: str | None = None) -> Iterator[None]:
    """Bad input found inside the block: the message names the checks file and the check (issue #23),
    and ``key`` when the block checks that key's value."""
    try:
        yield
    except NnauditError as exc:
        if not check.source or check.source in str(exc):
            raise
        where = check.source if key is None else f"{check.source}, key {key!r}"
        raise ConfigError(f"{where}: {exc}") from exc


PREPARE: dict[str, Callable[[Any, RunSettings, RunCache], Runner]] = {
    "attack": prepare_attack, "regions": prepare_regions, "verify": prepare_verify}


def prepare(check: Check, run: RunSettings, cache: RunCache | None = None) -> Runner:
    """The runner of ``check``, after loading and checking its inputs (through ``cache``: once per run)."""
    return PREPARE[check.kind](check, run, cache if cache is not None else RunCache())
