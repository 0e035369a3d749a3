"""Convolutional and 1-D test networks for the verifier (onnx.helper + numpy), and VNN-LIB
properties over them: the issue #27 nets (a wide MNIST conv net, a 1-D conv regression net)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import helper

from onnx_build import make_model, save


def mnist_conv(tmp: Path, seed: int = 0, pool: str = "MaxPool", channels: int = 32) -> Path:
    """Conv 2x2 (``channels`` maps on 1x28x28: 27x27 each, 23,328 ReLUs at 32) -> Relu -> ``pool``
    4x4 stride 4 -> Flatten -> Gemm to 10 classes (issue #27's net)."""
    rng = np.random.default_rng(seed)
    side = (27 - 4) // 4 + 1
    flat = channels * side * side
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], kernel_shape=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node(pool, ["r"], ["p"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1),
    ]
    inits = {"cw": rng.normal(0, 0.5, (channels, 1, 2, 2)).astype(np.float32),
             "cb": rng.normal(0, 0.1, channels).astype(np.float32),
             "w": rng.normal(0, 1 / np.sqrt(flat), (10, flat)).astype(np.float32),
             "b": rng.normal(0, 0.1, 10).astype(np.float32)}
    return save(make_model(nodes, ("x", [1, 1, 28, 28]), ("y", [1, 10]), inits), tmp / f"mnist_conv_{pool}{seed}.onnx")


def conv1d_regression(tmp: Path, seed: int = 0, window: int = 32) -> Path:
    """A sensor-window regression net on (1, 1, 1, window): Conv 1x5 (8 maps) -> Relu ->
    Conv 1x3 stride 2 (8 maps) -> Relu -> Flatten -> Gemm 16 -> Relu -> Gemm 1 (2-D convs of
    height 1, as 1-D conv nets are exported)."""
    rng = np.random.default_rng(seed)
    w1 = window - 4
    w2 = (w1 - 3) // 2 + 1
    nodes = [
        helper.make_node("Conv", ["x", "c1", "d1"], ["a"], kernel_shape=[1, 5]),
        helper.make_node("Relu", ["a"], ["ar"]),
        helper.make_node("Conv", ["ar", "c2", "d2"], ["b"], kernel_shape=[1, 3], strides=[1, 2]),
        helper.make_node("Relu", ["b"], ["br"]),
        helper.make_node("Flatten", ["br"], ["f"]),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["y"], transB=1),
    ]
    inits = {"c1": rng.normal(0, 0.5, (8, 1, 1, 5)).astype(np.float32), "d1": rng.normal(0, .1, 8).astype(np.float32),
             "c2": rng.normal(0, 0.3, (8, 8, 1, 3)).astype(np.float32), "d2": rng.normal(0, .1, 8).astype(np.float32),
             "w1": rng.normal(0, 1 / np.sqrt(8 * w2), (16, 8 * w2)).astype(np.float32),
             "b1": rng.normal(0, .1, 16).astype(np.float32),
             "w2": rng.normal(0, 0.3, (1, 16)).astype(np.float32), "b2": np.zeros(1, np.float32)}
    return save(make_model(nodes, ("x", [1, 1, 1, window]), ("y", [1, 1]), inits), tmp / f"conv1d_{seed}.onnx")


def box_vnnlib(path: Path, lower: np.ndarray, upper: np.ndarray, unsafe: str, outputs: int | None = None) -> Path:
    """A VNN-LIB file: one input box and the unsafe output region ``unsafe`` (an SMT-LIB
    assertion body over Y_i, e.g. ``(>= Y_0 1.5)``), declaring ``outputs`` outputs (default:
    up to the highest one named)."""
    lower, upper = np.asarray(lower, np.float64).ravel(), np.asarray(upper, np.float64).ravel()
    lines = [f"(declare-const X_{i} Real)" for i in range(lower.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(outputs or _outputs(unsafe))]
    for i, (lo, hi) in enumerate(zip(lower, upper)):
        lines += [f"(assert (>= X_{i} {float(lo)!r}))", f"(assert (<= X_{i} {float(hi)!r}))"]
    lines.append(f"(assert {unsafe})")
    path.write_text("\n".join(lines) + "\n")
    return path


def _outputs(unsafe: str) -> int:
    """How many outputs ``unsafe`` names (the highest Y index + 1)."""
    import re

    return max(int(m) for m in re.findall(r"Y_(\d+)", unsafe)) + 1


def robustness_vnnlib(path: Path, x: np.ndarray, eps: float, label: int, classes: int = 10) -> Path:
    """L-inf ball of ``eps`` around ``x`` clipped to [0, 1]; unsafe: some other class scores at least ``label``'s."""
    x = np.asarray(x, np.float64).ravel()
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(classes) if j != label)
    lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
    body = f"(or {others})"
    lines = [f"(declare-const X_{i} Real)" for i in range(x.size)] + [f"(declare-const Y_{j} Real)" for j in range(classes)]
    for i in range(x.size):
        lines += [f"(assert (>= X_{i} {float(lo[i])!r}))", f"(assert (<= X_{i} {float(hi[i])!r}))"]
    lines.append(f"(assert {body})")
    path.write_text("\n".join(lines) + "\n")
    return path


def small_conv(tmp: Path, seed: int, pool: str = "MaxPool", stride: int = 1, pads: int = 1) -> Path:
    """Conv 3x3 (3 maps, ``stride``, ``pads``) -> Relu -> ``pool`` 2x2 (pads 0 or 1) -> Conv 2x2
    (2 maps) -> Relu -> Flatten -> Gemm 3, on (1, 2, 7, 7): small enough to compare with the dense form."""
    rng = np.random.default_rng(seed)
    s1 = (7 + 2 * pads - 3) // stride + 1
    pool_pads = [0, 0, 1, 1] if seed % 2 else [0, 0, 0, 0]
    s2 = (s1 + pool_pads[2] - 2) // 1 + 1
    s3 = s2 - 1
    extra = {"count_include_pad": 0} if pool == "AveragePool" else {}
    nodes = [
        helper.make_node("Conv", ["x", "c1", "d1"], ["a"], kernel_shape=[3, 3], strides=[stride, stride],
                         pads=[pads] * 4),
        helper.make_node("Relu", ["a"], ["ar"]),
        helper.make_node(pool, ["ar"], ["p"], kernel_shape=[2, 2], strides=[1, 1], pads=pool_pads, **extra),
        helper.make_node("Conv", ["p", "c2", "d2"], ["b"], kernel_shape=[2, 2]),
        helper.make_node("Relu", ["b"], ["br"]),
        helper.make_node("Flatten", ["br"], ["f"]),
        helper.make_node("Gemm", ["f", "w", "bw"], ["y"], transB=1),
    ]
    inits = {"c1": rng.normal(0, 0.5, (3, 2, 3, 3)).astype(np.float32), "d1": rng.normal(0, .1, 3).astype(np.float32),
             "c2": rng.normal(0, 0.5, (2, 3, 2, 2)).astype(np.float32), "d2": rng.normal(0, .1, 2).astype(np.float32),
             "w": rng.normal(0, 0.3, (3, 2 * s3 * s3)).astype(np.float32), "bw": rng.normal(0, .1, 3).astype(np.float32)}
    return save(make_model(nodes, ("x", [1, 2, 7, 7]), ("y", [1, 3]), inits), tmp / f"small_conv_{pool}{seed}_{stride}{pads}.onnx")
