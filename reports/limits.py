"""The bounds that keep the report of a large run readable and small.

One frozen config for the whole report (passed to
:func:`nnaudit.reports.render.build_report`; the defaults give the size
bound documented in reports/README.md: under 10 MB per regions result).
Everything beyond a bound is still counted in the report and stays in the
JSON files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportLimits:
    """How much of a large run the report draws and lists."""

    card_pictures: int = 300     # counterexample cards with pictures; later ones are table rows
    cards: int = 3000            # counterexamples listed at all; later ones are only counted
    maps: int = 500              # images drawn as safety maps, per regions result
    page_size: int = 50          # safety maps per collapsible page (the first page is open)
    detailed_images: int = 100   # images whose region table is included, per regions result
    region_rows: int = 3000      # region table rows, per regions result
    listed_images: int = 3000    # images listed without a map after the drawn ones; later ones are counted
    thumb_side: int = 64         # pictures larger than this many pixels are block-averaged (thumbnails)
    explorer_rows: int = 4000    # rows of a result's filterable table (unsafe first); later ones are counted
    summary_lines: int = 200     # lines of the summary's answer list
    verify_lines: int = 40       # summary lines per verify result (its table has every instance)
