"""Tiny colour-image networks for the region tests: a (3, 4, 4) input through a
conv or dense body, optionally read channels last through a leading Transpose."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from onnx import helper

from onnx_build import make_model, save

C, H, W = 3, 4, 4


def colour_model(seed: int, *, dense: bool = False, channels_last: bool = False, perm: tuple[int, ...] | None = None,
                 classes: int = 3):  # noqa: ANN201
    """A random net on (C, H, W) images: Conv 3x3 (pad 1) -> Relu -> Flatten -> Gemm, or
    Flatten -> Gemm -> Relu -> Gemm; ``channels_last``: the input is (H, W, C) and a
    Transpose (perm 0,3,1,2) makes it (C, H, W); ``perm``: another leading Transpose."""
    rng = np.random.default_rng(seed)
    nodes, inits, cur = [], {}, "x"
    shape = ["N", H, W, C] if channels_last else ["N", C, H, W]
    if channels_last or perm is not None:
        nodes.append(helper.make_node("Transpose", ["x"], ["xt"], perm=list(perm or (0, 3, 1, 2)), name="t"))
        cur = "xt"
    if dense:
        inits.update(W0=rng.normal(0, 1 / np.sqrt(C * H * W), (8, C * H * W)).astype(np.float32),
                     b0=rng.normal(0, 0.1, 8).astype(np.float32),
                     W1=rng.normal(0, 1 / np.sqrt(8), (classes, 8)).astype(np.float32),
                     b1=rng.normal(0, 0.1, classes).astype(np.float32))
        nodes += [helper.make_node("Flatten", [cur], ["f"], name="flat"),
                  helper.make_node("Gemm", ["f", "W0", "b0"], ["h"], transB=1, name="fc0"),
                  helper.make_node("Relu", ["h"], ["ha"], name="relu"),
                  helper.make_node("Gemm", ["ha", "W1", "b1"], ["y"], transB=1, name="fc1")]
    else:
        inits.update(K=rng.normal(0, 1 / np.sqrt(C * 9), (2, C, 3, 3)).astype(np.float32),
                     B=rng.normal(0, 0.1, 2).astype(np.float32),
                     W1=rng.normal(0, 1 / np.sqrt(2 * H * W), (classes, 2 * H * W)).astype(np.float32),
                     b1=rng.normal(0, 0.1, classes).astype(np.float32))
        nodes += [helper.make_node("Conv", [cur, "K", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
                  helper.make_node("Relu", ["c"], ["ca"], name="relu"),
                  helper.make_node("Flatten", ["ca"], ["f"], name="flat"),
                  helper.make_node("Gemm", ["f", "W1", "b1"], ["y"], transB=1, name="fc")]
    return make_model(nodes, ("x", shape), ("y", ["N", classes]), inits)


@functools.cache
def colour_net(seed: int, folder: str, *, dense: bool = False, channels_last: bool = False):  # noqa: ANN201
    """``(Network, OnnxRuntimeModel, path)`` of :func:`colour_model`, saved under ``folder``."""
    from nnaudit.networks import load
    from nnaudit.networks.runtime import OnnxRuntimeModel

    name = f"colour_{seed}_{'dense' if dense else 'conv'}_{'hwc' if channels_last else 'chw'}.onnx"
    path = save(colour_model(seed, dense=dense, channels_last=channels_last), Path(folder) / name)
    return load(path), OnnxRuntimeModel(path), path
