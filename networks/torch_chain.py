"""The torch form of a network that is a chain of dense layers and ReLUs, with a
hand-written backward pass.

Gradient attacks spend their time in forward and backward passes, and on the
small networks of this field autograd's bookkeeping costs more than the
arithmetic: on digits-ffn (64-32-32-10) a forward and backward pass of 450
rows takes 0.26 ms through the IR's module with autograd and 0.15 ms as the
few matrix products below.  For a chain of ``Linear`` and ``Relu`` layers over
a flat input, :class:`DenseChain` keeps the weights as float32 matrices;
:meth:`DenseChain.with_tape` returns the logits and the ReLU outputs, and
:meth:`DenseChain.input_grad` the gradient of ``sum(seed * logits)`` with
respect to the input, ``g <- (g @ W^T) * [relu output > 0]`` layer by layer
(the ReLU's own backward kernel, ``threshold_backward``: one pass, where a
bool mask kept from the forward pass costs a comparison there and a dtype
conversion and a product here, 21 against 4 us for 450 x 32 on the CPU).  Calling it is
an ordinary differentiable torch function (``addmm`` and ``relu``), so every
attack can use it like the module.  Other sequences of affine layers and ReLUs
(convolutions, reshapes, ...) are lowered to such a chain of dense matrices
when these are small (:meth:`DenseChain.of`); networks of any other form
(other activations, several inputs to a layer, large images) have no chain
form (:meth:`DenseChain.of` returns None) and keep the module.
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
        """The chain form of ``net`` on ``device``, or None when it is not such a chain.

        A chain of ``Linear`` and ``Relu`` layers on flat rows keeps its weights.
        Any other sequence of ReLUs and affine layers (convolutions, reshapes,
        padding, average pooling, ...) is lowered to dense matrices (the exact
        affine forms of :func:`nnaudit.networks.lower.lower`) when they are small
        (:data:`MAX_DENSE` entries each): on small images a convolution as a
        matrix product costs a fraction of the convolution's backward pass
        (digits-cnn, 450 rows, CPU: a forward and backward pass 8.0 ms through
        the IR's module, 1.3 ms as matrices).
        """
        direct = cls._direct(net, device)
        if direct is not None or not _dense_is_small(net):
            return direct
        return cls._lowered(net, device)

    @classmethod
    def _lowered(cls, net: Network, device: torch.device | str) -> DenseChain | None:
        """The chain of ``net``'s dense lowering, when every non-linear node is a ReLU fed by the one before."""
        from nnaudit.networks.lower import lower

        low = lower(net)
        if any(node.kind != "relu" or set(node.pre.mats) != {k} for k, node in enumerate(low.nodes)):
            return None
        if set(low.output.mats) != {len(low.nodes)}:
            return None
        steps: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for k, affine in enumerate([n.pre for n in low.nodes] + [low.output]):
            steps.append((torch.as_tensor(affine.mats[k], dtype=torch.float32, device=device),
                          torch.as_tensor(affine.bias, dtype=torch.float32, device=device)))
            steps.append(None)
        return cls(steps[:-1], tuple(net.input_shape))

    @classmethod
    def _direct(cls, net: Network, device: torch.device | str) -> DenseChain | None:
        """The chain of a network made of ``Linear`` and ``Relu`` layers on flat rows, with its own weights."""
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
        """Logits ``(B, K)`` and what :meth:`input_grad` needs (the ReLU outputs).  No autograd
        graph is built for an input that does not require gradients (none is needed); a
        ``no_grad`` context per call would cost more than a step's arithmetic here."""
        h, outs = x.reshape(len(x), -1), []
        for s in self.steps:
            if s is None:
                h = torch.relu(h)
                outs.append(h)
            else:
                h = torch.addmm(s[1], h, s[0])
        return h, outs

    def input_grad(self, tape: list[torch.Tensor], seed: torch.Tensor) -> torch.Tensor:
        """Gradient of ``sum(seed * logits)`` w.r.t. the input of :meth:`with_tape`, ``(B, *input_shape)``."""
        g, outs = seed, list(tape)
        for s, wt in zip(reversed(self.steps), reversed(self.transposed)):
            g = _relu_backward(g, outs.pop()) if s is None else g @ wt
        return g.reshape((len(g),) + self.input_shape)


#: largest dense matrix (entries) a lowered chain may hold or build, per affine run
MAX_DENSE = 1 << 22


def _dense_is_small(net: Network) -> bool:
    """Whether ``net`` is a sequence of ReLUs and affine layers, each reading the one before, whose
    dense lowering stays within :data:`MAX_DENSE` entries per matrix (checked on the node shapes,
    before any matrix is built)."""
    shapes, current = net.node_shapes, net.input_name
    source = int(np.prod(shapes[current]))  # size of the run's source: the input or the last ReLU's output
    for layer in net.layers:
        if tuple(layer.inputs) != (current,) or not (layer.affine or layer.kind == "relu"):
            return False
        n_in, n_out = int(np.prod(shapes[current])), int(np.prod(shapes[layer.output]))
        if layer.kind == "relu":
            source = n_out
        elif max(n_in, source) * n_out > MAX_DENSE:
            return False
        current = layer.output
    return current == net.output_name and bool(net.layers)


def _relu_backward(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``grad`` where the ReLU's output ``out`` is positive, else 0 (the input was > 0 there)."""
    return torch.ops.aten.threshold_backward(grad, out, 0)
