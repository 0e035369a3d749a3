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


def fold_normalisation(model: onnx.ModelProto, mean: Sequence[float], std: Sequence[float]) -> onnx.ModelProto:
    """An un-normalised copy of ``model``: it takes pixels ``x`` and computes what ``model`` computes
    on ``(x - mean) / std`` (per channel, the first axis after the batch), with the normalisation
    folded offline into the first layer, which must read the input: a Gemm (transB=1; weights
    scaled per input feature, bias shifted) or a Conv (weights / std; its bias becomes one value per
    output position, minus the mean's contribution through the taps that fall inside the image, so
    that zero padding stays exact).  Independent of nnaudit's own code: plain numpy and torch."""
    import copy as _copy

    out = _copy.deepcopy(model)
    graph = out.graph
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    node = graph.node[0]
    inp = graph.input[0].name
    assert node.input[0] == inp, "the first node must read the input"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    w, b = inits[node.input[1]], inits[node.input[2]]
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    if node.op_type == "Gemm":
        assert attrs.get("transB") == 1 and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        m, s = np.broadcast_to(mean, w.shape[1:]), np.broadcast_to(std, w.shape[1:])
        new_w, new_b = w / s, b - w @ (m / s)
        replacement = [helper.make_node("Gemm", [inp, "folded_w", "folded_b"], list(node.output), transB=1)]
    else:
        import torch
        import torch.nn.functional as F

        assert node.op_type == "Conv" and attrs.get("group", 1) == 1
        c = w.shape[1]
        m, s = np.broadcast_to(mean, (c,)), np.broadcast_to(std, (c,))
        new_w = w / s[None, :, None, None]
        shape = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:]
        const = torch.as_tensor(np.broadcast_to((m / s)[:, None, None], shape)[None].copy())
        pads = attrs.get("pads", [0, 0, 0, 0])
        assert pads[0] == pads[2] and pads[1] == pads[3]
        through = F.conv2d(const, torch.as_tensor(w), stride=tuple(attrs.get("strides", [1, 1])),
                           padding=(pads[0], pads[1]), dilation=tuple(attrs.get("dilations", [1, 1])))
        new_b = b[None, :, None, None] - through.numpy()
        kept = {k: v for k, v in attrs.items() if k in ("kernel_shape", "pads", "strides", "dilations")}
        replacement = [helper.make_node("Conv", [inp, "folded_w"], ["folded_conv"], **kept),
                       helper.make_node("Add", ["folded_conv", "folded_b"], list(node.output))]
    del graph.node[0]
    for n in reversed(replacement):
        graph.node.insert(0, n)
    graph.initializer.extend([numpy_helper.from_array(new_w.astype(np.float32), "folded_w"),
                              numpy_helper.from_array(new_b.astype(np.float32), "folded_b")])
    return out
