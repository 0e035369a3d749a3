"""The report in a real browser: headless Chromium opens it from disk (file://),
takes a screenshot, and the test checks that the page rendered (non-blank,
expected title and headings in the DOM) with no console messages; and that the
CSS-only filters and sorts of a regions result written by the real CLI work,
with unsafe regions first, nothing external referenced and the model's sha256
in the summary.

Chromium comes from the Debian packages ``chromium`` and ``chromium-driver``
(``make test`` installs them where missing).  Without the binary the test is
skipped, except under CI (environment variable ``CI`` set), where it fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from nnaudit.reports import schema
from nnaudit.reports.render import write_report

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio"]
CONSOLE = re.compile(r"CONSOLE[(:]\d*\)?\]?\s*(.*)")


def _chromium() -> str:
    binary = os.environ.get("NNAUDIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        return binary
    if os.environ.get("CI"):
        pytest.fail("Chromium is missing: install the Debian packages chromium and chromium-driver "
                    "(apt-get update && apt-get install -y chromium chromium-driver); CI must run the browser test")
    pytest.skip("Chromium is not installed (Debian packages chromium, chromium-driver); set CI=1 to make this an error")


def _run(binary: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run on ``page`` with a fresh profile; console
    messages go to stderr (``--enable-logging=stderr``)."""
    args = [binary, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--log-level=0",
            *extra, page.resolve().as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=90)


def _console_messages(stderr: str) -> list[str]:
    return [m.group(1) for line in stderr.splitlines() if (m := CONSOLE.search(line))]


@pytest.fixture(scope="module")
def rendered(schema_docs, tmp_path_factory):
    binary = _chromium()
    folder = tmp_path_factory.mktemp("browser")
    paths = [schema.write_json(schema_docs[k], folder / f"{k}.json") for k in ("regions", "attack", "verify", "adapt", "check")]
    page = write_report(paths, folder / "report.html", title="nnaudit browser test report")
    dom = _run(binary, page, folder / "profile-dom", "--dump-dom")
    shot = folder / "shot.png"
    pic = _run(binary, page, folder / "profile-shot", f"--screenshot={shot}", "--window-size=1280,1600")
    return {"binary": binary, "folder": folder, "dom": dom, "shot": shot, "pic": pic}


def test_dom_has_title_and_headings(rendered):
    dom = rendered["dom"]
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<title>nnaudit browser test report</title>" in dom.stdout
    for heading in ("Summary", "Safety maps", "Counterexample gallery", "Robust accuracy", "VNN-LIB instances",
                    "Domain adaptation (DANN)", "Reproducibility"):
        assert re.search(rf"<h2[^>]*>{re.escape(heading)}</h2>", dom.stdout), heading


def test_no_console_errors(rendered):
    messages = _console_messages(rendered["dom"].stderr) + _console_messages(rendered["pic"].stderr)
    assert messages == []
    assert "Uncaught" not in rendered["dom"].stderr + rendered["pic"].stderr


def test_screenshot_is_not_blank(rendered):
    from PIL import Image

    assert rendered["pic"].returncode == 0, rendered["pic"].stderr[-2000:]
    pixels = np.asarray(Image.open(rendered["shot"]).convert("RGB"), dtype=np.int32)
    assert pixels.shape[:2] == (1600, 1280)
    ink = (np.abs(pixels - 255).sum(axis=2) > 60).mean()  # share of clearly non-white pixels
    assert 0.01 < ink < 0.6, ink
    colours = {tuple(p) for p in pixels[::7, ::7].reshape(-1, 3)}
    assert len(colours) > 50  # text, badges, images: not a flat page
    red = ((pixels[..., 0] > 180) & (pixels[..., 1] < 90) & (pixels[..., 2] < 80)).sum()
    assert red > 100  # the unsafe badges / safety-map regions in the first screen


def test_the_console_check_catches_script_errors(rendered, tmp_path):
    """The harness itself: a page with a failing script is flagged."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><title>bad</title><h1>x</h1><script>undefinedFunction();</script>")
    result = _run(rendered["binary"], bad, tmp_path / "profile", "--dump-dom")
    assert any("Uncaught" in m for m in _console_messages(result.stderr)), result.stderr[-2000:]


# --- filters, sorts and the order of a large run, on a regions result from the real CLI --------------

ROOT = Path(__file__).resolve().parents[2]
#: appended to a copy of the report (the report itself has no script): drives the CSS-only filters and
#: sorts like a user would and writes what is visible, top to bottom, into <pre id="driver">
DRIVER = """<script>
function shown(id) {
  return [...document.querySelectorAll('#' + id + ' .xrow')].map(r => r.firstElementChild)
    .filter(c => c.getClientRects().length > 0)
    .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
    .map(c => [...c.parentElement.children].map(s => s.textContent));
}
function pick(id, value) { document.getElementById(id).value = value; return shown('x-r1'); }
const out = {initial: shown('x-r1')};
out.unsafe = pick('x-r1-f0', 'unsafe');
out.safe = pick('x-r1-f0', 'safe');
pick('x-r1-f0', '');
out.image = pick('x-r1-f2', 'IMAGE');
out.image_unsafe = pick('x-r1-f0', 'unsafe');
pick('x-r1-f2', ''); pick('x-r1-f0', '');
out.cls = pick('x-r1-f1', 'CLASS');
pick('x-r1-f1', '');
out.by_image = pick('x-r1-sort', '1');
out.by_time = pick('x-r1-sort', '2');
out.maps = [...document.querySelectorAll('figure.map')].map(f => f.querySelector('figcaption').textContent);
const e = document.createElement('pre'); e.id = 'driver'; e.textContent = JSON.stringify(out);
document.body.appendChild(e);
</script>"""
COLUMNS = {"image": 0, "label": 1, "region": 2, "verdict": 4, "time": 6}


@pytest.fixture(scope="module")
def cli_regions(tmp_path_factory):
    """A regions result written by ``nnaudit regions`` on the bundled digits-ffn (digits 3-5, 4x4 grid;
    only digit 5 has unsafe regions, so "unsafe first" differs from the order by index)."""
    folder = tmp_path_factory.mktemp("cli")
    out = folder / "regions.json"
    exe = Path(sys.executable).with_name("nnaudit")
    proc = subprocess.run([str(exe), "regions", str(ROOT / "networks/zoo/digits-ffn.onnx"), "--data", "digits",
                           "--start", "3", "--limit", "3", "--grid", "4x4", "--timeout-per-region", "5",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=folder)
    assert proc.returncode in (0, 1, 3), proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def explored(cli_regions, schema_docs, tmp_path_factory):
    binary = _chromium()
    folder = tmp_path_factory.mktemp("explorer")
    doc = json.loads(cli_regions.read_text())
    regions = [(im["index"], im["label"], r) for im in doc["images"] for r in im["regions"]]
    unsafe_image = next(i for i, _, r in regions if r["verdict"] == "unsafe")
    label = next(lab for _, lab, r in regions if r["verdict"] == "unsafe")
    attack = schema.write_json(schema_docs["attack"], folder / "attack.json")
    page = write_report([cli_regions, attack], folder / "report.html")
    html = page.read_text()
    driven = folder / "driven.html"
    driven.write_text(html.replace("</body>", DRIVER.replace("IMAGE", str(unsafe_image))
                                   .replace("CLASS", str(label)) + "</body>"))
    dom = _run(binary, driven, folder / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'<pre id="driver">(.*?)</pre>', dom.stdout, re.S)
    assert match, dom.stdout[-2000:]
    result = json.loads(unescape(match.group(1)))
    return {"doc": doc, "regions": regions, "html": html, "dom": dom, "result": result,
            "image": unsafe_image, "label": label}


def test_filter_by_verdict_image_and_class(explored):
    result, regions = explored["result"], explored["regions"]
    verdicts = [r["verdict"] for _, _, r in regions]
    assert len(result["initial"]) == len(regions)  # every region check is listed
    assert [row[COLUMNS["verdict"]] for row in result["unsafe"]] == ["unsafe"] * verdicts.count("unsafe")
    assert [row[COLUMNS["verdict"]] for row in result["safe"]] == ["safe"] * verdicts.count("safe")
    image = str(explored["image"])
    assert result["image"] and {row[COLUMNS["image"]] for row in result["image"]} == {image}
    assert len(result["image"]) == sum(1 for i, _, _ in regions if str(i) == image)
    assert {(row[COLUMNS["image"]], row[COLUMNS["verdict"]]) for row in result["image_unsafe"]} == {(image, "unsafe")}
    assert result["cls"] and {row[COLUMNS["label"]] for row in result["cls"]} == {str(explored["label"])}


def test_unsafe_rows_and_maps_come_first(explored):
    result, doc = explored["result"], explored["doc"]
    rank = {"unsafe": 0, "unknown": 1, "safe": 2}
    order = [rank[row[COLUMNS["verdict"]]] for row in result["initial"]]
    assert order == sorted(order) and order[0] == 0
    unsafe_counts = [int(re.search(r"(\d+) unsafe", caption).group(1)) for caption in result["maps"]]
    assert len(unsafe_counts) == len(doc["images"]) and unsafe_counts[0] > 0
    assert result["maps"][0].startswith(f"image {explored['image']} ")
    assert explored["image"] != min(im["index"] for im in doc["images"])  # not simply the first by index
    assert unsafe_counts == sorted(unsafe_counts, key=lambda n: n == 0)  # images with an unsafe region first
    html = explored["html"]
    first_card = html.index('class="card"')
    assert "regions: exact" in html[first_card:first_card + 2000]  # the gallery opens with unsafe regions


def test_sorting_changes_the_order(explored):
    result = explored["result"]
    images = [int(row[COLUMNS["image"]]) for row in result["by_image"]]
    assert images == sorted(images) and result["by_image"] != result["initial"]
    times = [float(row[COLUMNS["time"]]) for row in result["by_time"]]
    assert times == sorted(times, reverse=True) and result["by_time"] != result["by_image"]
    assert sorted(map(tuple, result["by_time"])) == sorted(map(tuple, result["initial"]))  # same rows


def test_no_external_resource_and_the_model_hash_is_in_the_summary(explored):
    html, dom = explored["html"], explored["dom"].stdout
    assert not re.findall(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:[a-z]+:)?//""", html, re.I)
    assert not re.findall(r"https?://", html) and "@import" not in html and "url(" not in html
    assert "<script" not in html  # filters and sorts are CSS only
    sha = explored["doc"]["model"]["sha256"]
    assert sha == hashlib.sha256((ROOT / "networks/zoo/digits-ffn.onnx").read_bytes()).hexdigest()
    summary = dom[dom.index('<section id="summary">'):dom.index("</section>", dom.index('<section id="summary">'))]
    assert f'<code class="sha256">{sha}</code>' in summary and "digits-ffn.onnx" in summary
    assert _console_messages(explored["dom"].stderr) == []
