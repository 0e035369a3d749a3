"""The torch side of the IR: a float32 module equivalent to a Network.

Imported only by ``Network.to_torch`` so that ``import nnaudit.networks``
does not import torch.  Each layer's ``to_torch`` returns an
:class:`OpModule`: a function of torch tensors plus the layer's weights as
buffers (moved with ``.to(device)``, never trained by accident).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.ir import Network


class OpModule(nn.Module):
    """``fn(module, *inputs)`` with named float32 buffers; one per IR layer."""

    def __init__(self, kind: str, fn: Callable[..., torch.Tensor], **arrays: np.ndarray | None) -> None:
        super().__init__()
        self.kind = kind
        self.fn = fn
        for key, value in arrays.items():
            tensor = None if value is None else torch.as_tensor(np.asarray(value, dtype=np.float32))
            self.register_buffer(key, tensor)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(self, *xs)

    def extra_repr(self) -> str:
        return self.kind


class TorchNetwork(nn.Module):
    """Runs the IR's layers as torch ops; input ``(B, *input_shape)``."""

    def __init__(self, network: Network) -> None:
        super().__init__()
        self.input_name = network.input_name
        self.output_name = network.output_name
        self.input_node_shape = tuple(network.input_node_shape)
        self.output_shape = tuple(network.output_shape)
        self.wiring = [(layer.inputs, layer.output) for layer in network.layers]
        self.ops = nn.ModuleList(layer.to_torch() for layer in network.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, Any] = {self.input_name: x.reshape((x.shape[0],) + self.input_node_shape)}
        for (inputs, output), op in zip(self.wiring, self.ops):
            env[output] = op(*(env[name] for name in inputs))
        y = env[self.output_name]
        return y.reshape((y.shape[0],) + self.output_shape)
