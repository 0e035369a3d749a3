"""Requirements against result bodies: statuses (a check fails only on
confirmed evidence, undecided is inconclusive, never passed), messages with
requirement, measured value and worst counterexample, and the exit codes."""

from __future__ import annotations

import pytest

from nnaudit.checks.judge import judge_attack, judge_regions, judge_verify
from nnaudit.checks.outcome import ExitPolicy, Status


def attack_body(robust: dict[float, float], examples: list[dict] | None = None) -> dict:
    return {"num_samples": 20, "clean_accuracy": 0.95, "norm": "linf", "eps": list(robust), "attacks": ["fgsm", "pgd"],
            "results": [{"eps": e, "robust_accuracy": {"worst": r, "pgd": r}} for e, r in robust.items()],
            "examples": examples or []}


def example(index: int, eps: float, linf: float, adv: int) -> dict:
    return {"index": index, "eps": eps, "attack": "pgd", "label": 7, "pred_clean": 7, "pred_adv": adv,
            "conf_clean": 0.98, "conf_adv": 0.6, "norms": {"l0": 12, "l2": 0.21, "linf": linf}}


def test_attack_requirement_uses_the_worst_eps_and_smallest_counterexample() -> None:
    body = attack_body({0.05: 0.9, 0.1: 0.7}, [example(3, 0.1, 0.1, 9), example(5, 0.1, 0.04, 1), example(8, 0.05, 0.01, 2)])
    j = judge_attack(body, min_robust_accuracy=0.8)
    assert j.status is Status.FAILED and j.measured == 0.7
    assert "requirement min_robust_accuracy >= 0.8 not met: robust accuracy 0.7 < 0.8 at eps=0.1" in j.message
    assert "Worst counterexample: sample 5 (label 7): class 7 -> 1 (confidence 0.98 -> 0.6) by pgd at eps=0.1, " \
           "perturbation l0=12, l2=0.21, linf=0.04" in j.message
    assert j.worst is not None and j.worst["index"] == 5
    assert judge_attack(body, min_robust_accuracy=0.7).status is Status.PASSED
    both = judge_attack(body, min_robust_accuracy=0.5, min_clean_accuracy=0.99)
    assert both.status is Status.FAILED and "clean accuracy 0.95 < 0.99" in both.message
    with pytest.raises(ValueError):
        judge_attack(body)


def image(index: int, verdicts: list[str], cex_linf: float = 0.1) -> dict:
    regions = []
    for i, v in enumerate(verdicts):
        cex = {"x": [0.0], "class_before": 4, "class_after": 9, "conf_before": 0.9, "conf_after": 0.5,
               "pixels_changed": [1], "l0": 2, "l2": 0.14, "linf": cex_linf} if v == "unsafe" else None
        regions.append({"id": i, "box": [0, 2 * i, 2, 2 * i + 2], "verdict": v, "method": "exact", "counterexample": cex})
    return {"index": index, "label": 4, "predicted": 4, "shape": [8, 8], "x": [0.0] * 64, "regions": regions}


@pytest.mark.parametrize(("verdicts", "cap", "status", "measured"), [
    (["safe", "safe"], 0, Status.PASSED, 0),
    (["safe", "unknown"], 0, Status.INCONCLUSIVE, 0),   # the unknown region may be unsafe
    (["unsafe", "unknown"], 1, Status.INCONCLUSIVE, 1),
    (["unsafe", "safe"], 1, Status.PASSED, 1),
    (["unsafe", "unknown"], 0, Status.FAILED, 1),
])
def test_regions_cap_and_unknown_regions(verdicts: list[str], cap: int, status: Status, measured: int) -> None:
    j = judge_regions([image(0, verdicts)], max_unsafe_regions=cap)
    assert (j.status, j.measured) == (status, measured)
    assert f"max_unsafe_regions <= {cap}" in j.message


def test_regions_message_names_the_worst_region_and_counts_methods_once() -> None:
    both = image(2, ["unsafe", "safe"])
    both["regions"] += [{**both["regions"][0], "method": "dlv"}, {**both["regions"][1], "method": "dlv", "verdict": "unknown"}]
    j = judge_regions([both, {**image(3, []), "regions": []}], max_unsafe_regions=0)
    assert j.status is Status.FAILED
    assert "1 unsafe, 0 unknown, 1 safe of 2 regions in 1 of 2 image(s) examined, 1 skipped (misclassified)" \
        in j.message
    assert "Worst counterexample: image 2 (label 4), region 0 rows 0-1, cols 0-1: class 4 -> 9 " \
           "(confidence 0.9 -> 0.5), perturbation l0=2, l2=0.14, linf=0.1" in j.message


def test_a_check_of_nothing_fails_with_its_reason() -> None:
    skipped = {**image(0, []), "regions": [], "skipped": "misclassified"}
    j = judge_regions([skipped], max_unsafe_regions=0)
    assert j.status is Status.FAILED and j.measured is None
    assert "examined 1 image(s) but checked 0 regions" in j.message and "image 0" in j.message
    assert "raise limit" in j.message
    assert judge_regions([], max_unsafe_regions=3).status is Status.FAILED
    j = judge_verify([])
    assert j.status is Status.FAILED and "0 properties" in j.message
    body = {"clean_accuracy": 0.0, "results": [], "norm": "linf", "attacks": ["pgd"], "num_samples": 0}
    j = judge_attack(body, min_robust_accuracy=0.5)
    assert j.status is Status.FAILED and "examined 0 samples" in j.message
    none_right = {**body, "num_samples": 3, "results": [{"eps": 0.1, "robust_accuracy": {"worst": 0.0}}]}
    j = judge_attack(none_right, min_robust_accuracy=0.0)
    assert j.status is Status.FAILED and "none of the 3 samples examined is classified correctly" in j.message
    assert judge_attack(none_right, min_clean_accuracy=0.5).status is Status.FAILED  # measured, not vacuous


def instance(verdict: str, cex: bool = False, reference: bool = False) -> dict:
    d = {"model": "m.onnx", "property": f"{verdict}.vnnlib", "verdict": verdict, "message": "deadline reached",
         "counterexample": {"x": [0.5, 0.25], "y": [1.0, 3.0], "input_shape": [2]} if cex else None}
    if reference:
        d["reference"] = {"x": [0.5, 0.5], "class": 0}
    return d


def test_verify_statuses_and_counterexample_message() -> None:
    assert judge_verify([instance("holds"), instance("holds")]).status is Status.PASSED
    j = judge_verify([instance("holds"), instance("violated", cex=True, reference=True), instance("timeout")])
    assert j.status is Status.FAILED and j.measured == "1 holds, 1 timeout, 1 violated"
    assert "property violated.vnnlib on m.onnx is violated" in j.message
    assert "class 0 (box centre) -> 1" in j.message and "linf=0.25" in j.message
    assert judge_verify([instance("holds"), instance("timeout")]).status is Status.INCONCLUSIVE
    assert judge_verify([instance("unknown")]).status is Status.INCONCLUSIVE
    assert judge_verify([instance("error")]).status is Status.ERROR
    assert judge_verify([instance("violated", cex=True)], expect="violated").status is Status.PASSED
    assert judge_verify([instance("holds")], expect="violated").status is Status.FAILED


@pytest.mark.parametrize(("statuses", "unknown_is_failure", "code"), [
    ([], False, 0),
    ([Status.PASSED], False, 0),
    ([Status.PASSED, Status.INCONCLUSIVE], False, 3),
    ([Status.PASSED, Status.INCONCLUSIVE], True, 1),
    ([Status.FAILED, Status.INCONCLUSIVE], False, 1),
    ([Status.FAILED, Status.ERROR], False, 2),
])
def test_exit_codes(statuses: list[Status], unknown_is_failure: bool, code: int) -> None:
    assert ExitPolicy(unknown_is_failure=unknown_is_failure).code(statuses) == code
