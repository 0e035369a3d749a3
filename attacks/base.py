"""The attack base class: the shared ``__call__`` around each attack's ``run``.

``Attack.__call__`` does everything that is not the algorithm: it loads the
network, checks inputs/labels/targets against it and the threat model
(clear :class:`~nnaudit.errors.DataError` before any work), converts it to a
torch module on the chosen device (eval mode), splits the data into batches,
skips samples that are already adversarial (or lets the attack keep them as
they are, :meth:`Attack.leaves_adversarial_inputs`), forces the outputs into the
threat model (:func:`~nnaudit.attacks.threat.enforce`), and confirms every
success with onnxruntime on the ORIGINAL ONNX file.  A success the torch
model sees but onnxruntime does not is a conversion mismatch, never counted.

Subclasses set ``name``, ``native_norms``, ``minimal`` and ``config_class``
and implement :meth:`Attack.run` on one batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nnaudit.attacks.criteria import Criterion, adversarial_numpy
from nnaudit.attacks.result import AttackResult
from nnaudit.attacks.threat import Norm, ThreatModel, enforce_with_norms
from nnaudit.errors import ConfigError, DataError, ModelLoadError
from nnaudit.networks.devices import resolve_device  # noqa: F401  (re-exported: attacks' callers import it here)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from nnaudit.networks.ir import Network

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RunConfig:
    """How an attack is run (not what it does)."""

    seed: int = 0  # seeds every random choice; same seed and device -> same result on CPU
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto" (cuda when available)
    batch_size: int = 256  # samples attacked together
    threads: int | None = None  # torch CPU threads during the attack (restored after); None: leave as is


class Attack:
    """Base class; subclasses implement :meth:`run` for one batch."""

    name: ClassVar[str] = "attack"
    native_norms: ClassVar[tuple[Norm, ...]] = (Norm.LINF, Norm.L2)
    minimal: ClassVar[bool] = False  # searches for the smallest perturbation (eps may be inf)
    config_class: ClassVar[type] = type(None)

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        cfg = config if config is not None else self.config_class()
        try:
            self.config = dataclasses.replace(cfg, **overrides) if overrides else cfg
        except TypeError as exc:
            fields = ", ".join(f.name for f in dataclasses.fields(cfg))
            raise ConfigError(f"{self.name}: unknown option in {sorted(overrides)}; options are {fields}") from exc
        self.check_config()

    def check_config(self) -> None:
        """Validate ``self.config``; raise ConfigError naming the option."""

    def leaves_adversarial_inputs(self) -> bool:
        """True when :meth:`run` itself returns inputs the model already gets wrong
        unchanged (so the base class need not spend a forward pass finding them)."""
        return False

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            criterion: Criterion, threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        """Adversarial candidates for ``x`` ``(b, *shape)``; ``model`` returns logits ``(b, K)``."""
        raise NotImplementedError

    def __call__(self, network: Network | str | os.PathLike[str], x: np.ndarray, y: np.ndarray,
                 threat: ThreatModel, *, target: np.ndarray | int | None = None,
                 run: RunConfig = RunConfig(),
                 on_batch: Callable[[int], None] | None = None) -> AttackResult:
        """Attack ``x`` ``(B, *input_shape)`` with labels ``y`` ``(B,)`` within ``threat``.

        ``target`` (an int or ``(B,)`` ints) makes the attack targeted.
        ``on_batch(n)`` is called after each batch with the samples done.
        """
        import torch

        net = as_network(network)
        x, y, targets = check_inputs(net, x, y, target, threat, where=self.name)
        inner = self.inner_threat(threat)
        device = resolve_device(run.device)
        with torch_threads(run.threads), torch.enable_grad():  # gradients even under a caller's no_grad
            return self._attack(net, x, y, targets, threat, inner, run, device, on_batch)

    def _attack(self, net: Network, x: np.ndarray, y: np.ndarray, targets: np.ndarray | None, threat: ThreatModel,
                inner: ThreatModel, run: RunConfig, device: torch.device,
                on_batch: Callable[[int], None] | None) -> AttackResult:
        import torch

        model = self.logits_model(net, device)
        gen = torch.Generator(device=device).manual_seed(int(run.seed))
        start = time.perf_counter()
        chunks = []
        for lo in range(0, len(x), max(1, run.batch_size)):
            sl = slice(lo, lo + run.batch_size)
            chunks.append(self._run_batch(model, x[sl], y[sl], None if targets is None else targets[sl], inner, gen, device))
            if on_batch is not None:
                on_batch(min(len(x), lo + run.batch_size))
        found = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        result = self._finish(net, model, x, found, y, targets, threat, run, device)
        return dataclasses.replace(result, time_s=time.perf_counter() - start)

    def logits_model(self, net: Network, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """The function ``run`` queries: the torch form (a score-based attack may answer with onnxruntime)."""
        return torch_logits(net, device)

    def inner_threat(self, threat: ThreatModel) -> ThreatModel:
        """The threat model ``run`` works in: the user's, or the attack's own norm
        (unbounded) for a minimal-norm attack whose norm differs; its output is
        then projected into the user's ball."""
        if threat.norm in self.native_norms:
            if not threat.bounded and not self.minimal:
                raise ConfigError(f"{self.name}: expected a finite eps, got {threat.eps} (only minimal-norm attacks accept inf)")
            return threat
        if not self.minimal:
            norms = ", ".join(n.value for n in self.native_norms)
            raise ConfigError(f"{self.name}: supports the norms {norms}, got {threat.norm.value}")
        return dataclasses.replace(threat, norm=self.native_norms[0], eps=float("inf"))

    def _run_batch(self, model: Callable, x: np.ndarray, y: np.ndarray, t: np.ndarray | None,
                   threat: ThreatModel, gen: torch.Generator, device: torch.device) -> np.ndarray:
        import torch

        xb = torch.as_tensor(x, device=device)
        crit = Criterion(torch.as_tensor(y, device=device), None if t is None else torch.as_tensor(t, device=device))
        if self.leaves_adversarial_inputs():
            return self.run(model, xb, crit, threat, gen).detach().to(xb.dtype).cpu().numpy()
        with torch.no_grad():
            todo = torch.nonzero(~crit.is_adversarial(model(xb)))[:, 0]
        out = xb.clone()
        if len(todo):
            adv = self.run(model, xb[todo], crit.subset(todo), threat, gen)
            out[todo] = adv.detach().to(out.dtype)
        return out.cpu().numpy()

    def _finish(self, net: Network, model: Callable, x: np.ndarray, found: np.ndarray, y: np.ndarray,
                targets: np.ndarray | None, threat: ThreatModel, run: RunConfig, device: torch.device) -> AttackResult:
        """The result for the attack's outputs ``found``: forced into the threat model, judged by onnxruntime."""
        import torch

        x_adv, norms = enforce_with_norms(x, found, threat)

        with torch.no_grad():
            logits = [model(torch.as_tensor(x_adv[i:i + 1024], device=device)).cpu().numpy() for i in range(0, len(x_adv), 1024)]
        model_success = adversarial_numpy(np.concatenate(logits), y, targets)
        ort = onnx_reference(net)  # the judge: onnxruntime on the original file, always
        clean, adv = ort.run(x), ort.run(x_adv)
        success = adversarial_numpy(adv, y, targets)
        mismatch = model_success & ~success
        if mismatch.any():
            log.warning("%s: %d success(es) of the torch model not confirmed by onnxruntime (conversion mismatch)",
                        self.name, int(mismatch.sum()))
        return AttackResult(
            attack=self.name, threat=threat, x=x, x_adv=x_adv, labels=y, targets=targets,
            success=success, model_success=model_success, mismatch=mismatch,
            norms=norms, logits_clean=clean, logits_adv=adv,
            device=str(device), seed=run.seed, settings=dataclasses.asdict(self.config),
        )


# -- shared helpers -----------------------------------------------------------

def check_auto_switches(attack: str, config: Any, *options: str) -> None:
    """ConfigError naming the first of ``options`` of ``config`` that is not True, False or None (auto)."""
    for option in options:
        value = getattr(config, option)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{attack}: expected {option} true, false or null (auto: on CUDA), got {value!r}")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (None: unchanged), then restore."""
    import torch

    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError(f"threads: expected a number >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def as_network(network: Network | str | os.PathLike[str]) -> Network:
    """A loaded Network (an ONNX path is loaded)."""
    from nnaudit.networks.ir import Network
    from nnaudit.networks.loader import load

    if isinstance(network, Network):
        return network
    if isinstance(network, (str, os.PathLike)):
        return load(network)
    raise TypeError(f"expected a Network or an ONNX path, got {type(network).__name__}")


def torch_logits(net: Network, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network as a float32 torch function ``(b, *input_shape) -> (b, K)`` (cached per device):
    a :class:`~nnaudit.networks.torch_chain.DenseChain` where the network is a chain of dense
    layers and ReLUs, or a small sequence of affine layers and ReLUs lowered to one, else a
    :class:`~nnaudit.attacks.conv_chain.ConvChain` where it is a chain of convolutions, dense
    layers and ReLUs (attacks then take either's hand-written gradients), else the IR's module."""
    from nnaudit.attacks.conv_chain import ConvChain
    from nnaudit.networks.torch_chain import DenseChain

    key = f"attack-logits:{device}"
    if key not in net._torch_cache:
        chain = DenseChain.of(net, device) or ConvChain.of(net, device)
        if chain is not None:
            net._torch_cache[key] = chain
            return chain
        module = net.to_torch(str(device))
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        flat = len(net.output_shape) == 1  # already (b, K): no reshape (one autograd node less per pass)
        net._torch_cache[key] = module if flat else (lambda t: module(t).reshape(t.shape[0], -1))
    return net._torch_cache[key]


def logits_and_vjp(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
                   ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Logits ``(B, K)`` of ``x`` and a function from a seed ``(B, K)`` to the gradient of
    ``sum(seed * logits)`` w.r.t. ``x``: by hand for a dense or conv chain (no autograd graph), else
    by autograd.  The logits carry no graph either way (detached)."""
    import torch

    from nnaudit.attacks.conv_chain import ConvChain
    from nnaudit.networks.torch_chain import DenseChain

    if isinstance(model, (DenseChain, ConvChain)):
        logits, tape = model.with_tape(x.detach())
        return logits, lambda seed: model.input_grad(tape, seed)
    x = x.detach().requires_grad_(True)
    logits = model(x)
    return logits.detach(), lambda seed: torch.autograd.grad(logits, x, seed)[0]


def onnx_reference(net: Network) -> Any:
    """onnxruntime session on the network's original ONNX file (with its normalisation, if any, prepended)."""
    if net.source is None:
        raise ModelLoadError("attacks confirm successes on the original ONNX file, but this network has no source file")
    session = net._torch_cache.get("onnx-reference")  # per network object: no path resolution per call
    if session is None:
        from nnaudit.networks.runtime import reference

        session = net._torch_cache["onnx-reference"] = (
            reference(net) if net.reference_onnx is not None else _session(str(Path(net.source).resolve()), net.sha256))
    return session


@functools.lru_cache(maxsize=8)
def _session(path: str, sha256: str) -> Any:
    from nnaudit.networks.runtime import OnnxRuntimeModel

    return OnnxRuntimeModel(path)


def check_inputs(net: Network, x: np.ndarray, y: np.ndarray, target: np.ndarray | int | None,
                 threat: ThreatModel, *, where: str = "attack") -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and convert inputs: x float32 ``(B, *input_shape)``, y and targets int64 ``(B,)``."""
    shape = tuple(net.input_shape)
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0 or x.dtype.kind not in "biuf":
        raise DataError(f"{where}: expected at least one numeric input shaped (B, *{shape}), got {x.dtype} {x.shape}")
    if x.shape[1:] != shape:
        if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
            raise DataError(f"{where}: inputs have sample shape {x.shape[1:]} but {net.source} expects {shape}")
        x = x.reshape((len(x),) + shape)
    x = x.astype(np.float32)
    _check_values(x, threat, where, normalised=net.normalisation is not None)
    y, targets = _labels_and_targets(net, len(x), y, target, where)
    return x, y, targets


def _check_values(x: np.ndarray, threat: ThreatModel, where: str, *, normalised: bool = False) -> None:
    """DataError naming the first sample of ``x`` with NaN/Inf or values outside the valid range."""
    flat = x.reshape(len(x), -1)
    if flat.size == 0 or (float(flat.min()) >= threat.low and float(flat.max()) <= threat.high):
        return  # the common case, in two passes (NaN and Inf fail it too)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        raise DataError(f"{where}: input sample {int(np.argmax(bad))} has NaN or Inf ({int(bad.sum())} such samples)")
    out = (flat < threat.low).any(axis=1) | (flat > threat.high).any(axis=1)
    if out.any():
        i = int(np.argmax(out))
        raise DataError(f"{where}: input sample {i} has values in [{flat[i].min():g}, {flat[i].max():g}], outside the valid "
                        f"range [{threat.low:g}, {threat.high:g}] ({int(out.sum())} such samples); set the valid range "
                        "(bounds= in Python, --low/--high on the command line)"
                        + ("; the model normalises its input (--mean/--std), so give pixels, not normalised values"
                           if normalised else ""))


def _labels_and_targets(net: Network, n: int, y: np.ndarray, target: np.ndarray | int | None,
                        where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels and targets as int64 ``(n,)`` classes of the network (targets None when untargeted)."""
    k = net.output_size
    y = _classes(y, n, k, "labels", where)
    targets = None
    if target is not None:
        targets = _classes(np.broadcast_to(np.asarray(target), (n,)), n, k, "targets", where)
        same = targets == y
        if same.any():
            raise DataError(f"{where}: target equals the label for sample {int(np.argmax(same))}; expected a different class")
    return y, targets


def _classes(v: Any, n: int, k: int, what: str, where: str) -> np.ndarray:
    arr = np.asarray(v)
    if arr.shape != (n,):
        raise DataError(f"{where}: expected {what} shaped ({n},), got {arr.shape}")
    if arr.dtype.kind not in "biu" and not (arr.dtype.kind == "f" and np.all(np.floor(arr) == arr)):
        raise DataError(f"{where}: expected integer {what}, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where}: {what[:-1]} {int(arr[i])} at index {i} is outside [0, {k}) for a network with {k} outputs")
    return arr
