"""Filterable, sortable tables for large results, without JavaScript.

A report of a large run lists hundreds or thousands of items (region checks,
attack examples).  An :class:`Explorer` is such a list with drop-down filters
(e.g. verdict, class, image) and a sort choice, all done by CSS in the one
self-contained file: rows are items of a flex column; a filter hides the rows
whose ``data-f<i>`` attribute differs from the selected option
(``:has(option:checked)``), and a sort sets each row's flex ``order`` to its
precomputed rank (``--s<k>`` custom properties).  :func:`explorer_css` writes
those rules (one per filter value and sort key; values are sanitised tokens);
the template is ``templates/_explorer.html.j2``.  Without ``:has()`` support
the table still shows every row, in its default order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Filter:
    """A drop-down over one attribute of the rows: ``options`` are ``(token, text)``."""

    label: str
    options: list[tuple[str, str]]


@dataclass
class Explorer:
    """A table of ``rows`` with filters and sorts; ``rows[i]`` is a dict with
    ``cells`` (str, or a dict with ``text`` and ``href`` or ``badge``),
    ``tokens`` (one per filter) and ``ranks`` (one int per sort after the
    first; the first sort is the rows' own order)."""

    ident: str                         # element id, e.g. "x-r1"
    noun: str                          # "region checks"
    columns: list[str]
    filters: list[Filter]
    sorts: list[str]                   # labels; sorts[0] is the document order
    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0                     # items before the row bound (the rest are only counted)
    numeric: frozenset[int] = frozenset()  # indices of right-aligned columns

    @property
    def omitted(self) -> int:
        return self.total - len(self.rows)


def token(value: Any) -> str:
    """A value as a filter token safe inside a CSS attribute selector and HTML (``None`` -> ``"none"``)."""
    return "none" if value is None else _UNSAFE_CHARS.sub("_", str(value))[:40] or "_"


def ranks(values: Sequence[Any], *, descending: bool = False) -> list[int]:
    """Each value's position in the sorted order (stable; ``None`` always last).

    >>> ranks([0.3, None, 0.1])
    [1, 2, 0]
    >>> ranks([0.3, None, 0.1], descending=True)
    [0, 2, 1]
    """
    order = sorted((i for i, v in enumerate(values) if v is not None), key=values.__getitem__,
                   reverse=descending)  # stable, also reversed
    order += [i for i, v in enumerate(values) if v is None]
    out = [0] * len(values)
    for rank, i in enumerate(order):
        out[i] = rank
    return out


def add_sort_ranks(explorer: Explorer, keys: Sequence[tuple[Callable[[Any], Any], bool]],
                   items: Sequence[Any]) -> None:
    """Set ``row["ranks"]`` from ``keys`` (``(item -> value, descending)``, one per sort after the first)."""
    columns = [ranks([key(item) for item in items], descending=desc) for key, desc in keys]
    for i, row in enumerate(explorer.rows):
        row["ranks"] = [col[i] for col in columns]


def options(values: Sequence[Any], text: Callable[[Any], str] = str) -> list[tuple[str, str]]:
    """Distinct values (in first-seen order, ``None`` dropped) as filter options."""
    seen: dict[str, str] = {}
    for v in values:
        if v is not None and token(v) not in seen:
            seen[token(v)] = text(v)
    return list(seen.items())


def explorer_css(explorers: Sequence[Explorer]) -> str:
    """The per-explorer CSS rules: numeric columns, one per filter option and one per sort."""
    rules = []
    for x in explorers:
        if x.numeric:
            cells = ",".join(f"#{x.ident} .xrow>span:nth-child({c + 1}),#{x.ident} .xhead>span:nth-child({c + 1})" for c in sorted(x.numeric))
            rules.append(f"{cells}{{text-align:right;font-variant-numeric:tabular-nums}}")
        for f, flt in enumerate(x.filters):
            for tok, _ in flt.options:
                rules.append(f'#{x.ident}:has(#{x.ident}-f{f} option[value="{tok}"]:checked) '
                             f'.xrow:not([data-f{f}="{tok}"]){{display:none}}')
        for k in range(1, len(x.sorts)):
            rules.append(f'#{x.ident}:has(#{x.ident}-sort option[value="{k}"]:checked) .xrow{{--o:var(--s{k})}}')
    return "\n".join(rules)
