"""The binding of each check kind to nnaudit's Python API — the only place it happens.

Per kind, a ``*_run`` function calls the public API (``nnaudit.attacks.evaluate``,
``nnaudit.verify.regions``, ``nnaudit.verify.verify_property``) and wraps its
result in a full result document (reports/SCHEMA.md), and a ``prepare_*``
function turns a check of the checks file into a zero-argument callable after
loading and checking everything it needs (model, data, properties, attack
options) — so bad input is reported before any check runs.  The pytest
fixture calls the same ``*_run`` functions, so checks and hand-written tests
produce the same result objects and documents.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnaudit.checks.judge import judge_attack, judge_regions, judge_verify
from nnaudit.checks.outcome import Judgement
from nnaudit.config import AttackCheck, Check, RegionsCheck, VerifyCheck

Runner = Callable[[], tuple[Judgement, dict[str, Any]]]


@dataclass(frozen=True)
class RunSettings:
    """Overrides from the command line or pytest options (None: keep the file's value)."""

    device: str | None = None     # --device / --nnaudit-device
    timeout: float | None = None  # --timeout / --nnaudit-timeout: seconds per property or region
    command: str = ""             # recorded as the nested documents' ``command``


# ------------------------------------------------------------------ shared loading


def load_network(model: Any) -> Any:
    """A Network from a Network, an ONNX path or a zoo name (a path that exists wins)."""
    from nnaudit.networks import load, zoo

    if hasattr(model, "layers") and hasattr(model, "input_shape"):
        return model
    path = Path(model)
    if not path.exists() and isinstance(model, str) and model in zoo.names():
        path = zoo.path(model)
    return load(path)


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


def _document(kind: str, net: Any, settings: dict[str, Any], seed: int, device: str, command: str) -> dict[str, Any]:
    from nnaudit.reports import schema

    return schema.new_result(kind, network=net, settings=settings, seeds={kind: seed}, device=device,
                             command=command or None)


# ------------------------------------------------------------------ attack


def attack_run(net: Any, x: np.ndarray, y: np.ndarray, *, eps: Sequence[float], attacks: Sequence[str] = ("pgd",),
               norm: str = "linf", bounds: tuple[float, float] = (0.0, 1.0),
               options: dict[str, dict[str, Any]] | None = None, seed: int = 0, device: str = "cpu",
               command: str = "", examples: int = 4) -> tuple[Any, dict[str, Any]]:
    """``nnaudit.attacks.evaluate`` and its ``attack`` document."""
    from nnaudit.attacks import evaluate
    from nnaudit.reports import schema

    ev = evaluate(net, x, y, attacks=list(attacks), eps=list(eps), norm=norm, bounds=bounds, device=device,
                  seed=seed, options=options or None, threads=1)
    settings = {"attacks": list(ev.attacks), "eps": list(ev.eps), "norm": ev.norm.value, "range": list(bounds),
                "options": options or {}, "num_samples": int(len(y))}
    doc = _document("attack", net, settings, seed, device, command)
    doc.update(ev.to_dict(examples=examples))
    return ev, schema.finish(doc)


def prepare_attack(check: AttackCheck, run: RunSettings) -> Runner:
    from nnaudit.attacks.api import make_attack

    net = load_network(check.model)
    x, y = load_samples(net, check.data, check.limit)
    for name in check.attacks:
        make_attack(name, **check.options.get(name, {}))  # bad options fail here, before any work
    device = run.device or check.device

    def go() -> tuple[Judgement, dict[str, Any]]:
        _, doc = attack_run(net, x, y, eps=check.eps, attacks=check.attacks, norm=check.norm, bounds=check.bounds,
                            options=check.options, seed=check.seed, device=device, command=run.command)
        return judge_attack(doc, min_robust_accuracy=check.min_robust_accuracy,
                            min_clean_accuracy=check.min_clean_accuracy), doc

    return go


# ------------------------------------------------------------------ regions


def regions_run(net: Any, x: np.ndarray, y: np.ndarray, *, grid: tuple[int, int] | None = (4, 4),
                patch: int | None = None, step: float = 0.1, steps: int = 1, budget: float | None = None,
                budget_norm: str = "l0", clip: tuple[float, float] = (0.0, 1.0), method: str = "exact",
                timeout: float = 10.0, seed: int = 0, device: str = "cpu",
                command: str = "") -> tuple[list[Any], dict[str, Any]]:
    """``nnaudit.verify.regions`` on every image of ``x`` and the ``regions`` document."""
    from nnaudit.networks.runtime import OnnxRuntimeModel
    from nnaudit.reports import schema
    from nnaudit.verify.regions import check_image
    from nnaudit.verify.regions.api import RegionConfig, method_list
    from nnaudit.verify.regions.spec import Manipulation

    manip = Manipulation(step=step, steps=steps, clip=clip, budget_norm=None if budget is None else budget_norm,
                         budget=budget)
    spec = f"patch:{patch}" if patch is not None else f"{grid[0]}x{grid[1]}" if grid else "whole"
    config = RegionConfig(timeout_per_region=timeout)
    ort = OnnxRuntimeModel(net.source)
    images = [check_image(net, x[i], int(y[i]), spec, manip, method=method, config=config, ort=ort, index=i)
              for i in range(len(x))]
    settings = {"regions": spec, "manipulation": manip.to_dict(), "method": method, "timeout_per_region": timeout,
                "num_images": int(len(x))}
    doc = _document("regions", net, settings, seed, device, command)
    doc.update({"manipulation": manip.to_dict(), "grid": list(grid) if grid and patch is None else None,
                "patch": patch, "methods": method_list(method), "images": [im.to_dict() for im in images]})
    return images, schema.finish(doc)


def prepare_regions(check: RegionsCheck, run: RunSettings) -> Runner:
    from nnaudit.verify.regions.api import method_list
    from nnaudit.verify.regions.spec import ImageLayout, Manipulation

    net = load_network(check.model)
    x, y = load_samples(net, check.data, check.limit)
    ImageLayout.from_input_shape(net.input_shape)  # not an image: fails here
    method_list(check.method)
    Manipulation(step=check.step, steps=check.steps, budget_norm=None if check.budget is None else check.budget_norm,
                 budget=check.budget)
    timeout = run.timeout or check.timeout

    def go() -> tuple[Judgement, dict[str, Any]]:
        _, doc = regions_run(net, x, y, grid=check.grid, patch=check.patch, step=check.step, steps=check.steps,
                             budget=check.budget, budget_norm=check.budget_norm, method=check.method,
                             timeout=timeout, seed=check.seed, device=run.device or check.device,
                             command=run.command)
        return judge_regions(doc["images"], max_unsafe_regions=check.max_unsafe_regions), doc

    return go


# ------------------------------------------------------------------ verify


def verify_run(net: Any, properties: Sequence[Any], *, timeout: float = 60.0, seed: int = 0, device: str = "cpu",
               command: str = "") -> tuple[list[Any], dict[str, Any]]:
    """``nnaudit.verify.verify_property`` on each property (a .vnnlib path or a
    Property) and the ``verify`` document.  A VIOLATED instance also records
    ``reference``: the centre of its input box and the class onnxruntime gives it."""
    from dataclasses import replace

    from nnaudit.reports import schema
    from nnaudit.verify import verify_property
    from nnaudit.verify.engine import VerifyConfig
    from nnaudit.verify.falsify import FalsifyConfig

    config = replace(VerifyConfig(timeout_s=timeout), falsify=FalsifyConfig(seed=seed))
    results, instances = [], []
    for prop in properties:
        res = verify_property(net, prop, config=config)
        results.append(res)
        instances.append({**res.to_dict(), **_reference(net, prop, res)})
    settings = {"timeout_s": timeout, "properties": [str(p) if isinstance(p, (str, os.PathLike)) else
                                                      getattr(p, "name", "property") for p in properties]}
    doc = _document("verify", net, settings, seed, device, command)
    doc["instances"] = instances
    return results, schema.finish(doc)


def _reference(net: Any, prop: Any, res: Any) -> dict[str, Any]:
    """For a counterexample: the centre of the box that contains it and its onnxruntime class."""
    if res.counterexample is None:
        return {}
    from nnaudit.networks.runtime import OnnxRuntimeModel
    from nnaudit.verify.vnnlib import parse

    spec = parse(prop) if isinstance(prop, (str, os.PathLike)) else prop
    x = np.asarray(res.counterexample.x, dtype=np.float64).reshape(1, -1)
    for box, _ in spec.cases:
        if box.contains(x)[0]:
            centre = (box.lower + box.upper) / 2.0
            logits = OnnxRuntimeModel(net.source).run(centre.reshape((1, *net.input_shape)).astype(np.float32))
            return {"reference": {"x": centre.tolist(), "class": int(np.argmax(logits[0]))}}
    return {}


def prepare_verify(check: VerifyCheck, run: RunSettings) -> Runner:
    from nnaudit.verify.vnnlib import parse

    net = load_network(check.model)
    for path in check.properties:
        parse(path).check_network(net.input_size, net.output_size, where=str(path))
    timeout = run.timeout or check.timeout

    def go() -> tuple[Judgement, dict[str, Any]]:
        _, doc = verify_run(net, check.properties, timeout=timeout, seed=check.seed,
                            device=run.device or check.device, command=run.command)
        return judge_verify(doc["instances"], expect=check.expect), doc

    return go


PREPARE: dict[str, Callable[[Any, RunSettings], Runner]] = {
    "attack": prepare_attack, "regions": prepare_regions, "verify": prepare_verify}


def prepare(check: Check, run: RunSettings) -> Runner:
    """The runner of ``check``, after loading and checking its inputs."""
    return PREPARE[check.kind](check, run)
