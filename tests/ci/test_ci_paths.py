"""Paths in a checks file stay inside the checks file's folder (issue #23): ``..``,
absolute paths and symlinks that lead out are refused with exit 2 and nothing of the
target file is printed, unless ``allow_outside_paths = true``; parse errors quote at
most a short, escaped token of a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.config import load_checks
from nnaudit.errors import ConfigError, NnauditError
from nnaudit.networks import zoo
from verify.vnnlib import parse_string

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"
SECRET = "root:x:0:0:SECRET-LINE"

VERIFY = """{head}
[[check]]
name = "escape"
kind = "verify"
model = "{model}"
property = "{prop}"
"""


def project(tmp_path: Path) -> tuple[Path, Path]:
    """``tmp_path/proj`` (the checks file's folder) and a secret file beside it."""
    proj = tmp_path / "proj"
    proj.mkdir()
    secret = tmp_path / "secret.vnnlib"
    secret.write_text(SECRET + "\n")
    return proj, secret


def check(proj: Path, prop: str, head: str = "", model: str = "moons-ffn") -> tuple[int, str]:
    (proj / "nnaudit.toml").write_text(VERIFY.format(head=head, model=model, prop=prop))
    result = CliRunner().invoke(cli, ["check", "--config", str(proj / "nnaudit.toml")])
    return result.exit_code, result.output


@pytest.mark.parametrize("prop", ["../secret.vnnlib", "../../" + "x/../" * 3 + "proj/../secret.vnnlib"])
def test_dotdot_path_is_refused_without_echoing_the_file(tmp_path: Path, prop: str) -> None:
    proj, _ = project(tmp_path)
    code, out = check(proj, prop)
    assert code == 2, out
    assert "SECRET" not in out and "root:x" not in out
    assert str(proj / "nnaudit.toml") in out and "'escape'" in out and "key 'property'" in out
    assert "outside the checks file's folder" in out and "allow_outside_paths" in out


def test_absolute_path_and_symlink_outside_are_refused(tmp_path: Path) -> None:
    proj, secret = project(tmp_path)
    code, out = check(proj, str(secret))
    assert code == 2 and "SECRET" not in out and "outside the checks file's folder" in out
    os.symlink(secret, proj / "link.vnnlib")
    code, out = check(proj, "link.vnnlib")
    assert code == 2 and "SECRET" not in out and "outside the checks file's folder" in out


def test_model_and_data_outside_are_refused(tmp_path: Path) -> None:
    proj, _ = project(tmp_path)
    (tmp_path / "net.onnx").write_bytes(zoo.path("moons-ffn").read_bytes())
    text = ('[[check]]\nname = "a"\nkind = "attack"\nmodel = "../net.onnx"\ndata = "../d.npz"\n'
            'eps = 0.1\nmin_robust_accuracy = 0.5\n')
    (proj / "nnaudit.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_checks(proj / "nnaudit.toml")
    message = str(info.value)
    assert "key 'model'" in message and "key 'data'" in message and "outside" in message


def test_opt_out_allows_paths_outside(tmp_path: Path) -> None:
    proj, _ = project(tmp_path)
    (tmp_path / "p.vnnlib").write_text((EXAMPLES / "properties" / "moons_sample0.vnnlib").read_text())
    (tmp_path / "net.onnx").write_bytes(zoo.path("moons-ffn").read_bytes())
    (proj / "nnaudit.toml").write_text(VERIFY.format(head="allow_outside_paths = true\n",
                                                     model="../net.onnx", prop="../p.vnnlib"))
    (only,) = load_checks(proj / "nnaudit.toml").checks
    assert only.properties == ((tmp_path / "p.vnnlib").resolve(),)
    assert only.model == (tmp_path / "net.onnx").resolve()
    code, out = check(proj, "../p.vnnlib", head="allow_outside_paths = 'yes'\n")
    assert code == 2 and "key 'allow_outside_paths'" in out


def test_bundled_names_and_inside_paths_still_work(tmp_path: Path) -> None:
    proj, _ = project(tmp_path)
    (proj / "sub").mkdir()
    (proj / "sub" / "p.vnnlib").write_text((EXAMPLES / "properties" / "moons_sample0.vnnlib").read_text())
    (proj / "nnaudit.toml").write_text(VERIFY.format(head="", model="moons-ffn", prop="sub/../sub/p.vnnlib")
                                       + '[[check]]\nname = "b"\nkind = "attack"\nmodel = "digits-ffn"\n'
                                         'data = "digits"\neps = 0.1\nmin_robust_accuracy = 0.5\n')
    verify, attack = load_checks(proj / "nnaudit.toml").checks
    assert verify.model == zoo.path("moons-ffn") and attack.data == "digits"


def test_long_garbage_token_is_truncated_and_escaped() -> None:
    garbage = "A" * 5000 + "\x1b[31m"
    with pytest.raises(NnauditError) as info:
        parse_string(f"(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 {garbage}))\n")
    message = str(info.value)
    assert "AAAA" in message and "A" * 60 not in message and "..." in message
    with pytest.raises(NnauditError) as info:
        parse_string("\x1b[2J" + "B" * 5000)
    assert "B" * 60 not in str(info.value) and "\x1b" not in str(info.value)
