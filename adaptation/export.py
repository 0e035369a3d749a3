"""Export of the adapted label path (feature extractor + label predictor) to ONNX.

The file has one input ``input`` (batch, *input_shape) with a dynamic batch
axis and one output ``logits`` (batch, num_classes), opset 13, written by the
TorchScript exporter (``dynamo=False``: nn.Linear becomes one Gemm, and no
onnxscript is needed).  After writing, onnxruntime runs the file on check
samples and its logits are compared with the torch model's; then
``nnaudit.networks.load`` reads it, so ``nnaudit verify/regions/attack`` take
it directly.  A mismatch raises instead of leaving a wrong model behind.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnaudit.errors import NnauditError

OPSET = 13
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ExportResult:
    """Where the model went and how closely onnxruntime reproduces torch."""

    path: Path
    max_abs_error: float     # max |onnxruntime - torch| over the check samples' logits
    samples: int             # number of check samples

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "max_abs_error": self.max_abs_error, "samples": self.samples}


def export_onnx(model: Any, path: str | os.PathLike[str], *, input_shape: tuple[int, ...] | None = None,
                samples: np.ndarray | None = None, atol: float = 1e-4, seed: int = 0) -> ExportResult:
    """Write the label path of ``model`` to ``path`` and check it with onnxruntime.

    ``model`` is a :class:`~nnaudit.adaptation.trainer.DannRun` (its DANN
    model is exported), a DANN/SourceOnly module (its ``label_path()``), or
    any ``nn.Module`` mapping (B, *input_shape) to logits.  ``samples``
    (N, *input_shape) are the check inputs; without them 64 uniform [0, 1)
    inputs (seeded) are used, which needs ``input_shape`` (a run knows it).
    Raises NnauditError when onnxruntime differs from torch by more than
    ``atol`` (relative to the logits' scale) or the file does not load.
    """
    import torch

    module, input_shape = _label_module(model, input_shape)
    if samples is None:
        if input_shape is None:
            raise NnauditError("export_onnx: pass input_shape or samples for a plain nn.Module")
        samples = np.random.default_rng(seed).uniform(0, 1, size=(64, *input_shape)).astype(np.float32)
    samples = np.asarray(samples, dtype=np.float32)
    module = copy.deepcopy(module).to("cpu").float().eval()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.as_tensor(samples[:1])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        torch.onnx.export(module, (dummy,), str(target), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True)
    with torch.no_grad():
        expected = module(torch.as_tensor(samples)).numpy().astype(np.float64).reshape(len(samples), -1)
    return ExportResult(target, _verify(target, samples, expected, atol), len(samples))


def _label_module(model: Any, input_shape: tuple[int, ...] | None) -> tuple[Any, tuple[int, ...] | None]:
    from torch import nn

    if hasattr(model, "dann") and hasattr(model, "input_shape"):
        return model.dann.label_path(), tuple(model.input_shape)
    if hasattr(model, "label_path"):
        return model.label_path(), input_shape
    if isinstance(model, nn.Module):
        return model, input_shape
    raise NnauditError(f"export_onnx: expected a DannRun or an nn.Module, got {type(model).__name__}")


def _verify(path: Path, samples: np.ndarray, expected: np.ndarray, atol: float) -> float:
    """Max abs error of onnxruntime vs torch; raises on mismatch or a file nnaudit cannot load."""
    from nnaudit.networks import load
    from nnaudit.networks.runtime import OnnxRuntimeModel

    got = OnnxRuntimeModel(path).run(samples)
    err = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    if not err <= atol * scale:
        raise NnauditError(f"{path}: exported model differs from the torch model: max |onnxruntime - torch| "
                           f"= {err:.3g} over {len(samples)} samples, allowed {atol * scale:.3g}")
    net = load(path)
    ir = net.evaluate(samples.astype(np.float64)).reshape(len(samples), -1)
    ir_err = float(np.max(np.abs(ir - got))) if got.size else 0.0
    if not ir_err <= atol * scale:
        raise NnauditError(f"{path}: nnaudit's IR differs from onnxruntime on the exported model by {ir_err:.3g}")
    return err
