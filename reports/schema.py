"""The one versioned JSON result format every command writes and the report reads.

A result document is a dict::

    {
      "schema": "nnaudit-result",
      "version": 1,
      "kind": "verify" | "regions" | "attack" | "adapt" | "check",
      "command": "nnaudit verify ...",       # how to reproduce it
      "model": {file, sha256, input_shape, output_shape, num_params, layers},
      "settings": {...},                     # exact settings of the run
      "seeds": {...},
      "environment": {nnaudit, python, numpy, torch, onnx, onnxruntime, z3, machine, device},
      "started": ISO-8601 UTC, "finished": ISO-8601 UTC or null while running,
      "complete": true | false,              # false: interrupted, resumable
      ...kind-specific body keys...
    }

Writers use :func:`new_result`, fill their body, and :func:`write_json`
(atomic: a crash never leaves half a file).  Readers use :func:`read_result`,
which rejects other schemas and versions with a clear error.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from nnaudit.errors import DataError

SCHEMA_NAME = "nnaudit-result"
SCHEMA_VERSION = 1
KINDS = ("verify", "regions", "attack", "adapt", "check")

_VERSIONED = ("nnaudit", "numpy", "torch", "onnx", "onnxruntime", "z3-solver", "click", "jinja2", "matplotlib")


def now() -> str:
    """The current time, ISO-8601 in UTC with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions of nnaudit and its solvers/frameworks, and the machine."""
    versions = {}
    for dist in _VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "device": device or "cpu",
    }


def model_info(network: Any) -> dict[str, Any]:
    """File name, sha256 and IR summary of a loaded Network."""
    summary = network.summary()
    return {
        "file": Path(summary["source"]).name if summary["source"] else None,
        "path": summary["source"],
        "sha256": summary["sha256"],
        "input_shape": summary["input"]["shape"],
        "output_shape": summary["output"]["shape"],
        "num_params": summary["num_params"],
        "layers": [f"{layer['type']}{tuple(layer['output_shape'])}" for layer in summary["layers"]],
    }


def command_line(argv: list[str] | None = None) -> str:
    """The command that produced a result, quoted so it can be pasted back."""
    args = sys.argv if argv is None else argv
    prog = "nnaudit" if args and Path(args[0]).name in ("nnaudit", "__main__.py") else Path(args[0]).name if args else ""
    return shlex.join([prog] + list(args[1:])) if args else ""


def new_result(kind: str, *, network: Any = None, settings: dict[str, Any] | None = None,
               seeds: dict[str, Any] | None = None, device: str | None = None,
               command: str | None = None) -> dict[str, Any]:
    """A fresh result document of ``kind`` with the shared header filled in."""
    if kind not in KINDS:
        raise ValueError(f"unknown result kind {kind!r}; expected one of {KINDS}")
    return {
        "schema": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "kind": kind,
        "command": command if command is not None else command_line(),
        "model": model_info(network) if network is not None else None,
        "settings": settings or {},
        "seeds": seeds or {},
        "environment": environment(device),
        "started": now(),
        "finished": None,
        "complete": False,
    }


def finish(doc: dict[str, Any], *, complete: bool = True) -> dict[str, Any]:
    """Stamp the end time; ``complete=False`` marks an interrupted run."""
    doc["finished"] = now()
    doc["complete"] = complete
    return doc


def write_json(doc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write atomically (temp file + rename) so an interrupt never corrupts it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, default=_json_default))
    os.replace(tmp, target)
    return target


def plain(obj: Any) -> Any:
    """``obj`` as it reads back from a result file (tuples and arrays as lists, paths as strings)."""
    return json.loads(json.dumps(obj, default=_json_default))


#: deepest nesting of lists and objects a result file may have (results nest about 8 deep; the
#: free-form ``settings`` a little more): deeper files are refused before anything walks them
MAX_JSON_DEPTH = 64


def _short(value: Any) -> str:
    """``repr(value)`` capped to 40 characters, so an error never echoes much of a file."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse(p: Path) -> Any:
    """The JSON value in ``p``; DataError for bad JSON, nesting deeper than :data:`MAX_JSON_DEPTH`
    (json's recursive decoder is never allowed to overflow the stack) and oversized integers."""
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not a readable UTF-8 JSON file: {exc}") from exc
    depth = _bracket_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise DataError(f"{p}: JSON nested {depth} levels deep; a result file nests at most {MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and integers over Python's digit limit
        raise DataError(f"{p}: not a JSON file: {_short(str(exc))[1:-1]}") from exc


def _bracket_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON ``text`` outside strings, counted without recursion
    (an upper bound on invalid JSON; stops counting past :data:`MAX_JSON_DEPTH`)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    break
        elif token in "]}":
            depth -= 1
    return deepest


_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def read_result(path: str | os.PathLike[str], *, kind: str | None = None, validate: bool = True) -> dict[str, Any]:
    """Read and check a result file; errors name the file and the problem.

    With ``validate`` (the default) the whole document is checked against the
    shape of its kind (:mod:`nnaudit.reports.validate`); errors then read
    ``run.json: $.results[2].eps: expected a number, got "x"``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: result file not found")
    doc = _parse(p)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_NAME:
        raise DataError(f"{p}: not an nnaudit result (expected \"schema\": \"{SCHEMA_NAME}\")")
    if type(doc.get("version")) is not int or doc.get("version") != SCHEMA_VERSION:
        raise DataError(f"{p}: $.version: result format version {_short(doc.get('version'))}; "
                        f"this nnaudit reads version {SCHEMA_VERSION}")
    if doc.get("kind") not in KINDS:
        raise DataError(f"{p}: $.kind: unknown result kind {_short(doc.get('kind'))}; expected one of {KINDS}")
    if kind is not None and doc["kind"] != kind:
        raise DataError(f"{p}: expected a {kind!r} result, got {doc['kind']!r}")
    if validate:
        from nnaudit.reports.validate import validate as check_shape

        check_shape(doc, str(p))
    return doc
