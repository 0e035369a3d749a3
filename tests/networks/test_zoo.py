"""The model zoo: index entries, files, onnxruntime accuracy and the lookup API.

These tests use onnxruntime only; IR-based tests of the zoo networks live
with the loader's tests.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from nnaudit.errors import ModelLoadError
from nnaudit.networks import zoo
from nnaudit.networks.datasets import load_data

# Minimum test accuracy each network must reach (see networks/zoo/train.py).
THRESHOLDS = {"digits-ffn": 0.93, "digits-cnn": 0.93, "moons-ffn": 0.95}
PLAIN_OPS = {"Conv", "Relu", "Flatten", "Reshape", "Gemm", "MatMul", "Add"}


def _session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(zoo.path(name)), providers=["CPUExecutionProvider"])


def _logits(name: str, x: np.ndarray) -> np.ndarray:
    return _session(name).run(["logits"], {"input": x})[0]


def test_names_match_index_and_thresholds() -> None:
    index = json.loads(zoo.INDEX_FILE.read_text())
    assert zoo.names() == sorted(index["networks"]) == sorted(THRESHOLDS)


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_file_matches_index(name: str) -> None:
    entry = zoo.info(name)
    file = zoo.path(name)
    assert file.name == entry["file"] and file.is_file()
    assert hashlib.sha256(file.read_bytes()).hexdigest() == entry["sha256"]
    model = onnx.load(str(file))
    onnx.checker.check_model(model)
    ops = [node.op_type for node in model.graph.node]
    assert ops == entry["ops"] and set(ops) <= PLAIN_OPS
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", *entry["input_shape"]]
    assert entry["num_classes"] == len(entry["classes"])
    assert entry["command"] == "python -m nnaudit.networks.zoo.train"


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_accuracy_recomputed_with_onnxruntime(name: str) -> None:
    entry = zoo.info(name)
    assert entry["split"] == "test"
    x, y = load_data(
        f"{entry['data']}-{entry['split']}",
        tuple(entry["input_shape"]),
        num_classes=entry["num_classes"],
    )
    assert len(y) == entry["test_samples"]
    logits = _logits(name, x)
    assert logits.shape == (len(y), entry["num_classes"])
    accuracy = float(np.mean(np.argmax(logits, axis=1) == y))
    assert accuracy == pytest.approx(entry["test_accuracy"], abs=1e-6)
    assert accuracy >= THRESHOLDS[name]


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_batch_axis_is_dynamic(name: str) -> None:
    entry = zoo.info(name)
    x, _ = load_data(entry["data_spec"], tuple(entry["input_shape"]))
    batch = _logits(name, x[:5])
    singles = np.concatenate([_logits(name, x[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(batch, singles, rtol=1e-5, atol=1e-5)


def test_info_returns_a_copy() -> None:
    entry = zoo.info("moons-ffn")
    entry["input_shape"].append(99)
    assert zoo.info("moons-ffn")["input_shape"] == [2]


@pytest.mark.parametrize("lookup", [zoo.info, zoo.path, zoo.load])
def test_unknown_name_lists_available_networks(lookup) -> None:
    with pytest.raises(ModelLoadError) as info:
        lookup("mnist-huge")
    text = str(info.value)
    assert "'mnist-huge'" in text
    assert all(name in text for name in THRESHOLDS)


def test_missing_file_names_the_regeneration_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    with pytest.raises(ModelLoadError, match=r"digits-cnn.onnx.*python -m nnaudit.networks.zoo.train"):
        zoo.path("digits-cnn")


def test_malformed_index_is_a_model_load_error(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "index.json"
    bad.write_text("{not json")
    monkeypatch.setattr(zoo, "INDEX_FILE", bad)
    zoo._index.cache_clear()
    try:
        with pytest.raises(ModelLoadError, match=r"index.json: zoo index missing or malformed"):
            zoo.names()
    finally:
        zoo._index.cache_clear()


def test_one_onnxruntime_session_per_network_object() -> None:
    """Checks of one run that share a model open its onnxruntime session once (issue #25), and the
    session still answers like a fresh one."""
    from nnaudit.networks.runtime import OnnxRuntimeModel, reference

    net = zoo.load("moons-ffn")
    first = reference(net)
    assert reference(net) is first and reference(net, threads=2) is not first
    assert reference(zoo.load("moons-ffn")) is not first          # another network object, its own session
    x = np.array([[0.1, 0.2], [1.0, -0.5]], dtype=np.float32)
    np.testing.assert_array_equal(first.run(x), OnnxRuntimeModel(net.source).run(x))
