"""The ``regions`` result as a report section: one safety map per image.

Each map is the image with its region grid tinted safe / unsafe / unknown
(:func:`nnaudit.reports.images.safety_map_uri`); every unsafe region is a
link laid over the map to its counterexample card in the gallery, and the
region table below the map links there too.  Large runs stay readable and
bounded (:class:`~nnaudit.reports.limits.ReportLimits`): maps are split into
collapsed pages, region tables are kept for the first images only (and a
bounded number of rows), images after the drawn ones are listed as table rows
without pictures up to a bound and then only counted, and large images are
shown as thumbnails.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from nnaudit.reports.context import Gallery, Line, Section, Source, fmt
from nnaudit.reports.gallery import Card, class_text
from nnaudit.reports.images import (as_image, box_of, combined_verdicts, safety_map_uri, scaled_box, thumbnail,
                                    value_range)

VERDICTS = ("safe", "unsafe", "unknown")


def build(source: Source, gallery: Gallery) -> Section:
    doc = source.doc
    images = doc.get("images") or []
    lim = gallery.limits
    shown = lim.maps + lim.listed_images
    views, rows_left = [], lim.region_rows
    for n, image in enumerate(images[:shown]):
        detailed = n < lim.detailed_images and rows_left >= len(image["regions"])
        views.append(_image(source, n, image, gallery, draw=n < lim.maps, detailed=detailed))
        rows_left -= len(views[-1]["rows"])
    for n, image in enumerate(images[shown:], start=shown):
        for r in image["regions"]:  # not shown, but their counterexamples still count in the gallery
            if r.get("counterexample"):
                gallery.omitted += 1
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
        "max_maps": lim.maps,
    })
    section.counts.update(counts)
    skipped = sum(1 for im in images if im.get("skipped"))
    section.data["skipped"] = skipped
    section.lines.append(_line(source, len(images), counts, section.data["unsafe_images"], skipped))
    return section


def _describe(manipulation: Any) -> str:
    if isinstance(manipulation, dict):
        return ", ".join(f"{k} {fmt(v)}" for k, v in manipulation.items() if v is not None) or "–"
    return fmt(manipulation)


def _image(source: Source, n: int, image: dict[str, Any], gallery: Gallery, *, draw: bool,
           detailed: bool) -> dict[str, Any]:
    pic = as_image(image["x"], image["shape"])
    index = image.get("index", n)
    anchor = f"map-{source.ident}-{n}"
    hw = pic.shape[:2] if pic is not None else (1, 1)
    regions = [{**r, "box": box_of(r, hw) if pic is not None else list(r.get("box") or [])} for r in image["regions"]]
    links, rows, first = [], [], None
    for j, r in enumerate(regions):
        target = _counterexample(source, n, j, image, r, anchor, gallery) if r.get("counterexample") else None
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
