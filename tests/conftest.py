"""Shared test set-up: make ``tests/`` importable for the small helper modules
(``onnx_build``) and expose the data folder."""

from __future__ import annotations

import sys
from pathlib import Path

import os

import pytest
from hypothesis import settings

# Under CI the property tests draw the same examples every run (reproducible verdicts, no flakes);
# locally they explore new examples each run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

DATA = TESTS / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``tests/data``: VNN-COMP copies and other small fixtures."""
    return DATA
