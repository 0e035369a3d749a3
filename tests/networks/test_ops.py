"""Per-op closed-form tests: one small ONNX model per operation/attribute set,
saved to disk, loaded into the IR, and compared with onnxruntime (NumPy
float64 forward and the float32 torch module)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx_build import make_model, random_mlp, save

from nnaudit.networks import load
from nnaudit.networks.ops.elementwise import ElementwiseAffine
from nnaudit.networks.runtime import OnnxRuntimeModel

R = np.random.default_rng(0)


def f32(*shape: int) -> np.ndarray:
    return R.normal(size=shape).astype(np.float32)


def node(op: str, inputs: list[str], **attrs: object) -> object:
    return helper.make_node(op, inputs, ["y"], name=f"the_{op.lower()}", **attrs)


# (id, builder) — each builder returns (nodes, input shape, initializers, opset)
CASES: list[tuple[str, Callable[[], tuple]]] = [
    ("gemm", lambda: ([node("Gemm", ["x", "W", "b"])], [1, 4], {"W": f32(4, 3), "b": f32(3)}, 13)),
    ("gemm-transB-alpha-beta", lambda: ([node("Gemm", ["x", "W", "b"], transB=1, alpha=0.5, beta=2.0)],
                                        [1, 4], {"W": f32(3, 4), "b": f32(1, 3)}, 13)),
    ("gemm-transA", lambda: ([node("Gemm", ["x", "W", "b"], transA=1)], [4, 1], {"W": f32(4, 3), "b": f32(3)}, 13)),
    ("gemm-const-left", lambda: ([node("Gemm", ["W", "x", "b"], alpha=1.5)], [4, 2], {"W": f32(3, 4), "b": f32(3, 1)}, 13)),
    ("gemm-const-left-transB", lambda: ([node("Gemm", ["W", "x", "b"], transB=1, transA=1)], [2, 4],
                                        {"W": f32(4, 3), "b": f32(3, 2)}, 13)),
    ("gemm-no-bias", lambda: ([node("Gemm", ["x", "W"])], [1, 4], {"W": f32(4, 3)}, 13)),
    ("matmul", lambda: ([node("MatMul", ["x", "W"])], [1, 2, 4], {"W": f32(4, 3)}, 13)),
    ("matmul-const-left", lambda: ([node("MatMul", ["W", "x"])], [4, 2], {"W": f32(3, 4)}, 13)),
    ("add-const", lambda: ([node("Add", ["x", "c"])], [1, 3, 4], {"c": f32(4)}, 13)),
    ("sub-const-left", lambda: ([node("Sub", ["c", "x"])], [1, 3, 4], {"c": f32(3, 1)}, 13)),
    ("mul-const-rank-up", lambda: ([node("Mul", ["x", "c"])], [4], {"c": f32(2, 4)}, 13)),
    ("div-const", lambda: ([node("Div", ["x", "c"])], [1, 4], {"c": np.array([2, -4, 0.5, 8], np.float32)}, 13)),
    ("relu", lambda: ([node("Relu", ["x"])], [1, 5], {}, 13)),
    ("sigmoid", lambda: ([node("Sigmoid", ["x"])], [1, 5], {}, 13)),
    ("tanh", lambda: ([node("Tanh", ["x"])], [1, 5], {}, 13)),
    ("flatten-axis2", lambda: ([node("Flatten", ["x"], axis=2)], [1, 2, 3, 2], {}, 13)),
    ("reshape-0-minus1", lambda: ([node("Reshape", ["x", "s"])], [1, 2, 6], {"s": np.array([0, -1, 3], np.int64)}, 13)),
    ("transpose-nhwc", lambda: ([node("Transpose", ["x"], perm=[0, 3, 1, 2])], [1, 4, 4, 2], {}, 13)),
    ("squeeze-13", lambda: ([node("Squeeze", ["x", "a"])], [1, 1, 5], {"a": np.array([1], np.int64)}, 13)),
    ("squeeze-11", lambda: ([node("Squeeze", ["x"], axes=[1])], [1, 1, 5], {}, 11)),
    ("unsqueeze-13", lambda: ([node("Unsqueeze", ["x", "a"])], [1, 5], {"a": np.array([1, -1], np.int64)}, 13)),
    ("identity", lambda: ([node("Identity", ["x"])], [1, 3], {}, 13)),
    ("dropout", lambda: ([node("Dropout", ["x"])], [1, 3], {}, 13)),
    ("conv", lambda: ([node("Conv", ["x", "W", "b"], pads=[1, 1, 1, 1])], [1, 2, 5, 5], {"W": f32(3, 2, 3, 3), "b": f32(3)}, 13)),
    ("conv-stride-dilation-asym", lambda: ([node("Conv", ["x", "W"], strides=[2, 1], dilations=[1, 2], pads=[0, 1, 1, 2])],
                                           [1, 2, 7, 6], {"W": f32(3, 2, 2, 3)}, 13)),
    ("conv-same-upper", lambda: ([node("Conv", ["x", "W"], auto_pad="SAME_UPPER", strides=[2, 2])],
                                 [1, 1, 6, 6], {"W": f32(2, 1, 3, 3)}, 13)),
    ("batchnorm", lambda: ([node("BatchNormalization", ["x", "g", "b", "m", "v"], epsilon=1e-3)], [1, 3, 2, 2],
                           {"g": f32(3), "b": f32(3), "m": f32(3), "v": np.abs(f32(3)) + 0.1}, 13)),
    ("maxpool", lambda: ([node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2])], [1, 2, 6, 6], {}, 13)),
    ("maxpool-pads-dilation", lambda: ([node("MaxPool", ["x"], kernel_shape=[3, 2], pads=[1, 0, 1, 1], dilations=[1, 2])],
                                       [1, 2, 6, 6], {}, 13)),
    ("avgpool", lambda: ([node("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2])], [1, 2, 6, 6], {}, 13)),
    ("avgpool-pads-exclude", lambda: ([node("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], [1, 1, 5, 5], {}, 13)),
    ("avgpool-pads-include", lambda: ([node("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)],
                                      [1, 1, 5, 5], {}, 13)),
    ("pad-13", lambda: ([node("Pad", ["x", "p", "v"])], [1, 2, 3, 3],
                        {"p": np.array([0, 0, 1, 2, 0, 0, 2, 0], np.int64), "v": np.array(0.5, np.float32)}, 13)),
    ("pad-18-axes", lambda: ([node("Pad", ["x", "p", "", "a"])], [1, 2, 3, 3],
                             {"p": np.array([1, 0, 1, 2], np.int64), "a": np.array([2, 3], np.int64)}, 18)),
    ("concat-with-const", lambda: ([node("Concat", ["x", "c", "x"], axis=1)], [1, 3], {"c": f32(1, 2)}, 13)),
]


def _run_case(tmp_path: Path, nodes: list, in_shape: list[int], inits: dict, opset: int) -> None:
    path = save(make_model(nodes, ("x", in_shape), ("y", None), inits, opset=opset), tmp_path / "m.onnx")
    net = load(path)
    x = R.uniform(-2, 2, (6,) + net.input_shape).astype(np.float32)
    ref = OnnxRuntimeModel(path).run(x)
    ours = net.evaluate(x.astype(np.float64)).reshape(len(x), -1)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        tt = net.to_torch()(torch.as_tensor(x)).numpy().reshape(len(x), -1)
    np.testing.assert_allclose(tt, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("build", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_op_matches_onnxruntime(tmp_path: Path, build: Callable[[], tuple]) -> None:
    _run_case(tmp_path, *build())


def test_constant_subgraph_is_folded(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Constant", [], ["two"], value=helper.make_tensor("t", 1, [1], [2.0])),
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Mul", ["W", "two"], ["W2"]),  # constant sub-graph
        helper.make_node("Reshape", ["x", "shp"], ["xr"]),
        helper.make_node("MatMul", ["xr", "W2"], ["y"]),
    ]
    path = save(make_model(nodes, ("x", [1, 3]), ("y", None), {"W": f32(3, 2)}), tmp_path / "m.onnx")
    net = load(path)
    assert [type(la).__name__ for la in net.layers] == ["Reshape", "Linear"]
    _run_case(tmp_path, nodes, [1, 3], {"W": f32(3, 2)}, 13)


def test_preprocessing_is_folded_into_linear_layers(tmp_path: Path) -> None:
    """Sub/Div normalisation and a trailing BatchNorm disappear into Gemm/Conv."""
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["a"]),
        helper.make_node("Div", ["a", "std"], ["b"]),
        helper.make_node("Conv", ["b", "W"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "g", "bb", "m", "v"], ["d"]),
        helper.make_node("Relu", ["d"], ["e"]),
        helper.make_node("Flatten", ["e"], ["f"]),
        helper.make_node("Gemm", ["f", "W2", "b2"], ["y"], transB=1),
    ]
    inits = {"mean": np.array([0.5], np.float32).reshape(1, 1, 1), "std": np.array([0.25], np.float32).reshape(1, 1, 1),
             "W": f32(2, 1, 3, 3), "g": f32(2), "bb": f32(2), "m": f32(2), "v": np.abs(f32(2)) + 0.5,
             "W2": f32(3, 2 * 4 * 4), "b2": f32(3)}
    path = save(make_model(nodes, ("x", [1, 1, 6, 6]), ("y", None), inits), tmp_path / "m.onnx")
    net = load(path)
    kinds = [type(la).__name__ for la in net.layers]
    assert kinds == ["Conv", "Relu", "Flatten", "Linear"], kinds
    assert not any(isinstance(la, ElementwiseAffine) for la in net.layers)
    _run_case(tmp_path, nodes, [1, 1, 6, 6], inits, 13)


def test_residual_add_of_two_activations(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["g"]),
        helper.make_node("Add", ["g", "r"], ["s"]),
        helper.make_node("Sub", ["s", "x2"], ["y"]),
        helper.make_node("Gemm", ["x", "W1", "b1"], ["x2"]),
    ]
    nodes = nodes[:4] + [nodes[5], nodes[4]]
    inits = {"W1": f32(4, 4), "b1": f32(4), "W2": f32(4, 4), "b2": f32(4)}
    _run_case(tmp_path, nodes, [1, 4], inits, 13)


@settings(max_examples=15, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=2, max_size=5),
    act=st.sampled_from(["Relu", "Sigmoid", "Tanh"]),
    gemm=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_networks_match_onnxruntime(tmp_path_factory: pytest.TempPathFactory, sizes: list[int],
                                           act: str, gemm: bool, seed: int) -> None:
    path = save(random_mlp(np.random.default_rng(seed), sizes, act=act, gemm=gemm),
                tmp_path_factory.mktemp("h") / "m.onnx")
    net = load(path)
    assert net.input_shape == (sizes[0],) and net.output_shape == (sizes[-1],)
    x = np.random.default_rng(seed + 1).uniform(-3, 3, (8, sizes[0])).astype(np.float32)
    np.testing.assert_allclose(net.evaluate(x), OnnxRuntimeModel(path).run(x), rtol=1e-5, atol=1e-5)
