"""Fixtures of the attack tests: a linear two-class ONNX model with a
closed-form worst case, and a small slice of the bundled digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from onnx_build import make_model, save


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny networks run fastest (and most predictably) on one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def linear_model(weight: np.ndarray, bias: np.ndarray, path: Path) -> Path:
    """An ONNX ``y = x @ weight.T + bias`` with input (N, d), output (N, K)."""
    k, d = weight.shape
    node = helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1, name="fc")
    model = make_model([node], ("x", ["N", d]), ("y", ["N", k]),
                       {"W": weight.astype(np.float32), "b": bias.astype(np.float32)})
    return save(model, path)


@pytest.fixture(scope="session")
def linear2(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 6-input, 2-class linear model: (path, weight (2, 6), bias (2,))."""
    rng = np.random.default_rng(7)
    w = rng.normal(0, 1, (2, 6)).astype(np.float32)
    split = float((w[0] - w[1]).astype(np.float64).sum() * 0.5)  # boundary through the centre of [0, 1]^6
    b = np.array([-split / 2, split / 2], dtype=np.float32)
    return linear_model(w, b, tmp_path_factory.mktemp("lin") / "linear2.onnx"), w, b


@pytest.fixture(scope="session")
def digits_small():
    """The first 24 digits of the test split and the zoo's digits-ffn network."""
    from nnaudit.networks import datasets, zoo

    x, y = datasets.digits("test")
    return zoo.load("digits-ffn"), x[:24], y[:24]
