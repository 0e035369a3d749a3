"""``nnaudit report RESULT.json [MORE.json ...] -o report.html``: one
self-contained HTML report from the JSON results of any commands."""

from __future__ import annotations

import click


@click.command("report", epilog="Exit codes: 0 written, 2 bad input (a file that is not a valid nnaudit result).")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the HTML report.")
@click.option("--title", default=None, help="Report title [default: 'nnaudit robustness report: MODELS'].")
def command(results: tuple[str, ...], output: str, title: str | None) -> None:
    """Render the JSON RESULTS of verify, regions, attack, adapt and check into
    one HTML file (inline CSS and images, no JavaScript, no network access).
    Every file is validated first; a bad one is reported by name and JSON path."""
    from nnaudit.reports.render import write_report

    path = write_report(list(results), output, title=title)
    size = path.stat().st_size
    click.echo(f"wrote {path} ({size / 1024:.0f} KiB) from {len(results)} result file{'s' if len(results) != 1 else ''}")
