"""The explorers of large results (:mod:`.explorer`): every region check of a
``regions`` result and every example of an ``attack`` result, unsafe first,
with filters (verdict, class, image, method / attack, eps) and sorts (image,
time, confidence after, perturbation size).  Rows link to the counterexample
cards of the gallery where those have one."""

from __future__ import annotations

from typing import Any

from nnaudit.reports.context import Source, fmt
from nnaudit.reports.explorer import Explorer, Filter, add_sort_ranks, options, token

VERDICT_ORDER = {"unsafe": 0, "unknown": 1, "safe": 2}
REGION_COLUMNS = ["image", "label", "region", "method", "verdict", "route", "s", "class after", "L2", "example"]


def region_explorer(source: Source, order: list[int], anchors: dict[tuple[int, int], str | None],
                    max_rows: int) -> Explorer | None:
    """All region checks of a ``regions`` result: unsafe, then unknown, then safe (images in ``order``);
    at most ``max_rows`` rows, the rest counted.  None when there are no regions."""
    images = (source.doc.get("images") or [])
    items = [(n, j, images[n], r) for n in order for j, r in enumerate(images[n]["regions"])]
    if not items:
        return None
    items.sort(key=lambda it: VERDICT_ORDER[it[3]["verdict"]])  # stable: images keep their order
    methods = options([it[3].get("method") for it in items])
    x = Explorer(ident=f"x-{source.ident}", noun="region checks", columns=REGION_COLUMNS, total=len(items),
                 filters=[Filter("verdict", options([it[3]["verdict"] for it in items])),
                          Filter("class (label)", options(sorted({_label(it[2]) for it in items} - {None}))),
                          Filter("image", options(sorted({it[2].get("index", it[0]) for it in items[:max_rows]})))]
                 + ([Filter("method", methods)] if len(methods) > 1 else []),
                 sorts=["unsafe first", "image", "time, slowest first", "confidence after, highest first",
                        "L2 of the change, smallest first"],
                 numeric=frozenset({0, 2, 6, 8}))
    items = items[:max_rows]
    for n, j, image, r in items:
        cx = r.get("counterexample") or {}
        target = anchors.get((n, j))
        keys = [token(r["verdict"]), token(_label(image)), token(image.get("index", n))]
        x.rows.append({"tokens": keys + ([token(r.get("method"))] if len(methods) > 1 else []), "cells": [
            str(image.get("index", n)), fmt(_label(image)), str(r["id"]), r.get("method") or "–",
            {"badge": r["verdict"]}, r.get("route") or "–", fmt(r.get("time_s"), 3),
            _after(cx), fmt(cx.get("l2")),
            {"href": target, "text": "view"} if target else ("in the JSON" if cx else "")]})
    add_sort_ranks(x, [(lambda it: it[2].get("index", it[0]), False), (lambda it: it[3].get("time_s"), True),
                       (lambda it: (it[3].get("counterexample") or {}).get("conf_after"), True),
                       (lambda it: (it[3].get("counterexample") or {}).get("l2"), False)], items)
    return x


def attack_explorer(source: Source, anchors: list[str | None], max_rows: int) -> Explorer | None:
    """The examples of an ``attack`` result (each a broken sample) with filters by attack, eps, class and
    sample, and sorts by sample, eps, confidence after and perturbation size."""
    examples = source.doc.get("examples") or []
    if not examples:
        return None
    items = list(enumerate(examples))
    x = Explorer(ident=f"x-{source.ident}", noun="adversarial examples", total=len(items),
                 columns=["sample", "label", "attack", "eps", "before", "after", "L2", "Linf", "example"],
                 filters=[Filter("attack", options([ex["attack"] for _, ex in items])),
                          Filter("eps", options(sorted({ex["eps"] for _, ex in items}), fmt)),
                          Filter("class (label)", options(sorted({ex["label"] for _, ex in items}))),
                          Filter("sample", options(sorted({ex.get("index", i) for i, ex in items[:max_rows]})))],
                 sorts=["as recorded", "sample", "eps, smallest first", "confidence after, highest first",
                        "L2, smallest first"],
                 numeric=frozenset({0, 3, 6, 7}))
    items = items[:max_rows]
    for i, ex in items:
        norms = ex.get("norms") or {}
        target = anchors[i] if i < len(anchors) else None
        x.rows.append({"tokens": [token(ex["attack"]), token(ex["eps"]), token(ex["label"]), token(ex.get("index", i))],
                       "cells": [str(ex.get("index", i)), str(ex["label"]), ex["attack"], fmt(ex["eps"]),
                                 str(ex["pred_clean"]), _after({"class_after": ex["pred_adv"],
                                                                "conf_after": ex.get("conf_adv")}),
                                 fmt(norms.get("l2")), fmt(norms.get("linf")),
                                 {"href": target, "text": "view"} if target else "in the JSON"]})
    add_sort_ranks(x, [(lambda it: it[1].get("index", it[0]), False), (lambda it: it[1]["eps"], False),
                       (lambda it: it[1].get("conf_adv"), True),
                       (lambda it: (it[1].get("norms") or {}).get("l2"), False)], items)
    return x


def _label(image: dict[str, Any]) -> int | None:
    return image.get("label") if image.get("label") is not None else image.get("predicted")


def _after(cx: dict[str, Any]) -> str:
    if cx.get("class_after") is None:
        return ""
    conf = cx.get("conf_after")
    return f"{cx['class_after']}" + (f" (p {conf:.2f})" if conf is not None else "")
