"""A fixed-shape computation replayed as one CUDA graph, captured once per shape.

On a GPU the attacks on small networks are bound by the CPU, not the device:
a PGD step on 450 digits launches some twenty kernels of a few microseconds
each, and launching them (and the Python around them) takes many times the
GPU's own time.  A CUDA graph records every kernel of a whole restart once and
then replays them with one launch.

:func:`replay` captures ``fn`` on first use for the owner (the network
function), the shapes and dtypes of its inputs and a caller's key (whatever
Python values ``fn`` bakes into its kernels: step sizes, eps, the number of
steps), keeps up to :data:`MAX_GRAPHS` such graphs (least recently used
dropped first) and replays the one that matches.  ``fn`` must be a pure
function of its tensor inputs that never waits for the device (no
``.item()``, ``nonzero``, or branching on tensor values) and must not write
into its inputs.  Where capture fails (an operation that cannot be
captured), ``fn`` runs eagerly from then on for that key, with a warning.

The returned tensors live in the graph's own memory and are overwritten by
its next replay: read or copy them before replaying the same graph again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

#: graphs kept at once (each holds its own device memory for its inputs, outputs and temporaries)
MAX_GRAPHS = 8
#: eager runs on a side stream before capture (autograd and cuBLAS set up their state there)
WARMUP = 2

Fn = Callable[..., Sequence[torch.Tensor]]


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph | None  # None: capture failed, run eagerly
    inputs: tuple[torch.Tensor, ...]  # static copies the graph reads
    outputs: tuple[torch.Tensor, ...]  # the tensors the graph writes
    owner: object  # kept alive so that its id in the cache key is not reused


_GRAPHS: OrderedDict[tuple, _Graph] = OrderedDict()

#: batches are padded to a multiple of this many rows (smaller ones to a power of two), so that a
#: data set's last, smaller batch often replays the graph of the full ones, and little is wasted
PAD_TO = 64


def padded_size(n: int) -> int:
    """Rows a batch of ``n`` is padded to: a power of two up to :data:`PAD_TO`, else a multiple of it."""
    if n <= PAD_TO:
        return 1 << max(0, n - 1).bit_length()
    return -(-n // PAD_TO) * PAD_TO


def padding(n: int, device: torch.device) -> torch.Tensor | None:
    """Row numbers that take a batch of ``n`` rows to :func:`padded_size` rows (the padding repeats
    row 0), or None when no padding is needed."""
    size = padded_size(n)
    if size == n:
        return None
    return torch.cat((torch.arange(n, device=device), torch.zeros(size - n, dtype=torch.int64, device=device)))


def replay(owner: object, key: Hashable, fn: Fn, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """``fn(*inputs)``, run as a CUDA graph captured on the first call with this owner, key and
    input shapes (CUDA inputs only; see the module docstring for what ``fn`` may do)."""
    full = (id(owner), key, tuple((tuple(t.shape), t.dtype, str(t.device)) for t in inputs))
    entry = _GRAPHS.get(full)
    if entry is None:
        entry = _capture(owner, fn, inputs)
        _GRAPHS[full] = entry
        while len(_GRAPHS) > MAX_GRAPHS:
            _GRAPHS.popitem(last=False)
    else:
        _GRAPHS.move_to_end(full)
    if entry.graph is None:
        return tuple(fn(*inputs))
    for static, given in zip(entry.inputs, inputs):
        static.copy_(given)
    entry.graph.replay()
    return entry.outputs


def cached() -> int:
    """Graphs held now (failed captures included)."""
    return len(_GRAPHS)


def clear() -> None:
    """Drop every graph (and the device memory it holds)."""
    _GRAPHS.clear()


def _capture(owner: object, fn: Fn, inputs: Sequence[torch.Tensor]) -> _Graph:
    """Warm ``fn`` up on a side stream, then record it into a new graph reading static copies of ``inputs``."""
    static = tuple(t.clone() for t in inputs)
    device = static[0].device
    side = torch.cuda.Stream(device=device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(WARMUP):
            fn(*static)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            outputs = tuple(fn(*static))
    except RuntimeError as exc:  # an operation that cannot be captured: run eagerly from now on
        log.warning("CUDA graph capture failed (%s); running eagerly", str(exc).splitlines()[0])
        torch.cuda.synchronize(device)
        return _Graph(None, static, (), owner)
    return _Graph(graph, static, outputs, owner)
