"""Counterexample cards: original, adversarial, amplified difference, labels,
confidences, norms and the method that found it.

Attack examples, unsafe regions and violated properties all become a
:class:`Card` in one gallery (:class:`nnaudit.reports.context.Gallery`).
Only the first ``ReportLimits.card_pictures`` cards carry pictures; later
ones keep their anchor and numbers (a table row), which bounds the size of
reports of very large runs (see reports/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nnaudit.reports.images import as_image, difference_uri, image_uri, thumbnail, value_range

MAX_VALUES_SHOWN = 12  # leading values printed for inputs that are not images


@dataclass(frozen=True)
class Card:
    """One counterexample as the template shows it (URIs are ``data:`` PNGs)."""

    anchor: str                  # in-page id, e.g. "cx-r2-i3-g5"
    title: str                   # "digits-ffn.onnx · image 3 · region 5"
    finder: str                  # "pgd at eps 0.05", "regions: exact via smt", ...
    before: str                  # "7 (p = 0.98)"
    after: str                   # "3 (p = 0.61)"
    label: str = "–"             # true label, "–" when unknown
    norms: dict[str, float] = field(default_factory=dict)
    original: str | None = None
    adversarial: str | None = None
    difference: str | None = None
    peak: float | None = None    # max |x_adv - x| shown in the difference
    values: str | None = None    # text of the input(s) when they are not images
    outputs: str | None = None   # text of the network's outputs on the counterexample (verify)
    back: str | None = None      # anchor of the safety map / table it came from
    back_text: str = ""
    box: tuple[int, int, int, int] | None = None  # a region's pixel box, outlined over the pictures ...
    frame: dict[str, float] | None = None         # ... at these left/top/width/height percentages (set with them)


def class_text(cls: int | None, conf: float | None) -> str:
    """``"7 (p = 0.98)"``, the predicted class and its softmax confidence."""
    if cls is None:
        return "–"
    return f"{cls} (p = {conf:.2f})" if conf is not None else f"{cls}"


def vector_text(values: Sequence[float], name: str) -> str:
    """``name = [v0, v1, …]`` with at most :data:`MAX_VALUES_SHOWN` values."""
    shown = ", ".join(f"{v:.4g}" for v in values[:MAX_VALUES_SHOWN])
    more = f", … ({len(values)} values)" if len(values) > MAX_VALUES_SHOWN else ""
    return f"{name} = [{shown}{more}]"


def _vector_text(x: Sequence[float], x_adv: Sequence[float] | None) -> str:
    if x_adv is None:
        return vector_text(x, "x")
    return vector_text(x, "x") + "\n" + vector_text(x_adv, "x'")


def with_pictures(card: Card, x: Sequence[float] | None, x_adv: Sequence[float], shape: Sequence[int],
                  pictures: bool, thumb_side: int = 64) -> Card:
    """``card`` with its original/adversarial/difference images (or value text).

    ``x`` is the original input (None when unknown, e.g. a verify
    counterexample), ``x_adv`` the counterexample; both flat with ``shape``.
    With ``card.box`` (a region), the pictures get ``frame``: the box as percentages
    of the picture, which the page outlines over it at any display size."""
    adv = as_image(x_adv, shape)
    orig = as_image(x, shape) if x is not None else None
    if adv is None:
        text = _vector_text(list(x_adv), None) if x is None else _vector_text(list(x), list(x_adv))
        return _replace(card, values=text)
    if not pictures:
        return card
    fields: dict[str, object] = {}
    if card.box is not None:
        (h, w), (r0, c0, r1, c1) = adv.shape[:2], card.box
        fields["frame"] = {"left": 100 * c0 / w, "top": 100 * r0 / h, "width": 100 * (c1 - c0) / w,
                           "height": 100 * (r1 - r0) / h}
    adv = thumbnail(adv, thumb_side)[0]
    orig = thumbnail(orig, thumb_side)[0] if orig is not None else None
    lo, hi = value_range(*(im for im in (orig, adv) if im is not None))
    fields["adversarial"] = image_uri(adv, lo, hi)
    if orig is not None:
        diff_uri, peak = difference_uri(adv - orig)
        fields.update(original=image_uri(orig, lo, hi), difference=diff_uri, peak=peak)
    return _replace(card, **fields)


def _replace(card: Card, **changes: object) -> Card:
    from dataclasses import replace

    return replace(card, **changes)


def norms_of(x: Sequence[float], x_adv: Sequence[float]) -> dict[str, float]:
    """L0 / L2 / Linf of the perturbation (used when a result does not record them)."""
    d = np.asarray(x_adv, dtype=np.float64) - np.asarray(x, dtype=np.float64)
    return {"l0": float(np.count_nonzero(np.abs(d) > 1e-12)), "l2": float(np.linalg.norm(d)),
            "linf": float(np.abs(d).max(initial=0.0))}
