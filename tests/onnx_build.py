"""Build small ONNX models in memory for tests (onnx.helper), and save them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inp: tuple[str, Sequence[int | str]],
    out: tuple[str, Sequence[int | str] | None],
    initializers: dict[str, np.ndarray] | None = None,
    *,
    opset: int = 13,
) -> onnx.ModelProto:
    """A one-input, one-output float32 model from nodes and initializers."""
    inits = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in (initializers or {}).items()]
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(inp[0], TensorProto.FLOAT, list(inp[1]))],
        [helper.make_tensor_value_info(out[0], TensorProto.FLOAT, None if out[1] is None else list(out[1]))],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def random_mlp(rng: np.random.Generator, sizes: Sequence[int], *, act: str = "Relu",
               gemm: bool = True, batch: int | str = "N") -> onnx.ModelProto:
    """A random fully connected network ``sizes[0] -> ... -> sizes[-1]``."""
    nodes, inits = [], {}
    cur = "x"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)
        b = rng.normal(0, 0.1, n_out).astype(np.float32)
        inits[f"W{i}"], inits[f"b{i}"] = (w, b) if gemm else (w.T.copy(), b)
        nxt = f"h{i}"
        if gemm:
            nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"b{i}"], [nxt], transB=1, name=f"fc{i}"))
        else:
            nodes.append(helper.make_node("MatMul", [cur, f"W{i}"], [nxt + "m"], name=f"mm{i}"))
            nodes.append(helper.make_node("Add", [nxt + "m", f"b{i}"], [nxt], name=f"add{i}"))
        cur = nxt
        if i < len(sizes) - 2:
            nodes.append(helper.make_node(act, [cur], [cur + "a"], name=f"act{i}"))
            cur = cur + "a"
    nodes.append(helper.make_node("Identity", [cur], ["y"], name="out"))
    return make_model(nodes, ("x", [batch, sizes[0]]), ("y", [batch, sizes[-1]]), inits)
