"""DLV: the layer-by-layer search of "Safety Verification of Deep Neural
Networks" (Huang, Kwiatkowska, Wang, Wu, CAV 2017), on nnaudit's IR.

The network is seen in its lowered form (:mod:`nnaudit.networks.lower`): layer
0 is the input, layer ``l >= 1`` the output of the l-th non-linear node
(ReLU or MaxPool) with the affine layers before it folded into its
pre-activation.  For a region at layer 0 and a chosen layer ``k``
(``DLVConfig.layer``), as in the paper's ``DLV.py`` / ``regionSynth`` /
``precisionSynth`` / ``safety_analysis``:

1. **Features** (:mod:`.dlv_backmap`): at every layer ``l = 1..k`` the
   dimensions the previous selection influences and the region can move are
   ranked by saliency (``|a_j - mean(a)|``, the paper's "Activation"
   heuristic); at layer ``k`` they form ``num_features`` features of
   ``feature_dims`` dimensions, excluding those already manipulated on the
   current path.  At layer 0 the region's own values are ranked.
2. **Ladders**: at layer 0 a value moves by ``t * step``, ``|t| <= steps``;
   at a hidden layer ``n`` steps (``ladder_steps``) reach the ends of the
   interval the activation can take over the region (sound bounds).
3. **Enumeration** (:class:`DLVMode`): ``corners`` (the paper's ``convex``:
   every dimension at ``-n`` or ``+n``), ``line`` (every ladder point) or
   ``point`` (one point, towards a lower class margin).
4. **Back to the input with Z3**, one layer at a time (QF_LRA): ReLU and
   MaxPool are inverted directly, the affine part is a linear equality over
   the selected dimensions of the layer below, inside the region's box.
5. **Search** (:class:`DLVSearch`): ``path`` (default, :mod:`.dlv_path`)
   composes manipulations of several features along a path, best-first by
   class margin, up to ``depth`` rounds, as the paper's search tree does;
   ``single`` manipulates one feature at a time from the image.
6. **Run and confirm**: every pre-image and its nearest member of the
   family are run; an input onnxruntime classifies differently is collected.

Departures from the paper (details in docs/regions.md, "DLV"): layers are
lowered nodes, not Keras layers; hidden-layer spans come from sound bound
propagation (times ``hidden_reach``), not from Z3 region/precision synthesis;
the "derivative" ranking weights the gradient by the room to move; the pre-image is
constrained to the region's box inside the Z3 query; search nodes are the
nearest family member of each pre-image (the paper keeps the real
pre-image); the queue is ordered by the IR class margin, not the softmax
confidence; the paper's MCTS/A* input-level searches are not implemented;
UNSAFE needs a family member confirmed by onnxruntime (off-grid adversarial
pre-images are only collected).

The guarantee: DLV is exhaustive only relative to its discretization and
selected features, so without a counterexample it is UNKNOWN; it is SAFE only
when the ``single`` search at layer 0 in ``line`` mode with one feature
holding every value of the region enumerated the whole family.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnaudit.verify.regions import dlv_backmap as bm
from nnaudit.verify.regions.check import RegionContext
from nnaudit.verify.regions.dlv_config import MODES, DLVConfig, DLVMode, DLVSearch, ExitWhen, Heuristic  # noqa: F401
from nnaudit.verify.regions.result import RegionCounterexample, RegionVerdict
from nnaudit.verify.regions.spec import Family, Manipulation


@dataclass(frozen=True)
class DLVOutcome:
    """Verdict of one DLV run; ``adversarial``: confirmed adversarial inputs (flat)."""

    verdict: RegionVerdict
    note: str
    counterexample: RegionCounterexample | None
    adversarial: tuple[np.ndarray, ...]
    stats: dict[str, Any] = field(default_factory=dict)


GUARANTEE = ("no member of the family confirmed unsafe. DLV's guarantee: exhaustive only relative to this "
             "discretization and these features")


def check_dlv(ctx: RegionContext, fam: Family, manip: Manipulation, config: DLVConfig,
              deadline: float) -> DLVOutcome:
    """Run DLV on one image region (see the module docstring)."""
    search = bm.prepare(ctx, fam, manip, config)
    if config.search is DLVSearch.PATH:
        return _check_path(search, deadline)
    return _check_single(search, deadline)


def _check_path(search: bm.Search, deadline: float) -> DLVOutcome:
    from nnaudit.verify.regions.dlv_path import path_search

    cfg, k = search.config, search.config.layer
    out = path_search(search, deadline)
    stats = dict(search.stats, nodes_expanded=out.expanded, deepest_path=out.deepest,
                 manipulations=out.manipulations, adversarial=len(out.found))
    what = (f"DLV path search at layer {k}{_layer_kind(search.ctx, k)}: {out.expanded} node(s) expanded, paths of "
            f"up to {out.deepest} composed feature(s) ({cfg.num_features} feature(s) x {cfg.feature_dims} dim(s) "
            f"per node, {cfg.mode.value}), {out.manipulations} manipulations, {search.stats['preimages']} "
            f"pre-image(s) in the input region, {len(out.found)} confirmed adversarial ({out.off_grid} off the "
            "step grid)")
    if out.member is not None:
        return DLVOutcome(RegionVerdict.UNSAFE, what, out.member, tuple(out.found), stats)
    note = what + ("; time budget spent; " if out.timed_out else "; ") + GUARANTEE
    return DLVOutcome(RegionVerdict.UNKNOWN, note, None, tuple(out.found), stats)


def _check_single(search: bm.Search, deadline: float) -> DLVOutcome:
    """Each feature of the image manipulated alone (no composition)."""
    cfg, ctx, k = search.config, search.ctx, search.config.layer
    state = bm.node_state(search, ctx.x0)
    feats = bm.features(search, state)
    n = bm.ladder(search)
    total = sum(len(bm.points(search, state, f, n)) for f in feats)
    found: list[np.ndarray] = []
    member_cex: RegionCounterexample | None = None
    done, off_grid, timed_out = 0, 0, False
    for feat in feats:
        for t in bm.points(search, state, feat, n):
            if time.perf_counter() >= deadline:
                timed_out = True
                break
            done += 1
            x = bm.preimage(search, state, feat, t, n, deadline)
            if x is None:
                continue
            search.stats["preimages"] += 1
            hit = bm.run_candidates(search, [x])[2][0]
            if hit is None:
                continue
            found.append(hit[0].x)
            off_grid += int(not hit[1])
            if hit[1] and member_cex is None:
                member_cex = hit[0]
            if cfg.exit_when is ExitWhen.FIRST and member_cex is not None:
                break
        if timed_out or (cfg.exit_when is ExitWhen.FIRST and member_cex is not None):
            break
    stats = dict(search.stats, manipulations=done, manipulations_total=total, adversarial=len(found))
    what = (f"DLV at layer {k}{_layer_kind(ctx, k)}: {done} of {total} {cfg.mode.value} manipulations of "
            f"{len(feats)} feature(s) x {cfg.feature_dims} dim(s), one at a time, {search.stats['preimages']} "
            f"pre-image(s) in the input region, {len(found)} confirmed adversarial ({off_grid} off the step grid)")
    if member_cex is not None:
        return DLVOutcome(RegionVerdict.UNSAFE, what, member_cex, tuple(found), stats)
    fam = search.fam
    exhaustive = (k == 0 and cfg.mode is DLVMode.LINE and len(feats) == 1 and len(feats[0]) == len(fam.pixels)
                  and not timed_out and search.stats.get("unconfirmed", 0) == 0)
    if exhaustive:
        return DLVOutcome(RegionVerdict.SAFE, what + "; this enumerates the whole family", None, tuple(found), stats)
    note = what + ("; time budget spent; " if timed_out else "; ") + GUARANTEE
    return DLVOutcome(RegionVerdict.UNKNOWN, note, None, tuple(found), stats)


def _layer_kind(ctx: RegionContext, k: int) -> str:
    return " (input)" if k == 0 else f" ({ctx.lowered.nodes[k - 1].kind} {ctx.lowered.nodes[k - 1].name})"
