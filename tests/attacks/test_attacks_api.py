"""The attack API on a real zoo network: one table over all attacks, targeted
runs, reproducibility, input errors and the multi-attack evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nnaudit.attacks as A
from nnaudit.attacks.threat import perturbation_norms
from nnaudit.errors import ConfigError, DataError
from nnaudit.networks.runtime import OnnxRuntimeModel

FAST = {"pgd": {"steps": 10}, "apgd-ce": {"steps": 10}, "apgd-dlr": {"steps": 10},
        "cw": {"steps": 50, "binary_search_steps": 3, "initial_const": 1.0, "lr": 0.05}, "deepfool": {}, "fgsm": {}, "jsma": {}}


@pytest.mark.parametrize("attack", sorted(FAST))
def test_result_is_consistent_with_onnxruntime(digits_small, attack):
    net, x, y = digits_small
    norm = {"jsma": "l0", "cw": "l2"}.get(attack, "linf")
    eps = {"jsma": 8, "cw": 1.0}.get(attack, 0.1)
    res = A.run_attack(attack, net, x, y, eps=eps, norm=norm, threads=1, **FAST[attack])
    ort = OnnxRuntimeModel(net.source)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == np.float32
    np.testing.assert_allclose(res.logits_clean, ort.run(x))
    np.testing.assert_allclose(res.logits_adv, ort.run(res.x_adv))
    np.testing.assert_array_equal(res.success, ort.predict(res.x_adv) != y)
    for k, v in perturbation_norms(x, res.x_adv).items():
        np.testing.assert_array_equal(res.norms[k], v)
    assert res.success.mean() > 0.2, "every attack breaks some digits at this eps"
    assert res.attack == attack and res.summary()["num_samples"] == len(x)
    # samples the network already gets wrong are returned unchanged
    wrong = ort.predict(x) != y
    np.testing.assert_array_equal(res.x_adv[wrong], x[wrong])


@pytest.mark.parametrize("attack", ["pgd", "apgd-ce", "apgd-dlr", "cw", "deepfool", "jsma", "fgsm"])
def test_targeted_success_means_the_target_class(digits_small, attack):
    net, x, y = digits_small
    target = (y + 1) % 10
    norm = {"jsma": "l0", "cw": "l2"}.get(attack, "linf")
    eps = {"jsma": 10, "cw": 2.0}.get(attack, 0.3)
    opts = {**FAST[attack], **({"gamma": 0.3} if attack == "jsma" else {})}
    res = A.run_attack(attack, net, x, y, eps=eps, norm=norm, target=target, threads=1, **opts)
    pred = OnnxRuntimeModel(net.source).predict(res.x_adv)
    np.testing.assert_array_equal(res.success, pred == target)
    assert res.success.any()


def test_same_seed_same_result_other_seed_other_start(digits_small):
    net, x, y = digits_small
    a = A.pgd(net, x, y, eps=0.05, steps=5, seed=3, threads=1)
    b = A.pgd(net, x, y, eps=0.05, steps=5, seed=3, threads=1)
    c = A.pgd(net, x, y, eps=0.05, steps=5, seed=4, threads=1)
    np.testing.assert_array_equal(a.x_adv, b.x_adv)
    np.testing.assert_array_equal(a.success, b.success)
    assert not np.array_equal(a.x_adv, c.x_adv)


def test_device_auto_is_cpu_without_cuda(digits_small):
    import torch

    net, x, y = digits_small
    res = A.fgsm(net, x, y, eps=0.1, device="auto")
    assert res.device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_batches_do_not_change_what_is_found_by_deterministic_attacks(digits_small):
    net, x, y = digits_small
    a = A.deepfool(net, x, y, eps=0.2, batch_size=5, threads=1)
    b = A.deepfool(net, x, y, eps=0.2, batch_size=64, threads=1)
    np.testing.assert_allclose(a.x_adv, b.x_adv, atol=1e-5)


@pytest.mark.parametrize("change, error, words", [
    (lambda x, y: (x[:, :10], y), DataError, "sample shape"),
    (lambda x, y: (x, y[:5]), DataError, "labels shaped"),
    (lambda x, y: (x, y + 10), DataError, "outside [0, 10)"),
    (lambda x, y: (np.where(np.arange(64) == 3, np.nan, x), y), DataError, "NaN"),
    (lambda x, y: (np.where(np.arange(64) == 5, -np.inf, x), y), DataError, "Inf"),
    (lambda x, y: (x * 3, y), DataError, "outside the valid range"),
])
def test_bad_inputs_are_rejected_before_any_work(digits_small, change, error, words):
    net, x, y = digits_small
    bx, by = change(x.copy(), y.copy())
    with pytest.raises(error, match=None) as info:
        A.pgd(net, bx, by, eps=0.1)
    assert words in str(info.value)


@pytest.mark.parametrize("kwargs, words", [
    ({"eps": float("inf")}, "finite eps"),
    ({"eps": -1.0}, "eps"),
    ({"eps": 2, "norm": "l0"}, "supports the norms"),
    ({"eps": 0.1, "norm": "l3"}, "norm"),
    ({"eps": 0.1, "steps": 0}, "steps"),
    ({"eps": 0.1, "stepz": 3}, "unknown option"),
    ({"eps": 0.1, "device": "tpu"}, "device"),
    ({"eps": 0.1, "budget": 0.5}, "budget >= 1"),
    ({"eps": 0.1, "graph": "maybe"}, "expected graph true, false or null"),
    ({"eps": 0.1, "masked": 1}, "expected masked true, false or null"),
])
def test_bad_settings_are_config_errors(digits_small, kwargs, words):
    net, x, y = digits_small
    with pytest.raises(ConfigError) as info:
        A.pgd(net, x, y, **kwargs)
    assert words in str(info.value)


def test_unknown_attack_name():
    with pytest.raises(ConfigError, match="unknown attack"):
        A.make_attack("pgdd")


def test_evaluate_worst_case_and_schema_body(digits_small):
    net, x, y = digits_small
    ev = A.evaluate(net, x, y, attacks=["fgsm", "pgd", "deepfool"], eps=[0.02, 0.1], threads=1,
                    options={"pgd": {"steps": 10}})
    ort_acc = float((OnnxRuntimeModel(net.source).predict(x) == y).mean())
    assert ev.clean_accuracy == pytest.approx(ort_acc)
    body = ev.to_dict(examples=2)
    json.dumps(body)
    assert set(body) == {"num_samples", "clean_accuracy", "norm", "eps", "attacks", "results", "examples"}
    assert body["attacks"] == ["fgsm", "pgd", "deepfool"] and body["eps"] == [0.02, 0.1]
    for e, entry in zip(body["eps"], body["results"]):
        ra = entry["robust_accuracy"]
        assert ra["worst"] == ev.robust_accuracy[e]
        assert ra["worst"] <= min(ra[a] for a in body["attacks"])
        assert entry["success_rate"]["worst"] == pytest.approx(ev.clean_accuracy - ra["worst"])
        assert set(entry["time_s"]) == set(entry["mismatches"]) == set(body["attacks"])
    assert ev.robust_accuracy[0.1] <= ev.robust_accuracy[0.02] < ev.clean_accuracy
    ex = body["examples"][0]
    assert ex["pred_adv"] != ex["label"] and len(ex["x"]) == len(ex["x_adv"]) == 64 and ex["shape"] == [64]
    assert ex["norms"]["linf"] <= ex["eps"]


def test_evaluate_checks_everything_first(digits_small):
    net, x, y = digits_small
    with pytest.raises(ConfigError, match="supports the norms"):
        A.evaluate(net, x, y, attacks=["cw", "pgd"], eps=[1], norm="l0")
    with pytest.raises(ConfigError, match="not run"):
        A.evaluate(net, x, y, attacks=["pgd"], eps=[0.1], options={"cw": {"steps": 3}})


def test_attack_under_no_grad(digits_small):
    import torch

    net, x, y = digits_small
    with torch.no_grad():
        res = A.pgd(net, x, y, eps=0.1, steps=5, threads=1)
    assert res.success.any()


def test_cw_graph_switch_is_checked(digits_small):
    net, x, y = digits_small
    with pytest.raises(ConfigError, match="cw: expected graph true, false or null"):
        A.cw(net, x, y, eps=float("inf"), norm="l2", graph="yes")
