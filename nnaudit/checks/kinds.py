"""The kinds of check of a checks file: one frozen dataclass each.

:class:`AttackCheck`, :class:`RegionsCheck` and :class:`VerifyCheck` share
the keys of :class:`CheckBase`; :func:`nnaudit.config.load_checks` builds
them from the file (:mod:`nnaudit.checks.keys` reads each key) and
:mod:`nnaudit.checks.adapters` runs them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class CheckBase:
    """Keys every check has."""

    name: str                        # test id and table row; unique in the file
    model: Path                      # the ONNX file (zoo names resolved)
    source: str = ""                 # "path/nnaudit.toml: [[check]] #2 ('name')" for messages
    device: str = "cpu"              # cpu, cuda, cuda:N or auto (attacks, regions, verify)
    seed: int = 0                    # random seed of attacks / falsification
    unknown_is_failure: bool = False  # an inconclusive result counts as a failure
    mean: tuple[float, ...] | None = None  # input normalisation (x - mean) / std in front of the model, per
    std: tuple[float, ...] | None = None   # channel or one value; data, eps, steps then in pixel space
    baseline: Path | None = None     # previous check result (JSON, or STORE.db@TAG) to compare with (--baseline)
    max_drop: float = 0.0            # allowed drop of robust accuracy / safe or holding fraction vs the baseline

    kind: ClassVar[str] = ""

    def normalisation(self) -> Any:
        """The :class:`~nnaudit.networks.Normalisation` of ``mean``/``std`` (None when neither is set)."""
        if self.mean is None and self.std is None:
            return None
        from nnaudit.networks.normalise import Normalisation

        return Normalisation(self.mean or (0.0,), self.std or (1.0,))

    @property
    def requirement(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class AttackCheck(CheckBase):
    """Robust accuracy under adversarial attacks must stay above a floor."""

    data: str = "digits"                       # bundled name or resolved .npz path
    limit: int | None = None                   # use the first N samples
    eps: tuple[float, ...] = (0.1,)            # radii; the requirement holds at every one
    norm: str = "linf"                         # linf, l2 or l0
    attacks: tuple[str, ...] = ("pgd",)        # registry names (nnaudit.attacks.ATTACKS), or ("autoattack",)
    version: str = "standard"                  # AutoAttack version: standard, plus or rand
    targeted: bool = False                     # attack each sample towards its top target_classes classes
    target_classes: int | None = None          # targets per sample (targeted; APGD-T, FAB-T); None: 9
    bounds: tuple[float, float] = (0.0, 1.0)   # valid input range
    options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # per-attack overrides
    min_robust_accuracy: float | None = None   # worst case over attacks, at every eps
    min_clean_accuracy: float | None = None    # onnxruntime accuracy on the clean samples

    kind: ClassVar[str] = "attack"

    @property
    def requirement(self) -> str:
        parts = []
        if self.min_robust_accuracy is not None:
            parts.append(f"min_robust_accuracy >= {self.min_robust_accuracy:g}")
        if self.min_clean_accuracy is not None:
            parts.append(f"min_clean_accuracy >= {self.min_clean_accuracy:g}")
        return " and ".join(parts)


@dataclass(frozen=True)
class RegionsCheck(CheckBase):
    """At most ``max_unsafe_regions`` image regions may be unsafe (DLV)."""

    data: str = "digits"                        # bundled name or resolved .npz path
    limit: int | None = 1                       # images checked
    grid: tuple[int, int] | None = (4, 4)       # region grid (rows, cols)
    patch: int | None = None                    # square sliding patch (side) instead of a grid
    step: float = 0.1                           # manipulation step per pixel
    steps: int = 1                              # steps each way
    budget: float | None = None                 # budget over the region (None: none)
    budget_norm: str = "l0"                     # l0: values changed; l1: summed change
    method: str = "exact"                       # exact, dlv or both
    timeout: float = 10.0                       # seconds per region and method
    max_unsafe_regions: int = 0                 # requirement

    kind: ClassVar[str] = "regions"

    @property
    def requirement(self) -> str:
        return f"max_unsafe_regions <= {self.max_unsafe_regions}"


@dataclass(frozen=True)
class VerifyCheck(CheckBase):
    """Every VNN-LIB property must end with the expected verdict."""

    properties: tuple[Path, ...] = ()           # .vnnlib files
    timeout: float = 60.0                       # seconds per property
    expect: str = "holds"                       # holds or violated

    kind: ClassVar[str] = "verify"

    @property
    def requirement(self) -> str:
        return f"expect = {self.expect}"


Check = AttackCheck | RegionsCheck | VerifyCheck
KINDS: dict[str, type[CheckBase]] = {"attack": AttackCheck, "regions": RegionsCheck, "verify": VerifyCheck}
