"""Write a benchmark's markdown table without losing the hand-written notes below it.

Each ``bench/results/*.md`` starts with the table its script writes; what follows the
:data:`NOTES` marker (methodology, discussion, earlier runs) is written by hand and is
carried over whenever the script rewrites the table.
"""

from __future__ import annotations

from pathlib import Path

NOTES = "<!-- Notes below are written by hand; the benchmark script keeps them when it rewrites the table above. -->"


def write_results(path: Path, table: str) -> None:
    """Write ``table`` to ``path``, keeping the part of the old file from the notes marker on."""
    old = path.read_text() if path.exists() else ""
    at = old.find(NOTES)
    text = table.rstrip("\n") + "\n"
    if at >= 0:
        text += "\n" + old[at:]
    path.write_text(text)
