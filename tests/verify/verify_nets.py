"""Tiny random ONNX networks for the verifier tests (built with onnx.helper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import helper

from onnx_build import make_model, random_mlp, save


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(0, 1 / np.sqrt(max(1, np.prod(shape[1:]))), shape).astype(np.float32)


def mlp(tmp: Path, seed: int, sizes: tuple[int, ...], act: str = "Relu") -> Path:
    return save(random_mlp(np.random.default_rng(seed), list(sizes), act=act), tmp / f"mlp{seed}_{act}.onnx")


def cnn(tmp: Path, seed: int) -> Path:
    """Conv -> Relu -> MaxPool -> Pad -> AveragePool -> Flatten -> Gemm -> Relu -> Gemm on (1, 1, 6, 6)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Mul", ["m", "s"], ["ms"]),
        helper.make_node("AveragePool", ["ms"], ["a"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("Flatten", ["a"], ["f"]),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["y"], transB=1),
    ]
    inits = {"cw": _w(rng, 2, 1, 3, 3), "cb": rng.normal(0, 0.1, 2).astype(np.float32),
             "s": np.float32(rng.uniform(0.5, 1.5, (1, 2, 1, 1))),
             "w1": _w(rng, 6, 8), "b1": rng.normal(0, 0.1, 6).astype(np.float32),
             "w2": _w(rng, 3, 6), "b2": rng.normal(0, 0.1, 3).astype(np.float32)}
    return save(make_model(nodes, ("x", [1, 1, 6, 6]), ("y", [1, 3]), inits), tmp / f"cnn{seed}.onnx")


def residual(tmp: Path, seed: int) -> Path:
    """y = W3 relu(concat(relu(W1 x), relu(W2 x) + relu(W1 x)))  on 3 inputs."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["a"], transB=1), helper.make_node("Relu", ["a"], ["ar"]),
        helper.make_node("Gemm", ["x", "w2", "b2"], ["b"], transB=1), helper.make_node("Relu", ["b"], ["br"]),
        helper.make_node("Add", ["br", "ar"], ["s"]),
        helper.make_node("Concat", ["ar", "s"], ["c"], axis=1), helper.make_node("Relu", ["c"], ["cr"]),
        helper.make_node("Gemm", ["cr", "w3", "b3"], ["y"], transB=1),
    ]
    inits = {"w1": _w(rng, 4, 3), "b1": rng.normal(0, .2, 4).astype(np.float32),
             "w2": _w(rng, 4, 3), "b2": rng.normal(0, .2, 4).astype(np.float32),
             "w3": _w(rng, 2, 8), "b3": rng.normal(0, .2, 2).astype(np.float32)}
    return save(make_model(nodes, ("x", ["N", 3]), ("y", ["N", 2]), inits), tmp / f"res{seed}.onnx")


def cnn_case(tmp: Path, seed: int, eps: float) -> tuple[Path, np.ndarray, int, object]:
    """A small conv net (:func:`cnn`), a random input in [0, 1], its label and the L-inf robustness
    property of radius ``eps`` around it: (path, x, label, property)."""
    from nnaudit.networks import load
    from nnaudit.verify.spec import robustness_property

    path = cnn(tmp, seed % 7)
    net = load(path)
    x = np.random.default_rng(seed).uniform(0, 1, net.input_size)
    label = int(net.predict(x.reshape((1,) + net.input_shape))[0])
    return path, x, label, robustness_property(x - eps, x + eps, label, net.output_size)


def sampled_violation(path: Path, x: np.ndarray, eps: float, label: int, seed: int, count: int = 4000) -> bool:
    """Whether one of ``count`` random points of the eps-box around ``x`` is not classified ``label``."""
    from nnaudit.networks import load

    net = load(path)
    pts = x + eps * np.random.default_rng(seed + 1).uniform(-1, 1, (count, net.input_size))
    return bool((net.predict(pts.reshape((-1,) + net.input_shape)) != label).any())
