"""Falsification: find inputs that really violate a property, cheaply.

Step 1 of the pipeline, and the judge of every candidate later steps
produce.  Candidates come from random sampling in the box and from
projected gradient descent on the property's margin
(:func:`nnaudit.attacks.minimize_in_box`); a candidate becomes a
counterexample only after onnxruntime, on the original ONNX file, puts its
output in the unsafe region (:func:`confirm`).  The input is first rounded
to float32 inside the box, since that is what the file computes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnaudit.verify.limits import Limits
from nnaudit.verify.results import Counterexample
from nnaudit.verify.spec import Box, Region

log = logging.getLogger(__name__)

#: random samples evaluated per chunk (the deadline is checked between chunks)
SAMPLE_CHUNK = 256


@dataclass(frozen=True)
class FalsifyConfig:
    """Settings of the falsification phase."""

    samples: int = 1024       # uniform random inputs per box
    pgd_starts: int = 32      # PGD runs: from the best samples and from random points
    pgd_steps: int = 60       # sign-gradient steps per run
    seed: int = 0             # seed of the sampler and of PGD


def float32_in_box(x: np.ndarray, box: Box) -> np.ndarray:
    """Round flat inputs ``(B, n_in)`` to float32 values inside the box.

    Values that rounding pushes outside a bound move one float32 step back in; on a
    dimension whose interval holds no float32 value (an input fixed at a decimal) the value
    is the bound's float32 rounding (see :meth:`Box.contains_float32`).  Returns float32 ``(B, n_in)``.
    """
    x = np.clip(np.asarray(x, dtype=np.float64).reshape(len(x), -1), box.lower, box.upper)
    x32 = x.astype(np.float32)
    lo32, hi32 = box.lower.astype(np.float32), box.upper.astype(np.float32)
    below = x32.astype(np.float64) < box.lower
    x32 = np.where(below, np.nextafter(lo32, np.float32(np.inf)), x32)
    above = x32.astype(np.float64) > box.upper
    x32 = np.where(above, np.nextafter(hi32, np.float32(-np.inf)), x32)
    empty = box.float32_gaps()[0]
    return np.where(empty, lo32, x32) if empty.any() else x32


def confirm(ort: Any, box: Box, region: Region, xs: np.ndarray, input_shape: tuple[int, ...]) -> Counterexample | None:
    """The first candidate (flat ``(B, n_in)``) whose onnxruntime output is unsafe, or None.

    A candidate the batch run finds unsafe is run once more on its own, and counts only if it is
    unsafe there too: a batch's outputs can differ from a single input's in the last bit, which
    decides a point on the region's boundary, and a re-check of the result runs it alone."""
    if len(xs) == 0:
        return None
    x32 = float32_in_box(xs, box)
    inside = box.contains_float32(x32)
    x32 = x32[inside]
    if len(x32) == 0:
        return None
    y = ort.run(x32.reshape((len(x32),) + tuple(input_shape)))
    for i in np.flatnonzero(region.contains(y))[:16]:
        alone = y[i:i + 1] if len(x32) == 1 else ort.run(x32[i:i + 1].reshape((1,) + tuple(input_shape)))
        if region.contains(alone)[0]:
            return Counterexample(x32[i].astype(np.float64), alone[0], tuple(input_shape))
    return None


def torch_margin(region: Region, targets: Any = None) -> Any:
    """A torch function ``y (B, n_out) -> (B,)`` computing :meth:`Region.margin`.

    ``targets`` ``(B,)`` ints: row i's value is the margin of disjunct
    ``targets[i]`` alone (an index past the last disjunct: of all of them).
    A disjunct's margin is never below the region's, so a row that reaches
    a negative value there has found a counterexample all the same."""
    import torch

    parts = [(torch.as_tensor(c, dtype=torch.float32), torch.as_tensor(d, dtype=torch.float32))
             for c, d in region.disjuncts]
    pick = None if targets is None else torch.as_tensor(np.asarray(targets), dtype=torch.int64)[:, None]

    def margin(y: Any) -> Any:
        y = y.reshape(y.shape[0], -1)
        per = [(y @ c.T + d).max(dim=1).values if len(d) else torch.full((y.shape[0],), -torch.inf)
               for c, d in parts]
        per = torch.stack(per, dim=1)
        whole = per.min(dim=1).values
        if pick is None:
            return whole
        return torch.cat([per, whole[:, None]], dim=1).gather(1, pick)[:, 0]

    return margin


def falsify(network: Any, ort: Any, box: Box, region: Region, config: FalsifyConfig = FalsifyConfig(),
            deadline: float | None = None) -> Counterexample | None:
    """Search the box for a counterexample: random samples, then PGD on the margin.  Past
    ``deadline`` (checked between chunks of samples and at every PGD step) it raises
    :class:`~nnaudit.verify.limits.OutOfTime`."""
    limits = Limits(deadline)
    rng = np.random.default_rng(config.seed)
    shape = tuple(network.input_shape)
    n = box.size
    xs = box.lower + (box.upper - box.lower) * rng.random((config.samples, n))
    xs = np.concatenate([xs, ((box.lower + box.upper) / 2)[None]], axis=0)
    margins = np.concatenate([_margins(network, region, xs[i:i + SAMPLE_CHUNK], shape, limits)
                              for i in range(0, len(xs), SAMPLE_CHUNK)])
    order = np.argsort(margins)
    found = confirm(ort, box, region, xs[order[:8]][margins[order[:8]] <= 0], shape)
    if found is not None or config.pgd_starts <= 0:
        return found
    limits.check_time()
    return _pgd(network, ort, box, region, xs[order[: config.pgd_starts // 2]], config, limits)


def _margins(network: Any, region: Region, xs: np.ndarray, shape: tuple[int, ...], limits: Limits) -> np.ndarray:
    """The region's margin at the flat inputs ``xs`` ``(B, n_in)``, after a deadline check."""
    limits.check_time()
    return region.margin(network.evaluate(xs.reshape((len(xs),) + shape)))


def _pgd(network: Any, ort: Any, box: Box, region: Region, starts: np.ndarray, config: FalsifyConfig,
         limits: Limits = Limits()) -> Counterexample | None:
    try:
        from nnaudit.networks.box_search import minimize_in_box
    except (ImportError, AttributeError) as exc:  # the attacks package is optional at run time
        log.warning("PGD falsification unavailable (%s); using random sampling only", exc)
        return None
    import torch

    shape = tuple(network.input_shape)
    device = torch.get_default_device()  # a GPU under the verifier's ``with torch.device(...)``
    model = network.to_torch(device)
    count = config.pgd_starts
    # each start descends on one disjunct's margin or on the whole region's, in turn: the
    # region's margin (a min over disjuncts) follows whichever disjunct is lowest at the
    # moment and can stall between them; on mnist_fc 256x4 prop 8 eps 0.05 (9 disjuncts, one
    # per other class) 0 of 5 seeds found a counterexample that way, 5 of 5 with targets
    margin = torch_margin(region, np.arange(count) % (len(region.disjuncts) + 1))
    lo = np.broadcast_to(box.lower.reshape(shape), (count,) + shape).copy()
    hi = np.broadcast_to(box.upper.reshape(shape), (count,) + shape).copy()
    rng = np.random.default_rng(config.seed + 1)
    rest = lo[len(starts):] + (hi[len(starts):] - lo[len(starts):]) * rng.random(lo[len(starts):].shape)
    init = np.concatenate([starts.reshape((len(starts),) + shape), rest], axis=0)
    with torch.enable_grad():
        def objective(t: Any) -> Any:
            limits.check_time()  # every step: a wide network's PGD run takes seconds
            return margin(model(t))

        x, value = minimize_in_box(objective, lo, hi, steps=config.pgd_steps, restarts=1,
                                   seed=config.seed, x_init=init, stop_below=-1e-4, device=device)
    order = np.argsort(value)[:8]
    return confirm(ort, box, region, x.reshape(count, -1)[order], shape)
