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
