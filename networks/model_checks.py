"""Checks on an ONNX ModelProto that run before the loader allocates anything (issue #23).

A hostile file can declare an input of 10^12 values, an initializer of negative or enormous
dims, external data at offset "abc" or of length 10^15, or a graph whose Pad/Concat/broadcast
grows a tensor past memory.  Each is refused here as a :class:`ModelLoadError` naming the file,
the tensor or node and the problem, from declared sizes alone.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from nnaudit.errors import ModelLoadError

#: largest tensor (input, initializer, intermediate) a model may declare, in values:
#: 2^27 = 134 M values, 1 GiB as the IR's float64 (VGG-16's largest activation is 3.2 M)
MAX_TENSOR_ELEMENTS = 1 << 27
#: largest external-data field accepted (offset or length), in decimal digits
_MAX_DIGITS = 18


def _short(text: str, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def check_declared_sizes(model: Any, p: Path) -> None:
    """Refuse initializers with negative dims or over :data:`MAX_TENSOR_ELEMENTS` values, and
    graph inputs whose fixed dims multiply past it, before any of them is turned into an array."""
    for t in model.graph.initializer:
        dims = list(t.dims)
        if any(d < 0 for d in dims):
            raise ModelLoadError(f"{p}: initializer {_short(t.name)} has a negative dimension {dims[:8]}")
        if math.prod(dims) > MAX_TENSOR_ELEMENTS:
            raise ModelLoadError(f"{p}: initializer {_short(t.name)} declares dims {dims[:8]} "
                                 f"({math.prod(dims):.3g} values), over the limit of {MAX_TENSOR_ELEMENTS}")
    for inp in model.graph.input:
        shape = inp.type.tensor_type.shape if inp.type.HasField("tensor_type") else None
        if shape is None:
            continue
        dims = [d.dim_value for d in shape.dim if d.HasField("dim_value")]
        if len(shape.dim) > 32:
            raise ModelLoadError(f"{p}: input {_short(inp.name)} has rank {len(shape.dim)}; at most 32 is supported")
        if math.prod(max(d, 1) for d in dims) > MAX_TENSOR_ELEMENTS:
            raise ModelLoadError(f"{p}: input {_short(inp.name)} declares dims {dims[:8]} "
                                 f"({math.prod(dims):.3g} values), over the limit of {MAX_TENSOR_ELEMENTS}")


def _field(info: dict[str, str], key: str, p: Path, name: str) -> int | None:
    """External-data ``offset``/``length`` as a non-negative decimal integer (None when absent)."""
    if key not in info:
        return None
    text = info[key]
    if not text.isdigit() or not text.isascii() or len(text) > _MAX_DIGITS:
        raise ModelLoadError(f"{p}: tensor {_short(name)}: external data {key} {_short(text)} is not a "
                             f"non-negative whole number of bytes")
    return int(text)


def read_external(tensor: Any, base: Path, p: Path) -> bytes:
    """The bytes of one external tensor, after checking its location (inside ``base``, no NUL,
    an existing file), its offset and length (decimal, inside the file) and that the length is
    what the tensor's dims and type need."""
    from onnx import helper

    name = tensor.name
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    if not location or "\x00" in location or len(location) > 1024:
        raise ModelLoadError(f"{p}: tensor {_short(name)}: external data location {_short(location)} is not a file name")
    try:
        target = (base / location).resolve()
        inside = not os.path.isabs(location) and base in target.parents
        is_file = inside and target.is_file()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{p}: tensor {_short(name)}: external data location {_short(location)}: {exc}") from exc
    if not inside:
        raise ModelLoadError(
            f"{p}: tensor {_short(name)} refers to external data {_short(location)} outside "
            f"the model's folder {base}; refused (no file outside it is opened)")
    if not is_file:
        raise ModelLoadError(f"{p}: tensor {_short(name)}: external data file {_short(location)} not found")
    size = target.stat().st_size
    offset = _field(info, "offset", p, name) or 0
    length = _field(info, "length", p, name)
    length = size - offset if length is None else length
    if offset + length > size:
        raise ModelLoadError(f"{p}: tensor {_short(name)}: external data offset {offset} + length {length} "
                             f"goes past the end of {_short(location)} ({size} bytes)")
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{p}: tensor {_short(name)}: unsupported data type {tensor.data_type}") from exc
    needed = math.prod(tensor.dims) * itemsize
    if length != needed:
        raise ModelLoadError(f"{p}: tensor {_short(name)}: external data holds {length} bytes, its dims "
                             f"{list(tensor.dims)[:8]} need {needed}")
    with open(target, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def check_inferred_sizes(model: Any, p: Path) -> None:
    """ONNX shape inference on a weightless copy of the graph; a tensor it sizes past
    :data:`MAX_TENSOR_ELEMENTS` (a huge Pad, a doubling Concat chain, a broadcast blow-up) is refused
    before the loader runs any node.  Inference failures are left to the loader's own checks."""
    import onnx
    from onnx import helper, shape_inference

    if not model.graph.node:
        return
    light = onnx.ModelProto(ir_version=model.ir_version)
    light.opset_import.extend(model.opset_import)
    light.graph.node.extend(model.graph.node)
    light.graph.input.extend(model.graph.input)
    light.graph.output.extend(model.graph.output)
    inputs = {i.name for i in model.graph.input}
    for t in model.graph.initializer:
        if math.prod(t.dims) <= 4096:
            light.graph.initializer.append(t)
        elif t.name not in inputs:  # its type is enough: an input instead of its values
            light.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    try:
        inferred = shape_inference.infer_shapes(light, data_prop=True)
    except Exception:  # noqa: BLE001 - onnx raises several kinds; the loader reports the real problem
        return
    producers = {o: n.name or f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node) for o in n.output}
    for vi in inferred.graph.value_info:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
        if math.prod(max(d, 1) for d in dims) > MAX_TENSOR_ELEMENTS:
            raise ModelLoadError(f"{p}: node {_short(producers.get(vi.name, '?'))} makes tensor {_short(vi.name)} of "
                                 f"shape {dims[:8]} ({math.prod(dims):.3g} values), over the limit of "
                                 f"{MAX_TENSOR_ELEMENTS}")


def check_finite_params(layers: list[Any], p: Path) -> None:
    """Refuse a layer whose parameters (after folding attributes such as Gemm's alpha into them)
    hold NaN or infinity: no bound or solver is sound on them."""
    for layer in layers:
        for key, value in layer.params.items():
            arr = np.asarray(value)
            if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
                raise ModelLoadError(f"{p}: layer {_short(layer.name)}: parameter {key!r} has NaN or infinite "
                                     f"values (from the weights or an attribute such as alpha/beta)")
