"""ONNX file -> :class:`~nnaudit.networks.ir.Network`.

The loader validates before it converts, and reports every problem with the
file name and, where it applies, the node's name, op type and index:

1. read the protobuf (missing file, not ONNX, truncated) and refuse external
   data whose path leaves the model's folder (no such file is ever opened);
2. check initializers for NaN/Inf;
3. walk the nodes in order: fold constant sub-graphs, look every op up in the
   registry (all unknown ops are reported together), and build layers;
4. infer each tensor's node shape by running the new layer on zeros, which
   also catches shape mismatches at the node that causes them;
5. fold affine pre-processing into neighbouring linear layers
   (:mod:`nnaudit.networks.fold`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnaudit.errors import ModelLoadError, UnsupportedAttributeError, UnsupportedOpError
from nnaudit.networks.ir import OP_REGISTRY, Layer, Network, Shape, file_sha256
from nnaudit.networks.model_checks import (MAX_TENSOR_ELEMENTS, check_declared_sizes, check_finite_params,
                                           check_inferred_sizes, read_external)

log = logging.getLogger(__name__)


@dataclass
class NodeView:
    """One ONNX node with what a converter needs: attributes, constants, shapes."""

    node: Any  # onnx.NodeProto
    index: int
    path: str
    consts: dict[str, np.ndarray]
    shapes: dict[str, Shape]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def op_type(self) -> str:
        return str(self.node.op_type)

    @property
    def name(self) -> str:
        return str(self.node.name) or f"{self.op_type}_{self.index}"

    @property
    def inputs(self) -> list[str]:
        return list(self.node.input)

    @property
    def output(self) -> str:
        return str(self.node.output[0])

    def where(self) -> str:
        """``file: node 'name' (Op, index i)`` for error messages."""
        return f"{self.path}: node {self.name!r} ({self.op_type}, index {self.index})"

    def is_const(self, i: int) -> bool:
        return i < len(self.node.input) and self.node.input[i] in self.consts

    def const(self, i: int) -> np.ndarray:
        return self.consts[self.node.input[i]]

    def optional_const(self, i: int) -> np.ndarray | None:
        """The constant at input ``i``, or None when absent (empty name)."""
        if i >= len(self.node.input) or not self.node.input[i]:
            return None
        if self.node.input[i] not in self.consts:
            raise self.unsupported(f"input {i} ({self.node.input[i]!r}) must be a constant")
        return self.consts[self.node.input[i]]

    def dynamic_inputs(self) -> list[int]:
        return [i for i, n in enumerate(self.node.input) if n and n not in self.consts]

    def shape(self, i: int) -> Shape:
        return self.shapes[self.node.input[i]]

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def unsupported(self, what: str) -> UnsupportedAttributeError:
        return UnsupportedAttributeError(f"{self.where()}: {what}")

    def error(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"{self.where()}: {what}")


def load(path: str | os.PathLike[str], *, check: bool = False, check_samples: int = 16,
         normalisation: Any = None) -> Network:
    """Read an ONNX file into a :class:`Network`.

    ``normalisation``: a :class:`~nnaudit.networks.normalise.Normalisation`
    to put in front of the model (the network then takes pixels; see
    :func:`~nnaudit.networks.normalise.normalised`).  With ``check=True`` the
    IR is compared with onnxruntime on the original file (with the
    normalisation prepended) on random inputs in [0, 1] and a
    :class:`ModelLoadError` is raised if they differ by more than 1e-5 relative.
    """
    import nnaudit.networks.ops  # noqa: F401  (registers the op classes)
    from nnaudit.networks.fold import fold_affine

    p = Path(path)
    model = read_model(p)
    net = _convert(model, str(p))
    net.layers = fold_affine(net)
    check_finite_params(net.layers, p)
    _check_batch(net, p)
    net.source = p
    net.sha256 = file_sha256(p)
    if normalisation is not None:
        from nnaudit.networks.normalise import apply_normalisation

        net = apply_normalisation(net, normalisation, model)
    if check:
        res = net.check(samples=check_samples)
        if not res.ok:
            raise ModelLoadError(
                f"{p}: the IR differs from onnxruntime by {res.max_rel_error:.3g} "
                f"relative (allowed {res.rtol:g}) on {res.samples} random inputs"
            )
    return net


def _check_batch(net: Network, p: Path) -> None:
    """Run the IR on a batch of two zero inputs: a graph that converts but cannot run
    (a Gemm on a 5-D weight, say) is a load error here rather than a crash later."""
    try:
        out = net.evaluate(np.zeros((2,) + tuple(net.input_shape)))
    except (ValueError, IndexError, TypeError) as exc:
        raise ModelLoadError(f"{p}: the converted network does not run on a batch of inputs: {str(exc)[:120]}") from exc
    if out.shape[0] != 2:
        raise ModelLoadError(f"{p}: the converted network maps a batch of 2 inputs to output shape {out.shape}")


# -- step 1: the file ------------------------------------------------------
def read_model(p: Path) -> Any:
    """Parse the protobuf, validate external data paths, and load them."""
    import onnx
    from google.protobuf.message import DecodeError

    if not p.exists():
        raise ModelLoadError(f"{p}: file not found")
    if p.is_dir():
        raise ModelLoadError(f"{p}: is a directory, expected an .onnx file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"{p}: not a readable ONNX model (truncated or corrupted protobuf?): {exc}") from exc
    if not model.graph.node and not model.graph.input:
        raise ModelLoadError(f"{p}: not an ONNX model: the graph has no nodes and no inputs")
    check_declared_sizes(model, p)  # sizes are checked from the declarations, before any allocation
    _load_external_data(model, p)
    check_inferred_sizes(model, p)
    return model


def _load_external_data(model: Any, p: Path) -> None:
    """Load external tensors, refusing any location outside the model's folder."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    base = p.resolve().parent
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        tensor.raw_data = read_external(tensor, base, p)
        del tensor.external_data[:]
        tensor.data_location = 0


# -- steps 2-4: the graph --------------------------------------------------
def _convert(model: Any, path: str) -> Network:
    from onnx import numpy_helper

    graph = model.graph
    consts: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        try:
            consts[init.name] = numpy_helper.to_array(init)
        except Exception as exc:  # onnx raises several types for bad tensors
            raise ModelLoadError(f"{path}: initializer {init.name!r} cannot be read: {exc}") from exc
    _check_finite_initializers(consts, path)
    real_inputs = [i for i in graph.input if i.name not in consts]
    if len(real_inputs) != 1 or len(graph.output) != 1:
        raise ModelLoadError(
            f"{path}: expected one input and one output (a feed-forward network), got "
            f"{len(real_inputs)} input(s) {[i.name for i in real_inputs]} and "
            f"{len(graph.output)} output(s) {[o.name for o in graph.output]}"
        )
    inp = real_inputs[0]
    in_shape, batch_axis = _input_node_shape(inp, path)
    shapes: dict[str, Shape] = {inp.name: in_shape}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    layers = _convert_nodes(graph, path, consts, shapes, opset)
    out_name = graph.output[0].name
    if out_name not in shapes:
        if out_name in consts:
            raise ModelLoadError(f"{path}: output {out_name!r} does not depend on the input")
        raise ModelLoadError(f"{path}: output {out_name!r} is not produced by any node")
    return Network(
        layers=_prune_unused(layers, out_name),
        input_name=inp.name,
        output_name=out_name,
        node_shapes=shapes,
        batch_axis=batch_axis,
        opset=opset,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
    )


def _check_finite_initializers(consts: dict[str, np.ndarray], path: str) -> None:
    for name, arr in consts.items():
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ModelLoadError(f"{path}: initializer {name!r} has {bad} NaN/Inf value(s)")


def _input_node_shape(inp: Any, path: str) -> tuple[Shape, bool]:
    """Node shape of the network input; symbolic dims count as 1 only in front."""
    ttype = inp.type.tensor_type
    if not ttype.HasField("shape"):
        raise ModelLoadError(f"{path}: input {inp.name!r} has no shape")
    dims: list[int] = []
    for axis, d in enumerate(ttype.shape.dim):
        if d.HasField("dim_value") and d.dim_value <= 0:
            raise ModelLoadError(f"{path}: input {inp.name!r} has dimension {d.dim_value} at axis {axis}; "
                                 "expected sizes >= 1")
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif axis == 0:
            dims.append(1)  # symbolic batch dimension
        else:
            raise ModelLoadError(
                f"{path}: input {inp.name!r} has a symbolic dimension at axis {axis} "
                f"({d.dim_param or '?'}); only the batch axis (0) may be symbolic"
            )
    batch_axis = len(dims) >= 2 and dims[0] == 1
    return tuple(dims), batch_axis


def _convert_nodes(
    graph: Any, path: str, consts: dict[str, np.ndarray], shapes: dict[str, Shape], opset: int
) -> list[Layer]:
    from onnx import helper

    layers: list[Layer] = []
    unsupported: list[tuple[str, str, int]] = []
    for index, node in enumerate(graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        view = NodeView(node, index, path, consts, shapes, attrs)
        if node.domain not in ("", "ai.onnx"):
            unsupported.append((f"{node.domain}.{node.op_type}", view.name, index))
            continue
        if unsupported:  # keep scanning for more unknown ops, build nothing
            if node.op_type not in OP_REGISTRY and node.op_type not in _CONST_ONLY_OPS:
                unsupported.append((node.op_type, view.name, index))
            continue
        if _fold_constant_node(view, opset):
            continue
        cls = OP_REGISTRY.get(node.op_type)
        if cls is None:
            unsupported.append((node.op_type, view.name, index))
            continue
        _check_inputs_known(view)
        try:
            built = cls.from_onnx(view)
        except (IndexError, KeyError, TypeError, ValueError) as exc:  # a malformed node (missing input, bad attribute)
            raise view.error(f"malformed node: {type(exc).__name__}: {str(exc)[:80]}") from exc
        for layer in built:
            shapes[layer.output] = _infer_shape(layer, view)
            layers.append(layer)
    if unsupported:
        raise UnsupportedOpError(path, unsupported)
    return layers


#: Ops accepted only inside constant sub-graphs (folded, never layers).
_CONST_ONLY_OPS = {"Shape", "Gather", "Cast", "ConstantOfShape", "Range", "Slice", "Size",
                   "Equal", "Where", "Expand", "Tile", "ReduceProd", "Floor", "Ceil", "Sqrt",
                   "Neg", "Abs", "Exp", "Log", "Pow", "Min", "Max", "Not", "Less", "Greater"}


def _check_inputs_known(view: NodeView) -> None:
    for i, name in enumerate(view.inputs):
        if name and name not in view.shapes and name not in view.consts:
            raise view.error(f"input {i} ({name!r}) is not produced by any earlier node")


def _fold_constant_node(view: NodeView, opset: int) -> bool:
    """Evaluate a node whose inputs are all constant; True when folded."""
    node = view.node
    if node.op_type == "Constant":
        from onnx import numpy_helper

        if "value" not in view.attrs:
            raise view.unsupported(f"Constant without a 'value' tensor (has {sorted(view.attrs)})")
        view.consts[view.output] = numpy_helper.to_array(view.attrs["value"])
        return True
    if node.op_type == "Shape" and node.input[0] in view.shapes:
        view.consts[view.output] = np.asarray(view.shapes[node.input[0]], dtype=np.int64)
        return True
    present = [n for n in node.input if n]
    if not present or not all(n in view.consts for n in present):
        return False
    outputs = _reference_eval(view, opset)
    for name, value in zip(node.output, outputs):
        if name:
            view.consts[name] = np.asarray(value)
    return True


def _reference_eval(view: NodeView, opset: int) -> list[Any]:
    """Run one all-constant node through onnx's reference evaluator."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    node = view.node
    inputs = [n for n in node.input if n]
    graph = helper.make_graph(
        [node],
        "fold",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(view.consts[n].dtype), None) for n in inputs],
        [helper.make_tensor_value_info(o, 0, None) for o in node.output if o],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 7))])
    try:
        return list(ReferenceEvaluator(model).run(None, {n: view.consts[n] for n in inputs}))
    except Exception as exc:  # the reference evaluator raises many kinds
        raise view.error(f"cannot fold this constant sub-graph: {exc}") from exc


def _infer_shape(layer: Layer, view: NodeView) -> Shape:
    """Node shape of ``layer``'s output, found by running it on zeros."""
    for name in layer.inputs:
        if math.prod(view.shapes[name]) > MAX_TENSOR_ELEMENTS:
            raise view.error(f"input {name!r} has shape {view.shapes[name][:8]}, over the limit of "
                             f"{MAX_TENSOR_ELEMENTS} values")
    try:
        zeros = [np.zeros((1,) + view.shapes[name]) for name in layer.inputs]
        out = layer.forward(*zeros)
    except MemoryError as exc:
        raise view.error(f"its output does not fit in memory ({exc})") from exc
    except (ValueError, IndexError) as exc:
        shapes = [view.shapes.get(n) for n in layer.inputs]
        raise view.error(f"shape mismatch: inputs of shapes {shapes}: {exc}") from exc
    return tuple(int(d) for d in out.shape[1:])


def _prune_unused(layers: Sequence[Layer], out_name: str) -> list[Layer]:
    """Drop layers whose results never reach the output."""
    needed = {out_name}
    kept: list[Layer] = []
    for layer in reversed(layers):
        if layer.output in needed:
            kept.append(layer)
            needed.update(layer.inputs)
    return kept[::-1]
