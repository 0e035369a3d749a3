"""The one distribution builds a wheel whose ``nnaudit`` package contains every
subpackage (networks, verify, attacks, adaptation, reports) and the bundled
data, importable from the wheel alone; nothing generic like ``verify`` is
installed at top level."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["nnaudit.commands", "nnaudit.checks", "nnaudit.runs", "nnaudit.networks", "nnaudit.networks.ops", "nnaudit.networks.zoo", "nnaudit.verify",
               "nnaudit.attacks", "nnaudit.adaptation", "nnaudit.reports"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (whl,) = out.glob("nnaudit-*.whl")
    return whl


def test_wheel_has_only_the_nnaudit_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"nnaudit"}
    for pkg in SUBPACKAGES:
        assert pkg.replace(".", "/") + "/__init__.py" in names, pkg
    assert any(n.startswith("nnaudit/networks/zoo/") and n.endswith(".onnx") for n in names)
    assert "nnaudit/networks/data/digits.npz" in names
    assert "nnaudit/verify/vnncomp/run_instance.sh" in names
    assert any(n.startswith("nnaudit/reports/templates/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "nnaudit = nnaudit.cli:main" in text and "nnaudit = nnaudit.pytest_plugin" in text


def test_every_subpackage_imports_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path)
    code = (
        "import importlib, nnaudit, sys\n"
        f"assert nnaudit.__file__.startswith({str(tmp_path)!r}), nnaudit.__file__\n"
        f"for m in {SUBPACKAGES!r}: importlib.import_module(m)\n"
        "from nnaudit.networks import zoo, datasets\n"
        "net = zoo.load('digits-ffn')\n"
        "x, y = datasets.digits('test')\n"
        "assert (net.predict(x) == y).mean() > 0.9\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_editable_install_imports_every_subpackage() -> None:
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in SUBPACKAGES)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert res.returncode == 0, res.stderr


def test_import_nnaudit_is_cheap() -> None:
    """Importing the package, the CLI and the plugin pulls neither torch nor z3."""
    code = ("import sys, nnaudit, nnaudit.cli, nnaudit.pytest_plugin, nnaudit.networks, nnaudit.verify, "
            "nnaudit.attacks, nnaudit.adaptation, nnaudit.reports\n"
            "heavy = [m for m in ('torch', 'z3', 'onnxruntime', 'matplotlib') if m in sys.modules]\n"
            "print(heavy)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
