"""Square attack: score-based black box (L-infinity and L2), on torch or onnxruntime.

Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search", ECCV 2020.

Random search on the margin loss ``z_y - max_{j != y} z_j`` (targeted:
``max_{j != t} z_j - z_t``): each query changes one random square window of
the current best point and keeps the change when the margin drops.  L-inf
starts from vertical stripes of ``+-eps`` and sets a window to ``x +- eps``
per channel; L2 starts from a grid of pseudo-Gaussian blobs and moves the
mass of a second window into the first (the paper's Algorithm 3).  The window
side follows the paper's schedule (``p_init`` halved at queries 10, 50, 200,
500, 1000, 2000, 4000, 6000, 8000, on the 10,000-query scale).  Samples
leave the batch at their first adversarial query.

It needs only logits: ``backend="onnxruntime"`` queries the ORIGINAL ONNX
file through onnxruntime (no torch form needed), ``"auto"`` does so when the
model has no torch form.  Flat inputs of ``r * r`` values are searched as
``r x r`` images, other flat inputs as one row.  On the CPU, L-inf queries to a
dense chain with a large first layer are answered from the window's inputs
(:mod:`nnaudit.attacks.square_dense`): the same points, in a fraction of the time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import torch

from nnaudit.attacks.base import Attack, onnx_reference, torch_logits
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.attacks.square_dense import WindowQueries, windows_pay
from nnaudit.errors import ConfigError, NnauditError
from nnaudit.networks.torch_chain import DenseChain

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.networks.ir import Network

log = logging.getLogger(__name__)

#: (last query of the phase on the 10,000-query scale, divisor of p_init)
_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


class Backend(str, Enum):
    """Where Square's queries are answered."""

    AUTO = "auto"  # torch when the model converts, else onnxruntime
    TORCH = "torch"  # the torch form (fast; the default when it exists)
    ONNXRUNTIME = "onnxruntime"  # onnxruntime on the original file (any model onnxruntime runs)


@dataclass(frozen=True)
class SquareConfig:
    queries: int = 5000  # queries per sample (AutoAttack's budget)
    p_init: float = 0.8  # initial fraction of the input changed per query
    restarts: int = 1  # runs, each on the samples not broken yet
    backend: Backend = Backend.AUTO  # torch, onnxruntime, or auto
    rescale_schedule: bool = False  # fit the window schedule to `queries` instead of 10,000


def p_selection(p_init: float, it: int, queries: int, rescale: bool) -> float:
    """The fraction of the input a query changes at query ``it``."""
    if rescale:
        it = int(it / queries * 10000)
    for last, div in _SCHEDULE:
        if it <= last:
            return p_init / div
    return p_init / 512


class Square(Attack):
    """The Square attack (score-based; needs logits only)."""

    name = "square"
    native_norms = (Norm.LINF, Norm.L2)
    config_class = SquareConfig

    def check_config(self) -> None:
        c = self.config
        if c.queries < 1 or c.restarts < 1 or not 0.0 < c.p_init <= 1.0:
            raise ConfigError(f"{self.name}: expected queries >= 1, restarts >= 1 and 0 < p_init <= 1, "
                              f"got {c.queries}, {c.restarts}, {c.p_init}")
        try:
            Backend(c.backend)
        except ValueError:
            raise ConfigError(f"{self.name}: expected backend auto, torch or onnxruntime, got {c.backend!r}") from None

    def logits_model(self, net: Network, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        backend = Backend(self.config.backend)
        if backend is Backend.ONNXRUNTIME:
            return onnx_logits(net, device)
        try:
            return torch_logits(net, device)
        except NnauditError as exc:
            if backend is Backend.TORCH:
                raise
            log.info("square: no torch form (%s); querying onnxruntime", exc)
            return onnx_logits(net, device)

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, criterion: Criterion,
            threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
        shape = image_shape(tuple(x.shape[1:]))
        xi = x.reshape((len(x),) + shape)
        out = xi.clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        flat_model = lambda t: model(t.reshape((len(t),) + tuple(x.shape[1:])))  # noqa: E731
        windowed = (isinstance(model, DenseChain) and threat.norm is Norm.LINF and x.device.type == "cpu"
                    and windows_pay(model))  # on a GPU the full product is cheap beside a query's bookkeeping
        for _ in range(self.config.restarts):
            idx = torch.nonzero(~done)[:, 0]
            if len(idx) == 0:
                break
            if windowed:
                adv, ok = self._windowed_run(model, xi[idx], criterion.subset(idx), threat, gen)
            else:
                adv, ok = self._single_run(flat_model, xi[idx], criterion.subset(idx), threat, gen)
            out[idx], done[idx] = adv, ok
        return out.reshape(x.shape)

    def _single_run(self, model: Callable, x: torch.Tensor, crit: Criterion, threat: ThreatModel,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random search on ``x`` ``(b, c, h, w)``; returns (best point, adversarial mask).

        The active rows (and their criterion) are only re-selected when a row succeeds:
        a query costs one forward pass and a few element-wise operations."""
        linf = threat.norm is Norm.LINF
        propose = _propose_linf if linf else _propose_l2
        best = _init_linf(x, threat, gen) if linf else _init_l2(x, threat, gen)
        with torch.no_grad():
            logits = model(best)
            margin, found = crit.margin(logits), crit.is_adversarial(logits)
            idx = torch.nonzero(~found)[:, 0]
            sub, xs, bs, ms = crit.subset(idx), x[idx], best[idx], margin[idx]
            for it in range(self.config.queries - 1):
                if len(idx) == 0:
                    break
                p = p_selection(self.config.p_init, it, self.config.queries, self.config.rescale_schedule)
                new = propose(xs, bs, p, threat, gen)
                logits = model(new)
                m, adv = sub.margin(logits), sub.is_adversarial(logits)
                better = (m < ms) | adv
                bs = torch.where(better.reshape(-1, 1, 1, 1), new, bs)
                ms = torch.where(better, m, ms)
                if bool(adv.any()):  # write back, drop the broken rows
                    best[idx], margin[idx], found[idx] = bs, ms, adv
                    keep = ~adv
                    idx, sub, xs, bs, ms = idx[keep], sub.subset(keep), xs[keep], bs[keep], ms[keep]
            best[idx], margin[idx] = bs, ms
        return best, found

    def _windowed_run(self, chain: DenseChain, x: torch.Tensor, crit: Criterion, threat: ThreatModel,
                      gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_single_run` for L-inf on a dense chain: the same random draws and points, each
        query answered from the window's inputs (:class:`~nnaudit.attacks.square_dense.WindowQueries`)."""
        b, c, h, w = x.shape
        best = _init_linf(x, threat, gen)
        with torch.no_grad():
            logits = chain(best.reshape(b, -1))
            margin, found = crit.margin(logits), crit.is_adversarial(logits)
            best, margin = best.reshape(b, -1), margin.clone()
            idx = torch.nonzero(~found)[:, 0]
            sub, xs, ms = crit.subset(idx), x[idx].reshape(len(idx), -1), margin[idx]
            search, offsets = WindowQueries(chain, best[idx].clone()), {}
            for it in range(self.config.queries - 1):
                if len(idx) == 0:
                    break
                p = p_selection(self.config.p_init, it, self.config.queries, self.config.rescale_schedule)
                where, values = _window_linf(xs, (c, h, w), p, threat, gen, offsets)
                logits, z1, old = search.query(where, values)
                m, adv = sub.margin(logits), sub.is_adversarial(logits)
                better = (m < ms) | adv
                search.accept(better, where, values, old, z1)
                ms = torch.where(better, m, ms)
                if bool(adv.any()):  # write back, drop the broken rows
                    best[idx], margin[idx], found[idx] = search.best, ms, adv
                    keep = ~adv
                    idx, sub, xs, ms = idx[keep], sub.subset(keep), xs[keep], ms[keep]
                    search.keep(keep)
            best[idx], margin[idx] = search.best, ms
        return best.reshape(x.shape), found


def image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(c, h, w)`` the search sees, after dropping axes of size 1: CHW as is, HW as one channel,
    ``r*r`` values as ``r x r`` (MNIST given as ``(1, 784, 1)``), else ``1 x n``."""
    dims = tuple(d for d in shape if d != 1)
    if len(dims) == 3:
        return dims  # type: ignore[return-value]
    if len(dims) == 2:
        return (1, dims[0], dims[1])
    n = math.prod(shape)
    r = math.isqrt(n)
    return (1, r, r) if r * r == n else (1, 1, n)


def onnx_logits(net: Network, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ORIGINAL ONNX file as a logits function on torch tensors (queries only; no gradients)."""
    session = onnx_reference(net)

    def logits(t: torch.Tensor) -> torch.Tensor:
        out = session.run(t.detach().cpu().numpy())
        return torch.as_tensor(out, dtype=torch.float32, device=device)

    return logits


def _rand_sign(shape: tuple[int, ...], x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=gen, device=x.device).to(x.dtype).mul_(2).sub_(1)


def _rand_int(high: int, n: int, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``n`` integers in ``[0, high]``."""
    return torch.randint(0, high + 1, (n,), generator=gen, device=x.device)


def _window(n: int, h: int, w: int, sh: int, sw: int, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random ``sh x sw`` window per sample as a bool mask ``(n, 1, h, w)``."""
    top, left = _rand_int(h - sh, n, x, gen), _rand_int(w - sw, n, x, gen)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + sh)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + sw)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _init_linf(x: torch.Tensor, threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
    b, c, _, w = x.shape
    return (x + threat.eps * _rand_sign((b, c, 1, w), x, gen)).clamp(threat.low, threat.high)


def _propose_linf(x: torch.Tensor, best: torch.Tensor, p: float, threat: ThreatModel,
                  gen: torch.Generator) -> torch.Tensor:
    """``best`` with one window per sample set to ``x +- eps`` (one sign per channel)."""
    b, c, h, w = x.shape
    sh, sw = _linf_side(p, h, w)
    mask = _window(b, h, w, sh, sw, x, gen)
    vertex = (x + threat.eps * _rand_sign((b, c, 1, 1), x, gen)).clamp(threat.low, threat.high)
    return torch.where(mask, vertex, best)


def _linf_side(p: float, h: int, w: int) -> tuple[int, int]:
    """The window ``(rows, cols)`` that changes the fraction ``p`` of an ``h x w`` image."""
    if h == 1:
        return 1, min(max(int(round(p * w)), 1), w)
    s = min(max(int(round(math.sqrt(p * h * w))), 1), h - 1 if h > 1 else 1, w)
    return s, s


def _window_linf(x: torch.Tensor, shape: tuple[int, int, int], p: float, threat: ThreatModel,
                 gen: torch.Generator, offsets: dict[tuple[int, int], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_propose_linf` on flat rows ``x`` ``(b, c*h*w)`` as (flat positions ``(b, k)``, new values
    ``(b, k)``) of the window: the same random draws, in the same order, and the same values.
    ``offsets`` caches each window size's positions relative to its corner."""
    b = len(x)
    c, h, w = shape
    sh, sw = _linf_side(p, h, w)
    top, left = _rand_int(h - sh, b, x, gen), _rand_int(w - sw, b, x, gen)
    sign = _rand_sign((b, c, 1), x, gen)
    if (sh, sw) not in offsets:
        rows, cols = torch.arange(sh, device=x.device), torch.arange(sw, device=x.device)
        chans = torch.arange(c, device=x.device)
        offsets[sh, sw] = (chans[:, None, None] * (h * w) + rows[None, :, None] * w + cols[None, None, :]).reshape(1, -1)
    where = top.mul_(w).add_(left)[:, None] + offsets[sh, sw]
    signs = sign.expand(b, c, sh * sw).reshape(b, -1)
    values = x.gather(1, where).add_(signs, alpha=threat.eps).clamp_(threat.low, threat.high)
    return where, values


def _blob(sh: int, sw: int, x: torch.Tensor) -> torch.Tensor:
    """The reference's pseudo-Gaussian ``sh x sw`` pattern: nested rectangles in two halves of
    opposite sign (split along the rows, or the columns when there is one row), unit L2 norm."""
    def rectangles(a: int, b: int) -> torch.Tensor:
        d = torch.zeros((a, b), dtype=x.dtype, device=x.device)
        ca, cb = a // 2 + 1, b // 2 + 1
        ra, rb = ca - 1, cb - 1
        for k in range(max(ca, cb)):
            d[max(ra, 0):min(ra + 2 * k + 1, a), max(rb, 0):min(rb + 2 * k + 1, b)] += 1.0 / (k + 1) ** 2
            ra, rb = ra - 1, rb - 1
        return d / d.norm().clamp_min(1e-12)

    if sh >= 2:
        d = torch.cat((rectangles(sh // 2, sw), -rectangles(sh - sh // 2, sw)))
    elif sw >= 2:
        d = torch.cat((rectangles(1, sw // 2), -rectangles(1, sw - sw // 2)), dim=1)
    else:
        d = torch.ones((sh, sw), dtype=x.dtype, device=x.device)
    return d / d.norm().clamp_min(1e-12)


def _init_l2(x: torch.Tensor, threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
    b, c, h, w = x.shape
    sh, sw = (max(h // 5, 1), max(w // 5, 1)) if h >= 3 else (h, max(w // 5, 1))
    delta = torch.zeros_like(x)
    blob = _blob(sh, sw, x)
    for top in range((h - sh * (h // sh)) // 2, h - sh + 1, sh):
        for left in range((w - sw * (w // sw)) // 2, w - sw + 1, sw):
            delta[:, :, top:top + sh, left:left + sw] += blob * _rand_sign((b, c, 1, 1), x, gen)
    norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, 1, 1, 1)
    return (x + delta / norm * threat.eps).clamp(threat.low, threat.high)


def _propose_l2(x: torch.Tensor, best: torch.Tensor, p: float, threat: ThreatModel,
                gen: torch.Generator) -> torch.Tensor:
    """Algorithm 3: move the perturbation mass of two windows into a new blob in the first."""
    b, c, h, w = x.shape
    if h >= 3:
        s = max(int(round(math.sqrt(p * h * w))), 3)
        sh = sw = min(s + (1 - s % 2), h - (1 - h % 2), w - (1 - w % 2))  # odd, inside the image
    else:  # a flat input: windows are runs of values along the one axis
        sh, sw = h, min(max(int(round(p * w)), 2), w)
    delta = best - x
    m1, m2 = _window(b, h, w, sh, sw, x, gen), _window(b, h, w, sh, sw, x, gen)
    both = m1 | m2
    norm_image = delta.flatten(1).norm(dim=1)
    norm_windows = (delta * both).flatten(1).norm(dim=1)
    old = delta[m1.expand_as(delta)].reshape(b, c, sh, sw)
    old = old / old.flatten(2).norm(dim=2).clamp_min(1e-12).reshape(b, c, 1, 1)
    blob = _blob(sh, sw, x)
    if sh == sw:
        blob = torch.where(torch.rand((b, 1, 1, 1), generator=gen, device=x.device) > 0.5, blob, blob.t())
    new = blob * _rand_sign((b, c, 1, 1), x, gen) + old
    room = ((threat.eps ** 2 - norm_image ** 2).clamp_min(0.0) / c + norm_windows ** 2).sqrt()
    new = new / new.flatten(2).norm(dim=2).clamp_min(1e-12).reshape(b, c, 1, 1) * room.reshape(b, 1, 1, 1)
    delta = delta.masked_fill(m2, 0.0)
    delta[m1.expand_as(delta)] = new.flatten()
    scale = threat.eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return (x + delta * scale.reshape(b, 1, 1, 1)).clamp(threat.low, threat.high)
