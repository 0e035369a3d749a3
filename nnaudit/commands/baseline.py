"""``nnaudit baseline``: record a check run as the baseline later runs are compared with."""

from __future__ import annotations

from pathlib import Path

import click

from nnaudit.errors import ConfigError


@click.group("baseline")
def command() -> None:
    """Baselines for ``nnaudit check --baseline``: "no worse than main"."""


@command.command("accept")
@click.argument("result", type=click.Path(dir_okay=False))
@click.option("--to", "target", type=click.Path(dir_okay=False), default=None,
              help="Where to record the baseline: a JSON file, or STORE.db@TAG to add it to a results store's "
                   "history under TAG (default: the checks file's [defaults] baseline).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Checks file whose baseline key names the target (default: ./nnaudit.toml, else ./pyproject.toml).")
def accept(result: str, target: str | None, config_path: str | None) -> None:
    """Record RESULT (the JSON of `nnaudit check --json`) as the new baseline."""
    from nnaudit.checks.baseline import open_baseline
    from nnaudit.checks.baseline_store import record, store_ref
    from nnaudit.reports import schema

    if store_ref(result) is not None:
        raise ConfigError(f"{result}: expected the JSON of `nnaudit check --json`, got a results store")
    base = open_baseline(result)  # a complete check document, or ConfigError naming the problem
    doc = schema.read_result(result, kind="check")
    where = Path(target) if target else _configured_target(config_path)
    missing = [c["name"] for c in doc["checks"] if not isinstance(c.get("result"), dict)]
    in_store = store_ref(where)
    if in_store is not None:
        new = record(in_store[0], doc, tag=in_store[1])
        click.echo(f"recorded {len(doc['checks'])} check(s) of {base.description} in {where} ({new} new row(s); "
                   "a model version already recorded under this tag is kept as it was)")
    else:
        schema.write_json(doc, where)
        click.echo(f"recorded {len(doc['checks'])} check(s) of {base.description} as the baseline {where}")
    if missing:
        click.echo(f"note: {', '.join(missing)} ran without a result (error); they will be compared with nothing",
                   err=True)


def _configured_target(config_path: str | None) -> Path:
    """The one ``baseline`` path the checks file names (ConfigError when none or several)."""
    from nnaudit.config import find_config, load_checks

    path = Path(config_path) if config_path else find_config()
    if path is None:
        raise ConfigError(f"{Path.cwd()}: no --to and no checks file naming a baseline; pass --to PATH")
    targets = sorted({str(c.baseline) for c in load_checks(path).checks if c.baseline is not None})
    if len(targets) != 1:
        raise ConfigError(f"{path}: expected one baseline path in the checks file ([defaults] baseline = ...), "
                          f"found {len(targets)}{': ' + ', '.join(targets) if targets else ''}; pass --to PATH")
    return Path(targets[0])
