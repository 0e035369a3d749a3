"""Region safety: the second engine of :mod:`nnaudit.verify`, beside the complete verifier.

Is every image region safe under discretised manipulations of its pixels
(Huang et al., 2017, DLV)?  One module per concept: the regions and the
manipulation family (:mod:`.spec`), the image layout and its regions
(:mod:`.layout`), the exact routes -- bounds, Z3,
enumeration (:mod:`.exact`), the paper's layer-by-layer search (:mod:`.dlv`),
the shared per-image context (:mod:`.check`), one image end to end
(:mod:`.api`), results (:mod:`.result`) and a run over many images
(:mod:`.run`).  It shares the bounds (:mod:`nnaudit.verify.bounds`) and the Z3
gateway (:mod:`nnaudit.verify.smt`) with the complete verifier.

Public names, resolved lazily (no torch or z3 at import):

- ``check_image(network, x, label, "4x4", Manipulation(step=0.1, steps=2))``
  -> :class:`~.result.ImageResult`;
- ``Manipulation``, ``RegionConfig``, ``RegionChannels`` (``check_image(...,
  channels=RegionChannels.EACH)``: one region per pixel set and channel).
"""

from __future__ import annotations

from nnaudit._lazy import lazy_getattr

_LAZY = {
    "check_image": "nnaudit.verify.regions.api",
    "RegionConfig": "nnaudit.verify.regions.api",
    "Manipulation": "nnaudit.verify.regions.spec",
    "RegionChannels": "nnaudit.verify.regions.layout",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
