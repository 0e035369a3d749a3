"""Bundled zoo networks and digits, loaded once per test process."""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def zoo_net(name: str):  # noqa: ANN201
    """``(Network, OnnxRuntimeModel)`` of a bundled zoo network."""
    from nnaudit.networks import zoo
    from nnaudit.networks.runtime import OnnxRuntimeModel

    net = zoo.load(name)
    return net, OnnxRuntimeModel(net.source)


@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits test split."""
    from nnaudit.networks.datasets import digits as load

    return load("test")
