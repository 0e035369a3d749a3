"""ReLU-splitting branch and bound over a region's continuous hull: the ``relu split`` route.

A region's family lies inside its hull (every value in ``[lowest, highest]`` of
its grid values, the rest of the image fixed), so a proof that no point of the
hull changes the class proves the family SAFE.  When the single CROWN bound over
the hull is too loose (a CIFAR-10 cell at step 0.05), input splitting over the
region's 192 values cannot tighten it in time; splitting ReLUs can.  This route
hands the hull to the complete verifier's search (:class:`nnaudit.verify.bab.search.Search`:
alpha-beta-CROWN with ReLU splits, Z3 on small leaves), on the region's cone of
influence (:func:`nnaudit.verify.regions.batch.region_cone`: the region's values
and one carrier input fixed at 1) where the network allows it, else on the whole
network with the other values fixed by the box.

The search's HOLDS is about the float64 network (bounds above its tolerance, or
Z3 unsat), as the bounds route's SAFE is.  Its counterexamples are points of the
hull; one is a region counterexample only when it is a member of the family
(the hull's vertices and the image are) and onnxruntime confirms it on the
original file (:meth:`RegionContext.confirm`); a non-member is snapped to the
nearest member and tried once more, else the route ends undecided.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.verify.regions.check import RegionContext
from nnaudit.verify.regions.result import RegionCounterexample
from nnaudit.verify.regions.spec import Family

if TYPE_CHECKING:
    from nnaudit.verify.bab.config import BabConfig


@dataclass(frozen=True)
class ReluBabResult:
    """``safe``: the search proved the hull; ``counterexample``: a member onnxruntime confirms;
    neither: ``message`` says how the search ended.  ``subdomains``: how many it bounded."""

    safe: bool
    counterexample: RegionCounterexample | None
    subdomains: int
    message: str


#: sub-domains bounded per pass of the search on a region's cone (a CIFAR-10 cell's 17,703 sub-domains:
#: 13.9 s of CPU at 512, 18.3 s at 256; four quicker cells: 5.0 s at 512, 5.7 s at 256, 7.7 s at 48).
#: 1024 since proved sub-domains leave a pass's optimisation early (verify.alpha): two cells of
#: 26,573 and 26,863 sub-domains, two interleaved runs each, 118 s against 145 s at 512, same trees
BATCH = 1024
#: alpha-beta-CROWN iterations per batch (the search's default is 10): on the 9 CIFAR-10 cells of images
#: 0-10 at step 0.05 x 2 that 10 left open in 20 s, 25 proved 2 (one in 1,257 sub-domains, 3.6 s) and
#: lost none of the others; 40 and 80 proved the same one and no other (docs/regions.md)
ALPHA_STEPS = 25


class _ConeRuntime:
    """onnxruntime on cone inputs ``(B, p + 1)``: the region's values put into the image."""

    def __init__(self, ctx: RegionContext, pixels: np.ndarray) -> None:
        self.ctx, self.pixels = ctx, pixels

    def full(self, xs: np.ndarray) -> np.ndarray:
        """Flat images ``(B, n_in)`` of cone inputs ``xs``."""
        xs = np.asarray(xs, dtype=np.float64).reshape(len(xs), -1)
        out = np.repeat(self.ctx.x0[None], len(xs), axis=0)
        out[:, self.pixels] = xs[:, : len(self.pixels)]
        return out

    def run(self, xs: np.ndarray) -> np.ndarray:
        full = self.full(xs).astype(np.float32)
        return self.ctx.ort.run(full.reshape((len(full),) + self.ctx.input_shape))


class _ConeNetwork:
    """What the search needs of a network, on cone inputs: their shape and a torch form
    (the image's torch model behind the same placement of values)."""

    def __init__(self, ctx: RegionContext, pixels: np.ndarray) -> None:
        self.ctx, self.pixels = ctx, pixels
        self.input_shape = (len(pixels) + 1,)

    def to_torch(self) -> Any:
        import torch

        ctx, pix = self.ctx, torch.as_tensor(self.pixels)
        model = ctx.network.to_torch(torch.get_default_device())
        base = torch.as_tensor(ctx.x0, dtype=torch.float32)

        class Placed(torch.nn.Module):
            def forward(self, z: torch.Tensor) -> torch.Tensor:
                z = z.reshape(len(z), -1)
                x = base.expand(len(z), -1).index_copy(1, pix, z[:, : len(pix)].to(base.dtype))
                return model(x.reshape((len(z),) + ctx.input_shape))

        return Placed()


def relu_bab(ctx: RegionContext, fam: Family, stop: float, *, config: BabConfig | None = None) -> ReluBabResult:
    """Decide ``fam``'s hull by the ReLU-splitting search until ``stop`` (a ``time.perf_counter``
    time).  ``config``: a :class:`~nnaudit.verify.bab.config.BabConfig` (default: :func:`default_config`)."""
    split = ReluSplit(ctx, fam, stop, config=config)
    out = split.run()
    assert out is not None
    return out


def default_config() -> BabConfig:
    """The search's settings for a region's hull: in-process, no falsification rounds (the lattice
    attack runs beside it), :data:`BATCH` sub-domains per bound pass (a cone is small: larger
    batches bound more sub-domains per second on one thread) and :data:`ALPHA_STEPS` iterations."""
    from nnaudit.verify.bab.config import BabConfig

    return BabConfig(refalsify_share=0.0, workers=1, batch_relu=BATCH, relu_alpha_steps=ALPHA_STEPS)


class ReluSplit:
    """One region's ReLU-splitting search over its hull, run in one go or in two slices: :meth:`run`
    with a ``pause`` returns None at the first batch boundary after it (the queue of open
    sub-domains kept, nothing dropped), and a later :meth:`run` goes on until ``stop``.  So the
    quick proofs come first and the lattice attack can run in between without restarting the search."""

    def __init__(self, ctx: RegionContext, fam: Family, stop: float, *, config: BabConfig | None = None) -> None:
        from nnaudit.verify.regions.batch import bound_mode, image_activations, region_cone
        from nnaudit.verify.bab.search import Search
        from nnaudit.verify.spec import robustness_property

        config = config if config is not None else default_config()
        pixels = np.asarray(fam.pixels, dtype=np.int64)
        lo, hi = fam.hull()
        if bound_mode(ctx.lowered) == "cone":
            low = region_cone(ctx.lowered, pixels, [image_activations(ctx)])
            network, ort = _ConeNetwork(ctx, pixels), _ConeRuntime(ctx, pixels)
            lo, hi, self.to_image = np.append(lo[pixels], 1.0), np.append(hi[pixels], 1.0), ort.full
        else:
            low, network, ort, self.to_image = ctx.lowered, ctx.network, ctx.ort, _identity
        box, region = robustness_property(lo, hi, ctx.label, ctx.network.output_size).cases[0]
        self.ctx, self.fam, self.stop = ctx, fam, stop
        self.search = Search(low, network, ort, box, region, config,
                             time.monotonic() + (stop - time.perf_counter()), None)
        self.started = False

    def run(self, pause: float | None = None) -> ReluBabResult | None:
        """Search until ``stop``, or until the first batch boundary after ``pause`` (a
        ``time.perf_counter`` time; then None, and the search can go on)."""
        if time.perf_counter() >= self.stop:
            return ReluBabResult(False, None, self.search.out.subdomains, "relu split: no time left")
        if pause is not None:
            after = max(1e-9, time.monotonic() - self.search.started + (pause - time.perf_counter()))
            out = self.search.loop(until_pending=1, until_after=after) if self.started else \
                self.search.run(until_pending=1, until_after=after)
        else:
            out = self.search.loop() if self.started else self.search.run()
        self.started = True
        return None if out is None else self._result(out)

    def _result(self, out: Any) -> ReluBabResult:
        """The region's reading of the search's outcome."""
        from nnaudit.verify.results import Verdict

        if out.status is Verdict.HOLDS:
            return ReluBabResult(True, None, out.subdomains, f"relu split: hull proved in {out.subdomains} sub-domains")
        if out.status is Verdict.VIOLATED and out.counterexample is not None:
            cex = _member_counterexample(self.ctx, self.fam, self.to_image(out.counterexample.x[None]))
            if cex is not None:
                return ReluBabResult(False, cex, out.subdomains, "relu split: a member at a point the search found")
            return ReluBabResult(False, None, out.subdomains,
                                 "relu split: the hull has a counterexample, no member found near it")
        return ReluBabResult(False, None, out.subdomains,
                             f"relu split: {out.status.value} after {out.subdomains} sub-domains")


def _identity(xs: np.ndarray) -> np.ndarray:
    return np.asarray(xs, dtype=np.float64).reshape(len(xs), -1)


def _member_counterexample(ctx: RegionContext, fam: Family, xs: np.ndarray) -> RegionCounterexample | None:
    """The point ``xs`` ``(1, n_in)`` if it is a member, else its nearest member, when onnxruntime
    confirms the class change."""
    x = xs[0]
    if not fam.contains(x):
        x = fam.snap(x)
    return ctx.confirm(x[None]) if fam.contains(x) else None
