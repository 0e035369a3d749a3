"""The bounds route of region safety for many regions and images at once.

A region's family moves only the region's values (``p`` of the ``n``
inputs); every other input is fixed at the image.  So are all the neurons
that no moved value reaches through a non-zero weight (the region's *cone of
influence*): over the family's hull they keep their value at the image.
This module bounds each region on its cone alone: a :class:`Lowered`
network whose inputs are the ``p`` moved values plus one *carrier* input per
image (fixed at 1 for its image's box and 0 for the others' boxes), whose
nodes are the cone's neurons, and whose carrier weights are the fixed
neurons' contribution at each image (from the image's activations, computed
once per image for all its regions).  Its outputs equal the network's on the
hull, so CROWN/interval bounds of ``logit_c - logit_j`` over it equal the
full network's bounds over the hull (zero-width inputs and neurons are
concretised exactly; equal up to float64 rounding, which
:data:`~nnaudit.verify.regions.exact.BOUND_TOL` absorbs): the same sound
bound as :func:`nnaudit.verify.bounds.spec_bounds` over the full hull, at
a cost that scales with the cone instead of the image (CIFAR-10 4x4 grid:
192 of 3072 inputs, ~460 of 3072 conv neurons).

Every image sharing a region is bounded in one pass over that region's cone
(one box per image), at most :attr:`BatchBounds.chunk` images per pass.
Networks with non-elementwise nodes (MaxPool) or at most 64 inputs (whose
full-network bounds use forward symbolic bounds) are bounded on the full
network instead, all regions and images of a chunk in one batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnaudit.verify.regions.check import RegionContext
from nnaudit.verify.regions.spec import Family

#: kinds of nodes that act value by value (a neuron's output depends on its own pre-activation only)
ELEMENTWISE = ("relu", "sigmoid", "tanh")
#: networks with at most this many inputs are bounded whole (``Intermediate.AUTO`` then adds
#: forward symbolic bounds, which the cone would not reproduce exactly)
FULL_INPUTS = 64
#: images' activations and regions' cones kept in the lowered network's cache (each kind)
CACHED = 64


@dataclass(frozen=True)
class BatchBounds:
    """Hull bounds of many families: ``margins[i]`` is the lower bound of
    ``min_j logit_c - logit_j`` over family ``i``'s hull; ``passes`` how many
    bound computations ran, ``chunk`` the most boxes per pass, ``mode`` ``"cone"``
    or ``"full"``, ``time_s`` the wall time of all of it."""

    margins: np.ndarray
    passes: int
    chunk: int
    mode: str
    time_s: float

    def stats(self, i: int) -> dict:
        """The counters recorded with family ``i``'s result (how it was batched, its share of the time)."""
        n = len(self.margins)
        return {"bound_margin": float(self.margins[i]), "bound_batch": n, "bound_passes": self.passes,
                "bound_chunk": self.chunk, "bound_mode": self.mode, "bound_share_s": self.time_s / max(n, 1)}


def spec_matrix(n_out: int, label: int) -> np.ndarray:
    """``(n_out - 1, n_out)`` rows ``e_label - e_j`` for every other class ``j``."""
    others = [j for j in range(n_out) if j != label]
    c = np.zeros((len(others), n_out))
    c[:, label] = 1.0
    c[np.arange(len(others)), others] = -1.0
    return c


def hull_margins(ctxs: Sequence[RegionContext], fams: Sequence[Family], *, method: str = "crown",
                 chunk: int = 32, mode: str = "auto") -> BatchBounds:
    """Lower bounds of the class margin over each family's hull; family ``i`` is of image ``ctxs[i]``
    (contexts of one network; the same object for regions of one image).  ``chunk``: most boxes per
    bound pass (memory: a pass over the cone holds ``chunk x rows x (p + chunk)`` float64 per node);
    ``mode``: ``"cone"``, ``"full"`` or ``"auto"`` (the cone unless the module docstring says otherwise).

    >>> hull_margins([], [], chunk=0)
    Traceback (most recent call last):
    ValueError: expected chunk >= 1, got 0
    """
    if len(ctxs) != len(fams):
        raise ValueError(f"expected one context per family, got {len(ctxs)} and {len(fams)}")
    if chunk < 1:
        raise ValueError(f"expected chunk >= 1, got {chunk}")
    if mode not in ("auto", "cone", "full"):
        raise ValueError(f"expected mode 'auto', 'cone' or 'full', got {mode!r}")
    start = time.perf_counter()
    margins = np.full(len(fams), np.nan)
    passes = 0
    if not fams:
        return BatchBounds(margins, 0, 0, mode, 0.0)
    if bound_mode(ctxs[0].lowered, mode) == "cone":
        groups: dict[bytes, list[int]] = {}
        for i, fam in enumerate(fams):
            groups.setdefault(np.asarray(fam.pixels, dtype=np.int64).tobytes(), []).append(i)
        for idx in groups.values():
            for a in range(0, len(idx), chunk):
                part = idx[a:a + chunk]
                margins[part] = _cone_pass([ctxs[i] for i in part], [fams[i] for i in part], method)
                passes += 1
        mode = "cone"
    else:
        for a in range(0, len(fams), chunk):
            part = list(range(a, min(a + chunk, len(fams))))
            margins[part] = _full_pass([ctxs[i] for i in part], [fams[i] for i in part], method)
            passes += 1
        mode = "full"
    return BatchBounds(margins, passes, min(chunk, len(fams)), mode, time.perf_counter() - start)


def bound_mode(lowered: Any, mode: str = "auto") -> str:
    """``"cone"`` or ``"full"``: how :func:`hull_margins` bounds families of the lowered network
    ``lowered`` in ``mode`` (``"auto"``: the cone unless the module docstring says otherwise);
    ValueError for ``"cone"`` on a network with non-elementwise nodes."""
    elementwise = all(n.kind in ELEMENTWISE for n in lowered.nodes)
    if mode == "cone" and not elementwise:
        raise ValueError("expected a network of elementwise nodes (relu, sigmoid, tanh) for mode 'cone'")
    if mode == "cone" or (mode == "auto" and elementwise and lowered.input_size > FULL_INPUTS):
        return "cone"
    return "full"


def _specs(ctxs: Sequence[RegionContext]) -> tuple[np.ndarray, np.ndarray]:
    """Per box ``c`` ``(D, r, n_out)`` and ``d`` ``(D, r)``."""
    n_out = ctxs[0].network.output_size
    c = np.stack([spec_matrix(n_out, ctx.label) for ctx in ctxs])
    return c, np.zeros(c.shape[:2])


def _bound(low: object, lo: np.ndarray, hi: np.ndarray, ctxs: Sequence[RegionContext], method: str,
           intermediate: str) -> np.ndarray:
    """``min_j`` of the spec lower bounds per box ``(D,)``."""
    import torch

    from nnaudit.verify.bounds import compute_bounds, spec_lower

    c, d = _specs(ctxs)
    with torch.no_grad():
        x_lo, x_hi = torch.as_tensor(lo, dtype=torch.float64), torch.as_tensor(hi, dtype=torch.float64)
        b = compute_bounds(low, x_lo, x_hi, method=method, intermediate=intermediate)
        res = spec_lower(low, b, torch.as_tensor(c), torch.as_tensor(d), method=method)
    return res.lower.cpu().numpy().min(axis=1)


def _full_pass(ctxs: Sequence[RegionContext], fams: Sequence[Family], method: str) -> np.ndarray:
    hulls = [fam.hull() for fam in fams]
    lo = np.stack([h[0] for h in hulls])
    hi = np.stack([h[1] for h in hulls])
    return _bound(ctxs[0].lowered, lo, hi, ctxs, method, "auto")


def _cone_pass(ctxs: Sequence[RegionContext], fams: Sequence[Family], method: str) -> np.ndarray:
    """Bounds of families of one region (same pixels) over its cone, one box per family."""
    pixels = np.asarray(fams[0].pixels, dtype=np.int64)
    m = len(fams)
    cone = region_cone(ctxs[0].lowered, pixels, [image_activations(ctx) for ctx in ctxs])
    hulls = [fam.hull() for fam in fams]
    carriers = np.eye(m)
    lo = np.hstack([np.stack([h[0][pixels] for h in hulls]), carriers])
    hi = np.hstack([np.stack([h[1][pixels] for h in hulls]), carriers])
    return _bound(cone, lo, hi, ctxs, method, "backward")


def image_activations(ctx: RegionContext) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The image's sources ``[x0, out_1, ..., out_K]`` and the values of its forms ``[pre_1, ...,
    pre_K, output]``, each ``(n,)``: computed once per image and kept in the lowered network's
    cache (keyed by the image's bytes; the last :data:`CACHED` images)."""
    low = ctx.lowered
    key = ("region_activations", ctx.x0.tobytes())
    if key not in low.cache:
        sources, forms = [ctx.x0[None]], []
        for node in low.nodes:
            forms.append(node.pre.evaluate(sources))
            sources.append(node.apply(forms[-1]))
        forms.append(low.output.evaluate(sources))
        _put(low.cache, key, ([v[0] for v in sources], [v[0] for v in forms]))
    return low.cache[key]


def _put(cache: dict, key: tuple, value: object) -> None:
    """``cache[key] = value``, first dropping the oldest entries of its kind beyond :data:`CACHED`."""
    same = [k for k in cache if isinstance(k, tuple) and k[0] == key[0]]
    for k in same[: max(0, len(same) - CACHED + 1)]:
        del cache[k]
    cache[key] = value


def _structure(low: object, pixels: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray], dict[int, np.ndarray]]]:
    """The region's cone, per form (nodes' pre-activations, then the output): the rows the moved
    values reach, the moved entries of each source, and the matrices from the moved entries to those
    rows (``(moved_s, rows)`` per source; the input's in the order of ``pixels``).  Kept in ``low``'s cache."""
    key = ("region_cone", pixels.tobytes())
    if key in low.cache:
        return low.cache[key]
    moved = [np.zeros(low.input_size, dtype=bool)]
    moved[0][pixels] = True
    out = []
    forms = [n.pre for n in low.nodes] + [low.output]
    for k, form in enumerate(forms):
        rows = np.zeros(form.size, dtype=bool)
        if k == len(low.nodes):
            rows[:] = True
        for s, mat in form.mats.items():
            if moved[s].any():
                rows |= (mat[moved[s]] != 0).any(axis=0)
        rows_at = np.flatnonzero(rows)
        subs = {s: mat[pixels if s == 0 else moved[s]][:, rows_at]
                for s, mat in form.mats.items() if moved[s].any()}
        out.append((rows_at, [m.copy() for m in moved], subs))
        moved.append(rows)
    _put(low.cache, key, out)
    return out


def region_cone(low: object, pixels: np.ndarray, acts: Sequence[tuple[list[np.ndarray], list[np.ndarray]]]) -> object:
    """The lowered network of the region's cone (see the module docstring) for the images whose
    activations are ``acts``: inputs ``(p + m,)``, the moved values then one carrier per image.
    A row's carrier weight is its value at the image less the moved entries' part of it."""
    from nnaudit.networks.lower import Affine, Lowered, Node

    keep: list[int] = [0]              # original source index of each kept source (0: the input)
    nodes, out = [], None
    for k, (rows_at, moved, subs) in enumerate(_structure(low, pixels)):
        const = np.stack([f[k][rows_at] for _, f in acts])
        mats: dict[int, np.ndarray] = {}
        for s, sub in subs.items():
            vals = np.stack([src[s][pixels if s == 0 else moved[s]] for src, _ in acts])
            const -= vals @ sub
            mats[keep.index(s)] = sub
        mats[0] = np.vstack([mats.get(0, np.zeros((len(pixels), len(rows_at)))), const])
        form = Affine(mats, np.zeros(len(rows_at)))
        if k == len(low.nodes):
            out = form
        elif len(rows_at):
            nodes.append(Node(low.nodes[k].layer, form, (len(rows_at),), (len(rows_at),)))
            keep.append(k + 1)
    return Lowered(len(pixels) + len(acts), tuple(nodes), out)
