"""Versioned JSON results and self-contained HTML reports.

- :mod:`.schema`: the result header every command writes (``new_result``,
  ``finish``, ``write_json``) and ``read_result``, which checks the format
  version and, through :mod:`.validate`, the shape of each kind (SCHEMA.md);
- :mod:`.render`: ``write_report(paths, out)`` -> one HTML file (Jinja2
  templates in ``templates/``, one section builder per kind in
  ``view_*.py``, pictures from :mod:`.images` and plots from :mod:`.figures`).

Names below are resolved lazily so ``import nnaudit.reports`` stays cheap.
"""

from __future__ import annotations

from nnaudit._lazy import lazy_getattr

_LAZY = {
    "write_report": "nnaudit.reports.render",
    "render_html": "nnaudit.reports.render",
    "build_report": "nnaudit.reports.render",
    "load_results": "nnaudit.reports.render",
    "ShapeError": "nnaudit.reports.validate",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)

