"""Issue #23: every command over the hostile-input corpus (tests/data/hostile) ends in 0/1/2/3, never a traceback.

Each corpus file is run through every command that reads its kind, in-process (Click's CliRunner), with a
small fixed budget.  The manifest written by make_corpus.py says which exit codes a file may end with and,
for the refused ones, a piece of the place the message must name (a node, a key, ``line:col``, a JSON path);
every exit-2 message of a refused file names the file too.  docs/reliability.md describes the corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnaudit.cli import cli

CORPUS = Path(__file__).parent / "data" / "hostile"
MANIFEST: dict[str, dict] = json.loads((CORPUS / "manifest.json").read_text())
MODEL, PROP, DATA = (str(CORPUS / "base" / n) for n in ("model.onnx", "prop.vnnlib", "data.npz"))
BUDGET = ["--timeout", "2"]
ATTACK = ["--limit", "2", "--attacks", "fgsm", "--eps", "0.05"]
REGIONS = ["--limit", "1", "--grid", "2x2", "--steps", "1", "--timeout-per-region", "2"]


def commands(rel: str, tmp: Path) -> dict[str, list[str]]:
    """The command lines that read corpus file ``rel`` (by its folder), with small budgets."""
    f = str(CORPUS / rel)
    kind = rel.split("/")[0]
    if kind == "onnx":
        return {"inspect": ["inspect", f, "--samples", "4"],
                "verify": ["verify", f, PROP, *BUDGET, "--workers", "1"],
                "attack": ["attack", f, "--data", DATA, *ATTACK],
                "regions": ["regions", f, "--data", DATA, *REGIONS]}
    if kind == "vnnlib":
        return {"verify": ["verify", MODEL, f, *BUDGET, "--workers", "1"]}
    if kind == "npz":
        return {"attack": ["attack", MODEL, "--data", f, *ATTACK],
                "regions": ["regions", MODEL, "--data", f, *REGIONS],
                "adapt": ["adapt", "--source", f, "--target", DATA, "--epochs", "1", "--batch-size", "4",
                          "--no-baseline", "--device", "cpu", "--out", str(tmp / "a.onnx")]}
    if kind == "toml":
        return {"check": ["check", "--config", f, *BUDGET]}
    return {"report": ["report", f, "-o", str(tmp / "r.html")]}


CASES = [(rel, name) for rel in sorted(MANIFEST) for name in commands(rel, Path("."))]


def run(args: list[str]):  # noqa: ANN201
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize(("rel", "command"), CASES, ids=[f"{c}:{r}" for r, c in CASES])
def test_hostile_input_is_handled(tmp_path: Path, rel: str, command: str) -> None:
    res = run(commands(rel, tmp_path)[command])
    out = res.output
    assert res.exit_code != 4, f"internal error on {rel}:\n{out}"
    assert res.exception is None or isinstance(res.exception, SystemExit), f"{rel}: {res.exception!r}"
    assert "Traceback" not in out
    entry = MANIFEST[rel]
    allowed = set(entry["expect"])
    if command == "adapt":
        allowed |= {0, 2}  # adapt reads only x and y (no model): a file others refuse may train
    assert res.exit_code in allowed, f"{rel}: exit {res.exit_code}, expected {sorted(allowed)}:\n{out}"
    if res.exit_code == 2 and entry["expect"] == [2] and command != "adapt":
        assert "\nerror: " in "\n" + out or "Error: " in out, out
        assert Path(rel).name in out, f"{rel}: the message does not name the file:\n{out}"
        if entry["where"]:
            assert entry["where"] in out, f"{rel}: the message does not name {entry['where']!r}:\n{out}"
        assert len(out) < 2000, f"{rel}: the message is {len(out)} characters long"


def test_corpus_is_large_small_and_complete() -> None:
    """>= 300 hostile inputs, < 2 MB in all, and make_corpus.py writes exactly the manifest's files."""
    files = [p for p in CORPUS.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert len(MANIFEST) >= 300
    assert sum(p.stat().st_size for p in files) < 2_000_000
    assert all((CORPUS / rel).is_file() for rel in MANIFEST)
    kinds = {rel.split("/")[0] for rel in MANIFEST}
    assert kinds == {"onnx", "vnnlib", "npz", "toml", "json"}


def test_make_corpus_is_deterministic(tmp_path: Path) -> None:
    """Regenerating the corpus gives the same bytes as the checked-in files (a sample of each kind)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(tmp_path) == len(MANIFEST)
    assert json.loads((tmp_path / "manifest.json").read_text()) == MANIFEST
    for rel in sorted(MANIFEST)[::7]:
        assert (tmp_path / rel).read_bytes() == (CORPUS / rel).read_bytes(), rel


@pytest.mark.parametrize("value", ["abc", "1e999", "[1,2]", "1.5", "99999999999999999999999", "5"])
def test_attack_set_value_of_the_wrong_type_names_the_key(value: str) -> None:
    option = "loss" if value == "5" else "steps"
    res = run(["attack", MODEL, "--data", DATA, *ATTACK, "--attacks", "pgd", "--set", f"pgd.{option}={value}"])
    assert res.exit_code == 2, res.output
    assert f"--set pgd.{option}" in res.output and "Traceback" not in res.output


def test_refused_resume_caps_what_it_prints(tmp_path: Path) -> None:
    from nnaudit.errors import ConfigError
    from nnaudit.runs.record import same_run

    saved = {"model": {"sha256": "a"}, "settings": {"indices": list(range(10_000))}, "seeds": {}}
    doc = {"model": {"sha256": "a"}, "settings": {"indices": list(range(5, 10_005))}, "seeds": {}}
    with pytest.raises(ConfigError) as info:
        same_run(tmp_path / "r.json", saved, doc, match={})
    assert "indices" in str(info.value) and len(str(info.value)) < 400
