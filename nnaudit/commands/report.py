"""``nnaudit report RESULT.json [MORE.json ...] -o report.html``: one
self-contained HTML report from the JSON results of any commands, or
(``--store results.db --model SHA|PATH``) from a campaign's results store."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click


@click.command("report", epilog="Exit codes: 0 written, 2 bad input (a file that is not a valid nnaudit result).")
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the HTML report.")
@click.option("--title", default=None, help="Report title [default: 'nnaudit robustness report: MODELS'].")
@click.option("--store", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Also report the results kept in this SQLite results store (needs --model).")
@click.option("--model", default=None, metavar="SHA|PATH",
              help="With --store: the model, by sha256 (or a unique prefix) or the path it was run from.")
def command(results: tuple[str, ...], output: str, title: str | None, store: str | None, model: str | None) -> None:
    """Render the JSON RESULTS of verify, regions, attack, adapt and check into
    one HTML file (inline CSS and images, no JavaScript, no network access).
    Every file is validated first; a bad one is reported by name and JSON path."""
    from nnaudit.reports.render import write_report

    if (store is None) != (model is None):
        raise click.UsageError("--store and --model go together")
    if not results and store is None:
        raise click.UsageError("give RESULT files, or --store and --model")
    with tempfile.TemporaryDirectory() as tmp:
        paths = list(results) + (_from_store(store, model, Path(tmp)) if store is not None else [])
        path = write_report(paths, output, title=title)
    size = path.stat().st_size
    click.echo(f"wrote {path} ({size / 1024:.0f} KiB) from {len(paths)} result file{'s' if len(paths) != 1 else ''}")


def _from_store(store: str, model: str, folder: Path) -> list[str]:
    """The store's documents for ``model`` written as JSON files in ``folder`` (ConfigError when there are none)."""
    from nnaudit.errors import ConfigError
    from nnaudit.reports.schema import write_json
    from nnaudit.reports.store import ResultStore
    from nnaudit.reports.store_report import store_documents

    with ResultStore(store) as db:
        sha = db.model_matching(model)
        docs = store_documents(db, sha)
    if not docs:
        raise ConfigError(f"{store}: no verify or regions results stored for model {sha[:12]}")
    return [str(write_json(doc, folder / f"{doc['kind']}_{i}.json")) for i, doc in enumerate(docs)]
