"""The torch form of a network that is a chain of dense layers and ReLUs, with a
hand-written backward pass.

Gradient attacks spend their time in forward and backward passes, and on the
small networks of this field autograd's bookkeeping costs more than the
arithmetic: on digits-ffn (64-32-32-10) a forward and backward pass of 450
rows takes 0.26 ms through the IR's module with autograd and 0.15 ms as the
few matrix products below.  For a chain of ``Linear`` and ``Relu`` layers over
a flat input, :class:`DenseChain` keeps the weights as float32 matrices;
:meth:`DenseChain.with_tape` returns the logits and the ReLU masks, and
:meth:`DenseChain.input_grad` the gradient of ``sum(seed * logits)`` with
respect to the input, ``g <- (g @ W^T) * mask`` layer by layer.  Calling it is
an ordinary differentiable torch function (``addmm`` and ``relu``), so every
attack can use it like the module.  Networks of any other form (convolutions,
other activations, several inputs to a layer) have no chain form
(:meth:`DenseChain.of` returns None) and keep the module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.ir import Network


class DenseChain:
    """``Linear`` / ``Relu`` layers applied in order to ``(B, n_in)`` rows, in float32."""

    def __init__(self, steps: list[tuple[torch.Tensor, torch.Tensor] | None], input_shape: tuple[int, ...]) -> None:
        """``steps``: ``(weight (n_in, n_out), bias (n_out,))`` for a dense layer, None for a ReLU."""
        self.steps = steps
        self.input_shape = input_shape
        self.transposed = [None if s is None else s[0].t().contiguous() for s in steps]

    @classmethod
    def of(cls, net: Network, device: torch.device | str) -> DenseChain | None:
        """The chain form of ``net`` on ``device``, or None when it is not such a chain."""
        # flat rows in and out: the node shapes are (n,) or (1, n) with the batch axis
        flat_in = len(net.input_shape) == 1 and net.input_node_shape[-1] == net.input_size
        flat_out = len(net.output_shape) == 1 and net.output_node_shape[-1] == net.output_size
        if not (flat_in and flat_out and net.layers):
            return None
        steps: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        current = net.input_name
        for layer in net.layers:
            if tuple(layer.inputs) != (current,) or layer.kind not in ("linear", "relu"):
                return None
            current = layer.output
            if layer.kind == "relu":
                steps.append(None)
                continue
            weight, bias = np.asarray(layer.weight), np.asarray(layer.bias).reshape(-1)
            if weight.ndim != 2 or bias.shape != (weight.shape[1],):
                return None
            steps.append((torch.as_tensor(weight, dtype=torch.float32, device=device),
                          torch.as_tensor(bias, dtype=torch.float32, device=device)))
        if current != net.output_name:
            return None
        return cls(steps, tuple(net.input_shape))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` of inputs ``(B, *input_shape)``; differentiable by autograd."""
        h = x.reshape(len(x), -1)
        for s in self.steps:
            h = torch.relu(h) if s is None else torch.addmm(s[1], h, s[0])
        return h

    def with_tape(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(B, K)`` and what :meth:`input_grad` needs (the ReLU masks).  No autograd
        graph is built for an input that does not require gradients (none is needed); a
        ``no_grad`` context per call would cost more than a step's arithmetic here."""
        h, masks = x.reshape(len(x), -1), []
        for s in self.steps:
            if s is None:
                masks.append(h > 0)
                h = torch.relu(h)
            else:
                h = torch.addmm(s[1], h, s[0])
        return h, masks

    def input_grad(self, tape: list[torch.Tensor], seed: torch.Tensor) -> torch.Tensor:
        """Gradient of ``sum(seed * logits)`` w.r.t. the input of :meth:`with_tape`, ``(B, *input_shape)``."""
        g, masks = seed, list(tape)
        for s, wt in zip(reversed(self.steps), reversed(self.transposed)):
            g = g * masks.pop() if s is None else g @ wt
        return g.reshape((len(g),) + self.input_shape)
