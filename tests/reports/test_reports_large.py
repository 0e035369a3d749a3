"""Large runs stay readable and within the documented size bound (reports/README.md):
a synthetic regions result of 640 MNIST-size (28x28) images x 49 regions."""

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
    assert elapsed < 30, elapsed
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
