"""The DANN trainer (Ganin et al., JMLR 2016, algorithm 1), with a source-only
baseline trained alongside on the same batches, schedule and budget.

Each SGD step takes ``batch_size / 2`` labelled source samples and as many
unlabelled target samples.  The DANN loss is the label cross-entropy on the
source half plus ``domain_weight`` times the domain cross-entropy on the whole
batch; the gradient reversal layer (scale ``lambda_p``) turns the latter into
an adversarial signal for the feature extractor.  The baseline (a copy of the
same initial feature extractor and label predictor) minimises only the label
loss on the same source half.

After every epoch the trainer scores both models, writes a checkpoint
(atomically) and calls ``on_epoch``; ``resume=True`` continues an
interrupted run from its checkpoint.  ``config.select`` may keep an earlier
epoch's weights, chosen without target labels (:mod:`.selection`).  The batch order of epoch ``e`` is drawn
from ``seed`` and ``e`` alone, so a resumed CPU run equals an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnaudit.adaptation.config import DannConfig
from nnaudit.adaptation.data import DomainData, Split
from nnaudit.adaptation.metrics import accuracy, prediction_entropy, proxy_a_distance
from nnaudit.adaptation.models import DANN, SourceOnly, preset_parts
from nnaudit.adaptation.selection import Selection, Selector
from nnaudit.adaptation.schedules import adaptation_factor, learning_rate, progress
from nnaudit.errors import ConfigError, DataError
from nnaudit.networks import devices

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "nnaudit-dann-checkpoint"
#: config fields that may differ between an interrupted run and its resumption
RESUMABLE_CHANGES = ("device", "amp", "cpu_threads")

Parts = tuple[nn.Module, nn.Module, nn.Module]


@dataclass(frozen=True)
class DannRun:
    """A finished (or resumed-and-finished) run: both models, the per-epoch
    records and the final comparison, in the shapes of the ``adapt`` result body."""

    config: DannConfig
    task: str
    device: str
    dann: DANN
    source_only: SourceOnly | None
    epochs: list[dict[str, Any]]
    final: dict[str, dict[str, float]]
    input_shape: tuple[int, ...]
    num_classes: int
    time_s: float                 # wall time of the epochs run in this process
    resumed_from: int             # epochs taken from a checkpoint (0: fresh run)

    @property
    def time_per_epoch_s(self) -> float | None:
        """Mean wall time of one epoch (training, scoring, checkpoint) in this process;
        None when every epoch came from a checkpoint."""
        ran = [e["time_s"] for e in self.epochs[self.resumed_from:]]
        return float(np.mean(ran)) if ran else None

    def logits(self, x: np.ndarray, *, model: str = "dann") -> np.ndarray:
        """Class logits (N, C) of ``model`` ("dann" or "source_only") on x (N, *input_shape)."""
        return _forward(self._model(model), x, self.device)[0]

    def features(self, x: np.ndarray, *, model: str = "dann") -> np.ndarray:
        """Learned features (N, F) of ``model`` on x (N, *input_shape)."""
        return _forward(self._model(model), x, self.device)[1]

    def _model(self, name: str) -> nn.Module:
        if name == "dann":
            return self.dann
        if name == "source_only" and self.source_only is not None:
            return self.source_only
        raise ConfigError(f"unknown or untrained model {name!r}; expected 'dann' or 'source_only'")


def train_dann(data: DomainData, config: DannConfig = DannConfig(), *,
               parts: Parts | Callable[[tuple[int, ...], int], Parts] | None = None,
               checkpoint: str | os.PathLike[str] | None = None, resume: bool = False,
               on_epoch: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None) -> DannRun:
    """Train DANN (and the source-only baseline) on ``data``.

    ``parts`` is ``(feature_extractor, label_predictor, domain_classifier)``
    (the domain classifier maps features to 2 logits), or a factory
    ``(input_shape, num_classes) -> parts``; by default the preset of
    ``config.preset``.  With ``checkpoint`` a checkpoint is written after each
    epoch; ``resume=True`` continues from it when it exists.
    ``on_epoch(record, history)`` gets each epoch's record as it is finished
    and all records so far (including those restored from the checkpoint).
    """
    device = devices.device_name(config.device)
    _check_data(data)
    threads = torch.get_num_threads()
    if config.cpu_threads and device == "cpu":
        torch.set_num_threads(config.cpu_threads)
    try:
        return _train(data, config, device, parts, checkpoint, resume, on_epoch)
    finally:
        torch.set_num_threads(threads)


def _train(data: DomainData, config: DannConfig, device: str, parts: Any, checkpoint: Any, resume: bool,
           on_epoch: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None) -> DannRun:
    """The body of :func:`train_dann` once the device and threads are set."""
    dann, base = _build_models(data, config, parts)
    dann.to(device)
    if base is not None:
        base.to(device)
    state = _TrainState(dann, base, config, device)
    history: list[dict[str, Any]] = []
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt is not None and ckpt.is_file():
        history = state.load(ckpt, data)
        log.info("%s: resuming after epoch %d", ckpt, len(history))
    resumed_from = len(history)
    selector = state.selector
    tensors = _Tensors(data, device)
    start = time.perf_counter()
    for epoch in range(resumed_from, config.epochs):
        t0 = time.perf_counter()
        losses = state.train_epoch(epoch, tensors)
        record = _epoch_record(epoch, state, data, losses)
        record["time_s"] = round(time.perf_counter() - t0, 4)
        history.append(record)
        selector.update(record, dann, base)
        if ckpt is not None:
            state.save(ckpt, data, history)
        if on_epoch is not None:
            on_epoch(record, list(history))
    elapsed = time.perf_counter() - start
    chosen = selector.restore(dann, base)
    final = _final(dann, base, data, config, device)
    for name, epoch in chosen.items():
        final[name]["selected_epoch"] = epoch
    return DannRun(config, data.name, device, dann.eval(), base.eval() if base is not None else None,
                   history, final, data.input_shape, data.num_classes, elapsed, resumed_from)


def _check_data(data: DomainData) -> None:
    if len(data.source) == 0 or len(data.target) == 0:
        raise DataError(f"{data.name}: need at least one source and one target sample, "
                        f"got {len(data.source)} and {len(data.target)}")
    if data.source.y is None:
        raise DataError(f"{data.name}: the source domain needs labels 'y'")


def _build_models(data: DomainData, config: DannConfig, parts: Any) -> tuple[DANN, SourceOnly | None]:
    """DANN and (when asked) a source-only copy with the same initial weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if parts is None:
            parts = preset_parts(data.input_shape, data.num_classes, config)
        elif callable(parts):
            parts = parts(data.input_shape, data.num_classes)
    if not (isinstance(parts, tuple) and len(parts) == 3 and all(isinstance(p, nn.Module) for p in parts)):
        raise ConfigError("parts: expected (feature_extractor, label_predictor, domain_classifier) nn.Modules")
    features, label_head, domain_head = parts
    base = SourceOnly(copy.deepcopy(features), copy.deepcopy(label_head)) if config.source_only else None
    return DANN(features, label_head, domain_head), base


class _Tensors:
    """Training arrays as float32/int64 tensors on the device."""

    def __init__(self, data: DomainData, device: str) -> None:
        self.sx = torch.as_tensor(data.source.x, dtype=torch.float32, device=device)
        self.sy = torch.as_tensor(data.source.y, dtype=torch.int64, device=device)
        self.tx = torch.as_tensor(data.target.x, dtype=torch.float32, device=device)


def _index_stream(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` indices into range(n): concatenated fresh permutations."""
    reps = math.ceil(length / n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:length]


class _TrainState:
    """Models, optimisers and AMP scalers of one run; one epoch at a time."""

    def __init__(self, dann: DANN, base: SourceOnly | None, config: DannConfig, device: str) -> None:
        self.dann, self.base, self.config, self.device = dann, base, config, device
        self.amp = bool(config.amp and device.startswith("cuda"))
        opt = lambda m: torch.optim.SGD(m.parameters(), lr=config.lr0, momentum=config.momentum,  # noqa: E731
                                        weight_decay=config.weight_decay)
        self.opt = opt(dann)
        self.base_opt = opt(base) if base is not None else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.base_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ce = nn.CrossEntropyLoss()
        self.lam = 0.0
        self.lr = config.lr0
        self.selector = Selector(config.select, config.epochs)

    def steps_per_epoch(self, t: _Tensors) -> int:
        half = self.config.batch_size // 2
        return math.ceil(max(len(t.sx), len(t.tx)) / half)

    def train_epoch(self, epoch: int, t: _Tensors) -> dict[str, float]:
        """One pass; returns the mean label/domain losses of DANN and the baseline."""
        cfg, half = self.config, self.config.batch_size // 2
        steps = self.steps_per_epoch(t)
        rng = np.random.default_rng([cfg.seed, epoch])
        s_idx = _index_stream(len(t.sx), steps * half, rng).reshape(steps, half)
        t_idx = _index_stream(len(t.tx), steps * half, rng).reshape(steps, half)
        self.dann.train()
        if self.base is not None:
            self.base.train()
        sums = np.zeros(3)
        for i in range(steps):
            self._set_schedule(progress(epoch * steps + i, cfg.epochs * steps))
            si, ti = torch.as_tensor(s_idx[i], device=self.device), torch.as_tensor(t_idx[i], device=self.device)
            xs, ys, xt = t.sx[si], t.sy[si], t.tx[ti]
            sums[:2] += self._dann_step(xs, ys, xt)
            if self.base is not None:
                sums[2] += self._base_step(xs, ys)
        sums /= steps
        return {"label_loss": float(sums[0]), "domain_loss": float(sums[1]), "base_label_loss": float(sums[2])}

    def _set_schedule(self, p: float) -> None:
        cfg = self.config
        self.lam = cfg.fixed_lambda if cfg.fixed_lambda is not None else cfg.lambda_max * adaptation_factor(p, gamma=cfg.gamma)
        self.lr = learning_rate(p, mu0=cfg.lr0, alpha=cfg.lr_alpha, beta=cfg.lr_beta)
        self.dann.grl.lambda_ = self.lam
        for opt in (self.opt, self.base_opt):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = self.lr

    def _dann_step(self, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor) -> tuple[float, float]:
        n = len(xs)
        domain = torch.cat([torch.zeros(n, dtype=torch.int64), torch.ones(len(xt), dtype=torch.int64)]).to(self.device)
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            if self.config.domain_bn:
                cls, dom = self.dann.forward_domains(xs, xt)
            else:
                cls, dom, _ = self.dann(torch.cat([xs, xt]))
            label_loss = self.ce(cls[:n].float(), ys)
            domain_loss = self.ce(dom.float(), domain)
            loss = label_loss + self.config.domain_weight * domain_loss
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(label_loss.detach()), float(domain_loss.detach())

    def _base_step(self, xs: torch.Tensor, ys: torch.Tensor) -> float:
        assert self.base is not None and self.base_opt is not None
        self.base_opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            loss = self.ce(self.base(xs)[0].float(), ys)
        self.base_scaler.scale(loss).backward()
        self.base_scaler.step(self.base_opt)
        self.base_scaler.update()
        return float(loss.detach())

    # ------------------------------------------------------------ checkpoints

    def save(self, path: Path, data: DomainData, history: list[dict[str, Any]]) -> None:
        """Write the state after ``len(history)`` epochs atomically to ``path``."""
        blob = {
            "format": CHECKPOINT_FORMAT, "version": 1, "task": data.name, "data": data.fingerprint(),
            "config": self.config.to_dict(), "epochs": history,
            "dann": self.dann.state_dict(), "opt": self.opt.state_dict(),
            "base": self.base.state_dict() if self.base is not None else None,
            "base_opt": self.base_opt.state_dict() if self.base_opt is not None else None,
            # AMP loss scales (empty without AMP), so a resumed AMP run does not re-learn its scale
            "scalers": [self.scaler.state_dict(), self.base_scaler.state_dict()],
            "selected": self.selector.state_dict(),  # the best weights so far under config.select
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(blob, tmp)
        os.replace(tmp, path)

    def load(self, path: Path, data: DomainData) -> list[dict[str, Any]]:
        """Restore from ``path``; returns the epoch records it holds."""
        try:
            blob = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # torch raises several unrelated types for a bad file
            raise DataError(f"{path}: not a readable DANN checkpoint ({type(exc).__name__}: {exc})") from exc
        if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
            raise DataError(f"{path}: not an nnaudit DANN checkpoint")
        mine, theirs = self.config.to_dict(), blob["config"]
        differ = sorted(k for k in set(mine) | set(theirs)
                        if k not in RESUMABLE_CHANGES and mine.get(k) != theirs.get(k))
        if differ:
            got = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs now {mine.get(k)!r}" for k in differ)
            raise ConfigError(f"{path}: cannot resume, the settings differ ({got})")
        if blob["data"] != data.fingerprint() or blob["task"] != data.name:
            raise DataError(f"{path}: cannot resume, the checkpoint was written for different data "
                            f"(task {blob['task']!r}); remove it or pass the same data")
        self.dann.load_state_dict(blob["dann"])
        self.opt.load_state_dict(blob["opt"])
        if self.base is not None and blob["base"] is not None:
            self.base.load_state_dict(blob["base"])
            assert self.base_opt is not None
            self.base_opt.load_state_dict(blob["base_opt"])
        for scaler, state in zip((self.scaler, self.base_scaler), blob.get("scalers") or ()):
            if self.amp and state:  # a scale learnt without AMP (or on the CPU) does not exist: keep the fresh one
                scaler.load_state_dict(state)
        self.selector.load_state_dict(blob.get("selected"))
        return list(blob["epochs"])


# ------------------------------------------------------------------ scoring

@torch.no_grad()
def _forward(model: nn.Module, x: np.ndarray, device: str, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Class logits (N, C), features (N, F) and, for DANN, domain logits (N, 2)."""
    was_training = model.training
    model.eval()
    logits, feats, doms = [], [], []
    for i in range(0, len(x), chunk):
        out = model(torch.as_tensor(x[i:i + chunk], dtype=torch.float32, device=device))
        logits.append(out[0].float().cpu().numpy())
        feats.append(out[-1].float().reshape(len(out[-1]), -1).cpu().numpy())
        if len(out) == 3:
            doms.append(out[1].float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(logits), np.concatenate(feats), (np.concatenate(doms) if doms else None)


def _scores(model: nn.Module, s: Split, t: Split, device: str) -> dict[str, Any]:
    ls, fs, ds = _forward(model, s.x, device)
    lt, ft, dt = _forward(model, t.x, device)
    out: dict[str, Any] = {"source_accuracy": accuracy(ls, s.y),
                           "target_accuracy": accuracy(lt, t.y) if t.y is not None else None,
                           "_features": (fs, ft), "_logits": (ls, lt)}
    if ds is not None and dt is not None:
        hits = np.concatenate([ds.argmax(1) == 0, dt.argmax(1) == 1])
        out["domain_accuracy"] = float(hits.mean())
    return out


def _epoch_record(epoch: int, state: _TrainState, data: DomainData, losses: dict[str, float]) -> dict[str, Any]:
    cfg = state.config
    s, t = data.source_eval, data.target_eval
    d = _scores(state.dann, s, t, state.device)
    fs, ft = d.pop("_features")
    d.pop("_logits")
    dann = {**d, "label_loss": losses["label_loss"], "domain_loss": losses["domain_loss"],
            "lambda": state.lam, "lr": state.lr}
    if cfg.select is Selection.ENTROPY:  # inputs only: the unlabelled training target
        dann["target_entropy"] = prediction_entropy(_forward(state.dann, data.target.x, state.device)[0])
    if cfg.a_distance_every and (epoch + 1) % cfg.a_distance_every == 0:
        dann["a_distance"] = proxy_a_distance(fs, ft, seed=cfg.seed, max_samples=cfg.a_distance_samples).value
    record: dict[str, Any] = {"epoch": epoch + 1, "dann": _rounded(dann)}
    if state.base is not None:
        b = _scores(state.base, s, t, state.device)
        b.pop("_features")
        b.pop("_logits")
        record["source_only"] = _rounded({**b, "label_loss": losses["base_label_loss"]})
    return record


def _final(dann: DANN, base: SourceOnly | None, data: DomainData, cfg: DannConfig, device: str) -> dict[str, dict[str, float]]:
    out = {}
    for name, model in (("source_only", base), ("dann", dann)):
        if model is None:
            continue
        sc = _scores(model, data.source_eval, data.target_eval, device)
        fs, ft = sc.pop("_features")
        ls, lt = sc.pop("_logits")
        sc.pop("domain_accuracy", None)
        sc["a_distance"] = proxy_a_distance(fs, ft, seed=cfg.seed, max_samples=cfg.a_distance_samples).value
        # the same held-out probe on what the label layer outputs: the domain shift the classifier acts on
        sc["a_distance_logits"] = proxy_a_distance(ls, lt, seed=cfg.seed, max_samples=cfg.a_distance_samples).value
        out[name] = _rounded(sc)
    return out


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(float(v), 6) if isinstance(v, (float, np.floating)) else v) for k, v in d.items()}
