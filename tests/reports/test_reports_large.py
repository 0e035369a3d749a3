"""Large runs stay readable and within the documented size bound (reports/README.md):
a synthetic regions result of 640 MNIST-size (28x28) images x 49 regions, and one of
100 CIFAR-size images x 16 regions x 2 methods (unsafe first, explorer, time and size)."""

from __future__ import annotations

import re
import time

import numpy as np

from nnaudit.reports import schema
from nnaudit.reports.context import Source
from nnaudit.reports.render import build_report, render_html
from nnaudit.reports.validate import validate
from nnaudit.reports.limits import ReportLimits

LIMITS = ReportLimits()

SIZE_BOUND = 10 * 1024 * 1024  # bytes; documented in reports/README.md


def _large_regions(num_images: int = 640, side: int = 28, patch: int = 4, unsafe_every: int = 5) -> dict:
    rng = np.random.default_rng(0)
    doc = schema.new_result("regions", settings={"grid": [side // patch] * 2}, command="nnaudit regions big.onnx")
    doc["model"] = {"file": "mnist.onnx", "sha256": "0" * 64, "input_shape": [784], "output_shape": [10]}
    base = [np.round(rng.random(side * side), 3).tolist() for _ in range(4)]  # shared lists keep the test fast
    adv = [np.clip(np.asarray(b) + 0.1, 0, 1).round(3).tolist() for b in base]
    images, k = [], 0
    for i in range(num_images):
        regions = []
        for r in range(side // patch):
            for c in range(side // patch):
                verdict = "unsafe" if k % unsafe_every == 0 else ("unknown" if k % 11 == 0 else "safe")
                cx = {"x": adv[i % 4], "class_before": 3, "class_after": 5, "l0": 16, "l2": 0.4, "linf": 0.1} \
                    if verdict == "unsafe" else None
                regions.append({"id": len(regions), "box": [r * patch, c * patch, (r + 1) * patch, (c + 1) * patch],
                                "verdict": verdict, "method": "exact", "route": "smt", "time_s": 0.01,
                                "counterexample": cx})
                k += 1
        images.append({"index": i, "label": 3, "predicted": 3, "shape": [side, side], "x": base[i % 4],
                       "regions": regions})
    doc.update(manipulation={"step": 0.1, "steps": 1}, grid=[side // patch] * 2, methods=["exact"], images=images)
    return schema.finish(doc)


def test_thirty_thousand_regions_stay_under_the_size_bound():
    doc = _large_regions()
    regions = sum(len(im["regions"]) for im in doc["images"])
    unsafe = sum(r["verdict"] == "unsafe" for im in doc["images"] for r in im["regions"])
    assert regions == 31360 and unsafe == 6272
    t0 = time.perf_counter()
    html = render_html(build_report([Source("r1", "big.json", validate(doc, "big.json"))]))
    elapsed = time.perf_counter() - t0
    size = len(html.encode("utf-8"))
    assert size < SIZE_BOUND, f"{size / 2**20:.1f} MiB"
    print(f"\nrendered in {elapsed:.1f} s")  # timing is reported, not asserted: the suite must hold on a busy machine
    # every count is reported even though not everything is drawn
    assert f"31360 regions on 640 images — " in html and f"{unsafe} unsafe" in html
    assert html.count('class="mapbox"') == LIMITS.maps
    assert html.count("<summary>images ") == -(-LIMITS.maps // LIMITS.page_size)
    assert html.count("<details class=\"page\" open>") == 1  # only the first page is open
    assert "140 more images listed without maps" in html
    assert html.count('class="card"') == LIMITS.card_pictures
    assert f"{unsafe - LIMITS.cards} further counterexamples are not shown" in html
    assert len(re.findall(r"<tr><td>\d+</td><td>\d+,\d+,\d+,\d+</td>", html)) <= LIMITS.region_rows
    # every in-page link still resolves
    ids = set(re.findall(r'id="([^"]+)"', html))
    assert not {h for h in re.findall(r'href="#([^"]+)"', html)} - ids


def test_every_limit_is_applied(schema_docs):
    """Small limits on the 3-image fixture: each bound cuts where it says."""
    limits = ReportLimits(maps=2, page_size=1, card_pictures=2, cards=5, listed_images=0, detailed_images=1,
                          verify_lines=2, summary_lines=3)
    sources = [Source("r1", "regions.json", schema_docs["regions"]), Source("r2", "verify.json", schema_docs["verify"])]
    html = render_html(build_report(sources, limits=limits))
    assert html.count('class="mapbox"') == 2 and html.count("<summary>images ") == 2
    assert html.count("<summary>16 regions</summary>") == 1
    assert html.count('class="card"') == 2
    assert "counterexamples (without pictures" in html
    assert "6 further counterexamples are not shown" in html  # 10 unsafe regions + 1 verify - 5
    assert "1 further images are only counted above" in html
    assert "… and 4 more instances in the VNN-LIB instance table" in html
    assert "… and 1 more in the sections below" in html
    ids = set(re.findall(r'id="([^"]+)"', html))
    assert not {h for h in re.findall(r'href="#([^"]+)"', html)} - ids


def _cifar_regions(num_images: int = 100, grid: int = 4, unsafe_images: int = 15) -> dict:
    """100 CIFAR-size (3x32x32) images x 16 regions x 2 methods (exact, dlv) = 3,200 region checks; the
    images with unsafe regions are spread over the run (index 6, 12, ...), not at its start."""
    rng = np.random.default_rng(1)
    doc = schema.new_result("regions", settings={"grid": [grid, grid]}, command="nnaudit regions cifar.onnx --method both")
    doc["model"] = {"file": "cifar.onnx", "sha256": "c1" * 32, "input_shape": [1, 3, 32, 32], "output_shape": [1, 10]}
    base = [np.round(rng.random(3 * 32 * 32), 3).tolist() for _ in range(4)]
    adv = [np.clip(np.asarray(b) + 0.05, 0, 1).round(3).tolist() for b in base]
    side = 32 // grid
    unsafe_at = {6 * (k + 1) for k in range(unsafe_images)}
    images = []
    for i in range(num_images):
        regions = []
        for cell in range(grid * grid):
            r, c = divmod(cell, grid)
            for method in ("exact", "dlv"):
                unsafe = i in unsafe_at and method == "exact" and cell % 3 == 0
                verdict = "unsafe" if unsafe else ("unknown" if method == "dlv" else "safe")
                cx = {"x": adv[i % 4], "class_before": i % 10, "class_after": (i + 1) % 10, "conf_before": 0.9,
                      "conf_after": round(0.5 + 0.4 * rng.random(), 3), "l0": 64, "l2": round(float(rng.random()), 3),
                      "linf": 0.05} if unsafe else None
                regions.append({"id": cell, "box": [r * side, c * side, (r + 1) * side, (c + 1) * side],
                                "verdict": verdict, "method": method, "route": "attack" if unsafe else method,
                                "time_s": round(float(rng.random()), 3), "counterexample": cx,
                                "covered": "DLV: no member confirmed unsafe" if verdict == "unknown" else None})
        images.append({"index": i, "label": i % 10, "predicted": i % 10, "shape": [3, 32, 32], "x": base[i % 4],
                       "regions": regions})
    doc.update(manipulation={"step": 0.05, "steps": 2}, grid=[grid, grid], methods=["exact", "dlv"], images=images)
    return schema.finish(doc)


def test_hundred_cifar_images_unsafe_first_size_and_time(tmp_path, capsys):
    """The documented figures (reports/README.md): generation time and size of a 3,200-check report."""
    from nnaudit.reports.render import write_report

    doc = _cifar_regions()
    path = schema.write_json(doc, tmp_path / "cifar.json")
    t0 = time.perf_counter()
    out = write_report([path], tmp_path / "cifar.html")  # read + validate + build + render + write
    elapsed = time.perf_counter() - t0
    html = out.read_text()
    size = len(html.encode("utf-8"))
    with capsys.disabled():
        print(f"\n100 CIFAR images x 16 regions x 2 methods: {size / 2**20:.2f} MiB in {elapsed:.1f} s")
    assert size < 4 * 2**20, (size, elapsed)
    unsafe = [(im["index"], r["id"]) for im in doc["images"] for r in im["regions"] if r["verdict"] == "unsafe"]
    assert len(unsafe) == 15 * 6
    # the safety maps open with the images that have an unsafe region, then unknown ones
    captions = re.findall(r"<figcaption>image (\d+) · label", html)
    assert [int(c) for c in captions[:15]] == [6 * (k + 1) for k in range(15)]
    assert len(captions) == 100
    # the explorer lists every check, unsafe first, with filters for verdict, class, image and method
    rows = re.findall(r'<div class="xrow" data-f0="(\w+)" data-f1="(\d+)" data-f2="(\d+)" data-f3="(\w+)"',
                      html)
    assert len(rows) == 3200 and [v for v, *_ in rows[:90]] == ["unsafe"] * 90 and rows[90][0] == "unknown"
    assert "3200 region checks: filter and sort" in html
    for filt, count in (("f0", 3), ("f1", 10), ("f2", 100), ("f3", 2)):
        assert len(re.findall(rf'#x-r1:has\(#x-r1-{filt} option\[value="[^"]+"\]:checked\)', html)) == count
    # every unsafe region has a card with pictures, linked from its row
    assert html.count('class="card"') == 90 and html.count('<span><a href="#cx-r1-') == 90
    ids = set(re.findall(r'id="([^"]+)"', html))
    assert not {h for h in re.findall(r'href="#([^"]+)"', html)} - ids


def test_cards_spread_over_images_when_pictures_run_out():
    """With more counterexamples than pictured cards, the pictures go round-robin over the images."""
    doc = _large_regions(num_images=60)  # 60 images x ~10 unsafe regions = 588 counterexamples
    html = render_html(build_report([Source("r1", "big.json", validate(doc, "big.json"))]))
    titles = re.findall(r'<article class="card" id="cx-r1-i(\d+)-g\d+">', html)
    assert len(titles) == LIMITS.card_pictures and len(set(titles)) == 60
    assert titles[:3] == ["0", "1", "2"]


def test_large_attack_results_get_an_explorer(schema_docs):
    doc = schema_docs["attack"]
    x = doc["examples"][0]["x"]
    examples = [{**doc["examples"][0], "index": i, "eps": (0.05, 0.1)[i % 2], "attack": ("fgsm", "pgd")[i % 2],
                 "label": i % 10, "conf_adv": (i % 17) / 17, "norms": {"l2": (i * 7 % 13) / 13, "linf": 0.1},
                 "x": x, "x_adv": x} for i in range(LIMITS.card_pictures + 200)]
    big = {**doc, "examples": examples}
    html = render_html(build_report([Source("r1", "attack.json", validate(big, "attack.json"))]))
    assert "Examples in the gallery" not in html and 'href="#None"' not in html
    assert f"{len(examples)} adversarial examples: filter and sort" in html
    assert len(re.findall(r'<div class="xrow"', html)) == len(examples)
    assert html.count('<span><a href="#cx-r1-a') == len(examples)  # 300 cards + 200 table rows: all have an anchor
    ids = set(re.findall(r'id="([^"]+)"', html))
    assert not {h for h in re.findall(r'href="#([^"]+)"', html)} - ids
