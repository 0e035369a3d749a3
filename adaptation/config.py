"""``DannConfig``: every setting of a DANN run, in one frozen dataclass.

Defaults follow the paper (Ganin et al., JMLR 2016, sec. 5.2.2): SGD with
momentum 0.9, learning rate ``mu0 / (1 + alpha p)^beta`` and adaptation factor
``2 / (1 + exp(-gamma p)) - 1``.  Presets for a task are made with
``dataclasses.replace``; the run record stores ``to_dict()`` verbatim.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from nnaudit.adaptation.selection import Selection
from nnaudit.errors import ConfigError

PRESETS = ("auto", "mlp", "conv")
DEVICES = ("auto", "cpu", "cuda")  # and "cuda:N", one GPU of several


@dataclass(frozen=True)
class DannConfig:
    """Settings of :func:`nnaudit.adaptation.train_dann`."""

    epochs: int = 30                   # passes over the larger of the two training sets
    batch_size: int = 64               # samples per SGD step: half source, half target
    lr0: float = 0.01                  # mu0 of the learning-rate schedule
    lr_alpha: float = 10.0             # alpha of mu_p = mu0 / (1 + alpha p)^beta
    lr_beta: float = 0.75              # beta of the same; alpha = 0 gives a constant rate
    momentum: float = 0.9              # SGD momentum
    weight_decay: float = 0.0          # L2 penalty of SGD
    gamma: float = 10.0                # gamma of lambda_p = 2 / (1 + exp(-gamma p)) - 1
    lambda_max: float = 1.0            # lambda_p is multiplied by this (paper: 1)
    fixed_lambda: float | None = None  # a constant adaptation factor instead of the schedule
    domain_weight: float = 1.0         # weight of the domain loss in the total loss
    device: str = "auto"               # "auto" (cuda when available, else cpu), "cpu", "cuda" or "cuda:N"
    amp: bool = False                  # mixed precision (float16 autocast); CUDA only, ignored on cpu
    cpu_threads: int = 1               # torch CPU threads while training (small nets are fastest on 1; 0: torch's setting)
    seed: int = 0                      # weights, batch order and A-distance splits
    source_only: bool = True           # also train the source-only baseline (same net, same budget)
    a_distance_every: int = 1          # proxy A-distance every k epochs (0: only at the end)
    a_distance_samples: int = 600      # at most this many points per domain for the A-distance
    preset: str = "auto"               # network preset: "mlp", "conv", or "auto" by input rank
    mlp_hidden: tuple[int, ...] = (32, 32)  # feature-extractor widths of the MLP preset
    conv_channels: tuple[int, ...] = (32, 64)  # conv widths of the conv preset (3x3, ReLU, 2x2 max-pool)
    head_hidden: int = 64              # hidden width of the label and domain heads
    domain_hidden: tuple[int, ...] = ()  # hidden widths of the domain head (empty: one layer of head_hidden)
    batch_norm: bool = False           # BatchNorm after each conv of the conv preset
    domain_bn: bool = False            # BatchNorm batch statistics per domain in DANN training; running ones from the target
    select: Selection = Selection.LAST  # which epoch's weights to keep (no target labels; see selection.py)

    def __post_init__(self) -> None:
        _positive(self, "epochs", "batch_size")
        if self.batch_size < 2 or self.batch_size % 2:
            raise ConfigError(f"DannConfig.batch_size: expected an even number >= 2 (half source, half target), got {self.batch_size}")
        for name in ("lr0", "lr_alpha", "lr_beta", "gamma", "lambda_max", "domain_weight", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"DannConfig.{name}: expected a number >= 0, got {getattr(self, name)!r}")
        if self.lr0 == 0:
            raise ConfigError("DannConfig.lr0: expected a learning rate > 0, got 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"DannConfig.momentum: expected a value in [0, 1), got {self.momentum!r}")
        if self.fixed_lambda is not None and not self.fixed_lambda >= 0:
            raise ConfigError(f"DannConfig.fixed_lambda: expected None or a number >= 0, got {self.fixed_lambda!r}")
        if self.device not in DEVICES and not re.fullmatch(r"cuda:\d+", str(self.device)):
            raise ConfigError(f"DannConfig.device: expected one of {', '.join(DEVICES)} or cuda:N, got {self.device!r}")
        if self.preset not in PRESETS:
            raise ConfigError(f"DannConfig.preset: expected one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.a_distance_every < 0 or self.a_distance_samples < 4:
            raise ConfigError("DannConfig.a_distance_every: expected >= 0 and a_distance_samples >= 4, "
                              f"got {self.a_distance_every} and {self.a_distance_samples}")
        _positive(self, "head_hidden")
        try:
            object.__setattr__(self, "select", Selection(self.select))
        except ValueError:
            raise ConfigError(f"DannConfig.select: expected one of {', '.join(s.value for s in Selection)}, "
                              f"got {self.select!r}") from None
        if not isinstance(self.cpu_threads, int) or self.cpu_threads < 0:
            raise ConfigError(f"DannConfig.cpu_threads: expected an integer >= 0, got {self.cpu_threads!r}")
        for name in ("mlp_hidden", "conv_channels", "domain_hidden"):
            widths = getattr(self, name)
            if (not widths and name != "domain_hidden") or any(int(w) < 1 for w in widths):
                raise ConfigError(f"DannConfig.{name}: expected a non-empty tuple of widths >= 1, got {widths!r}")
            object.__setattr__(self, name, tuple(int(w) for w in widths))

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else (v.value if isinstance(v, Selection) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DannConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"DannConfig: unknown setting(s) {unknown}; known are {sorted(known)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**fixed)


def _positive(cfg: DannConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"DannConfig.{name}: expected an integer >= 1, got {value!r}")


_MOONS = {"epochs": 300, "batch_size": 32, "lr0": 0.05, "preset": "mlp", "weight_decay": 0.002, "lambda_max": 2.0,
          "select": Selection.ENTROPY}
_MOONS_HARD = {**_MOONS, "weight_decay": 0.001, "lambda_max": 3.0}  # the larger rotation wants a stronger domain signal
_DIGITS = {"epochs": 30, "batch_size": 64, "lr0": 0.01, "preset": "conv", "batch_norm": True, "domain_bn": True,
           "lambda_max": 0.3}

#: settings of the bundled tasks (measured in bench/dann.py; docs/adaptation.md has the sweep)
TASK_PRESETS: dict[str, dict[str, Any]] = {
    "moons": _MOONS, "moons-hard": _MOONS_HARD,
    "digits-mnist": _DIGITS, "mnist-digits": _DIGITS, "digits-m": _DIGITS,
}


def for_task(task: str, **overrides: Any) -> DannConfig:
    """The config preset of a bundled task (see ``nnaudit.adaptation.tasks``) with ``overrides``."""
    base = TASK_PRESETS.get(task, {})
    return DannConfig(**{**base, **overrides})
