"""``run_verify``: VNN-LIB properties through the complete verifier, and their ``verify`` document.

Each property is decided by :func:`nnaudit.verify.engine.verify_property`;
its instance is appended to the document, which is written after every
instance when the record has a JSON path.  Resuming keeps the instances
already in the file -- they must be the first properties of this run, in
order -- and decides only the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.errors import ConfigError, SpecError
from nnaudit.runs.record import Record, finish, open_document, save

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.verify.engine import VerifyConfig
    from nnaudit.verify.results import VerifyResult


@dataclass(frozen=True)
class VerifyRun:
    """A verification given by its timeout and seed, as the checks file and the pytest fixture give it.

    Its instances also record, for a counterexample, the ``reference`` that
    the checks' messages compare it with.
    """

    timeout: float = 60.0   # seconds per property
    seed: int = 0           # seed of the falsifier
    device: str = "cpu"     # where the bounds run (the record's header names it)

    def engine(self) -> VerifyConfig:
        """The verifier's configuration: the defaults, with this timeout, falsifier seed and device."""
        from nnaudit.verify.engine import VerifyConfig
        from nnaudit.verify.falsify import FalsifyConfig

        return replace(VerifyConfig(timeout_s=self.timeout, device=self.device), falsify=FalsifyConfig(seed=self.seed))

    def settings(self, properties: Sequence[Any]) -> dict[str, Any]:
        """The ``settings`` recorded for this run of ``properties``."""
        return {"timeout_s": self.timeout, "properties": [str(p) if isinstance(p, (str, os.PathLike)) else
                                                          getattr(p, "name", "property") for p in properties]}


def run_verify(network: Any, properties: Sequence[Any], config: VerifyConfig | VerifyRun = VerifyRun(),
               record: Record = Record(), *,
               progress: Callable[[int, int], None] | None = None) -> tuple[list[VerifyResult], dict[str, Any]]:
    """Decide every property on ``network``; returns the results and the ``verify`` document.

    ``properties``: .vnnlib paths or :class:`~nnaudit.verify.spec.Property`
    objects; ``config``: the verifier's ``VerifyConfig`` (as ``nnaudit verify``
    builds it; settings default to its timeout, falsifier and search) or a
    :class:`VerifyRun`; ``progress(done, left)``: sub-domains of the property
    being decided.
    """
    from nnaudit.verify.engine import verify_property
    from nnaudit.verify.results import VerifyResult

    check_pixel_boxes(network, properties)
    if isinstance(config, VerifyRun):
        engine, reference = config.engine(), True
        record = record.filled(settings=config.settings(properties), seeds={"verify": config.seed})
    else:
        engine, reference = config, False
        record = record.filled(settings={"timeout_s": config.timeout_s, "falsify": asdict(config.falsify),
                                         "bab": asdict(config.bab)}, seeds={"falsify": config.falsify.seed})
    doc, saved = open_document("verify", network, record, body={"instances": []})
    doc["instances"] = _kept(record, saved, [_name(p) for p in properties])
    results = [VerifyResult.from_dict(instance) for instance in doc["instances"]]
    for prop in properties[len(results):]:
        res = verify_property(network, prop, config=engine, progress=progress)
        results.append(res)
        doc["instances"].append({**res.to_dict(), **(_reference(network, prop, res) if reference else {})})
        save(doc, record)
    return results, finish(doc, record)


def check_pixel_boxes(network: Any, properties: Sequence[Any]) -> None:
    """For a normalised network, whose properties' inputs are pixels (before normalisation): SpecError
    for a box with a bound below 0 -- a box written for the normalised input, as VNN-COMP's oval21 ones are."""
    if getattr(network, "normalisation", None) is None:
        return
    from nnaudit.verify.vnnlib import parse

    for prop in properties:
        spec = parse(prop) if isinstance(prop, (str, os.PathLike)) else prop
        for box, _ in spec.cases:
            low = np.asarray(box.lower, dtype=np.float64).reshape(-1)
            if low.size and low.min() < 0:
                i = int(np.argmin(low))
                raise SpecError(
                    f"{_name(prop)}: X_{i} has lower bound {low[i]:g} < 0, but the model normalises its input "
                    "(--mean/--std, or mean/std in nnaudit.toml), so X_i are read as pixels, before normalisation; "
                    "this box looks like one of the normalised input (VNN-COMP's oval21 boxes are): verify it "
                    "without the normalisation")


def _name(prop: Any) -> str:
    """The ``property`` an instance of ``prop`` records (as the verifier names it)."""
    return Path(prop).name if isinstance(prop, (str, os.PathLike)) else str(prop.name)


def _kept(record: Record, saved: dict[str, Any] | None, names: list[str]) -> list[dict[str, Any]]:
    """The instances of the saved run to keep: they must be the first of ``names``, in order."""
    if saved is None:
        return []
    instances = list(saved.get("instances") or [])
    have = [instance.get("property") for instance in instances]
    if have != names[:len(have)] or len(have) > len(names):
        raise ConfigError(f"{record.json_path}: cannot resume: its instances are of {have}, "
                          f"which are not the first of this run's properties {names}")
    return instances


def _reference(net: Any, prop: Any, res: Any) -> dict[str, Any]:
    """For a counterexample: the centre of the box that contains it and its onnxruntime class."""
    if res.counterexample is None:
        return {}
    from nnaudit.networks.runtime import reference
    from nnaudit.verify.vnnlib import parse

    spec = parse(prop) if isinstance(prop, (str, os.PathLike)) else prop
    x = np.asarray(res.counterexample.x, dtype=np.float64).reshape(1, -1)
    for box, _ in spec.cases:
        if box.contains_float32(x)[0]:
            centre = (box.lower + box.upper) / 2.0
            logits = reference(net).run(centre.reshape((1, *net.input_shape)).astype(np.float32))
            return {"reference": {"x": centre.tolist(), "class": int(np.argmax(logits[0]))}}
    return {}
