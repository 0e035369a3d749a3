"""Bad model files give one clear ModelLoadError naming the file and, where it
applies, the node name, op type and index — never a bare traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx_build import make_model, random_mlp, save

from nnaudit.errors import ModelLoadError, UnsupportedAttributeError, UnsupportedOpError
from nnaudit.networks import load


def _mlp(tmp_path: Path) -> Path:
    return save(random_mlp(np.random.default_rng(0), [4, 8, 3]), tmp_path / "mlp.onnx")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nope\.onnx: file not found"):
        load(tmp_path / "nope.onnx")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is a directory"):
        load(tmp_path)


def test_not_onnx(tmp_path: Path) -> None:
    p = tmp_path / "notes.onnx"
    p.write_text("this is not a protobuf\n" * 20)
    with pytest.raises(ModelLoadError, match=r"notes\.onnx: not (a readable ONNX|an ONNX)"):
        load(p)


def test_truncated_protobuf(tmp_path: Path) -> None:
    src = _mlp(tmp_path).read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(src[: len(src) // 2])
    with pytest.raises(ModelLoadError, match=r"cut\.onnx"):
        load(p)


def test_all_unsupported_ops_listed_at_once(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Softplus", ["x"], ["a"], name="soft"),
        helper.make_node("Relu", ["a"], ["b"], name="ok"),
        helper.make_node("Erf", ["b"], ["y"], name="erf"),
    ]
    p = save(make_model(nodes, ("x", [1, 3]), ("y", None)), tmp_path / "ops.onnx")
    with pytest.raises(UnsupportedOpError) as info:
        load(p)
    msg = str(info.value)
    assert "ops.onnx" in msg and "2 unsupported" in msg
    assert "Softplus (node 'soft', index 0)" in msg and "Erf (node 'erf', index 2)" in msg
    assert info.value.unsupported == [("Softplus", "soft", 0), ("Erf", "erf", 2)]


@pytest.mark.parametrize(
    "nodes,inits,shape,pattern",
    [
        ([helper.make_node("Conv", ["x", "W"], ["y"], group=2, name="c")], {"W": np.ones((2, 1, 1, 1), np.float32)},
         [1, 2, 3, 3], r"node 'c' \(Conv, index 0\): group=2"),
        ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], ceil_mode=1, name="p")], {},
         [1, 1, 5, 5], r"node 'p' \(MaxPool, index 0\): ceil_mode=1"),
        ([helper.make_node("Mul", ["x", "x"], ["y"], name="sq")], {}, [1, 3], r"node 'sq' \(Mul, index 0\).*non-constant"),
        ([helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect", name="pd")], {"p": np.zeros(4, np.int64)},
         [1, 3], r"mode='reflect'"),
    ],
    ids=["conv-group", "maxpool-ceil", "mul-two-activations", "pad-reflect"],
)
def test_unsupported_attribute(tmp_path: Path, nodes: list, inits: dict, shape: list[int], pattern: str) -> None:
    p = save(make_model(nodes, ("x", shape), ("y", None), inits), tmp_path / "attr.onnx")
    with pytest.raises(UnsupportedAttributeError, match=pattern) as info:
        load(p)
    assert "attr.onnx" in str(info.value)


def test_shape_mismatch_names_the_node(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], name="fc1")]
    p = save(make_model(nodes, ("x", [1, 4]), ("y", None), {"W": np.ones((5, 3), np.float32)}), tmp_path / "s.onnx")
    with pytest.raises(ModelLoadError, match=r"s\.onnx: node 'fc1' \(Gemm, index 0\): shape mismatch"):
        load(p)


def test_nan_weights(tmp_path: Path) -> None:
    w = np.ones((4, 3), np.float32)
    w[1, 2] = np.nan
    w[0, 0] = np.inf
    p = save(make_model([helper.make_node("MatMul", ["x", "W"], ["y"])], ("x", [1, 4]), ("y", None), {"W": w}),
             tmp_path / "nan.onnx")
    with pytest.raises(ModelLoadError, match=r"nan\.onnx: initializer 'W' has 2 NaN/Inf"):
        load(p)


def test_two_inputs_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 2]) for n in "ab"],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    p = save(helper.make_model(graph), tmp_path / "two.onnx")
    with pytest.raises(ModelLoadError, match=r"two\.onnx: expected one input.*2 input"):
        load(p)


def _external_model(tmp_path: Path, location: str) -> Path:
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), name="W")
    w.data_location = onnx.TensorProto.EXTERNAL
    w.ClearField("raw_data")
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * 3 * 4))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=[w],
    )
    model_dir = tmp_path / "models"
    model_dir.mkdir(exist_ok=True)
    path = model_dir / "ext.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_outside_folder_is_refused(tmp_path: Path, location: str) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(12, np.float32).tobytes())
    path = _external_model(tmp_path, location)
    with pytest.raises(ModelLoadError, match=r"ext\.onnx: tensor 'W' refers to external data .* outside the model's folder .*; refused"):
        load(path)


def test_external_data_symlink_leaving_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(12, np.float32).tobytes())
    path = _external_model(tmp_path, "link.bin")
    (path.parent / "link.bin").symlink_to(secret)
    with pytest.raises(ModelLoadError, match="refused"):
        load(path)


def test_external_data_inside_folder_loads(tmp_path: Path) -> None:
    path = _external_model(tmp_path, "weights.bin")
    (path.parent / "weights.bin").write_bytes(np.full(12, 2.0, np.float32).tobytes())
    net = load(path)
    np.testing.assert_allclose(net.evaluate(np.ones((1, 4))), np.full((1, 3), 8.0))


def test_external_data_missing_file(tmp_path: Path) -> None:
    path = _external_model(tmp_path, "gone.bin")
    with pytest.raises(ModelLoadError, match="external data file 'gone.bin' not found"):
        load(path)


def test_cli_reports_bad_model_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nnaudit.cli import cli

    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x00\x01garbage")
    res = CliRunner().invoke(cli, ["inspect", str(p)])
    assert res.exit_code == 2
    assert "error:" in res.output and "bad.onnx" in res.output
    assert "Traceback" not in res.output
