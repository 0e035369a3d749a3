"""Shared test set-up: make ``tests/`` importable for the small helper modules
(``onnx_build``) and expose the data folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

DATA = TESTS / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``tests/data``: VNN-COMP copies and other small fixtures."""
    return DATA
