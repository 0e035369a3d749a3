"""The model zoo: small trained ONNX networks that ship with nnaudit.

Each network is listed in ``index.json`` next to this file with its input
shape (without the batch axis), classes, the bundled data split its test
accuracy was measured on (by onnxruntime), the training seed and the command
that regenerates it (``python -m nnaudit.networks.zoo.train``). Examples,
tests and the CLI use ``zoo.path(name)`` or ``zoo.load(name)``.

Importing this module is cheap: it reads JSON only, and ``load`` imports the
ONNX loader on first use.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from nnaudit.errors import ModelLoadError

ZOO_DIR = Path(__file__).parent
INDEX_FILE = ZOO_DIR / "index.json"


@functools.cache
def _index() -> dict[str, dict[str, Any]]:
    """The ``networks`` table of ``index.json``, read once."""
    try:
        index = json.loads(INDEX_FILE.read_text())
        return dict(index["networks"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"{INDEX_FILE}: zoo index missing or malformed ({exc}); "
            "regenerate it with: python -m nnaudit.networks.zoo.train"
        ) from exc


def names() -> list[str]:
    """Names of the zoo networks, sorted, e.g. ``['digits-cnn', 'digits-ffn', 'moons-ffn']``."""
    return sorted(_index())


def info(name: str) -> dict[str, Any]:
    """A copy of the ``index.json`` entry of network ``name``.

    Keys include ``file``, ``description``, ``input_shape`` (list, without
    the batch axis), ``num_classes``, ``classes``, ``data``, ``split``,
    ``data_spec`` (what to pass to ``load_data``), ``test_accuracy``,
    ``ops``, ``seed``, ``sha256`` and ``command``.
    """
    index = _index()
    if name not in index:
        raise ModelLoadError(
            f"{INDEX_FILE}: no zoo network named {name!r}; available: {', '.join(names())}"
        )
    return copy.deepcopy(index[name])


def path(name: str) -> Path:
    """Path of the ONNX file of zoo network ``name``; the file must exist."""
    entry = info(name)
    file = ZOO_DIR / entry["file"]
    if not file.is_file():
        raise ModelLoadError(
            f"{file}: zoo network {name!r} is listed in {INDEX_FILE.name} but its file "
            f"is missing; regenerate it with: {entry['command']}"
        )
    return file


def load(name: str, **kwargs: Any) -> Any:
    """Zoo network ``name`` as an IR ``Network``.

    Same as ``nnaudit.networks.load(path(name), **kwargs)``, e.g.
    ``zoo.load("digits-cnn", check=True)``.
    """
    file = path(name)  # unknown names fail here, before the loader is imported
    from nnaudit.networks import load as load_network

    return load_network(file, **kwargs)
