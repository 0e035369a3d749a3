"""``nnaudit.runs``: each kind's run writes its document as it goes and resumes from it.

Real files throughout: a run is interrupted (Ctrl-C raised from inside the
engine), its JSON is read back (valid, ``complete: false``, the finished
work in it), and a rerun with ``resume`` keeps that work -- marked here so a
rerun would show -- and does only the rest.  A file of another run is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnaudit.errors import ConfigError
from nnaudit.networks import zoo
from nnaudit.reports.schema import plain, read_result
from nnaudit.runs.record import Record
from nnaudit.runs.regions import RegionsRun, run_regions
from nnaudit.runs.verify import VerifyRun, run_verify

PROPS = Path(__file__).resolve().parents[2] / "examples" / "ci" / "properties"
P0, P3 = PROPS / "moons_sample0.vnnlib", PROPS / "moons_sample3.vnnlib"


def _interrupt_on_call(monkeypatch: pytest.MonkeyPatch, module: object, name: str, n: int) -> None:
    """Make ``module.name`` raise KeyboardInterrupt on its ``n``-th call."""
    real, calls = getattr(module, name), {"n": 0}

    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


def _mark(path: Path, edit) -> None:  # noqa: ANN001
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_verify_writes_each_instance_and_resumes_after_the_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nnaudit.verify.engine as engine

    net, out = zoo.load("moons-ffn"), tmp_path / "v.json"
    _interrupt_on_call(monkeypatch, engine, "verify_property", 2)
    with pytest.raises(KeyboardInterrupt):
        run_verify(net, [P0, P3], VerifyRun(timeout=20), Record(json_path=out))
    saved = read_result(out, kind="verify")
    assert saved["complete"] is False and [i["property"] for i in saved["instances"]] == ["moons_sample0.vnnlib"]
    _mark(out, lambda d: d["instances"][0].update(time_s=123.0))  # a rerun of it would show
    monkeypatch.undo()
    results, doc = run_verify(net, [P0, P3], VerifyRun(timeout=20), Record(json_path=out, resume=True))
    assert doc["complete"] is True and doc["started"] == saved["started"]
    assert [i["property"] for i in doc["instances"]] == ["moons_sample0.vnnlib", "moons_sample3.vnnlib"]
    assert doc["instances"][0]["time_s"] == 123.0 and results[0].time_s == 123.0
    assert results[0].verdict.value == saved["instances"][0]["verdict"] and results[1].prop == "moons_sample3.vnnlib"
    assert read_result(out, kind="verify") == plain(doc)


def test_verify_resume_of_a_finished_file_decides_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nnaudit.verify.engine as engine
    from nnaudit.verify.engine import VerifyConfig

    net, out = zoo.load("moons-ffn"), tmp_path / "v.json"
    first, _ = run_verify(net, [P0], VerifyConfig(timeout_s=20), Record(json_path=out))
    _interrupt_on_call(monkeypatch, engine, "verify_property", 1)
    again, doc = run_verify(net, [P0], VerifyConfig(timeout_s=20), Record(json_path=out, resume=True))
    assert [r.to_dict() for r in again] == [r.to_dict() for r in first] and doc["complete"] is True


@pytest.mark.parametrize("change,message", [
    (dict(properties=[P3, P0]), "settings differ in properties"),
    (dict(seed=5), "seeds differ"),
    (dict(model="digits-ffn"), "made with a model of sha256"),
])
def test_verify_refuses_to_resume_another_run(tmp_path: Path, change: dict, message: str) -> None:
    out = tmp_path / "v.json"
    run_verify(zoo.load("moons-ffn"), [P0, P3], VerifyRun(timeout=20), Record(json_path=out))
    net = zoo.load(change.get("model", "moons-ffn"))
    with pytest.raises(ConfigError, match="cannot resume") as err:
        run_verify(net, change.get("properties", [P0, P3]), VerifyRun(timeout=20, seed=change.get("seed", 0)),
                   Record(json_path=out, resume=True))
    assert message in str(err.value) and str(out) in str(err.value)


def test_verify_resume_needs_the_saved_instances_to_be_the_first_properties(tmp_path: Path) -> None:
    """Settings of the engine's own config do not list the properties: the instances are checked."""
    from nnaudit.verify.engine import VerifyConfig

    out = tmp_path / "v.json"
    run_verify(zoo.load("moons-ffn"), [P0], VerifyConfig(timeout_s=20), Record(json_path=out))
    with pytest.raises(ConfigError, match="not the first of this run's properties"):
        run_verify(zoo.load("moons-ffn"), [P3, P0], VerifyConfig(timeout_s=20), Record(json_path=out, resume=True))


def test_regions_keyword_run_resumes_a_half_done_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nnaudit.verify.regions.api as api
    from nnaudit.networks.datasets import digits

    net, out = zoo.load("digits-ffn"), tmp_path / "r.json"
    x, y = digits("test")
    right = (net.predict(x[:20]) == y[:20]).nonzero()[0][:2]  # misclassified digits would be skipped
    x, y = x[right], y[right]
    run = RegionsRun(grid=(2, 2), step=0.05, steps=1, timeout=5)
    _interrupt_on_call(monkeypatch, api, "check_region", 3)
    with pytest.raises(KeyboardInterrupt):
        run_regions(net, x, y, run, Record(json_path=out))
    saved = read_result(out, kind="regions")
    assert saved["complete"] is False and [len(im["regions"]) for im in saved["images"]] == [2]
    _mark(out, lambda d: d["images"][0]["regions"][0].update(time_s=123.0))
    monkeypatch.undo()
    images, doc = run_regions(net, x, y, run, Record(json_path=out, resume=True))
    assert doc["complete"] is True and [len(im["regions"]) for im in doc["images"]] == [4, 4]
    assert doc["images"][0]["regions"][0]["time_s"] == 123.0 and images[0].regions[0].time_s == 123.0
    assert doc["settings"]["regions"] == "2x2" and doc["seeds"] == {"regions": 0}
    with pytest.raises(ConfigError, match="settings differ in manipulation"):
        run_regions(net, x, y, RegionsRun(grid=(2, 2), step=0.1, steps=1, timeout=5), Record(json_path=out, resume=True))


def test_resume_from_a_missing_file_starts_afresh(tmp_path: Path) -> None:
    out = tmp_path / "missing.json"
    results, doc = run_verify(zoo.load("moons-ffn"), [P0], VerifyRun(timeout=20), Record(json_path=out, resume=True))
    assert len(results) == 1 and doc["complete"] is True and read_result(out)["instances"] == doc["instances"]
