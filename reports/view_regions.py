"""The ``regions`` result as a report section: one safety map per image.

Each map is the image with its region grid tinted safe / unsafe / unknown
(:func:`nnaudit.reports.images.safety_map_uri`); every unsafe region is a
link laid over the map to its counterexample card in the gallery, and the
region table below the map links there too.  Large runs stay readable and
bounded (:class:`~nnaudit.reports.limits.ReportLimits`): images with an unsafe
region come first (then unknown, safe, unchecked), a filterable table lists
every region check unsafe first (:mod:`.explorer_views`), counterexample cards
go round-robin over the images when pictures run short, maps are split into
collapsed pages, region tables are kept for the first images only (and a
bounded number of rows), images after the drawn ones are listed as table rows
without pictures up to a bound and then only counted, and large images are
shown as thumbnails.
"""

from __future__ import annotations

from collections import Counter
from itertools import zip_longest
from typing import Any

from nnaudit.reports.context import Gallery, Line, Section, Source, fmt
from nnaudit.reports.explorer_views import region_explorer
from nnaudit.reports.gallery import Card, class_text
from nnaudit.reports.images import (as_image, box_of, combined_verdicts, safety_map_uri, scaled_box, thumbnail,
                                    value_range)

VERDICTS = ("safe", "unsafe", "unknown")


def build(source: Source, gallery: Gallery) -> Section:
    doc = source.doc
    images = doc.get("images") or []
    lim = gallery.limits
    shown = lim.maps + lim.listed_images
    order = sorted(range(len(images)), key=lambda n: _priority(images[n]))  # unsafe images first
    boxed = {n: _boxed(images[n]) for n in order[:shown]}
    anchors = _add_cards(source, images, boxed, gallery)
    views, rows_left = [], lim.region_rows
    for rank, n in enumerate(order[:shown]):
        detailed = rank < lim.detailed_images and rows_left >= len(images[n]["regions"])
        views.append(_image(source, n, images[n], boxed[n], anchors, gallery, draw=rank < lim.maps,
                            detailed=detailed))
        rows_left -= len(views[-1]["rows"])
    for n in order[shown:]:  # not shown, but their counterexamples still count in the gallery
        gallery.omitted += sum(1 for r in images[n]["regions"] if r.get("counterexample"))
    drawn = [v for v in views if v["map"]]
    counts = Counter(r["verdict"] for image in images for r in image["regions"])
    size = lim.page_size
    pages = [{"first": i + 1, "last": min(i + size, len(drawn)), "images": drawn[i:i + size]}
             for i in range(0, len(drawn), size)]
    section = Section(source, f"Region safety of {source.model}", {
        "manipulation": _describe(doc.get("manipulation")), "grid": doc.get("grid"), "patch": doc.get("patch"),
        "methods": ", ".join(doc.get("methods") or []) or "–", "per_channel": doc.get("region_channels") == "each",
        "counts": [(v, counts.get(v, 0)) for v in VERDICTS], "pages": pages,
        "undrawn": [v for v in views if not v["map"]], "num_images": len(images),
        "unlisted": max(0, len(images) - shown),
        "unsafe_images": sum(1 for im in images if any(r["verdict"] == "unsafe" for r in im["regions"])),
        "max_maps": lim.maps, "explorer": region_explorer(source, order, anchors, lim.explorer_rows),
    })
    section.counts.update(counts)
    skipped = sum(1 for im in images if im.get("skipped"))
    section.data["skipped"] = skipped
    section.lines.append(_line(source, len(images), counts, section.data["unsafe_images"], skipped))
    return section


def _priority(image: dict[str, Any]) -> int:
    """Images with an unsafe region first, then with an unknown one, then safe ones, then unchecked."""
    verdicts = {r["verdict"] for r in image["regions"]}
    return 0 if "unsafe" in verdicts else 1 if "unknown" in verdicts else 2 if verdicts else 3


def _boxed(image: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """The image as an array (None when it is not one) and its regions with their pixel boxes."""
    pic = as_image(image["x"], image["shape"])
    hw = pic.shape[:2] if pic is not None else (1, 1)
    return pic, [{**r, "box": box_of(r, hw) if pic is not None else list(r.get("box") or [])}
                 for r in image["regions"]]


def _add_cards(source: Source, images: list[dict[str, Any]], boxed: dict[int, Any],
               gallery: Gallery) -> dict[tuple[int, int], str | None]:
    """Add the counterexample of every unsafe region of the shown images to the gallery, in the images'
    order; when they are more than the cards with pictures left, round-robin over the images (the
    first counterexample of each image, then the second, ...) so the pictures cover many images.
    Returns each ``(image position, region position)``'s card anchor (None when only counted)."""
    queues = [[(n, j) for j, r in enumerate(regions) if r.get("counterexample")] for n, (_, regions) in boxed.items()]
    if sum(map(len, queues)) > gallery.limits.card_pictures - len(gallery.cards):
        queues = [list(filter(None, turn)) for turn in zip_longest(*queues)]
    return {(n, j): _counterexample(source, n, j, images[n], boxed[n][1][j], f"map-{source.ident}-{n}", gallery)
            for queue in queues for n, j in queue}


def _describe(manipulation: Any) -> str:
    if isinstance(manipulation, dict):
        return ", ".join(f"{k} {fmt(v)}" for k, v in manipulation.items() if v is not None) or "–"
    return fmt(manipulation)


def _image(source: Source, n: int, image: dict[str, Any], boxed: tuple[Any, list[dict[str, Any]]],
           anchors: dict[tuple[int, int], str | None], gallery: Gallery, *, draw: bool,
           detailed: bool) -> dict[str, Any]:
    pic, regions = boxed
    index = image.get("index", n)
    anchor = f"map-{source.ident}-{n}"
    hw = pic.shape[:2] if pic is not None else (1, 1)
    links, rows, first = [], [], None
    for j, r in enumerate(regions):
        target = anchors.get((n, j))
        first = first or target
        if target and draw and pic is not None:
            r0, c0, r1, c1 = r["box"]
            links.append({"href": target, "left": 100 * c0 / hw[1], "top": 100 * r0 / hw[0],
                          "width": 100 * (c1 - c0) / hw[1], "height": 100 * (r1 - r0) / hw[0],
                          "title": f"region {r['id']}: unsafe — go to its counterexample"})
        if detailed:
            rows.append({"id": r["id"], "box": r["box"], "channels": _channels(r), "method": r.get("method") or "–",
                         "verdict": r["verdict"],
                         "route": r.get("route") or "–", "time": fmt(r.get("time_s"), 3),
                         "covered": fmt(r.get("covered")) if r.get("covered") is not None else "",
                         "counterexample": target})
    view = {"anchor": anchor, "index": index, "label": fmt(image.get("label")), "skipped": image.get("skipped"),
            "predicted": fmt(image.get("predicted")), "counts": Counter(r["verdict"] for r in regions),
            "links": links, "rows": rows, "map": None, "width": 0, "first_unsafe": first}
    if draw and pic is not None:
        thumb, factor = thumbnail(pic, gallery.limits.thumb_side)
        boxes = [{"verdict": v, "box": scaled_box(list(box), factor, thumb.shape[:2])}
                 for box, v in combined_verdicts(regions).items()]
        lo, hi = value_range(thumb)
        view["map"], scale = safety_map_uri(thumb, boxes, lo, hi)
        view["width"] = thumb.shape[1] * scale
    return view


def _channels(region: dict[str, Any]) -> str:
    """The channels a region moves, as the table shows them ("–" when the result does not say)."""
    return ",".join(str(c) for c in region.get("channels") or []) or "–"


def _counterexample(source: Source, n: int, j: int, image: dict[str, Any], region: dict[str, Any],
                    back: str, gallery: Gallery) -> str | None:
    cx = region["counterexample"]
    norms = {k: cx[k] for k in ("l0", "l2", "linf") if cx.get(k) is not None}
    route = f" via {region['route']}" if region.get("route") else ""
    index = image.get("index", n)
    card = Card(anchor=f"cx-{source.ident}-i{n}-g{j}",
                title=f"{source.model} · image {index} · region {region['id']} {region['box']}"
                      + (f" · channel {region['channels'][0]}" if len(region.get("channels") or []) == 1
                         and len(image.get("shape") or []) == 3 else ""),
                finder=f"regions: {region.get('method') or 'check'}{route}",
                label=fmt(image.get("label")),
                before=class_text(cx["class_before"], cx.get("conf_before")),
                after=class_text(cx["class_after"], cx.get("conf_after")),
                norms=norms, back=back, back_text=f"safety map of image {index}",
                box=tuple(region["box"]) if len(region.get("box") or []) == 4 else None)
    return gallery.add(card, image["x"], cx["x"], image["shape"])


def _line(source: Source, num_images: int, counts: Counter[str], unsafe_images: int, skipped: int) -> Line:
    images = source.doc.get("images") or []
    by_method: dict[str, Counter[str]] = {}
    for image in images:
        for r in image["regions"]:
            by_method.setdefault(r.get("method") or "check", Counter())[r["verdict"]] += 1
    verdict = "unsafe" if counts["unsafe"] else ("unknown" if counts["unknown"] else "safe")
    noun = "image" if num_images == 1 else "images"
    if len(by_method) > 1:
        parts = "; ".join(f"{m}: {c['safe']} safe, {c['unsafe']} unsafe, {c['unknown']} unknown"
                          for m, c in by_method.items())
        text = f"{source.model}: {sum(counts.values())} region checks on {num_images} {noun} — {parts}"
    else:
        text = (f"{source.model}: {sum(counts.values())} regions on {num_images} {noun} — {counts['safe']} safe, "
                f"{counts['unsafe']} unsafe, {counts['unknown']} unknown")
    text += f"; images with an unsafe region: {unsafe_images} of {num_images}"
    if skipped:
        text += f"; {skipped} image{'s' if skipped != 1 else ''} not checked (see the map)"
    if not source.doc.get("complete", True):
        verdict, text = "incomplete", text + " (run interrupted)"
    return Line(verdict, text, f"#sec-{source.ident}")
