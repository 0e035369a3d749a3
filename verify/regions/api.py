"""``nnaudit.verify.regions``: safety of image regions under discretized
manipulations (the question of DLV, Huang et al., CAV 2017).

For an image ``x`` classified as ``c``, each region (grid box, patch, mask or
the whole image) and a :class:`~nnaudit.verify.regions.spec.Manipulation`,
the verdict says whether every member of the family keeps class ``c``:

- SAFE: proved, by sound bounds over the family's continuous hull, by Z3
  over the discrete family, or by exhaustive enumeration
  (:mod:`nnaudit.verify.regions.exact`); with ``method="dlv"`` only when DLV
  enumerated the whole family;
- UNSAFE: a member of the family whose class onnxruntime (on the original
  ONNX file) confirms as changed, with its pixels and the class and
  confidence before and after;
- UNKNOWN: the region's time budget ran out; ``covered`` says what was done.

Arithmetic: SAFE is about the float64 grid values and the network's weights
in exact (Z3, margin > 1e-6) or float64 (bounds, margin > 1e-7; enumeration)
arithmetic; onnxruntime computes in float32, which can differ only at
near-ties.  A member that changes the class in float64/exact arithmetic but
not in onnxruntime makes the region UNKNOWN, never SAFE or UNSAFE.

``method="dlv"`` runs the paper's layer-by-layer search
(:mod:`nnaudit.verify.regions.dlv`); ``"both"`` runs the exact routes and DLV and
records one result per method for every region.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnaudit.errors import SpecError
from nnaudit.networks.devices import on_device
from nnaudit.verify.regions.dlv import DLVConfig, check_dlv
from nnaudit.verify.regions.batch import bound_mode, hull_margins
from nnaudit.verify.regions.check import RegionContext, make_context
from nnaudit.verify.regions.exact import ExactConfig, check_exact
from nnaudit.verify.regions.result import ImageResult, RegionResult, RegionVerdict
from nnaudit.verify.regions.layout import (ImageLayout, ImageRegion, RegionChannels, grid_regions, layout_of,
                                          mask_regions, parse_grid, patch_regions, per_channel, whole_image)
from nnaudit.verify.regions.spec import Family, Manipulation, make_family

log = logging.getLogger(__name__)

METHODS = ("exact", "dlv", "both")
#: most regions bounded in one pass of the bounds route (a CIFAR-10 4x4 cone pass of 32 boxes holds ~30 MB)
BOUND_BATCH = 32


@dataclass(frozen=True)
class RegionConfig:
    """Settings of a region check."""

    timeout_per_region: float = 10.0                        # seconds per region and method
    bank: float = 0.0                                       # exact method: a region may also spend the time the
                                                            # image's earlier regions left unused, up to this many
                                                            # timeout_per_region more (0: a fixed budget per region)
    exact: ExactConfig = field(default_factory=ExactConfig)  # bounds / attack / enumeration / Z3 routes
    dlv: DLVConfig = field(default_factory=DLVConfig)        # the layer-by-layer search
    device: str = "cpu"                                     # where the torch work runs: cpu, cuda, cuda:N or auto

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self)
        if not self.bank:
            del out["bank"]      # the fixed budget per region, as files written before the bank say
        if self.device == "cpu":
            del out["device"]    # likewise: files written before --device resume
        return out


def method_list(method: str) -> list[str]:
    """``"both"`` -> ``["exact", "dlv"]``; SpecError for an unknown method."""
    if method not in METHODS:
        raise SpecError(f"regions: expected method one of {', '.join(METHODS)}, got {method!r}")
    return ["exact", "dlv"] if method == "both" else [method]


def bound_batching(network: Any, method: str) -> dict[str, Any] | None:
    """How the bounds route of ``method`` batches the regions of one image on ``network`` (a Network):
    ``chunk``, the most boxes per bound pass (:data:`BOUND_BATCH`), and ``mode``, ``"cone"`` or
    ``"full"`` (:func:`~nnaudit.verify.regions.batch.bound_mode`); None when ``method`` runs no bounds."""
    from nnaudit.networks.lower import lower

    if "exact" not in method_list(method):
        return None
    return {"chunk": BOUND_BATCH, "mode": bound_mode(lower(network))}


def resolve_regions(layout: ImageLayout, regions: Sequence[ImageRegion] | str | np.ndarray,
                    channels: RegionChannels = RegionChannels.ALL) -> list[ImageRegion]:
    """Regions from a list, a spec string (``"4x4"`` grid, ``"patch:2"``,
    ``"whole"``) or boolean pixel masks ``(M, H, W)``; spec strings and masks
    give one region per pixel set in all channels, or per pixel set and
    channel with ``channels=RegionChannels.EACH``."""
    if isinstance(regions, (str, np.ndarray)):
        if isinstance(regions, np.ndarray):
            out = mask_regions(layout, regions)
        elif regions == "whole":
            out = whole_image(layout)
        elif regions.startswith("patch:"):
            out = patch_regions(layout, int(regions.split(":", 1)[1]))
        else:
            out = grid_regions(layout, *parse_grid(regions))
        return per_channel(layout, out) if RegionChannels(channels) is RegionChannels.EACH else out
    out = list(regions)
    if not out or not all(isinstance(r, ImageRegion) for r in out):
        raise SpecError("regions: expected a non-empty list of ImageRegion, a grid such as '4x4', 'patch:N', "
                        "'whole' or boolean masks")
    return out


def check_image(network: Any, x: np.ndarray, label: int | None,
                regions: Sequence[ImageRegion] | str | np.ndarray,
                manipulation: Manipulation | Mapping[str, Any], *, method: str = "exact",
                config: RegionConfig = RegionConfig(), ort: Any = None, index: int = 0,
                done: Mapping[tuple[int, str], RegionResult] | None = None,
                on_result: Callable[[RegionResult], None] | None = None, layout: ImageLayout | None = None,
                channels: RegionChannels = RegionChannels.ALL) -> ImageResult:
    """Check every region of image ``x`` (shaped ``network.input_shape`` or flat).

    ``network``: a Network or an ONNX path; ``label``: the true class (an
    image onnxruntime misclassifies is skipped; None: use its prediction);
    ``regions``: see :func:`resolve_regions` (``channels``: all or each);
    ``manipulation``: a :class:`Manipulation` or its ``to_dict()``;
    ``method``: ``"exact"``, ``"dlv"`` or ``"both"``; ``layout``: how the
    input is an image (default :func:`~nnaudit.verify.regions.layout.layout_of`).
    ``done`` maps ``(region id, method)`` to results to keep (resume);
    ``on_result`` is called after every new result.  The bounds route of
    every region runs first, in one batch (:func:`batch_bounds`); each
    region's time includes its share.  Returns an
    :class:`ImageResult` whose ``shape`` is the layout's image shape.
    """
    from nnaudit.networks import load

    net = load(network) if isinstance(network, (str, os.PathLike)) else network
    manip = manipulation if isinstance(manipulation, Manipulation) else Manipulation.from_dict(dict(manipulation))
    methods = method_list(method)
    layout = layout or layout_of(net)
    region_list = resolve_regions(layout, regions, channels)
    ctx = make_context(net, x, ort=ort)
    label = ctx.label if label is None else int(label)
    shape = layout.shape
    if ctx.label != label:
        return ImageResult(index, label, ctx.label, shape, ctx.x0, (),
                           skipped=f"misclassified: label {label}, onnxruntime predicts {ctx.label}")
    with on_device(config.device):  # bounds, attacks and searches make their tensors there
        return _check_regions(ctx, index, label, shape, region_list, manip, methods, config, dict(done or {}),
                              on_result)


def _check_regions(ctx: RegionContext, index: int, label: int, shape: tuple[int, ...],
                   region_list: Sequence[ImageRegion], manip: Manipulation, methods: Sequence[str],
                   config: RegionConfig, done: dict[tuple[int, str], RegionResult],
                   on_result: Callable[[RegionResult], None] | None) -> ImageResult:
    """:func:`check_image` once the image is classified right: the batched hull bounds of every
    region, then each region by each method in the work order, with the time bank."""
    made = time.perf_counter()
    fams = {r.id: make_family(ctx.x0, r.pixels, manip) for r in region_list
            if "exact" in methods and (r.id, "exact") not in done}
    bounds = batch_bounds([ctx] * len(fams), list(fams.values()), config) if fams else []
    share = (time.perf_counter() - made) / max(len(fams), 1)       # families and bounds, per region
    bound = {rid: dict(b, bound_share_s=share) for rid, b in zip(fams, bounds)}
    bank = 0.0
    for region, m in _work_order(region_list, methods, bound, config):
        if (region.id, m) in done:
            continue
        extra = min(bank, config.bank * config.timeout_per_region) if m == "exact" and config.bank else 0.0
        done[(region.id, m)] = res = check_region(ctx, region, manip, m, config, bound=bound.get(region.id)
                                                  if m == "exact" else None, fam=fams.get(region.id), extra_s=extra)
        if m == "exact" and config.bank:
            bank = max(0.0, bank + config.timeout_per_region - res.time_s)
        if on_result is not None:
            on_result(res)
    results = [done[(region.id, m)] for region in region_list for m in methods]
    return ImageResult(index, label, ctx.label, shape, ctx.x0, tuple(results))


def _work_order(regions: Sequence[ImageRegion], methods: Sequence[str], bound: Mapping[int, dict],
                config: RegionConfig) -> list[tuple[ImageRegion, str]]:
    """The ``(region, method)`` pairs in the order they are checked: the regions' order, or with a
    time bank (``config.bank``) first the regions the hull bound proves (at once), then the others
    from the most negative bound margin up (mostly unsafe, and found in well under a second), so
    the time they leave goes to the hard ones after them."""
    order = list(regions)
    if config.bank:
        margin = {r.id: float(bound.get(r.id, {}).get("bound_margin", -np.inf)) for r in order}
        order.sort(key=lambda r: (margin[r.id] <= 0, margin[r.id]))
    return [(r, m) for r in order for m in methods]


def batch_bounds(ctxs: Sequence[RegionContext], fams: Sequence[Family], config: RegionConfig) -> list[dict]:
    """The bounds route's hull bound of every family (family ``i`` of image ``ctxs[i]``), bounded
    together (:func:`~nnaudit.verify.regions.batch.hull_margins`, :data:`BOUND_BATCH` boxes per pass):
    one ``bound`` per family for :func:`check_region`."""
    out = hull_margins(ctxs, fams, method=config.exact.bound_method, chunk=BOUND_BATCH)
    log.debug("bounded %d regions in %d pass(es) (%s) in %.3fs", len(fams), out.passes, out.mode, out.time_s)
    return [out.stats(i) for i in range(len(fams))]


def check_region(ctx: RegionContext, region: ImageRegion, manip: Manipulation, method: str,
                 config: RegionConfig, *, bound: dict | None = None, fam: Family | None = None,
                 extra_s: float = 0.0) -> RegionResult:
    """One region by one method (``"exact"`` or ``"dlv"``); ``bound``: its hull bound from
    :func:`batch_bounds` (its ``bound_share_s`` of the batch's time counts as the region's),
    ``fam``: its family if already made; ``extra_s``: seconds on top of ``timeout_per_region``
    (from the image's time bank)."""
    share = float((bound or {}).get("bound_share_s", 0.0))
    start = time.perf_counter() - share
    deadline = start + config.timeout_per_region + extra_s
    fam = fam if fam is not None else make_family(ctx.x0, region.pixels, manip)
    if method == "exact":
        out, stats = check_exact(ctx, fam, config.exact, deadline, bound=bound)
        verdict, route, note, cex, adv = out.verdict, out.route, out.note, out.counterexample, ()
    else:
        d = check_dlv(ctx, fam, manip, config.dlv, deadline)
        verdict, route, note, cex, adv, stats = d.verdict, "dlv", d.note, d.counterexample, d.adversarial, d.stats
    elapsed = time.perf_counter() - start
    assert verdict is not None
    covered = note if verdict is RegionVerdict.UNKNOWN else None
    if verdict is RegionVerdict.UNSAFE:
        assert cex is not None and cex.class_after != ctx.label
    log.debug("region %d (%s): %s by %s in %.3fs", region.id, method, verdict.value, route, elapsed)
    return RegionResult(region.id, region.box, region.pixels, method, verdict, route, elapsed, covered, cex,
                        tuple(adv), dict(stats, note=note), region.channels, region.image_pixels)
