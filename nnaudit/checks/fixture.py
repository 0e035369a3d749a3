"""The object behind the ``nnaudit`` pytest fixture.

Hand-written tests call the same API as ``nnaudit check``, get the same
result objects as the Python API, and assert with helpers whose failure
message states the requirement, the measured value and the worst
counterexample::

    def test_digits_robust(nnaudit):
        ev = nnaudit.attack("digits-ffn", "digits", eps=0.02, limit=50)
        assert ev.robust_accuracy[0.02] >= 0.8
        nnaudit.assert_robust(ev, min_robust_accuracy=0.8)

Every call is recorded for ``--nnaudit-report`` / ``--nnaudit-json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from nnaudit.checks import adapters
from nnaudit.checks.judge import judge_attack, judge_regions, judge_verify
from nnaudit.checks.outcome import Judgement, Status
from nnaudit.checks.session import SessionRecorder


class RobustnessAssertionError(AssertionError):
    """A robustness requirement was not established; the message says why."""


class Nnaudit:
    """Attack, region and verification calls bound to one test.

    ``device``, ``timeout`` and ``seed`` come from ``--nnaudit-device``,
    ``--nnaudit-timeout`` and the ``@pytest.mark.nnaudit(...)`` marker;
    model, data and property paths may be relative to the test file.
    """

    def __init__(self, recorder: SessionRecorder, nodeid: str, folder: Path, *, device: str = "cpu",
                 timeout: float | None = None, seed: int = 0) -> None:
        self._recorder = recorder
        self._nodeid = nodeid
        self._folder = folder
        self.device = device
        self.timeout = timeout
        self.seed = seed

    def _path(self, value: Any) -> Any:
        """A relative path that does not exist from the working directory but does from the test file."""
        if isinstance(value, (str, os.PathLike)) and not Path(value).is_absolute() and not Path(value).exists():
            candidate = self._folder / value
            if candidate.exists():
                return candidate
        return value

    def _data(self, net: Any, data: Any, limit: int | None) -> tuple[Any, Any]:
        from nnaudit.networks.datasets import BUNDLED

        if isinstance(data, str) and data in BUNDLED:
            return adapters.load_samples(net, data, limit)
        return adapters.load_samples(net, self._path(data), limit)

    def _record(self) -> Any:
        from nnaudit.runs.record import Record

        return Record(device=self.device, command=f"pytest {self._nodeid}")

    def attack(self, model: Any, data: Any, *, eps: float | Sequence[float], attacks: Sequence[str] = ("pgd",),
               norm: str = "linf", limit: int | None = None, bounds: tuple[float, float] = (0.0, 1.0),
               options: dict[str, dict[str, Any]] | None = None, seed: int | None = None) -> Any:
        """``nnaudit.attacks.evaluate`` on ``data`` (a bundled name, an .npz, or ``(x, y)``);
        returns its :class:`~nnaudit.attacks.evaluation.Evaluation`."""
        from nnaudit.runs.attack import AttackRun, run_attack

        net = adapters.load_network(self._path(model))
        x, y = self._data(net, data, limit)
        eps_list = (float(eps),) if isinstance(eps, (int, float)) else tuple(float(e) for e in eps)
        config = AttackRun(attacks=tuple(attacks), eps=eps_list, norm=norm, bounds=bounds, options=options or {},
                           seed=self.seed if seed is None else seed, device=self.device, threads=1)
        ev, doc = run_attack(net, x, y, config, self._record())
        self._recorder.add_call(self._nodeid, "attack", ev, doc)
        return ev

    def regions(self, model: Any, data: Any, *, limit: int | None = 1, grid: tuple[int, int] | None = (4, 4),
                patch: int | None = None, step: float = 0.1, steps: int = 1, budget: float | None = None,
                budget_norm: str = "l0", method: str = "exact", timeout: float | None = None) -> tuple[Any, ...]:
        """``nnaudit.verify.regions`` on each of the first ``limit`` images; returns
        their :class:`~nnaudit.verify.regions.result.ImageResult` objects."""
        from nnaudit.runs.regions import RegionsRun, run_regions

        net = adapters.load_network(self._path(model))
        x, y = self._data(net, data, limit)
        from nnaudit.networks.devices import device_name

        device = device_name(self.device)  # auto resolved: the record names the device that ran
        config = RegionsRun(grid=grid, patch=patch, step=step, steps=steps, budget=budget, budget_norm=budget_norm,
                            method=method, timeout=timeout or self.timeout or 10.0, seed=self.seed, device=device)
        images, doc = run_regions(net, x, y, config, replace(self._record(), device=device))
        result = tuple(images)
        self._recorder.add_call(self._nodeid, "regions", result, doc)
        return result

    def verify(self, model: Any, prop: Any, *, timeout: float | None = None) -> Any:
        """``nnaudit.verify.verify_property`` on a .vnnlib path or a Property; returns its
        :class:`~nnaudit.verify.results.VerifyResult`."""
        from dataclasses import replace

        from nnaudit.networks.devices import device_name
        from nnaudit.runs.verify import VerifyRun, run_verify

        net = adapters.load_network(self._path(model))
        device = device_name(self.device)  # auto resolved: the record names the device that ran
        config = VerifyRun(timeout=timeout or self.timeout or 60.0, seed=self.seed, device=device)
        (res,), doc = run_verify(net, [self._path(prop)], config, replace(self._record(), device=device))
        self._recorder.add_call(self._nodeid, "verify", res, doc)
        return res

    def judge(self, result: Any, *, min_robust_accuracy: float | None = None,
              min_clean_accuracy: float | None = None, max_unsafe_regions: int | None = None,
              expect: str | None = None) -> Judgement:
        """Compare a result of :meth:`attack`, :meth:`regions` or :meth:`verify`
        (or of the Python API) with a requirement, without asserting."""
        entry = self._recorder.entry_for(result)
        doc = entry["result"] if entry else None
        if hasattr(result, "robust_accuracy") and hasattr(result, "to_dict") and isinstance(result.robust_accuracy, dict):
            body = doc if doc is not None else result.to_dict()
            if min_robust_accuracy is None and min_clean_accuracy is None:
                raise TypeError("assert_robust on an attack result: give min_robust_accuracy and/or min_clean_accuracy")
            judgement = judge_attack(body, min_robust_accuracy=min_robust_accuracy,
                                     min_clean_accuracy=min_clean_accuracy)
        elif hasattr(result, "verdict"):
            instances = doc["instances"] if doc is not None else [result.to_dict()]
            judgement = judge_verify(instances, expect=expect or "holds")
        elif _is_images(result):
            images = doc["images"] if doc is not None else [im.to_dict() for im in _as_list(result)]
            judgement = judge_regions(images, max_unsafe_regions=max_unsafe_regions or 0)
        else:
            raise TypeError(f"assert_robust: expected the result of nnaudit.attack, .regions or .verify, "
                            f"got {type(result).__name__}")
        self._recorder.judged(result, judgement)
        return judgement

    def assert_robust(self, result: Any, **requirement: Any) -> Judgement:
        """Assert the requirement holds (see :meth:`judge` for the keywords); on
        failure or an inconclusive result, raise with the requirement, the
        measured value and the worst counterexample (pytest hides this frame)."""
        __tracebackhide__ = True
        judgement = self.judge(result, **requirement)
        if judgement.status is not Status.PASSED:
            raise RobustnessAssertionError(assertion_message(judgement))
        return judgement

    def assert_holds(self, result: Any) -> Judgement:
        """A verification result must be HOLDS."""
        __tracebackhide__ = True
        return self.assert_robust(result, expect="holds")

    def assert_safe(self, result: Any, *, max_unsafe_regions: int = 0) -> Judgement:
        """At most ``max_unsafe_regions`` unsafe regions, and no unknown one that could exceed it."""
        __tracebackhide__ = True
        return self.assert_robust(result, max_unsafe_regions=max_unsafe_regions)


#: how the judges introduce the counterexample in a message
_CEX_MARKERS = (" Worst counterexample: ", ". Counterexample (onnxruntime-checked): ")


def assertion_message(judgement: Judgement) -> str:
    """A few lines for a failed assertion: requirement and status, what was measured, the counterexample."""
    body, cex = judgement.message, ""
    for marker in _CEX_MARKERS:
        if marker in body:
            body, _, cex = body.partition(marker)
            break
    measured = judgement.measured if not isinstance(judgement.measured, float) else f"{judgement.measured:.4g}"
    lines = [f"{judgement.requirement or 'requirement'}: {judgement.status.value.upper()} (measured {measured})",
             f"  {body.rstrip('.')}"]
    if cex:
        lines.append(f"  counterexample: {cex.rstrip('.')}")
    return "\n".join(lines)


def _as_list(result: Any) -> list[Any]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _is_images(result: Any) -> bool:
    items = _as_list(result)
    return bool(items) and all(hasattr(i, "regions") and hasattr(i, "predicted") for i in items)
