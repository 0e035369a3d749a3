"""What every region route shares: the image, its class, fast margins on the
IR, and the onnxruntime confirmation of counterexamples.

A candidate member is only ever reported as a counterexample after
onnxruntime, run on the original ONNX file, gives it a class other than the
image's (:meth:`RegionContext.confirm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnaudit.verify.regions.result import RegionCounterexample


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class RegionContext:
    """One image under test.

    ``network``: the IR Network; ``lowered``: its lowered form
    (:mod:`nnaudit.networks.lower`); ``ort``: an
    :class:`~nnaudit.networks.runtime.OnnxRuntimeModel` of the original file;
    ``x0``: the image flattened, float64 ``(n_in,)``; ``label``: the class the
    family must keep (the onnxruntime class of ``x0``); ``conf``: its softmax
    confidence.
    """

    network: Any
    lowered: Any
    ort: Any
    x0: np.ndarray
    label: int
    conf: float

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.network.input_shape)

    def margins(self, xs: np.ndarray) -> np.ndarray:
        """``logit_label - max other logit`` ``(B,)`` on the float64 IR for flat ``xs`` ``(B, n_in)``."""
        y = self.lowered.evaluate(np.asarray(xs, dtype=np.float64).reshape(len(xs), -1))
        others = np.delete(y, self.label, axis=1)
        return y[:, self.label] - others.max(axis=1)

    def confirm(self, xs: np.ndarray, *, limit: int = 32) -> RegionCounterexample | None:
        """The first of the flat candidates ``xs`` ``(B, n_in)`` (at most
        ``limit`` tried, in order) whose onnxruntime class is not ``label``."""
        xs = np.asarray(xs, dtype=np.float64).reshape(-1, self.x0.size)[:limit]
        if len(xs) == 0:
            return None
        xs32 = xs.astype(np.float32)
        logits = self.ort.run(xs32.reshape((len(xs),) + self.input_shape))
        pred = logits.argmax(axis=1)
        hit = np.flatnonzero(pred != self.label)
        if len(hit) == 0:
            return None
        i = int(hit[0])
        x = xs32[i].astype(np.float64)
        delta = x - self.x0
        changed = np.flatnonzero(delta != 0)
        return RegionCounterexample(
            x=x, class_before=self.label, class_after=int(pred[i]), conf_before=self.conf,
            conf_after=float(softmax(logits[i])[pred[i]]), pixels_changed=tuple(int(c) for c in changed),
            l0=int(len(changed)), l2=float(np.linalg.norm(delta)), linf=float(np.abs(delta).max(initial=0.0)))


def make_context(network: Any, x: np.ndarray, *, ort: Any = None) -> RegionContext:
    """The context of image ``x`` (shaped ``input_shape`` or flat); the class
    to keep is onnxruntime's class of ``x``."""
    from nnaudit.networks.lower import lower
    from nnaudit.networks.runtime import reference

    ort = ort if ort is not None else reference(network)
    x0 = np.asarray(x, dtype=np.float32).astype(np.float64).reshape(-1)
    logits = ort.run(x0.astype(np.float32).reshape((1,) + tuple(network.input_shape)))[0]
    label = int(logits.argmax())
    return RegionContext(network, lower(network), ort, x0, label, float(softmax(logits)[label]))
