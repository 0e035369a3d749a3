"""onnxruntime on the original file: the reference every result is checked by.

Counterexamples found by the verifiers and attacks are confirmed here, on
the user's own ONNX file (for a normalised network, that file with the
normalisation prepended: :func:`reference`), never on nnaudit's IR or torch
conversion.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class OnnxRuntimeModel:
    """A single-threaded onnxruntime session over a model file (or a serialised model, as bytes).

    ``run`` takes ``(B, *input_shape)`` (shapes without the batch dimension,
    as in :class:`~nnaudit.networks.ir.Network`) and returns the outputs
    flattened per sample, ``(B, output_size)`` in float64; models with a fixed batch of 1 are run one sample
    at a time.
    """

    def __init__(self, path: str | os.PathLike[str] | bytes, *, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path = None if isinstance(path, bytes) else Path(path)  # None: a model given as bytes
        model = path if isinstance(path, bytes) else str(path)
        self.session = _session(ort, model, opts)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dtype = _ORT_TYPES.get(inp.type, np.float32)
        dims = list(inp.shape)
        self.symbolic_batch = bool(dims) and not isinstance(dims[0], int)
        self.node_shape = tuple(1 if not isinstance(d, int) else d for d in dims)
        self.batch_axis = len(self.node_shape) >= 2 and self.node_shape[0] == 1

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch ``(B, *input_shape)``, as float64 ``(B, output_size)``."""
        x = np.asarray(x)
        batch = x.shape[0]
        if self.batch_axis and self.symbolic_batch:
            xs = x.reshape((batch,) + self.node_shape[1:]).astype(self.dtype)
            return np.asarray(self._run(xs), dtype=np.float64).reshape(batch, -1)
        outs = [self._run(xi.reshape(self.node_shape).astype(self.dtype)) for xi in x]
        return np.asarray(outs, dtype=np.float64).reshape(batch, -1)

    def _run(self, feed: np.ndarray) -> Any:
        return self.session.run(None, {self.input_name: feed})[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Arg-max class per sample, ``(B,)``."""
        return self.run(x).argmax(axis=1)


def _session(ort: Any, model: str | bytes, opts: Any) -> Any:
    """An onnxruntime session, or :class:`ModelLoadError` naming the file and onnxruntime's reason."""
    from nnaudit.errors import ModelLoadError

    try:
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own (pybind) exception types
        where = "the model (given as bytes)" if isinstance(model, bytes) else model
        reason = " ".join(str(exc).split())
        raise ModelLoadError(f"{where}: onnxruntime cannot load the model: {reason}") from exc


def reference(network: Any, *, threads: int = 1) -> OnnxRuntimeModel:
    """onnxruntime on what ``network`` (a :class:`~nnaudit.networks.ir.Network`) computes: its ONNX
    file, or for a normalised network that file with the normalisation prepended (``reference_onnx``).
    One session per network object and thread count (kept with its torch form), so the checks of one
    run that share a model open it once."""
    from nnaudit.errors import ModelLoadError

    model = getattr(network, "reference_onnx", None) or network.source
    if model is None:
        raise ModelLoadError("the network has no ONNX file for onnxruntime to confirm results on")
    cache = getattr(network, "_torch_cache", None)
    key = f"onnx-reference-{threads}"
    if cache is None:
        return OnnxRuntimeModel(model, threads=threads)
    if key not in cache:
        cache[key] = OnnxRuntimeModel(model, threads=threads)
    return cache[key]
