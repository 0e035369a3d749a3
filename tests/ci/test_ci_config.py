"""The checks file: every kind of bad input is reported with the file and the
key, all at once, before any work; good files become frozen check dataclasses."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from nnaudit.config import AttackCheck, RegionsCheck, VerifyCheck, find_config, load_checks
from nnaudit.errors import ConfigError
from nnaudit.networks import zoo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"

GOOD = """
[defaults]
seed = 3
timeout = 7

[[check]]
name = "pgd"
kind = "attack"
model = "digits-ffn"
data = "digits"
eps = 0.05
attacks = ["PGD", "apgd"]
options = { apgd = { steps = 5 } }
min_robust_accuracy = 0.5

[[check]]
name = "regions"
kind = "regions"
model = "digits-cnn"
data = "digits"
patch = 2
max_unsafe_regions = 1

[[check]]
name = "prop"
kind = "verify"
model = "net.onnx"
property = "p.vnnlib"
"""


def write(folder: Path, text: str, name: str = "nnaudit.toml") -> Path:
    (folder / "net.onnx").write_bytes(zoo.path("moons-ffn").read_bytes())
    (folder / "p.vnnlib").write_text((EXAMPLES / "properties" / "moons_sample0.vnnlib").read_text())
    path = folder / name
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_checks(write(tmp_path, text))
    return str(info.value)


def test_good_file_gives_frozen_checks_with_defaults_and_resolved_paths(tmp_path: Path) -> None:
    checks = load_checks(write(tmp_path, GOOD)).checks
    attack, regions, verify = checks
    assert isinstance(attack, AttackCheck) and isinstance(regions, RegionsCheck) and isinstance(verify, VerifyCheck)
    assert attack.eps == (0.05,) and attack.attacks == ("pgd", "apgd-ce") and attack.seed == 3
    assert attack.options == {"apgd-ce": {"steps": 5}} and attack.model == zoo.path("digits-ffn")
    assert regions.timeout == 7 and regions.patch == 2 and regions.max_unsafe_regions == 1
    assert verify.model == (tmp_path / "net.onnx").resolve() and verify.properties == ((tmp_path / "p.vnnlib").resolve(),)
    assert verify.timeout == 7 and verify.expect == "holds"
    with pytest.raises(dataclasses.FrozenInstanceError):
        attack.eps = (1.0,)  # type: ignore[misc]


def test_pyproject_tool_table_is_read_and_found(tmp_path: Path) -> None:
    text = GOOD.replace("[defaults]", "[tool.nnaudit.defaults]").replace("[[check]]", "[[tool.nnaudit.check]]")
    path = write(tmp_path, "[project]\nname = 'x'\n" + text, name="pyproject.toml")
    assert [c.name for c in load_checks(path).checks] == ["pgd", "regions", "prop"]
    assert find_config(tmp_path) == path
    (tmp_path / "nnaudit.toml").write_text(GOOD)
    assert find_config(tmp_path) == tmp_path / "nnaudit.toml"


@pytest.mark.parametrize(("change", "expected"), [
    (('eps = 0.05', 'epss = 0.05'), "key 'epss': unknown key for attack checks"),
    (('eps = 0.05', 'eps = "big"'), "key 'eps': expected a finite number, got 'big'"),
    (('patch = 2', 'patch = 0'), "key 'patch': expected an integer >= 1, got 0"),
    (('min_robust_accuracy = 0.5', 'min_robust_accuracy = 1.5'), "expected a number in [0, 1], got 1.5"),
    (('min_robust_accuracy = 0.5', 'min_robust_accuracy = 0.5\nnorm = "l7"'), "key 'norm': expected one of linf, l2, l1, l0"),
    (('"apgd"]', '"apgd", "magic"]'), "key 'attacks': expected attack names from"),
    (('model = "net.onnx"', 'model = "missing.onnx"'), "missing.onnx not found"),
    (('data = "digits"\npatch', 'data = "nope.npz"\npatch'), "nope.npz not found"),
    (('property = "p.vnnlib"', 'property = ["p.vnnlib", "q.vnnlib"]'), "q.vnnlib not found"),
    (('kind = "verify"', 'kind = "prove"'), "key 'kind': expected one of attack, regions, verify, got 'prove'"),
    (('name = "prop"', 'name = "pgd"'), "duplicate check name 'pgd'"),
    (('seed = 3', 'seed = 3\nsead = 1'), "[defaults], key 'sead': unknown key"),
    (('property = "p.vnnlib"\n', 'property = "p.vnnlib"\nexpect = "maybe"\n'), "key 'expect': expected \"holds\" or \"violated\""),
    (('max_unsafe_regions = 1', 'max_unsafe_regions = true'), "key 'max_unsafe_regions': expected an integer >= 0, got True"),
    (('options = { apgd = { steps = 5 } }', 'options = { fgsm = { steps = 5 } }'), "options for attacks that are not run: fgsm"),
])
def test_each_bad_key_is_named_with_file_and_check(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in GOOD
    message = problems(tmp_path, GOOD.replace(old, new, 1))
    assert str(tmp_path / "nnaudit.toml") in message
    assert expected in message, message


def test_missing_required_keys_and_requirement(tmp_path: Path) -> None:
    message = problems(tmp_path, '[[check]]\nname = "a"\nkind = "attack"\nmodel = "digits-ffn"\n')
    assert "[[check]] #1 ('a'): missing required key 'data'" in message
    assert "missing required key 'eps'" in message
    assert "missing a requirement" in message


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    bad = GOOD.replace("eps = 0.05", "epss = 0.05").replace('model = "net.onnx"', 'model = "gone.onnx"')
    message = problems(tmp_path, bad)
    assert message.startswith("3 problems in the checks file")  # epss, then the missing eps, then gone.onnx
    assert "epss" in message and "gone.onnx" in message and "missing required key 'eps'" in message


def test_missing_file_bad_toml_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="checks file not found"):
        load_checks(tmp_path / "nnaudit.toml")
    assert "not a valid TOML file" in problems(tmp_path, "[[check]\n")
    assert "no checks" in problems(tmp_path, "# nothing\n")
    assert "key 'checks': unknown key" in problems(tmp_path, "[[checks]]\nname = 'x'\n")
    (tmp_path / "nnaudit.toml").unlink()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml: no \[tool.nnaudit\] table"):
        load_checks(tmp_path / "pyproject.toml")
    assert find_config(tmp_path) is None


def test_example_checks_file_loads(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "ci")
    checks = load_checks(tmp_path / "ci" / "nnaudit.toml").checks
    assert [c.kind for c in checks] == ["attack", "regions", "verify"]
