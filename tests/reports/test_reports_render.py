"""The HTML report: content, sections per kind, escaping, self-containment, CLI."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.reports import schema
from nnaudit.reports.render import write_report

EVIL = "<script>alert('x')</script>"


class _Page(HTMLParser):
    """Ids, in-page links, headings, resource URLs and tags of an HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.resources: list[str] = []
        self.tags: list[str] = []
        self.headings: list[str] = []
        self._heading: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids.add(a["id"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])
        for key in ("src", "href"):
            if key in a and not a[key].startswith("#"):
                self.resources.append(a[key])
        if tag in ("h1", "h2", "h3"):
            self._heading = []

    def handle_data(self, data):
        if self._heading is not None:
            self._heading.append(data)

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None


@pytest.fixture(scope="module")
def full_report(schema_docs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    paths = [schema.write_json(schema_docs[k], folder / f"{k}.json") for k in ("regions", "attack", "verify", "adapt", "check")]
    return write_report(paths, folder / "report.html").read_text()


def test_every_section_and_count_is_present(full_report, schema_docs):
    page = _Page(full_report)
    for heading in ("Summary", "Checks", "Safety maps", "Counterexample gallery", "Robust accuracy",
                    "VNN-LIB instances", "Domain adaptation (DANN)", "Reproducibility"):
        assert heading in page.headings
    assert page.headings.index("Summary") == 1  # right after the title
    regions = schema_docs["regions"]
    verdicts = [r["verdict"] for im in regions["images"] for r in im["regions"]]
    n_safe, n_unsafe, n_unknown = (verdicts.count(v) for v in ("safe", "unsafe", "unknown"))
    assert (n_safe, n_unsafe, n_unknown) == (33, 10, 5)
    assert f"48 regions on 3 images — {n_safe} safe, {n_unsafe} unsafe, {n_unknown} unknown" in full_report
    assert "acas.onnx — prop_1.vnnlib: VIOLATED" in full_report
    assert "acas.onnx — prop_0.vnnlib: HOLDS (proved)" in full_report
    assert "50 (3 closed by phases)" in full_report
    assert "2 holds, 1 violated, 1 unknown, 1 timeout, 1 error" in full_report
    assert "x = [0.1, -0.2, 0.3, 0, 0.5]" in full_report and "y (onnxruntime) = [1, 0.2, 3, 0.1, 0]" in full_report
    assert "eps 0.05: <b>81.0%</b>" in full_report and "eps 0.1: <b>42.0%</b>" in full_report
    assert "DANN on moons: target accuracy 93.0% vs 70.0% source-only" in full_report
    assert "check digits-pgd (attack): FAILED" in full_report
    # gallery: 10 unsafe regions + 2 attack examples (twice: file and nested in check) + 1 verify counterexample
    assert full_report.count('class="card"') == 10 + 2 * 2 + 1
    # reproducibility: command lines, seeds, sha256, versions
    assert "nnaudit regions digits-ffn.onnx --data digits --grid 4x4" in full_report
    assert "ab" * 32 in full_report and "numpy" in full_report
    assert len(re.findall(r'<article class="repro"', full_report)) == 6  # 5 files + 1 nested result


def test_in_page_links_resolve_and_nothing_is_fetched(full_report):
    page = _Page(full_report)
    assert page.links and not [link for link in page.links if link not in page.ids]
    assert all(r.startswith("data:image/") for r in page.resources), [r[:40] for r in page.resources if not r.startswith("data:")]
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert "http://" not in full_report and "https://" not in full_report


def test_every_unsafe_region_links_to_its_counterexample(full_report, schema_docs):
    page = _Page(full_report)
    for n, image in enumerate(schema_docs["regions"]["images"]):
        for region in image["regions"]:
            anchor = f"cx-r1-i{n}-g{region['id']}"  # regions.json is the first file: r1
            assert (anchor in page.ids) == (region["verdict"] == "unsafe")
            if region["verdict"] == "unsafe":
                assert full_report.count(f'href="#{anchor}"') >= 2  # map overlay and region table


def test_names_labels_and_files_are_escaped(write_docs, schema_docs, tmp_path):
    regions = copy.deepcopy(schema_docs["regions"])
    regions["model"]["file"] = EVIL
    regions["command"] = f"nnaudit regions '{EVIL}'"
    verify = copy.deepcopy(schema_docs["verify"])
    verify["instances"][0]["property"] = EVIL
    verify["instances"][2]["message"] = EVIL
    attack = copy.deepcopy(schema_docs["attack"])
    attack["attacks"] = [EVIL, "pgd"]
    for r in attack["results"]:
        r["robust_accuracy"][EVIL] = r["robust_accuracy"].pop("fgsm")
    paths = write_docs(("regions", regions), ("verify", verify), ("attack", attack), (EVIL.replace("/", "_"), schema_docs["adapt"]))
    html = write_report(paths, tmp_path / "r.html", title=EVIL).read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert html.count("&lt;script&gt;") >= 6


@pytest.mark.parametrize("kinds", [("regions",), ("attack",), ("verify",), ("adapt",), ("check",), ("verify", "adapt")])
def test_any_subset_renders_only_its_sections(write_docs, tmp_path, kinds):
    html = write_report(write_docs(*kinds), tmp_path / "r.html").read_text()
    headings = _Page(html).headings
    expected = {"regions": "Safety maps", "attack": "Robust accuracy", "verify": "VNN-LIB instances",
                "adapt": "Domain adaptation (DANN)", "check": "Checks"}
    for kind, heading in expected.items():
        present = kind in kinds or (kind == "attack" and "check" in kinds)  # the check nests an attack result
        assert (heading in headings) == present, (kind, headings)
    assert "Summary" in headings and "Reproducibility" in headings


def test_an_interrupted_run_is_marked(write_docs, schema_docs, tmp_path):
    doc = copy.deepcopy(schema_docs["adapt"])
    doc.update(complete=False, finished=None, final=None, features=None, decision_boundary=None)
    html = write_report(write_docs(("adapt", doc)), tmp_path / "r.html").read_text()
    assert "run in progress (3 epochs recorded)" in html
    assert "incomplete" in html and "not finished" in html


def test_cli_writes_report_and_rejects_bad_files(write_docs, schema_docs, tmp_path):
    paths = write_docs("verify", "attack")
    out = tmp_path / "sub" / "report.html"
    result = CliRunner().invoke(cli, ["report", *map(str, paths), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and out.is_file()
    bad = copy.deepcopy(schema_docs["verify"])
    bad["instances"][0]["time_s"] = "slow"
    (bad_path,) = write_docs(("bad", bad))
    result = CliRunner().invoke(cli, ["report", str(paths[0]), str(bad_path), "-o", str(tmp_path / "x.html")])
    assert result.exit_code == 2
    assert f"error: {bad_path}: $.instances[0].time_s: expected a number, got \"slow\"" in result.output
    assert not (tmp_path / "x.html").exists()
    result = CliRunner().invoke(cli, ["report", "-o", str(tmp_path / "x.html")])
    assert result.exit_code == 2


@pytest.mark.parametrize("kind", ["regions", "attack", "verify", "adapt", "check"])
def test_a_run_that_just_started_renders(write_docs, tmp_path, kind):
    doc = schema.new_result(kind, settings={"a": 1}, command=f"nnaudit {kind} m.onnx")  # header only, complete false
    html = write_report(write_docs((kind, doc)), tmp_path / "r.html").read_text()
    assert "the run was interrupted or is still running" in html and "not finished" in html
    assert f"nnaudit {kind} m.onnx" in html
