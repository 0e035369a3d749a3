"""The measured values of a check, read from its nested result document.

One flat record per check (:class:`Metrics`): how much was examined, how
much was classified correctly, the clean accuracy, the robustness measure
(robust accuracy per eps, fraction of regions safe, fraction of properties
holding) and the verdict of every item (sample, region, property).  The
baseline comparison (:mod:`.baseline`), the JUnit properties and the
``metrics`` of each ``check`` entry all read it from here, so they agree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Metrics:
    """What one check measured.

    ``examined``: samples / images / properties the check looked at;
    ``classified``: of those, the ones classified correctly (attacks and
    regions; None for verify); ``robust``: the robustness measure per key
    (``"eps=0.02"`` for attacks; ``"safe"`` for regions; ``"holds"`` for
    verify) as a fraction; ``items``: item name -> verdict (``sample 3 at
    eps=0.02`` -> ``robust``/``broken``, ``image 0 region 2`` ->
    ``safe``/``unsafe``/``unknown``, ``property p.vnnlib`` -> verdict).
    """

    kind: str
    examined: int = 0
    classified: int | None = None
    clean_accuracy: float | None = None
    robust: dict[str, float] = field(default_factory=dict)
    items: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics`` of a ``check`` entry (no per-item verdicts: the nested result has them)."""
        return {"examined": self.examined, "classified": self.classified, "clean_accuracy": self.clean_accuracy,
                "robust": dict(self.robust), "counts": dict(self.counts)}

    def flat(self) -> dict[str, Any]:
        """Name -> value, for JUnit ``<properties>``."""
        out: dict[str, Any] = {"examined": self.examined}
        if self.classified is not None:
            out["classified_correctly"] = self.classified
        if self.clean_accuracy is not None:
            out["clean_accuracy"] = self.clean_accuracy
        out.update({f"robust[{k}]": v for k, v in self.robust.items()})
        out.update(self.counts)
        return out


def measure(kind: str, doc: dict[str, Any] | None) -> Metrics | None:
    """The metrics of a ``kind`` check whose nested result document is ``doc`` (None: nothing ran)."""
    if not isinstance(doc, dict):
        return None
    reader = {"attack": _attack, "regions": _regions, "verify": _verify}.get(kind)
    return reader(doc) if reader else None


def _attack(doc: dict[str, Any]) -> Metrics:
    n = int(doc.get("num_samples") or 0)
    clean = doc.get("clean_accuracy")
    classified = round(float(clean) * n) if clean is not None else None
    robust, items = {}, {}
    broken_any: set[int] = set()
    for row in doc.get("results") or []:
        eps = f"eps={float(row['eps']):g}"
        robust[eps] = float(row["robust_accuracy"]["worst"])
        broken = {int(i) for ids in (row.get("broken") or {}).values() for i in ids}
        broken_any |= broken
        for i in broken:
            items[f"sample {i} at {eps}"] = "broken"
    counts = {"broken_samples": len(broken_any)}
    return Metrics("attack", n, classified, None if clean is None else float(clean), robust, items, counts)


def _regions(doc: dict[str, Any]) -> Metrics:
    rank = {"unsafe": 2, "safe": 1, "unknown": 0}
    items: dict[str, str] = {}
    images = doc.get("images") or []
    for im in images:
        for r in im.get("regions") or []:
            key = f"image {int(im.get('index', 0))} region {int(r['id'])}"
            if key not in items or rank[r["verdict"]] > rank[items[key]]:
                items[key] = r["verdict"]
    checked = sum(1 for im in images if not im.get("skipped") and im.get("regions"))
    counts = Counter(items.values())
    tally = {"regions": len(items), **{f"{v}_regions": counts[v] for v in ("safe", "unsafe", "unknown")}}
    robust = {"safe": counts["safe"] / len(items)} if items else {}
    clean = checked / len(images) if images else None
    return Metrics("regions", len(images), checked, clean, robust, items, tally)


def _verify(doc: dict[str, Any]) -> Metrics:
    instances = doc.get("instances") or []
    items = {f"property {i.get('property')}": str(i.get("verdict")) for i in instances}
    counts = Counter(items.values())
    robust = {"holds": counts["holds"] / len(items)} if items else {}
    return Metrics("verify", len(instances), None, None, robust, items,
                   {f"{v}_properties": n for v, n in sorted(counts.items())})
