"""The settings of DLV (:mod:`nnaudit.verify.regions.dlv`): one frozen
dataclass and the enums of its modes, the paper's configuration names in
brackets (Huang et al., CAV 2017, ``configuration.py`` of its code)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from nnaudit.errors import SpecError


class DLVMode(str, Enum):
    """How the ladder points of one feature are enumerated [enumerationMethod]."""

    CORNERS = "corners"   # every dimension at -n or +n: 2^d points [convex]
    LINE = "line"         # every ladder point: (2n+1)^d - 1 points
    POINT = "point"       # one point, every dimension n steps towards a lower margin


class Heuristic(str, Enum):
    """How features are ranked [heuristics]."""

    ACTIVATION = "activation"   # |a_j - mean(a)| [Activation]
    DERIVATIVE = "derivative"   # |d margin / d a_j| x room to move that way [Derivative]


class DLVSearch(str, Enum):
    """Which manipulations are tried."""

    PATH = "path"         # compose features along a path, best-first (the paper's search tree)
    SINGLE = "single"     # each feature alone, from the image


class ExitWhen(str, Enum):
    """When a run stops [exitWhen]."""

    FIRST = "first"       # at the first confirmed member of the family
    ALL = "all"           # collect every adversarial example within the time


MODES = tuple(m.value for m in DLVMode)


def _enum(kind: type[Enum], value: Any, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise SpecError(f"dlv: expected {what} one of {', '.join(m.value for m in kind)}, got {value!r}") from None


@dataclass(frozen=True)
class DLVConfig:
    """Settings of the DLV search (the paper's configuration names in brackets).

    Strings are accepted for the enum fields (``mode="line"``).
    """

    layer: int = 1                          # k, the layer manipulated [layer2Consider]; 0 = the input
    num_features: int = 4                   # features per node [numOfFeatures]
    feature_dims: int = 3                   # dimensions per feature [featureDims]
    mode: DLVMode = DLVMode.CORNERS         # enumeration of one feature's ladder [enumerationMethod]
    ladder_steps: int | None = None         # steps each side at hidden layers [numSpan]; None: manipulation steps
    hidden_reach: float = 0.25              # hidden layers: fraction of the sound reach the n steps cover
    exit_when: ExitWhen = ExitWhen.FIRST    # stop at the first member, or collect all [exitWhen]
    search: DLVSearch = DLVSearch.PATH      # compose features along paths, or one at a time
    heuristic: Heuristic = Heuristic.DERIVATIVE  # feature ranking [heuristics]
    depth: int = 64                         # path search: features composed along a path at most
    branching: int = 2                      # path search: children kept per expanded node [numOfPointsAfterEachFeature]
    max_queue: int = 64                     # path search: open nodes kept [maxQueueSize]
    z3_timeout_s: float = 2.0               # per pre-image query

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", _enum(DLVMode, self.mode, "mode"))
        object.__setattr__(self, "exit_when", _enum(ExitWhen, self.exit_when, "exit_when"))
        object.__setattr__(self, "search", _enum(DLVSearch, self.search, "search"))
        object.__setattr__(self, "heuristic", _enum(Heuristic, self.heuristic, "heuristic"))
        if self.layer < 0 or self.num_features < 1 or self.feature_dims < 1:
            raise SpecError(f"dlv: expected layer >= 0, num_features >= 1, feature_dims >= 1; got "
                            f"{self.layer}, {self.num_features}, {self.feature_dims}")
        if not 0.0 < self.hidden_reach <= 1.0:
            raise SpecError(f"dlv: expected 0 < hidden_reach <= 1, got {self.hidden_reach}")
        if self.depth < 1 or self.branching < 1 or self.max_queue < 1:
            raise SpecError(f"dlv: expected depth, branching and max_queue >= 1; got "
                            f"{self.depth}, {self.branching}, {self.max_queue}")
