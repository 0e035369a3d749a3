"""2-D convolution (ONNX Conv, group=1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, register
from nnaudit.networks.ops.spatial import Window2d, as_images, parse_window

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.loader import NodeView


@register("Conv")
class Conv(Layer):
    """``y = conv2d(x, weight) + bias`` on node shape ``(N, C, H, W)``.

    ``weight`` is ``(C_out, C_in, kh, kw)``, ``bias`` ``(C_out,)``.
    """

    kind = "conv"
    affine = True

    def __init__(self, name: str, inputs: tuple[str, ...], output: str,
                 weight: np.ndarray, bias: np.ndarray | None, window: Window2d) -> None:
        super().__init__(name, inputs, output)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = np.zeros(self.weight.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
        self.window = window

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def describe(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]} channels, {self.window.describe()}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        imgs, lead = as_images(x)
        if imgs.shape[1] != self.weight.shape[1]:
            raise ValueError(f"expected {self.weight.shape[1]} input channels, got {imgs.shape[1]}")
        v = self.window.windows(self.window.pad_numpy(imgs, 0.0))
        y = np.einsum("mchwij,ocij->mohw", v, self.weight, optimize=True) + self.bias[:, None, None]
        return y.reshape(lead + y.shape[1:])

    def to_torch(self) -> Any:
        import torch.nn.functional as F

        from nnaudit.networks.torch_module import OpModule

        w = self.window

        def run(m: Any, x: Any) -> Any:
            lead = x.shape[:-3]
            imgs = F.pad(x.reshape((-1,) + tuple(x.shape[-3:])), w.torch_pad())
            y = F.conv2d(imgs, m.weight, m.bias, stride=w.strides, dilation=w.dilations)
            return y.reshape(tuple(lead) + tuple(y.shape[1:]))

        return OpModule("conv", run, weight=self.weight, bias=self.bias)

    def linear_form(self, in_shapes: Any, out_shape: Any) -> tuple[list[np.ndarray], np.ndarray]:
        """The dense form, made by torch's convolution of the unit vectors (NumPy's windows took
        5 s per layer on a CIFAR conv net)."""
        (m,), bias = self.linear_map(in_shapes, out_shape)
        return [m.dense()], bias

    def linear_map(self, in_shapes: Any, out_shape: Any) -> tuple[list[Any], np.ndarray]:
        """The convolution as a :class:`ConvMap`, with the bias per output position."""
        out = tuple(int(d) for d in out_shape)
        bias = np.broadcast_to(self.bias[:, None, None], out[-3:]).reshape(-1).copy()
        return [ConvMap(self.weight, self.window, tuple(in_shapes[0]), out)], bias

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        if node.dynamic_inputs() != [0]:
            raise node.unsupported("Conv weights and bias must be constants")
        if int(node.attr("group", 1)) != 1:
            raise node.unsupported(f"group={node.attr('group')} (only group=1 is supported)")
        weight = node.const(1)
        if weight.ndim != 4:
            raise node.unsupported(f"only 2-D convolution is supported, weight shape {list(weight.shape)}")
        in_shape = node.shape(0)
        if len(in_shape) < 3 or in_shape[-3] != weight.shape[1]:
            raise node.error(f"input shape {list(in_shape)} does not match weight shape {list(weight.shape)}")
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        ks = node.attr("kernel_shape")
        if ks is not None and tuple(int(k) for k in ks) != kernel:
            raise node.error(f"kernel_shape {list(ks)} does not match weight shape {list(weight.shape)}")
        window = parse_window(node, kernel, (in_shape[-2], in_shape[-1]))
        return [cls(node.name, (node.inputs[0],), node.output, weight, node.optional_const(2), window)]


class ConvMap:
    """The linear part of a convolution on flat values, kept as a convolution: ``x @ M`` is
    ``conv2d`` and ``a @ M.T`` its transpose (``conv_transpose2d``), for layers whose dense
    matrix (``n_in x n_out``) would be too large (see :mod:`nnaudit.networks.lower`).

    ``in_shape``/``out_shape``: node shapes ``(..., C, H, W)``; works on NumPy arrays and torch
    tensors ``(..., n_in)`` alike.  ``groups``: as in ``conv2d`` (AveragePool is a depthwise
    convolution); ``out_scale`` ``(n_out,)``: positive factors of the outputs (its divisors).
    ``abs``/``pos``/``neg`` are the maps of ``|W|``, ``max(W, 0)`` and ``min(W, 0)`` (the entries of
    ``M`` are the weights times positive factors, so these are ``|M|``, ``M+``, ``M-``).
    """

    __array_ufunc__ = None  # NumPy defers ``x @ map`` to __rmatmul__

    def __init__(self, weight: np.ndarray, window: Window2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 transposed: bool = False, groups: int = 1, out_scale: np.ndarray | None = None) -> None:
        self.weight, self.window = np.asarray(weight, dtype=np.float64), window
        self.in_shape, self.out_shape = tuple(in_shape[-3:]), tuple(out_shape[-3:])
        self.transposed, self.groups, self.out_scale = transposed, groups, out_scale
        self._torch: dict[Any, Any] = {}  # weight as a torch tensor per dtype and device (made on first use)

    @property
    def shape(self) -> tuple[int, int]:
        n_in, n_out = int(np.prod(self.in_shape)), int(np.prod(self.out_shape))
        return (n_out, n_in) if self.transposed else (n_in, n_out)

    @property
    def T(self) -> ConvMap:  # noqa: N802 - as ndarray.T
        return ConvMap(self.weight, self.window, self.in_shape, self.out_shape, not self.transposed, self.groups,
                       self.out_scale)

    def _like(self, weight: np.ndarray) -> ConvMap:
        return ConvMap(weight, self.window, self.in_shape, self.out_shape, self.transposed, self.groups,
                       self.out_scale)

    def abs(self) -> ConvMap:
        return self._like(np.abs(self.weight))

    def pos(self) -> ConvMap:
        return self._like(np.maximum(self.weight, 0.0))

    def neg(self) -> ConvMap:
        return self._like(np.minimum(self.weight, 0.0))

    def __rmatmul__(self, x: Any) -> Any:
        import torch

        if not torch.is_tensor(x):
            return self.__rmatmul__(torch.as_tensor(np.asarray(x, dtype=np.float64), device="cpu")).cpu().numpy()
        n_in, n_out = self.shape
        if x.shape[-1] != n_in:
            raise ValueError(f"expected (..., {n_in}) values for a convolution map, got {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, n_in)
        y = self._apply_t(flat) if self.transposed else self._apply(flat)
        return y.reshape(tuple(lead) + (n_out,))

    def __matmul__(self, other: np.ndarray) -> np.ndarray:
        """``M @ B`` for a dense ``B`` ``(n_out, k)``: ``(B.T @ M.T).T``."""
        return np.ascontiguousarray((np.asarray(other, dtype=np.float64).T @ self.T).T)

    def _w(self, like: Any) -> Any:
        import torch

        key = (like.dtype, like.device)
        if key not in self._torch:
            scale = None if self.out_scale is None else torch.as_tensor(self.out_scale, dtype=like.dtype,
                                                                        device=like.device)
            self._torch[key] = (torch.as_tensor(self.weight, dtype=like.dtype, device=like.device), scale)
        return self._torch[key]

    def _apply(self, flat: Any) -> Any:
        import torch.nn.functional as F

        w = self.window
        weight, scale = self._w(flat)
        imgs = F.pad(flat.reshape((-1,) + self.in_shape), w.torch_pad())
        y = F.conv2d(imgs, weight, stride=w.strides, dilation=w.dilations, groups=self.groups)
        y = y.reshape(flat.shape[0], -1)
        return y if scale is None else y * scale

    def _apply_t(self, flat: Any) -> Any:
        """The adjoint: ``conv_transpose2d`` onto the padded input, cropped to the input."""
        import torch.nn.functional as F

        w = self.window
        c, h, wd = self.in_shape
        top, left, bottom, right = w.pads
        hp, wp = h + top + bottom, wd + left + right
        ho, wo = self.out_shape[-2:]
        eh, ew = w.extent
        extra = (hp - ((ho - 1) * w.strides[0] + eh), wp - ((wo - 1) * w.strides[1] + ew))
        weight, scale = self._w(flat)
        flat = flat if scale is None else flat * scale
        y = F.conv_transpose2d(flat.reshape((-1,) + self.out_shape), weight, stride=w.strides,
                               dilation=w.dilations, groups=self.groups)
        y = F.pad(y, (0, extra[1], 0, extra[0]))  # the rows and columns no window reaches
        return y[:, :, top:top + h, left:left + wd].reshape(flat.shape[0], -1)

    def column(self, j: int) -> np.ndarray:
        """Column ``j`` of ``M`` (``(n_in,)``): the weights of output ``j`` on every input."""
        unit = np.zeros((1, self.shape[1]))
        unit[0, j] = 1.0
        return np.asarray(unit @ self.T)[0]

    def dense(self) -> np.ndarray:
        """The dense matrix ``(n_in, n_out)`` (only for maps small enough)."""
        return np.asarray(np.eye(self.shape[0]) @ self)
