"""SIGTERM is handled like Ctrl-C (issue #23): the partial result is written
(``complete: false``, resumable), one line says so, and the exit code is 143."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.errors import Terminated

ROOT = Path(__file__).resolve().parents[2]
#: generous: the run only has to reach its first written image on a busy machine
START_TIMEOUT_S = 240.0
EXIT_TIMEOUT_S = 120.0


def _nnaudit() -> list[str]:
    script = Path(sys.executable).with_name("nnaudit")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "nnaudit.cli"]


def _wait_for(ready, path: Path, proc: subprocess.Popen) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _safe(ready):
        if proc.poll() is not None:
            if _safe(ready):  # finished in between: nothing left to terminate
                return
            pytest.fail(f"nnaudit ended (exit {proc.returncode}) before writing {path}: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} not written within {START_TIMEOUT_S} s")
        time.sleep(0.05)


def _safe(ready) -> bool:  # type: ignore[no-untyped-def]
    """``ready()``, False while the file is missing or half written."""
    try:
        return bool(ready())
    except (OSError, ValueError):
        return False


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_keeps_the_partial_regions_result_and_exits_143(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    args = ["regions", str(ROOT / "networks" / "zoo" / "digits-ffn.onnx"), "--data", "digits",
            "--grid", "4x4", "--json", str(out)]
    code, err = _terminate(args, out, lambda: out.is_file(), tmp_path)
    assert code == 143, err
    assert f"terminated (SIGTERM); partial results in {out} (continue with --resume)" in err
    assert "Traceback" not in err
    doc = json.loads(out.read_text())
    assert doc["complete"] is False
    done = len(doc["images"])
    assert 0 < done < 450
    # resumable: a --resume run accepts the file and rewrites it; terminated again, it keeps it partial
    before = out.stat().st_mtime_ns
    code, err = _terminate(args + ["--resume"], out, lambda: out.stat().st_mtime_ns != before, tmp_path)
    assert code in (0, 1, 3, 143) and "Traceback" not in err and "cannot resume" not in err, err
    doc = json.loads(out.read_text())
    assert doc["images"] and doc["complete"] is (code != 143)


def _terminate(args: list[str], out: Path, ready, cwd: Path) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Run nnaudit with ``args``, send SIGTERM once ``ready()`` (polled), return exit code and stderr."""
    proc = subprocess.Popen(_nnaudit() + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, out, proc)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def test_terminated_in_any_command_prints_one_line_and_exits_143(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    from nnaudit.checks import runner

    def terminate(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise Terminated()

    monkeypatch.setattr(runner, "execute", terminate)
    (tmp_path / "nnaudit.toml").write_text('[[check]]\nname = "a"\nkind = "attack"\nmodel = "digits-ffn"\n'
                                           'data = "digits"\nlimit = 2\neps = 0.01\nmin_robust_accuracy = 0.5\n')
    result = CliRunner().invoke(cli, ["check", "--config", str(tmp_path / "nnaudit.toml")])
    assert result.exit_code == 143
    assert "terminated (SIGTERM)" in result.output and "Traceback" not in result.output
