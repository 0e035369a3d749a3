"""``nnaudit verify``: exit codes, VNN-COMP result file, JSON document."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.verify.engine import counterexample_ok
from nnaudit.verify.vnnlib import parse

ACAS = Path(__file__).resolve().parents[1] / "data" / "vnncomp" / "acasxu"
NET = ACAS / "onnx" / "ACASXU_run2a_1_2_batch_2000.onnx"


def _run(*args: str):
    return CliRunner().invoke(cli, ["verify", *args], catch_exceptions=False)


def test_holds_exit_0_and_result_file(tmp_path) -> None:
    out = tmp_path / "res.txt"
    r = _run(str(NET), str(ACAS / "vnnlib" / "prop_1.vnnlib"), "--timeout", "30", "--result-file", str(out), "--workers", "1")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("holds") and out.read_text() == "unsat\n"


def test_violated_exit_1_with_checked_counterexample(tmp_path) -> None:
    out, doc = tmp_path / "res.txt", tmp_path / "res.json"
    prop = ACAS / "vnnlib" / "prop_2.vnnlib"
    r = _run(str(NET), str(prop), "--timeout", "30", "--result-file", str(out), "--output", str(doc), "--json", "--workers", "1")
    assert r.exit_code == 1, r.output
    lines = out.read_text().splitlines()
    assert lines[0] == "sat" and lines[1].startswith("((X_0 ") and lines[-1].endswith("))")
    xs = [float(line.strip("() ").split()[1]) for line in lines[1:] if line.strip(" (").startswith("X_")]
    assert len(xs) == 5 and counterexample_ok(NET, parse(prop), xs)
    body = json.loads(doc.read_text())
    assert body["kind"] == "verify" and body["complete"] is True
    inst = body["instances"][0]
    assert inst["verdict"] == "violated" and inst["counterexample"]["input_shape"] == [1, 1, 5]
    assert json.loads(r.output)["instances"][0]["verdict"] == "violated"


def test_bad_property_exit_2_names_the_place(tmp_path) -> None:
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1)\n")
    out = tmp_path / "res.txt"
    r = CliRunner().invoke(cli, ["verify", str(NET), str(bad), "--result-file", str(out)])
    assert r.exit_code == 2
    assert f"{bad}:2:1" in r.output and out.read_text() == "error\n"


def test_size_mismatch_exit_2(tmp_path) -> None:
    mn = Path(__file__).resolve().parents[1] / "data" / "vnncomp" / "mnist_fc" / "vnnlib" / "prop_0_0.03.vnnlib"
    r = CliRunner().invoke(cli, ["verify", str(NET), str(mn)])
    assert r.exit_code == 2 and "784 inputs" in r.output


def test_an_implausible_process_age_does_not_eat_the_budget() -> None:
    """The deadline counts interpreter start-up (the process age from /proc); an age no start-up
    takes (a clock that jumped while a virtual machine was paused) counts as unknown, not as
    seconds already spent."""
    from nnaudit.cli import MAX_PLAUSIBLE_AGE_S, _process_age, plausible_age

    assert plausible_age(1.5) == 1.5
    assert plausible_age(MAX_PLAUSIBLE_AGE_S + 5) == 0.0
    assert plausible_age(-3.0) == 0.0
    assert 0.0 <= _process_age() <= MAX_PLAUSIBLE_AGE_S


def test_the_deadline_counts_from_the_process_start_in_the_context_object(tmp_path) -> None:
    """``main`` puts the process start into ``ctx.obj``; time before it counts against --timeout."""
    import time

    from nnaudit.cli import CliContext

    moons = Path(__file__).resolve().parents[2] / "networks" / "zoo" / "moons-ffn.onnx"
    prop = Path(__file__).resolve().parents[2] / "examples" / "ci" / "properties" / "moons_sample0.vnnlib"
    out = tmp_path / "v.json"
    args = ["verify", str(moons), str(prop), "--timeout", "30", "--workers", "1", "--output", str(out)]
    CliRunner().invoke(cli, args, obj=CliContext(process_start=time.monotonic() - 25.0))
    assert 0.1 <= json.loads(out.read_text())["settings"]["timeout_s"] <= 5.0  # 25 s of the 30 already spent
    CliRunner().invoke(cli, args)  # in-process without a start: the deadline counts from the command
    assert json.loads(out.read_text())["settings"]["timeout_s"] > 25.0
