"""Issue #23: hypothesis mutates valid ONNX, VNN-LIB, .npz, TOML and result JSON and runs the command
that reads each (in-process, CliRunner, small budgets): every outcome is exit 0/1/2/3, never exit 4 or
an uncaught exception.  Derandomised with bounded example counts so CI sees the same inputs every run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnaudit.cli import cli

CORPUS = Path(__file__).parent / "data" / "hostile"
BASE = {name: (CORPUS / "base" / name).read_bytes() for name in ("model.onnx", "prop.vnnlib", "data.npz")}
TOML = (CORPUS / "toml" / "valid_verify.toml").read_bytes()
RESULT = (CORPUS / "json" / "valid_control.json").read_bytes()
FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few byte edits: overwrite, insert, delete a span, truncate or duplicate a span."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate", "repeat"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "set" and out:
            out[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del out[at:at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del out[at:]
        else:
            span = bytes(out[at:at + draw(st.integers(1, 8))])
            out[at:at] = span * draw(st.integers(1, 50))
    return bytes(out)


def _run(args: list[str]) -> None:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code in (0, 1, 2, 3), f"exit {res.exit_code}: {res.output[-500:]}"
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output


def _write(folder: str, name: str, data: bytes) -> str:
    path = Path(folder) / name
    path.write_bytes(data)
    return str(path)


@FUZZ
@given(mutated(BASE["model.onnx"]))
def test_fuzzed_onnx(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = _write(tmp, "m.onnx", data)
        _run(["inspect", model, "--samples", "2"])


@FUZZ
@given(mutated(BASE["prop.vnnlib"]))
def test_fuzzed_vnnlib(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prop = _write(tmp, "p.vnnlib", data)
        _run(["verify", str(CORPUS / "base" / "model.onnx"), prop, "--timeout", "2", "--workers", "1"])


@FUZZ
@given(mutated(BASE["data.npz"]))
def test_fuzzed_npz(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        npz = _write(tmp, "d.npz", data)
        _run(["attack", str(CORPUS / "base" / "model.onnx"), "--data", npz, "--limit", "2", "--attacks", "fgsm"])


@FUZZ
@given(mutated(TOML))
def test_fuzzed_toml(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("model.onnx", "prop.vnnlib"):
            _write(tmp, name, BASE[name])
        config = _write(tmp, "nnaudit.toml", data)
        _run(["check", "--config", config, "--timeout", "2"])


@FUZZ
@given(mutated(RESULT))
def test_fuzzed_result_json(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = _write(tmp, "r.json", data)
        _run(["report", result, "-o", str(Path(tmp) / "r.html")])
