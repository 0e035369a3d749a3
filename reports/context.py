"""What every section builder shares: the result being rendered, the gallery,
and the summary lines and verdict counts it contributes.

The per-kind builders (:mod:`.view_attack`, :mod:`.view_verify`,
:mod:`.view_regions`, :mod:`.view_adapt`, :mod:`.view_check`) turn one
validated result document into a :class:`Section` of plain values for the
Jinja2 templates; nothing in the templates computes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nnaudit.reports.gallery import Card, with_pictures
from nnaudit.reports.limits import ReportLimits

UNNAMED = "(model not recorded)"

#: verdict word -> CSS class of its badge (good / bad / open / error)
BADGE = {
    "holds": "good", "safe": "good", "passed": "good", "robust": "good",
    "violated": "bad", "unsafe": "bad", "failed": "bad", "broken": "bad",
    "unknown": "open", "timeout": "open", "inconclusive": "open", "incomplete": "open",
    "error": "error", "improved": "good", "trained": "good", "no gain": "open",
}


@dataclass(frozen=True)
class Line:
    """One line of the summary: a verdict badge and the sentence after it."""

    verdict: str
    text: str
    href: str = ""

    @property
    def badge(self) -> str:
        return BADGE.get(self.verdict, "open")


@dataclass
class Source:
    """One result document with its display name and in-page id."""

    ident: str                 # "r1", "r2", ... (anchors)
    name: str                  # file name, or "file.json → check NAME" for nested results
    doc: dict[str, Any]

    @property
    def model(self) -> str:
        """The model's file name; for verify results without a header model
        the models named by the instances; else a placeholder."""
        model = self.doc.get("model") or {}
        if model.get("file"):
            return model["file"]
        named = sorted({i.get("model") for i in self.doc.get("instances") or [] if i.get("model")})
        if named:
            return ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
        return UNNAMED

    @property
    def kind(self) -> str:
        return self.doc["kind"]


@dataclass
class Section:
    """A rendered result: ``data`` goes to the kind's template."""

    source: Source
    title: str
    data: dict[str, Any]
    lines: list[Line] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


class Gallery:
    """The counterexample cards of the whole report: pictures for the first
    ``limits.card_pictures``, table rows up to ``limits.cards``, then only a
    count.  Carries the report's :class:`ReportLimits` for the section builders."""

    def __init__(self, limits: ReportLimits = ReportLimits()) -> None:
        self.cards: list[Card] = []
        self.limits = limits
        self.omitted = 0

    def add(self, card: Card, x: Sequence[float] | None, x_adv: Sequence[float], shape: Sequence[int]) -> str | None:
        """Add a card and return its anchor, or None (only counted) past ``max_cards``."""
        if len(self.cards) >= self.limits.cards:
            self.omitted += 1
            return None
        pictures = len(self.cards) < self.limits.card_pictures
        self.cards.append(with_pictures(card, x, x_adv, shape, pictures, self.limits.thumb_side))
        return card.anchor

    @property
    def pictured(self) -> list[Card]:
        return self.cards[: self.limits.card_pictures]

    @property
    def listed(self) -> list[Card]:
        return self.cards[self.limits.card_pictures:]


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers for tables: floats rounded, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"
    return str(value)


def pct(value: float | None) -> str:
    """A fraction as a percentage (``0.8125`` -> ``"81.2%"``)."""
    return "–" if value is None else f"{100 * value:.1f}%"
