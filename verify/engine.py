"""The complete verifier: one property on one network, end to end.

Pipeline (each step a module of ``nnaudit.verify``)::

    falsify (random + PGD, onnxruntime-confirmed)      falsify.py
      -> bounds on the whole box (CROWN)               bounds.py
      -> branch and bound over sub-domains             bab/
           -> Z3 on small residual sub-domains          encode.py, smt.py

With ``VerifyConfig.route`` ``Route.AUTO`` (the CLI's), a small fully connected ReLU
network first goes to the dense route (NumPy only: torch is not imported), for a slice
of the time; what it leaves undecided takes the pipeline above     dense_bab.py

Verdicts: HOLDS only when every (box, region) case is proved; VIOLATED only
with a counterexample whose onnxruntime output on the original file is in the
unsafe region; otherwise UNKNOWN or TIMEOUT.  Every case shares one deadline.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nnaudit.errors import ConfigError
from nnaudit.networks.lower import COMPACT_BYTES
from nnaudit.verify.bab import BabConfig, run_bab
from nnaudit.verify.dense_bab import DenseConfig, Route
from nnaudit.verify.falsify import FalsifyConfig, falsify
from nnaudit.verify.limits import OutOfMemoryBudget, OutOfTime, default_max_memory
from nnaudit.verify.results import Counterexample, Verdict, VerifyResult
from nnaudit.verify.spec import Property

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyConfig:
    """Settings of one verification run."""

    timeout_s: float = 60.0                                         # wall-clock budget of the whole instance
    max_memory: int | None = field(default_factory=default_max_memory)  # bytes (verify.limits); None: unlimited
    torch_threads: int = 1                                          # intra-op threads of torch (1 is fastest for these small batched ops)
    falsify: FalsifyConfig = field(default_factory=FalsifyConfig)   # phase 1
    bab: BabConfig = field(default_factory=BabConfig)               # phases 2-4
    route: Route = Route.TORCH                                      # the torch route, or the dense route first/only
    dense: DenseConfig = field(default_factory=DenseConfig)         # the dense route (verify/dense_bab.py)
    structured_bytes: int = COMPACT_BYTES                           # a convolution past this many dense bytes stays one
    device: str = "cpu"                                             # the torch route's bounds: cpu, cuda, cuda:N or auto


def verify_property(network: Any, prop: Any, *, config: VerifyConfig = VerifyConfig(),
                    progress: Any = None) -> VerifyResult:
    """Decide ``prop`` on ``network``.

    ``network``: a :class:`~nnaudit.networks.ir.Network` loaded from a file or
    a path to an ONNX file; ``prop``: a :class:`~nnaudit.verify.spec.Property`
    or a path to a .vnnlib file.  ``progress(done, left)`` is called after each
    batch of sub-domains.  Returns a :class:`VerifyResult`.  With ``config.route``
    :attr:`~Route.AUTO` a small ReLU network is first given to the dense route
    (NumPy, no torch import) for a slice of the time; its holds or violated is
    final, anything else goes to the torch route with the time left.
    """
    net, spec, prop_name = _inputs(network, prop)
    device = _device(config)  # a GPU asked for and missing is a ConfigError before any work
    if config.route is Route.TORCH:
        import torch  # noqa: F401  (before the clock starts, as it always was on this route)
    start = time.monotonic()
    first = None
    if config.route is not Route.TORCH:
        first = _dense_first(net, spec, prop_name, config, progress, start)
        if first.verdict in (Verdict.HOLDS, Verdict.VIOLATED) or config.route is Route.DENSE:
            return first
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, config.torch_threads))
    try:
        if device is None:  # the CPU, without a device context: its dispatch hook would cost every small op
            res = _verify(net, spec, prop_name, config, progress, start)
        else:
            with device:  # every tensor the route makes is made there (the cached ones are keyed by device)
                res = _verify(net, spec, prop_name, replace(config, bab=replace(config.bab, workers=1)),
                              progress, start)
    finally:
        torch.set_num_threads(threads)
    if first is None:
        return res
    return replace(res, phases={**first.phases, **res.phases}, subdomains=first.subdomains + res.subdomains)


def _device(config: VerifyConfig) -> Any:
    """The torch device of the bound computations (:func:`nnaudit.networks.devices.resolve_device`),
    or None for the CPU (the dense route then never imports torch).

    On a GPU the search runs in this process alone (``bab.workers`` 1): forked workers cannot
    use the CUDA context of their parent, and the GPU, not the second core, is the parallelism."""
    from nnaudit.networks.devices import device_name

    name = device_name(config.device)
    if name == "cpu":
        return None
    import torch

    return torch.device(name)


def _inputs(network: Any, prop: Any) -> tuple[Any, Property, str]:
    """The network (loaded when a path), the property (parsed when a path) and its name, checked to fit."""
    from nnaudit.networks import load
    from nnaudit.verify.vnnlib import parse

    net = load(network) if isinstance(network, (str, os.PathLike)) else network
    spec = parse(prop) if isinstance(prop, (str, os.PathLike)) else prop
    if not isinstance(spec, Property):
        raise ConfigError(f"expected a Property or a .vnnlib path, got {type(spec).__name__}")
    if net.source is None:
        raise ConfigError("the network has no source ONNX file; counterexamples must be confirmed by onnxruntime on it")
    spec.check_network(net.input_size, net.output_size, where=str(prop) if not isinstance(prop, Property) else spec.name)
    return net, spec, Path(prop).name if isinstance(prop, (str, os.PathLike)) else spec.name


def _dense_first(net: Any, spec: Property, prop_name: str, config: VerifyConfig, progress: Any,
                 start: float) -> VerifyResult:
    """The dense route's result (:mod:`nnaudit.verify.dense_bab`), within ``config.dense``'s slice of
    the timeout (all of it with :attr:`Route.DENSE`); unknown where the route does not apply."""
    from nnaudit.networks.runtime import reference
    from nnaudit.verify.dense_bab import applies, decide_dense

    dense = replace(config.dense, seed=config.falsify.seed)
    if config.max_memory is not None:  # a queued box: its corners and bounds (float64), open flags, depth
        per_box = 8 * (2 * net.input_size + sum(len(d) for _, r in spec.cases for _, d in r.disjuncts)) + 64
        dense = replace(dense, max_domains=max(1, min(dense.max_domains, config.max_memory // (4 * per_box))))
    budget = config.timeout_s if config.route is Route.DENSE else min(dense.max_s, dense.share * config.timeout_s)
    ort = reference(net)
    chain = applies(net, spec, ort, dense, config.max_memory)
    if chain is None:
        out_phases: dict[str, float] = {"dense": time.monotonic() - start}
        return VerifyResult(Path(net.source).name, prop_name, Verdict.UNKNOWN, time.monotonic() - start, out_phases,
                            message="dense route: does not apply (not a small ReLU chain that onnxruntime confirms)")
    out = decide_dense(chain, spec, ort, tuple(net.input_shape), dense, start + budget, progress)
    return VerifyResult(Path(net.source).name, prop_name, out.status, time.monotonic() - start,
                        {"dense_falsify": out.falsify_s, "dense_search": out.search_s}, out.subdomains,
                        counterexample=out.counterexample, message=out.message)


def _verify(net: Any, spec: Property, prop_name: str, config: VerifyConfig, progress: Any,
            start: float) -> VerifyResult:
    """The torch route: falsification, then branch and bound on each case, by ``start + config.timeout_s``."""
    from nnaudit.networks.lower import lower
    from nnaudit.networks.runtime import reference

    deadline = start + config.timeout_s
    ort = reference(net)
    phases = {"falsify": 0.0, "bab": 0.0}
    stats = {"subdomains": 0, "z3_calls": 0, "z3_time_s": 0.0, "phase_closed": 0}

    def result(verdict: Verdict, cex: Any = None, message: str = "") -> VerifyResult:
        return VerifyResult(Path(net.source).name, prop_name, verdict, time.monotonic() - start, dict(phases),
                            stats["subdomains"], stats["z3_calls"], stats["z3_time_s"], cex, message,
                            stats["phase_closed"])

    t = time.monotonic()
    try:
        cex = _falsify_first(net, ort, spec, config, deadline)
    except OutOfTime:
        return result(Verdict.TIMEOUT, None, "deadline reached during falsification")
    phases["falsify"] = time.monotonic() - t
    if cex is not None:
        return result(Verdict.VIOLATED, cex, "counterexample found by falsification (random sampling and PGD on "
                                             "the property's margin) before the search")
    if time.monotonic() > deadline:  # lowering a conv net takes a second
        return result(Verdict.TIMEOUT, None, "deadline reached")
    try:
        low = lower(net, config.max_memory, config.structured_bytes)
    except MemoryError as exc:  # DenseTooLarge, or an allocation that failed
        return result(Verdict.UNKNOWN, None, f"memory budget: {exc}")
    bab = replace(config.bab, max_memory=config.max_memory)
    import torch

    try:
        verdict, cex, message = _search_cases(low, net, ort, spec, bab, deadline, progress, phases, stats)
    except (OutOfMemoryBudget, MemoryError) as exc:
        return result(Verdict.UNKNOWN, None, f"memory budget: {exc}")
    except torch.OutOfMemoryError as exc:  # the GPU's memory, which --max-memory does not count
        return result(Verdict.UNKNOWN, None, f"GPU memory: {str(exc).splitlines()[0]}")
    return result(verdict, cex, message)


def _search_cases(low: Any, net: Any, ort: Any, spec: Property, bab: Any, deadline: float, progress: Any,
                  phases: dict[str, float], stats: dict[str, Any]) -> tuple[Verdict, Any, str]:
    """Branch and bound on each case in turn: (verdict, counterexample, message); the phase
    times and counts are added to ``phases`` and ``stats``."""
    messages = []
    undecided = None
    for i, (box, region) in enumerate(spec.cases):
        if time.monotonic() > deadline:
            undecided = Verdict.TIMEOUT
            messages.append("deadline reached")
            break
        t = time.monotonic()
        out = run_bab(low, net, ort, box, region, bab, deadline, progress)
        phases["bab"] += time.monotonic() - t
        for key in ("subdomains", "z3_calls", "z3_time_s", "phase_closed"):
            stats[key] += getattr(out, key)
        log.info("case %d/%d: %s after %d sub-domains (%d closed by phase patterns%s)", i + 1, len(spec.cases),
                 out.status.value, out.subdomains, out.phase_closed,
                 f"; bounded by each process of the shared search: {out.shared}" if out.shared else "")
        if out.status is Verdict.VIOLATED:
            return Verdict.VIOLATED, out.counterexample, out.message
        if out.status is not Verdict.HOLDS:
            messages.append(f"case {i}: {out.message}")
            if out.status is Verdict.TIMEOUT:
                undecided = Verdict.TIMEOUT
                break
            undecided = undecided or Verdict.UNKNOWN
    if undecided is not None:
        return undecided, None, "; ".join(messages)
    return Verdict.HOLDS, None, ""


def _falsify_first(net: Any, ort: Any, spec: Property, config: VerifyConfig, deadline: float) -> Counterexample | None:
    """Falsification (random sampling and PGD) on each case before the search: the first
    counterexample onnxruntime confirms, or None."""
    for box, region in spec.cases:
        cex = falsify(net, ort, box, region, config.falsify, deadline)
        if cex is not None:
            return cex
    return None


def counterexample_ok(network_path: Any, prop: Property, x: np.ndarray) -> bool:
    """Independent re-check used by tests and the CLI: onnxruntime on the file puts
    the flat input ``x`` inside some case's box and its output in that case's region.
    ``network_path``: an ONNX path, or a loaded network (a normalised one is run with
    its normalisation prepended)."""
    from nnaudit.networks.runtime import OnnxRuntimeModel, reference

    loaded = not isinstance(network_path, (str, os.PathLike))
    ort = reference(network_path) if loaded else OnnxRuntimeModel(network_path)
    x = np.asarray(x, dtype=np.float32).reshape(1, -1)
    shape = network_path.input_shape if loaded else None
    for box, region in prop.cases:
        if not box.contains_float32(x)[0]:
            continue
        if shape is None:
            from nnaudit.networks import load

            shape = load(network_path).input_shape
        y = ort.run(x.reshape((1,) + tuple(shape)))
        if region.contains(y)[0]:
            return True
    return False
