"""``save_safety_map``: the PNG of ``nnaudit regions --maps`` is the report's safety map."""

from __future__ import annotations

import base64
import copy
import io

import numpy as np
import pytest
from PIL import Image

from nnaudit.errors import DataError
from nnaudit.reports.images import VERDICT_RGB, as_image, safety_map_uri, save_safety_map, value_range


def _pixels(source) -> np.ndarray:  # noqa: ANN001
    return np.asarray(Image.open(source).convert("RGB"))


def _tint(rgb: np.ndarray, box: list[int], scale: int) -> np.ndarray:
    """The colour at the centre of a region's box in the enlarged map."""
    r0, c0, r1, c1 = box
    return rgb[(r0 + r1) * scale // 2, (c0 + c1) * scale // 2].astype(int)


def test_the_png_is_the_reports_picture_and_tints_by_verdict(schema_docs, tmp_path):
    image = schema_docs["regions"]["images"][0]
    path = save_safety_map(image, tmp_path / "maps" / "image_0000.png")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rgb = _pixels(path)
    pic = as_image(image["x"], image["shape"])
    uri, scale = safety_map_uri(pic, image["regions"], *value_range(pic))
    assert rgb.shape == (8 * scale, 8 * scale, 3)
    assert np.array_equal(rgb, _pixels(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    unsafe = next(r for r in image["regions"] if r["verdict"] == "unsafe")
    safe = next(r for r in image["regions"] if r["verdict"] == "safe")
    assert np.argmax(_tint(rgb, unsafe["box"], scale)) == np.argmax(VERDICT_RGB["unsafe"])  # red
    assert np.argmax(_tint(rgb, safe["box"], scale)) == np.argmax(VERDICT_RGB["safe"])  # green


def test_a_box_checked_by_two_methods_shows_the_combined_verdict(schema_docs, tmp_path):
    image = copy.deepcopy(schema_docs["regions"]["images"][0])
    safe = next(r for r in image["regions"] if r["verdict"] == "safe")
    image["regions"].append({**safe, "method": "dlv", "verdict": "unsafe"})  # DLV found what exact did not
    rgb = _pixels(save_safety_map(image, tmp_path / "both.png"))
    assert np.argmax(_tint(rgb, safe["box"], rgb.shape[0] // 8)) == np.argmax(VERDICT_RGB["unsafe"])


def test_an_input_that_is_no_image_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="image 3: shape \\[5\\] cannot be drawn"):
        save_safety_map({"index": 3, "shape": [5], "x": [0.0] * 5, "regions": []}, tmp_path / "x.png")


def _colour_image(regions: list[dict]) -> dict:
    """A (3, 32, 32) image: red left half, blue right half."""
    x = np.zeros((3, 32, 32))
    x[0, :, :16] = 1.0
    x[2, :, 16:] = 1.0
    return {"index": 0, "shape": [3, 32, 32], "x": x.ravel().tolist(), "regions": regions}


def test_a_colour_map_is_drawn_over_the_colour_image_with_legible_outlines(tmp_path):
    regions = [{"id": 0, "box": [0, 0, 8, 8], "verdict": "safe", "channels": [0, 1, 2]},
               {"id": 1, "box": [8, 24, 16, 32], "verdict": "unsafe", "channels": [0, 1, 2]}]
    rgb = _pixels(save_safety_map(_colour_image(regions), tmp_path / "c.png"))
    scale = rgb.shape[0] // 32
    assert rgb.shape == (32 * scale, 32 * scale, 3) and scale >= 5
    assert rgb[20 * scale, 4 * scale].tolist() == [255, 0, 0]          # untouched pixels keep their colour
    assert rgb[20 * scale, 28 * scale].tolist() == [0, 0, 255]
    inside = rgb[4 * scale, 4 * scale].astype(int)                      # the tint mixes image and verdict colour
    assert inside[0] > inside[2] and np.argmax(_tint(rgb, [0, 0, 8, 8], scale)) in (0, 1)
    border = VERDICT_RGB["unsafe"]
    for r in (8 * scale, 8 * scale + 1, 16 * scale - 2, 16 * scale - 1):   # two-pixel outlines
        assert np.abs(rgb[r, 28 * scale].astype(int) - np.array(border) * 0.7).max() <= 1


def test_a_box_split_by_channel_shows_its_worst_channel(tmp_path):
    box = [0, 0, 16, 16]
    regions = [{"id": c, "box": box, "verdict": v, "channels": [c]} for c, v in enumerate(("safe", "unknown", "safe"))]
    from nnaudit.reports.images import combined_verdicts

    assert combined_verdicts(regions) == {(0, 0, 16, 16): "unknown"}
    regions[2]["verdict"] = "unsafe"
    assert combined_verdicts(regions) == {(0, 0, 16, 16): "unsafe"}
    both = [dict(r, verdict="safe") for r in regions] + [dict(regions[1], method="dlv")]  # exact proved channel 1
    assert combined_verdicts(both) == {(0, 0, 16, 16): "safe"}
    rgb = _pixels(save_safety_map(_colour_image(regions), tmp_path / "ch.png"))
    assert np.argmax(_tint(rgb, box, rgb.shape[0] // 32)) == np.argmax(VERDICT_RGB["unsafe"])


def test_mnist_and_flat_inputs_are_drawn_as_square_digits(tmp_path):
    x = np.zeros(784)
    rgb = _pixels(save_safety_map({"index": 0, "shape": [28, 28], "x": x.tolist(),
                                   "regions": [{"id": 0, "box": [0, 0, 7, 7], "verdict": "safe"}]}, tmp_path / "m.png"))
    assert rgb.shape[:2] == (28 * (rgb.shape[0] // 28),) * 2 and rgb.shape[0] // 28 >= 5
    assert as_image(x, [784, 1]).shape == (28, 28)


def test_a_colour_report_outlines_the_region_on_its_card_and_names_the_channel(schema_docs, write_docs, tmp_path):
    from nnaudit.reports.render import write_report

    doc = copy.deepcopy(schema_docs["regions"])
    image = _colour_image([])
    x = np.asarray(image["x"])
    adv = x.copy()
    adv[2 * 1024 + 8 * 32 + 8] = 0.5                      # channel 2, pixel (8, 8)
    cx = {"x": adv.tolist(), "class_before": 3, "class_after": 5, "conf_before": 0.9, "conf_after": 0.6}
    image["regions"] = [{"id": c, "box": [8, 8, 16, 16], "channels": [c], "image_pixels": [8 * 32 + 8],
                         "pixels": [c * 1024 + 8 * 32 + 8], "method": "exact", "verdict": v, "route": "attack",
                         "time_s": 0.1, "covered": None, "counterexample": cx if v == "unsafe" else None}
                        for c, v in enumerate(("safe", "safe", "unsafe"))]
    doc.update(images=[{**image, "label": 3, "predicted": 3}], region_channels="each")
    html = write_report(write_docs(("regions", doc)), tmp_path / "r.html").read_text()
    assert "region 2 [8, 8, 16, 16] · channel 2" in html and "one region per pixel set and channel" in html
    assert html.count('class="region" style="left: 25.00%; top: 25.00%; width: 25.00%; height: 25.00%"') == 3
    assert "<td>0</td><td>8,8,16,16</td><td>0</td>" in html.replace("\n", "")
