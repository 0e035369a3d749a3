"""Input normalisation as part of the model: ``(x - mean) / std`` per channel in front of a network.

Networks trained on normalised images (the CIFAR-10 nets of VNN-COMP's oval21
expect ``(x - mean) / std`` per channel) take pixels once the normalisation is
part of the model, so that images, steps, eps, clip ranges, counterexamples
and pictures all stay in pixel space.  :func:`normalised` makes such a model:

- the IR gets the exact affine map ``x * (1 / std) - mean / std`` in front,
  which the loader's fold (:mod:`nnaudit.networks.fold`) moves into the first
  Gemm/MatMul (through reshapes), or into the first Conv when that Conv does not
  pad (or ``mean`` is 0); otherwise (a padded Conv: its zero padding is zero in
  the *normalised* space, i.e. ``mean`` in pixel space) it stays a layer of its own;
- onnxruntime, which confirms every counterexample, runs the original ONNX
  model with ``Sub`` and ``Div`` nodes in front, built in memory
  (``Network.reference_onnx``); the file is untouched, and its sha256 is
  the one every result records, beside the normalisation in the settings.

The channel axis is the first axis of the sample shape (channels first,
``(C, H, W)``; for a flat input every feature is a channel), or the last one
when only its size matches the number of values (channels last, NHWC inputs);
one value stands for every channel.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nnaudit.errors import ConfigError, ModelLoadError
from nnaudit.networks.ir import Network, Shape


def _values(value: Any, name: str, *, positive: bool) -> tuple[float, ...]:
    """``value`` (a number or a sequence of numbers) as a tuple of floats; ConfigError naming ``name``."""
    items = list(value) if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str) else [value]
    if not items or not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                            for v in items):
        raise ConfigError(f"{name}: expected a number or a non-empty list of numbers (one per input channel, or one "
                          f"for all), got {value!r}")
    out = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{name}: expected finite numbers, got {list(out)}")
    if positive and any(v <= 0 for v in out):
        raise ConfigError(f"{name}: expected numbers > 0 (a standard deviation), got {list(out)}")
    return out


def _text(text: str, name: str) -> list[float]:
    """Comma-separated numbers of an option; ConfigError naming the option."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{name}: expected comma-separated numbers (one per input channel, or one for all), "
                          f"got {text!r}") from None


@dataclass(frozen=True)
class Normalisation:
    """The map ``(x - mean) / std``, per channel (first axis of the sample shape, or the last: :meth:`channel_axis`).

    ``mean`` and ``std`` take one value for all channels or one per channel;
    ``std`` must be > 0, both finite (ConfigError otherwise).

    >>> Normalisation(mean=(0.485, 0.456, 0.406), std=0.225).to_dict()
    {'mean': [0.485, 0.456, 0.406], 'std': [0.225]}
    """

    mean: tuple[float, ...] | float = (0.0,)  # subtracted first, per channel (one value: every channel)
    std: tuple[float, ...] | float = (1.0,)   # then divided by, per channel; > 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _values(self.mean, "mean", positive=False))
        object.__setattr__(self, "std", _values(self.std, "std", positive=True))

    @classmethod
    def parse(cls, mean: str | None, std: str | None) -> Normalisation | None:
        """From the command line's ``--mean`` / ``--std`` (comma-separated); None when neither is
        given; a missing one defaults to mean 0 or std 1.  ConfigError names the option."""
        if mean is None and std is None:
            return None
        m = _values(_text(mean, "--mean"), "--mean", positive=False) if mean is not None else (0.0,)
        s = _values(_text(std, "--std"), "--std", positive=True) if std is not None else (1.0,)
        return cls(m, s)

    def channel_axis(self, input_shape: Shape, where: str = "normalisation") -> int:
        """The axis of ``input_shape`` (one sample) the values run along: the first (channels first)
        when its size is their number, else the last (channels last, as in NHWC inputs); 0 for one
        value.  ConfigError, naming ``where``, when neither fits."""
        shape = tuple(int(d) for d in input_shape)
        n_mean, n_std = len(self.mean), len(self.std)  # type: ignore[arg-type]
        if n_mean > 1 and n_std > 1 and n_mean != n_std:
            raise ConfigError(f"{where}: the normalisation's mean has {n_mean} values and its std {n_std}; "
                              "expected one per channel each, or one for all")
        n, name = max(n_mean, n_std), "mean" if n_mean >= n_std else "std"
        first = shape[0] if shape else 1
        if n == 1 or first == n:
            return 0
        if len(shape) >= 2 and shape[-1] == n:
            return len(shape) - 1
        last = f", or {shape[-1]} along its last axis (channels last)" if len(shape) >= 2 else ""
        raise ConfigError(f"{where}: the normalisation's {name} has {n} values but the model's input {shape} has "
                          f"{first} channels (its first axis){last}; expected one value per channel or one for all")

    def arrays(self, input_shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` as float64 arrays shaped ``(C, 1, ..., 1)`` (channels first) or ``(C,)``
        (channels last) for one sample shaped ``input_shape``; they broadcast over a batch too, numpy
        and ONNX aligning shapes from the right."""
        rank = max(len(input_shape), 1)
        trail = rank - 1 - self.channel_axis(input_shape)
        shape = lambda v: np.asarray(v, dtype=np.float64).reshape((len(v),) + (1,) * trail)  # noqa: E731
        return shape(self.mean), shape(self.std)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` on a batch ``(B, *input_shape)``, in float64 (the reference tests compare with)."""
        x = np.asarray(x, dtype=np.float64)
        mean, std = self.arrays(x.shape[1:])
        return (x - mean) / std

    def to_dict(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}``: what results record in their settings."""
        return {"mean": list(self.mean), "std": list(self.std)}  # type: ignore[arg-type]


def normalised(network: Network | str | os.PathLike[str], mean: Normalisation | Sequence[float] | float = 0.0,
               std: Sequence[float] | float = 1.0) -> Network:
    """``network`` (a :class:`Network` loaded from a file, or an ONNX path) with ``(x - mean) / std`` in front.

    ``mean`` may be a :class:`Normalisation` (``std`` is then ignored).  The
    result takes pixels ``(B, *input_shape)``; onnxruntime checks it against
    the file with the normalisation prepended.  ConfigError for a bad
    normalisation (wrong number of channels, std <= 0, NaN) or a network that
    is normalised already.
    """
    from nnaudit.networks.loader import load, read_model

    net = network if isinstance(network, Network) else load(network)
    norm = mean if isinstance(mean, Normalisation) else Normalisation(mean, std)
    if net.source is None:
        raise ModelLoadError("normalisation: the network has no ONNX file; onnxruntime confirms counterexamples on "
                             "that file with the normalisation prepended")
    return apply_normalisation(net, norm, read_model(Path(net.source)))


def apply_normalisation(net: Network, norm: Normalisation, model: Any) -> Network:
    """``net`` with ``norm`` in front; ``model`` is ``net``'s ONNX model (an ``onnx.ModelProto``, changed here)."""
    from nnaudit.networks.fold import fold_affine
    from nnaudit.networks.ops.elementwise import ElementwiseAffine

    if net.normalisation is not None:
        raise ConfigError(f"{net.source}: the network is normalised already ({net.normalisation.to_dict()}); "
                          "give the normalisation once")
    norm.channel_axis(net.input_shape, str(net.source))
    mean, std = norm.arrays(net.input_shape)
    inner = _fresh(set(net.node_shapes), "nnaudit_normalised")
    layers = [copy.copy(layer) for layer in net.layers]  # renamed inputs must not change net's layers
    for layer in layers:
        layer.inputs = tuple(inner if name == net.input_name else name for name in layer.inputs)
    affine = ElementwiseAffine("nnaudit_normalise", (net.input_name,), inner, 1.0 / std, -mean / std,
                               len(net.input_node_shape))
    out = replace(net, layers=[affine, *layers], node_shapes={**net.node_shapes, inner: net.input_node_shape},
                  normalisation=norm, reference_onnx=prepend_onnx(model, norm, net.input_shape),
                  _torch_cache={})
    out.layers = fold_affine(out)
    return out


def prepend_onnx(model: Any, norm: Normalisation, input_shape: Shape) -> bytes:
    """The serialised ONNX ``model`` with ``Sub(mean)`` and ``Div(std)`` nodes in front of its input.

    The constants have the input's element type; the input keeps its name and
    shape.  ``model`` (an ``onnx.ModelProto``) is changed in place.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = {init.name for init in graph.initializer}
    inp = next(i for i in graph.input if i.name not in consts)
    dtype = helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
    taken = consts | {i.name for i in graph.input} | {o for node in graph.node for o in node.output}
    m_name, s_name, centred, scaled = (_fresh(taken, f"nnaudit_{n}") for n in ("mean", "std", "centred", "normalised"))
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == inp.name:
                node.input[i] = scaled
    mean, std = norm.arrays(input_shape)
    front = [helper.make_node("Constant", [], [m_name], value=numpy_helper.from_array(mean.astype(dtype), m_name)),
             helper.make_node("Constant", [], [s_name], value=numpy_helper.from_array(std.astype(dtype), s_name)),
             helper.make_node("Sub", [inp.name, m_name], [centred], name="nnaudit_subtract_mean"),
             helper.make_node("Div", [centred, s_name], [scaled], name="nnaudit_divide_by_std")]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(front + nodes)
    return bytes(model.SerializeToString())


def _fresh(taken: set[str], base: str) -> str:
    """``base``, or ``base_1``, ``base_2``, ... : the first name not in ``taken``."""
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    return name
