"""Train the zoo networks and export them to ONNX with their ``index.json``.

Run ``python -m nnaudit.networks.zoo.train`` (about half a minute on one CPU
core) to regenerate ``digits-ffn.onnx``, ``digits-cnn.onnx``,
``moons-ffn.onnx`` and ``index.json`` next to this file. Training is seeded,
single-threaded and uses deterministic algorithms, so a rerun with the same
torch version reproduces the weights. Test accuracies in the index are
measured by onnxruntime on the exported files, not by torch.

The networks use only Conv, Relu, Flatten, Gemm (and, if torch chooses them,
Reshape, MatMul, Add) so every verifier in nnaudit can handle them; the script
refuses to write a file containing any other op.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnaudit.networks.datasets import load_data

log = logging.getLogger(__name__)

ZOO_DIR = Path(__file__).parent
OPSET = 13
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
ALLOWED_OPS = frozenset({"Conv", "Relu", "Flatten", "Reshape", "Gemm", "MatMul", "Add"})
COMMAND = "python -m nnaudit.networks.zoo.train"
INDEX_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """How one zoo network is built, trained and described."""

    name: str
    description: str
    data: str  # bundled data name; ``<data>-train`` / ``<data>-test`` are the splits
    input_shape: tuple[int, ...]  # per sample, without the batch axis
    classes: tuple[str, ...]
    epochs: int
    lr: float = 1e-2  # Adam learning rate, decayed by cosine to 0
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0


RECIPES = (
    Recipe(
        name="digits-ffn",
        description="ReLU MLP 64-32-32-10 on the 8x8 handwritten digits (flat input)",
        data="digits",
        input_shape=(64,),
        classes=tuple(str(d) for d in range(10)),
        epochs=60,
    ),
    Recipe(
        name="digits-cnn",
        description=(
            "ReLU conv net on the 8x8 handwritten digits: Conv(1->4, 3x3, pad 1), "
            "Conv(4->8, 3x3, stride 2, pad 1), Flatten, Gemm(128->10)"
        ),
        data="digits",
        input_shape=(1, 8, 8),
        classes=tuple(str(d) for d in range(10)),
        epochs=60,
    ),
    Recipe(
        name="moons-ffn",
        description="ReLU MLP 2-16-16-2 on two moons (noise 0.1)",
        data="moons",
        input_shape=(2,),
        classes=("upper moon", "lower moon"),
        epochs=60,
    ),
)


def build(name: str) -> Any:
    """The untrained ``torch.nn.Module`` for zoo network ``name``."""
    from torch import nn

    if name == "digits-ffn":
        return nn.Sequential(
            nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)
        )
    if name == "digits-cnn":
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8 * 4 * 4, 10),
        )
    if name == "moons-ffn":
        return nn.Sequential(
            nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)
        )
    raise ValueError(f"no architecture for zoo network {name!r}")


def train(recipe: Recipe) -> Any:
    """Train ``build(recipe.name)`` with Adam on the recipe's training split."""
    import torch
    from torch import nn

    torch.manual_seed(recipe.seed)
    x_np, y_np = load_data(f"{recipe.data}-train", recipe.input_shape)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    model = build(recipe.name)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(recipe.seed)
    model.train()
    for _ in range(recipe.epochs):
        for idx in torch.randperm(len(x), generator=gen).split(recipe.batch_size):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    return model


def export(model: Any, recipe: Recipe, path: Path) -> list[str]:
    """Write ``model`` to ``path`` as ONNX (dynamic batch axis); return its op types."""
    import onnx
    import torch

    dummy = torch.zeros((1, *recipe.input_shape))
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose: it maps nn.Linear to a
        # single Gemm and nn.Flatten to Flatten, and needs no onnxscript.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    ops = [node.op_type for node in proto.graph.node]
    extra = sorted(set(ops) - ALLOWED_OPS)
    if extra:
        path.unlink()
        raise RuntimeError(f"{path}: exported ops {extra} are outside {sorted(ALLOWED_OPS)}")
    return ops


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of samples ``x`` (N, *input_shape) whose onnxruntime argmax equals ``y``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    return float(np.mean(np.argmax(logits, axis=1) == y))


def make(recipe: Recipe, out_dir: Path) -> dict[str, Any]:
    """Train, export and measure one network; return its ``index.json`` entry."""
    model = train(recipe)
    path = out_dir / f"{recipe.name}.onnx"
    ops = export(model, recipe, path)
    x_test, y_test = load_data(f"{recipe.data}-test", recipe.input_shape)
    accuracy = onnx_accuracy(path, x_test, y_test)
    log.info("%s: test accuracy %.4f, ops %s", recipe.name, accuracy, " ".join(ops))
    return {
        "file": path.name,
        "description": recipe.description,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_shape": list(recipe.input_shape),
        "batch_axis": "batch",
        "num_classes": len(recipe.classes),
        "classes": list(recipe.classes),
        "data": recipe.data,
        "split": "test",
        "data_spec": f"{recipe.data}-test",
        "train_data_spec": f"{recipe.data}-train",
        "test_samples": len(y_test),
        "test_accuracy": accuracy,
        "opset": OPSET,
        "ops": ops,
        "seed": recipe.seed,
        "epochs": recipe.epochs,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "command": COMMAND,
    }


def main(argv: list[str] | None = None) -> None:
    """Regenerate every zoo network and ``index.json`` in ``--out`` (default: the zoo)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ZOO_DIR, help="folder to write into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    torch.set_num_threads(1)  # thread count changes float summation order
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    networks = {recipe.name: make(recipe, args.out) for recipe in RECIPES}
    index = {"version": INDEX_VERSION, "networks": networks}
    (args.out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    log.info("wrote %d networks and index.json to %s", len(networks), args.out)


if __name__ == "__main__":
    main()
