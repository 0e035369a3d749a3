"""Strict validation of result files on read: errors name the file and the JSON path."""

from __future__ import annotations

import copy
import json

import pytest

from nnaudit.errors import DataError
from nnaudit.reports import schema
from nnaudit.reports.validate import ShapeError, problems, validate


def _write(tmp_path, doc, name="run.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("kind", ["regions", "attack", "verify", "adapt", "check"])
def test_documents_per_schema_are_valid(schema_docs, kind, tmp_path):
    doc = schema_docs[kind]
    assert problems(doc) == []
    assert schema.read_result(_write(tmp_path, doc))["kind"] == kind


@pytest.mark.parametrize("mutate, path, message", [
    (lambda d: d["results"][1].__setitem__("eps", "x"), "$.results[1].eps", 'expected a number, got "x"'),
    (lambda d: d.__setitem__("attacks", "pgd"), "$.attacks", 'expected a list, got "pgd"'),
    (lambda d: d["examples"][0].__setitem__("label", 1.5), "$.examples[0].label", "expected an integer, got 1.5"),
    (lambda d: d["examples"][0].__setitem__("x", [0.0] * 63), "$.examples[0].x", "expected 64 numbers (shape [64]), got 63"),
    (lambda d: d["results"][0]["robust_accuracy"].__setitem__("pgd", True), "$.results[0].robust_accuracy.pgd",
     "expected a number, got true"),
    (lambda d: d.pop("results"), "$", "missing required key 'results'"),
    (lambda d: d.__setitem__("complete", "yes"), "$.complete", 'expected a boolean, got "yes"'),
])
def test_attack_shape_errors_name_file_and_path(schema_docs, tmp_path, mutate, path, message):
    doc = copy.deepcopy(schema_docs["attack"])
    mutate(doc)
    file = _write(tmp_path, doc)
    with pytest.raises(ShapeError) as err:
        schema.read_result(file)
    assert str(err.value).startswith(f"{file}: {path}: {message}")
    assert isinstance(err.value, DataError)


@pytest.mark.parametrize("kind, mutate, path, message", [
    ("verify", lambda d: d["instances"][2].__setitem__("verdict", "proved"), "$.instances[2].verdict",
     'expected one of holds|violated|unknown|timeout|error, got "proved"'),
    ("verify", lambda d: d["instances"][1]["counterexample"].__setitem__("x", [1, "a"]),
     "$.instances[1].counterexample.x[1]", 'expected a number, got "a"'),
    ("regions", lambda d: d["images"][1]["regions"][3].__setitem__("verdict", "maybe"), "$.images[1].regions[3].verdict",
     'expected one of safe|unsafe|unknown, got "maybe"'),
    ("regions", lambda d: d["images"][0]["regions"][0].__setitem__("box", [0, 0, 2]), "$.images[0].regions[0].box",
     "expected a list of 4 items, got 3"),
    ("regions", lambda d: d["images"][0]["regions"][0]["counterexample"].__setitem__("x", [0.0]),
     "$.images[0].regions[0].counterexample.x", "expected 64 numbers (the image's size), got 1"),
    ("adapt", lambda d: d["epochs"][0].pop("epoch"), "$.epochs[0]", "missing required key 'epoch'"),
    ("adapt", lambda d: d["final"]["dann"].__setitem__("target_accuracy", "high"), "$.final.dann.target_accuracy",
     'expected a number, got "high"'),
    ("check", lambda d: d["checks"][0]["result"]["results"][0].__setitem__("eps", None),
     "$.checks[0].result.results[0].eps", "expected a number, got null"),
    ("check", lambda d: d["checks"][1].__setitem__("status", "ok"), "$.checks[1].status",
     'expected one of passed|failed|inconclusive|error, got "ok"'),
])
def test_shape_errors_per_kind(schema_docs, kind, mutate, path, message):
    doc = copy.deepcopy(schema_docs[kind])
    mutate(doc)
    with pytest.raises(ShapeError, match="^run.json: " + path.replace("$", r"\$").replace("[", r"\[").replace(".", r"\.")):
        validate(doc, "run.json")
    assert any(p == f"{path}: {message}" for p in problems(doc)), problems(doc)


def test_several_problems_are_counted(schema_docs):
    doc = copy.deepcopy(schema_docs["attack"])
    doc["eps"] = ["a", "b", "c"]
    with pytest.raises(ShapeError, match=r"\$\.eps\[0\]: expected a number, got \"a\" \(and 2 more problem"):
        validate(doc, "run.json")


def test_extra_keys_are_allowed_and_incomplete_runs_may_lack_the_body(schema_docs):
    doc = copy.deepcopy(schema_docs["verify"])
    doc["new_key_of_a_later_minor_change"] = {"anything": [1]}
    doc["instances"][0]["extra"] = 1
    assert problems(doc) == []
    partial = schema.new_result("attack", settings={}, command="nnaudit attack m.onnx")
    assert problems(partial) == []  # complete is false: the body is written at the end
    assert problems(schema.finish(partial)) == ["$: missing required key 'num_samples'",
                                                "$: missing required key 'clean_accuracy'",
                                                "$: missing required key 'norm'", "$: missing required key 'eps'",
                                                "$: missing required key 'attacks'", "$: missing required key 'results'"]


def test_other_versions_schemas_and_non_json_are_rejected(tmp_path, schema_docs):
    doc = copy.deepcopy(schema_docs["verify"])
    doc["version"] = 2
    with pytest.raises(DataError, match="version 2; this nnaudit reads version 1"):
        schema.read_result(_write(tmp_path, doc))
    with pytest.raises(DataError, match="not an nnaudit result"):
        schema.read_result(_write(tmp_path, {"schema": "other"}))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a JSON file"):
        schema.read_result(bad)
    with pytest.raises(DataError, match="result file not found"):
        schema.read_result(tmp_path / "missing.json")
