"""``nnaudit regions``: JSON per SCHEMA.md, resume, Ctrl-C, safety maps, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.networks import zoo

BASE = ["--data", "digits", "--limit", "2", "--grid", "2x2", "--step", "0.05", "--steps", "1",
        "--timeout-per-region", "5"]


def invoke(*args: str):  # noqa: ANN201
    return CliRunner().invoke(cli, ["regions", str(zoo.path("digits-ffn")), *args])


def test_json_follows_the_schema_and_maps_are_written(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = invoke(*BASE, "--json", str(out), "--maps", str(tmp_path / "maps"))
    assert res.exit_code in (0, 1, 3), res.output
    doc = json.loads(out.read_text())
    assert doc["kind"] == "regions" and doc["complete"] is True and doc["finished"]
    assert doc["manipulation"] == {"step": 0.05, "steps": 1, "budget": None, "clip": [0.0, 1.0]}
    assert doc["grid"] == [2, 2] and doc["patch"] is None and doc["methods"] == ["exact"]
    assert [im["index"] for im in doc["images"]] == [0, 1]
    for im in doc["images"]:
        assert {"index", "label", "predicted", "shape", "x", "regions"} <= set(im) and im["shape"] == [8, 8]
        if "skipped" not in im:
            assert [r["box"] for r in im["regions"]] == [[0, 0, 4, 4], [0, 4, 4, 8], [4, 0, 8, 4], [4, 4, 8, 8]]
            assert all(r["verdict"] in ("safe", "unsafe", "unknown") for r in im["regions"])
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["image_0000.png", "image_0001.png"]
    assert "exact" in res.output and "safe" in res.output


def test_resume_keeps_done_regions_and_checks_settings(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    invoke(*BASE, "--limit", "3", "--json", str(out))
    full = json.loads(out.read_text())
    partial = json.loads(out.read_text())
    im = next(i for i in partial["images"] if i["regions"])
    im["regions"] = im["regions"][:1]
    partial["images"] = partial["images"][: partial["images"].index(im) + 1]
    partial["complete"] = False
    out.write_text(json.dumps(partial))
    res = invoke(*BASE, "--limit", "3", "--json", str(out), "--resume")
    assert res.exit_code in (0, 1, 3), res.output
    again = json.loads(out.read_text())
    assert again["complete"] is True
    assert [len(i["regions"]) for i in again["images"]] == [len(i["regions"]) for i in full["images"]]
    assert again["images"][partial["images"].index(im)]["regions"][0] == im["regions"][0]  # kept, not rerun
    bad = invoke(*BASE, "--limit", "3", "--step", "0.1", "--json", str(out), "--resume")
    assert bad.exit_code == 2 and "settings differ" in bad.output and "manipulation" in bad.output


def test_ctrl_c_writes_an_incomplete_resumable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nnaudit.verify.regions.api as api

    calls = {"n": 0}
    real = api.check_region

    def interrupt(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "check_region", interrupt)
    out = tmp_path / "r.json"
    res = invoke(*BASE, "--start", "1", "--json", str(out))
    assert res.exit_code == 130 and "--resume" in res.output
    doc = json.loads(out.read_text())
    assert doc["complete"] is False and len(doc["images"][0]["regions"]) == 2
    monkeypatch.setattr(api, "check_region", real)
    res = invoke(*BASE, "--start", "1", "--json", str(out), "--resume")
    doc = json.loads(out.read_text())
    assert res.exit_code in (0, 1, 3), res.output
    assert doc["complete"] is True and sum(len(i["regions"]) for i in doc["images"]) >= 4


@pytest.mark.parametrize("args,message", [
    (["--grid", "9x9"], "does not fit"),
    (["--grid", "2x2", "--patch", "2"], "only one of"),
    (["--step", "-1"], "step > 0"),
    (["--resume"], "needs --json"),
    (["--data", "nope.npz"], "nope.npz"),
    (["--time-bank", "-1"], "'--time-bank': -1.0 is not in the range"),
])
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    res = invoke(*BASE, *args)
    assert res.exit_code == 2 and message in res.output, res.output


@pytest.fixture
def colour_files(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny (3, 4, 4) conv net and two colour images it classifies (labels = its classes)."""
    import numpy as np

    from colour_nets import colour_net

    net, ort, path = colour_net(5, str(tmp_path))
    x = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    data = tmp_path / "colour.npz"
    np.savez(data, x=x, y=ort.run(x).argmax(axis=1))
    return path, data


def test_colour_regions_per_channel_are_recorded_with_pixels_and_channels(colour_files, tmp_path: Path) -> None:
    from nnaudit.reports.schema import read_result

    model, data = colour_files
    out = tmp_path / "c.json"
    res = CliRunner().invoke(cli, ["regions", str(model), "--data", str(data), "--grid", "2x2", "--region-channels",
                                   "each", "--step", "0.2", "--steps", "1", "--json", str(out), "--maps",
                                   str(tmp_path / "maps")])
    assert res.exit_code in (0, 1, 3), res.output
    doc = read_result(out, kind="regions")
    assert doc["region_channels"] == "each" and doc["settings"]["region_channels"] == "each"
    for im in doc["images"]:
        assert im["shape"] == [3, 4, 4] and len(im["regions"]) == 12
        first = im["regions"][:3]
        assert [r["channels"] for r in first] == [[0], [1], [2]] and all(r["box"] == [0, 0, 2, 2] for r in first)
        assert all(r["image_pixels"] == [0, 1, 4, 5] for r in first)
        assert [r["pixels"] for r in first] == [[0, 1, 4, 5], [16, 17, 20, 21], [32, 33, 36, 37]]
    assert len(list((tmp_path / "maps").iterdir())) == 2


@pytest.mark.parametrize("extra,message", [
    (["--image-shape", "5x5"], "--image-shape 5x5 has 25 values but the network input (3, 4, 4) has 48"),
    (["--image-shape", "four"], "expected --image-shape"),
    (["--grid", "5x1"], "does not fit an image of 4x4 pixels"),
])
def test_a_bad_image_shape_is_one_line_and_exit_2(colour_files, extra: list[str], message: str) -> None:
    model, data = colour_files
    res = CliRunner().invoke(cli, ["regions", str(model), "--data", str(data), *extra])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1


def test_channels_last_data_for_a_channels_first_model_is_refused(colour_files, tmp_path: Path) -> None:
    import numpy as np

    model, data = colour_files
    with np.load(data) as arrays:
        hwc = tmp_path / "hwc.npz"
        np.savez(hwc, x=arrays["x"].transpose(0, 2, 3, 1), y=arrays["y"])
    res = CliRunner().invoke(cli, ["regions", str(model), "--data", str(hwc)])
    assert res.exit_code == 2 and "shaped (4, 4, 3) but the network reads images shaped (3, 4, 4)" in res.output
    assert "x.transpose(0, 3, 1, 2)" in res.output and len(res.output.strip().splitlines()) == 1


DLV = ["--data", "digits", "--limit", "1", "--grid", "2x2", "--step", "0.05", "--steps", "1",
       "--timeout-per-region", "2", "--method", "dlv"]


def test_dlv_search_heuristic_and_depth_reach_the_config_and_the_settings(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    res = invoke(*DLV, "--dlv-search", "single", "--dlv-heuristic", "activation", "--dlv-depth", "3",
                 "--json", str(out))
    assert res.exit_code in (0, 1, 3), res.output
    dlv = json.loads(out.read_text())["settings"]["dlv"]
    assert (dlv["search"], dlv["heuristic"], dlv["depth"]) == ("single", "activation", 3)
    bad = invoke(*DLV, "--dlv-search", "single", "--dlv-heuristic", "activation", "--dlv-depth", "4",
                 "--json", str(out), "--resume")
    assert bad.exit_code == 2 and "settings differ in dlv" in bad.output, bad.output


def test_dlv_options_default_to_the_config_and_offer_its_enum_values() -> None:
    import click

    from nnaudit.commands.regions import RegionsOptions, command
    from nnaudit.verify.regions.dlv_config import DLVConfig, DLVSearch, Heuristic

    params = {p.name: p for p in command.params}
    assert list(params["dlv_search"].type.choices) == [m.value for m in DLVSearch]
    assert list(params["dlv_heuristic"].type.choices) == [m.value for m in Heuristic]
    ctx = click.Context(command)
    defaults = {p.name: p.get_default(ctx) for p in command.params if p.name != "model"}
    got = RegionsOptions(**defaults).config().dlv
    assert got == DLVConfig(layer=got.layer, num_features=got.num_features, feature_dims=got.feature_dims)
    assert (got.search, got.heuristic, got.depth) == (DLVConfig().search, DLVConfig().heuristic, DLVConfig().depth)


@pytest.mark.parametrize("args,message", [
    (["--dlv-search", "tree"], "--dlv-search"),
    (["--dlv-heuristic", "random"], "--dlv-heuristic"),
    (["--dlv-depth", "x"], "--dlv-depth"),
    (["--dlv-depth", "0"], "depth"),
])
def test_bad_dlv_options_exit_2(args: list[str], message: str) -> None:
    res = invoke(*DLV, *args)
    assert res.exit_code == 2 and message in res.output, res.output


def test_the_json_records_how_the_bounds_were_batched(tmp_path: Path) -> None:
    from nnaudit.reports.validate import problems
    from nnaudit.verify.regions.api import BOUND_BATCH

    out = tmp_path / "b.json"
    res = invoke(*BASE, "--limit", "1", "--json", str(out))
    assert res.exit_code in (0, 1, 3), res.output
    doc = json.loads(out.read_text())
    assert doc["bounds"] == {"chunk": BOUND_BATCH, "mode": "full"}   # digits-ffn: 64 inputs, bounded whole
    assert not any(k.startswith("bound") for k in doc["settings"]) and problems(doc) == []
    assert problems(dict(doc, bounds={"chunk": "32", "mode": "tiles"})) != []
    dlv = tmp_path / "d.json"
    invoke(*DLV, "--json", str(dlv))
    assert json.loads(dlv.read_text())["bounds"] is None


def test_time_bank_reaches_the_config_is_recorded_and_keeps_the_verdicts(tmp_path: Path) -> None:
    base = ["--data", "digits", "--limit", "2", "--step", "0.2", "--steps", "2", "--grid", "2x2"]
    docs = []
    for bank in ("0", "1.5"):
        out = tmp_path / f"b{bank}.json"
        res = CliRunner().invoke(cli, ["regions", str(zoo.path("digits-ffn")), *base, "--time-bank", bank,
                                       "--json", str(out)])
        assert res.exit_code in (0, 1), res.output
        docs.append(json.loads(out.read_text()))
    assert "bank" not in docs[0]["settings"] and docs[1]["settings"]["bank"] == 1.5
    verdicts = [[[r["verdict"] for r in img["regions"]] for img in d["images"]] for d in docs]
    assert verdicts[0] == verdicts[1] and any(verdicts[0])
    again = CliRunner().invoke(cli, ["regions", str(zoo.path("digits-ffn")), *base, "--time-bank", "1.5",
                                     "--json", str(tmp_path / "b0.json"), "--resume"])
    assert again.exit_code == 2 and "settings differ" in again.output, again.output
