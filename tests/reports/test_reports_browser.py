"""The report in a real browser: headless Chromium opens it from disk (file://),
takes a screenshot, and the test checks that the page rendered (non-blank,
expected title and headings in the DOM) with no console messages.

Chromium comes from the Debian packages ``chromium`` and ``chromium-driver``
(``make test`` installs them where missing).  Without the binary the test is
skipped, except under CI (environment variable ``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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
