"""The network IR: typed layers in a DAG, evaluated in float64 NumPy or as torch.

Every ONNX file nnaudit reads becomes a :class:`Network` (see
:mod:`nnaudit.networks.loader`).  The verifiers, attacks and reports all work
on this one representation.

Shape convention.  Each tensor has a *node shape*: its ONNX shape with a
symbolic batch dimension taken as 1 (so ``(1, 784)`` for an MNIST MLP's
hidden input).  The IR evaluates many samples at once by adding one extra
leading *sample axis*: a tensor in flight has shape ``(B, *node_shape)``.
Every layer implements the exact ONNX semantics of one sample, vectorised
over that leading axis, so graphs that reshape or transpose their batch
dimension of size 1 still work.  ``Network.input_shape`` / ``output_shape``
are the node shapes without the batch dimension, which is what users see.

Layer classes are registered by ONNX op type with :func:`register`; one class
per operation, each with its ``forward`` (NumPy float64) and ``to_torch``
next to each other, and the rules the verifier needs on the same class:

- affine ops (``affine = True``): :meth:`Layer.linear_form`, their exact
  matrix form, from which the verifier composes every run of affine layers
  (their interval and linear bounds and their Z3 encoding are this form);
- non-linear ops (``relaxable = True``: Relu, Sigmoid, Tanh, MaxPool):
  ``interval`` (interval propagation), ``relax`` (the linear relaxation over
  a box), ``linear_bounds`` (one step of backward substitution through it,
  DeepPoly / CROWN), ``forward_linear_bounds`` (the same relaxation pushed
  forwards) and, for
  the piecewise linear ones, ``z3_encode`` (exact encoding in linear real
  arithmetic).

These rules work on *flat* tensors, one row per sub-domain (``(D, n)`` with
``n`` the size of the layer's input node shape ``in_shape``), because the
verifier reasons about flattened affine forms; element-wise ops ignore
``in_shape``.  They return values and keep no state between calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from nnaudit.networks.loader import NodeView

Shape = tuple[int, ...]

#: ONNX op type -> layer class that converts it.
OP_REGISTRY: dict[str, type[Layer]] = {}


def register(*op_types: str) -> Callable[[type[Layer]], type[Layer]]:
    """Class decorator: make ``cls.from_onnx`` the converter of ``op_types``."""

    def deco(cls: type[Layer]) -> type[Layer]:
        for op in op_types:
            if op in OP_REGISTRY:
                raise RuntimeError(f"op type {op} registered twice")
            OP_REGISTRY[op] = cls
        return cls

    return deco


class Layer:
    """One operation of the IR: reads named tensors, writes one named tensor.

    Subclasses set ``kind`` (a short human name), implement ``forward`` and
    ``to_torch``, and a ``from_onnx`` classmethod that turns an ONNX node into
    a list of layers (usually one).  ``params`` lists the weight arrays, for
    parameter counts and for the weight sanity checks.
    """

    kind: ClassVar[str] = "layer"
    #: True when the layer is an affine map of its inputs (see :meth:`linear_form`).
    affine: ClassVar[bool] = False
    #: True for the non-linear ops with bound rules (``interval``, ``relax``, ``linear_bounds``, ...).
    relaxable: ClassVar[bool] = False
    #: True when the layer keeps its input's flat values in order (reshapes, Identity): lowering passes it through.
    flat_identity: ClassVar[bool] = False

    def __init__(self, name: str, inputs: Sequence[str], output: str) -> None:
        self.name = name
        self.inputs = tuple(inputs)
        self.output = output

    # -- conversion -------------------------------------------------------
    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        """Build the layer(s) for one ONNX node; override per op."""
        raise NotImplementedError(f"{cls.__name__} has no ONNX converter")

    # -- evaluation -------------------------------------------------------
    def forward(self, *xs: np.ndarray) -> np.ndarray:
        """Evaluate on float64 arrays shaped ``(B, *node_shape)``."""
        raise NotImplementedError

    def to_torch(self) -> torch.nn.Module:
        """An equivalent float32 ``torch.nn.Module`` on ``(B, *node_shape)``."""
        raise NotImplementedError

    # -- verification rules (see the module docstring) ----------------------
    def linear_form(self, in_shapes: Sequence[Shape], out_shape: Shape) -> tuple[list[np.ndarray], np.ndarray]:
        """Exact affine form ``y = sum_i x_i @ mats[i] + bias`` on flattened tensors.

        ``in_shapes``: node shapes of the inputs; returns ``mats[i]`` ``(n_i,
        n_out)`` and ``bias`` ``(n_out,)``, float64.  The default probes
        ``forward`` on the unit vectors of each input, which is exact for any
        affine op (and costs one forward of ``n_i`` samples); only layers with
        ``affine = True`` may be asked.
        """
        if not self.affine:
            raise TypeError(f"{type(self).__name__} {self.name!r} is not affine; it has no linear form")
        sizes = [int(np.prod(s)) for s in in_shapes]
        n_out = int(np.prod(out_shape))

        def run(batch: int, fill: dict[int, np.ndarray]) -> np.ndarray:
            args = [fill.get(i, np.zeros((batch,) + tuple(s))) for i, s in enumerate(in_shapes)]
            return np.asarray(self.forward(*args), dtype=np.float64).reshape(batch, n_out)

        bias = run(1, {})[0]
        mats = [run(n_i, {i: np.eye(n_i).reshape((n_i,) + tuple(in_shapes[i]))}) - bias
                for i, n_i in enumerate(sizes)]
        return mats, bias

    def linear_map(self, in_shapes: Sequence[Shape], out_shape: Shape) -> tuple[list[Any], np.ndarray] | None:
        """A structured form of :meth:`linear_form` (maps with ``x @ M`` and ``.T``, e.g. a convolution
        as a convolution) for layers too wide to densify, or None where the layer has none."""
        return None

    def interval(self, lo: torch.Tensor, hi: torch.Tensor, *, in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds ``(D, n_out)`` of the output over the input boxes ``[lo, hi]`` ``(D, n)``."""
        raise NotImplementedError(f"{type(self).__name__} has no interval rule")

    def relax(self, lo: torch.Tensor, hi: torch.Tensor, *, in_shape: Shape,
              alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The op's linear relaxation over the input boxes ``[lo, hi]`` ``(D, n)``.

        A tuple of tensors whose first axis is the sub-domain (so a caller may
        keep it, or take some of its rows, for several backward passes); only
        the op's own ``linear_bounds`` / ``forward_linear_bounds`` read what is
        inside.  ``alpha``: optional lower ReLU slopes ``(D, n)`` in [0, 1]
        (optimised by alpha-CROWN); other ops ignore it.
        """
        raise NotImplementedError(f"{type(self).__name__} has no linear relaxation")

    def linear_bounds(self, a: torch.Tensor, relax: tuple[torch.Tensor, ...], *,
                      in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        """One backward substitution step: a lower bound of ``a @ output``.

        ``a`` ``(D, r, n_out)``: coefficients of ``r`` linear functions of the
        output; ``relax``: this op's :meth:`relax` on the input's bounds.
        Returns the coefficients ``(D, r, n)`` on the input and constants
        ``(D, r)`` such that ``a @ y >= a_in @ x + const`` for every ``x`` in the box.
        """
        raise NotImplementedError(f"{type(self).__name__} has no linear bound rule")

    def forward_linear_bounds(self, zl: torch.Tensor, zu: torch.Tensor, relax: tuple[torch.Tensor, ...],
                              *, in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        """Push linear bounds forwards: given linear lower/upper bounds of the
        input in terms of the network input, ``zl``/``zu`` ``(D, n_x + 1, n)``
        (last row: constant), and this op's :meth:`relax` (without ``alpha``),
        return linear bounds ``(D, n_x + 1, n_out)`` of the output."""
        raise NotImplementedError(f"{type(self).__name__} has no forward linear bound rule")

    def z3_encode(self, z: Sequence[Any], bounds: tuple[np.ndarray, np.ndarray] | None, phase: np.ndarray | None,
                  *, in_shape: Shape, name: str) -> tuple[list[Any], list[Any]]:
        """Exact encoding: ``(output expressions, constraints)`` given the input
        expressions ``z`` (None where :meth:`z3_inputs_needed` said so), optional
        input bounds ``(lo, hi)`` (1-D, already widened for rounding) to drop
        impossible cases, and optional fixed phases (ReLU splits: +1, -1, 0).
        ``name`` prefixes fresh variables."""
        from nnaudit.errors import SolverError

        raise SolverError(f"layer {self.name!r} ({self.kind}) is not piecewise linear and cannot be encoded exactly")

    def z3_inputs_needed(self, bounds: tuple[np.ndarray, np.ndarray] | None, phase: np.ndarray | None,
                         *, in_shape: Shape) -> np.ndarray | None:
        """Mask of the input values ``z3_encode`` uses (None: all of them)."""
        return None

    # -- description ------------------------------------------------------
    @property
    def params(self) -> dict[str, np.ndarray]:
        """Named weight arrays of the layer (empty for parameter-free ops)."""
        return {}

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def describe(self) -> str:
        """One line of attributes for ``nnaudit inspect``."""
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.inputs} -> {self.output!r})"


@dataclass(frozen=True)
class CheckResult:
    """Outcome of comparing the IR with onnxruntime on random inputs."""

    samples: int
    max_abs_error: float
    max_rel_error: float
    rtol: float
    ok: bool
    argmax_agree: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            "rtol": self.rtol,
            "ok": self.ok,
            "argmax_agree": self.argmax_agree,
        }


@dataclass
class Network:
    """A feed-forward network: layers in topological order over named tensors.

    ``node_shapes`` maps every tensor name to its node shape (see module
    docstring).  ``batch_axis`` is True when the ONNX input's first dimension
    is a batch dimension (symbolic or 1), which the user-facing shapes drop.
    """

    layers: list[Layer]
    input_name: str
    output_name: str
    node_shapes: dict[str, Shape]
    batch_axis: bool
    source: Path | None = None
    opset: int = 0
    producer: str = ""
    sha256: str = ""
    #: ``(x - mean) / std`` in front of the file's model (:mod:`nnaudit.networks.normalise`), or None
    normalisation: Any = None
    #: the serialised ONNX model onnxruntime checks this network against when it is not the file at
    #: ``source`` as it stands (a normalised network: the file with the normalisation prepended)
    reference_onnx: bytes | None = field(default=None, repr=False)
    _torch_cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: the lowered forms (:func:`nnaudit.networks.lower.lower`) by their structured-size threshold, made on
    #: first use; not an ``__init__`` argument, so ``dataclasses.replace`` gives a changed network its own
    _lowered: dict[int, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- shapes -----------------------------------------------------------
    @property
    def input_node_shape(self) -> Shape:
        return self.node_shapes[self.input_name]

    @property
    def output_node_shape(self) -> Shape:
        return self.node_shapes[self.output_name]

    @property
    def input_shape(self) -> Shape:
        """Input shape of one sample, without the batch dimension."""
        return _drop_batch(self.input_node_shape, self.batch_axis)

    @property
    def output_shape(self) -> Shape:
        """Output shape of one sample, without the batch dimension."""
        return _drop_batch(self.output_node_shape, self.batch_axis and _leading_one(self.output_node_shape))

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def output_size(self) -> int:
        return int(np.prod(self.output_shape))

    def num_params(self) -> int:
        return sum(layer.num_params() for layer in self.layers)

    # -- evaluation -------------------------------------------------------
    def _to_internal(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape:
            if x.shape == self.input_shape:
                raise ValueError(
                    f"expected a batch shaped (B, *{self.input_shape}), got a single "
                    f"sample shaped {x.shape}; add a leading batch axis"
                )
            raise ValueError(f"expected input shaped (B, *{self.input_shape}), got {x.shape}")
        return x.reshape((x.shape[0],) + self.input_node_shape)

    def _from_internal(self, y: Any) -> Any:
        return y.reshape((y.shape[0],) + self.output_shape)

    def evaluate(self, x: np.ndarray, *, outputs: Iterable[str] = ()) -> np.ndarray:
        """Run a batch through the IR in float64.

        ``x`` is shaped ``(B, *input_shape)``; the result ``(B, *output_shape)``.
        With ``outputs`` (tensor names), returns a dict of those intermediate
        tensors (in node shape with the sample axis) plus ``"output"``.
        """
        wanted = set(outputs)
        env = self.run_layers(self._to_internal(np.asarray(x, dtype=np.float64)))
        out = self._from_internal(env[self.output_name])
        if wanted:
            res = {name: env[name] for name in wanted}
            res["output"] = out
            return res  # type: ignore[return-value]
        return out

    def run_layers(self, x_internal: np.ndarray) -> dict[str, np.ndarray]:
        """Evaluate every layer; returns all tensors by name (sample axis first)."""
        env: dict[str, np.ndarray] = {self.input_name: x_internal}
        for layer in self.layers:
            env[layer.output] = layer.forward(*(env[name] for name in layer.inputs))
        return env

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Arg-max class of each sample, shaped ``(B,)``."""
        return self.evaluate(x).reshape(len(x), -1).argmax(axis=1)

    def to_torch(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """An equivalent float32 torch module taking ``(B, *input_shape)``.

        The module is in eval mode, its weights are buffers (not parameters),
        and it is differentiable with respect to its input.
        """
        from nnaudit.networks.torch_module import TorchNetwork

        return TorchNetwork(self).to(device).eval()

    # -- cross-checks -----------------------------------------------------
    def check(
        self,
        *,
        samples: int = 32,
        low: float | np.ndarray = 0.0,
        high: float | np.ndarray = 1.0,
        rtol: float = 1e-5,
        seed: int = 0,
    ) -> CheckResult:
        """Compare the IR with onnxruntime on the original file (with the normalisation, if any, prepended).

        Draws ``samples`` inputs uniformly in ``[low, high]`` (scalars or arrays
        of ``input_shape``).  The error is relative to the largest output
        magnitude (at least 1), so tiny outputs do not inflate it.
        """
        from nnaudit.networks.runtime import reference

        if self.source is None:
            raise ValueError("network has no source ONNX file to check against")
        rng = np.random.default_rng(seed)
        lo = np.broadcast_to(np.asarray(low, dtype=np.float64), self.input_shape)
        hi = np.broadcast_to(np.asarray(high, dtype=np.float64), self.input_shape)
        x = (lo + (hi - lo) * rng.random((samples,) + self.input_shape)).astype(np.float32)
        ours = self.evaluate(x.astype(np.float64)).reshape(samples, -1)
        theirs = reference(self).run(x).astype(np.float64)
        abs_err = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
        scale = max(1.0, float(np.max(np.abs(theirs)))) if theirs.size else 1.0
        agree = float(np.mean(ours.argmax(1) == theirs.argmax(1))) if samples else 1.0
        return CheckResult(samples, abs_err, abs_err / scale, rtol, abs_err / scale <= rtol, agree)

    # -- description ------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: shapes, layers, parameter counts, source."""
        return {
            "source": str(self.source) if self.source else None,
            "sha256": self.sha256,
            "opset": self.opset,
            "producer": self.producer,
            "input": {"name": self.input_name, "shape": list(self.input_shape)},
            "output": {"name": self.output_name, "shape": list(self.output_shape)},
            "num_params": self.num_params(),
            "layers": [
                {
                    "name": layer.name,
                    "type": type(layer).__name__,
                    "kind": layer.kind,
                    "inputs": list(layer.inputs),
                    "output": layer.output,
                    "output_shape": list(self.node_shapes[layer.output]),
                    "num_params": layer.num_params(),
                    "attributes": layer.describe(),
                }
                for layer in self.layers
            ],
        }


def _leading_one(shape: Shape) -> bool:
    return len(shape) > 0 and shape[0] == 1


def _drop_batch(shape: Shape, batch_axis: bool) -> Shape:
    return tuple(shape[1:]) if batch_axis else tuple(shape)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (recorded in every result)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
