"""Requirements compared with results: the one place failure messages are written.

Each ``judge_*`` takes a result body as the Python API serialises it
(``Evaluation.to_dict()``, ``[VerifyResult.to_dict(), ...]``, the regions
``images`` list) and a requirement, and returns a
:class:`~nnaudit.checks.outcome.Judgement` whose message states the
requirement, the measured value and the worst counterexample (class
before/after and norms).  ``nnaudit check``, the pytest items and the
fixture's ``assert_robust`` all use these, so their messages agree.

Soundness: a check only *fails* on evidence the APIs confirmed with
onnxruntime on the original file (attack successes, UNSAFE regions,
VIOLATED counterexamples); undecided regions and properties make it
*inconclusive*, never *passed*.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from nnaudit.checks.outcome import Judgement, Status


def _num(v: float) -> str:
    return f"{v:.4g}"


def _norms(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_num(float(d[k]))}" for k in ("l0", "l2", "linf") if d.get(k) is not None)


# ------------------------------------------------------------------ attack


def judge_attack(body: dict[str, Any], *, min_robust_accuracy: float | None = None,
                 min_clean_accuracy: float | None = None) -> Judgement:
    """An ``attack`` body (``Evaluation.to_dict()``) against accuracy floors.

    The robust accuracy compared is the worst case over attacks at the eps
    where it is lowest; the requirement must hold at every eps.
    """
    parts = []
    if min_robust_accuracy is not None:
        parts.append(f"min_robust_accuracy >= {min_robust_accuracy:g}")
    if min_clean_accuracy is not None:
        parts.append(f"min_clean_accuracy >= {min_clean_accuracy:g}")
    if not parts:
        raise ValueError("judge_attack: expected min_robust_accuracy and/or min_clean_accuracy")
    requirement = " and ".join(parts)
    clean = float(body["clean_accuracy"])
    results = body.get("results") or []
    worst_entry = min(results, key=lambda r: r["robust_accuracy"]["worst"]) if results else None
    robust = float(worst_entry["robust_accuracy"]["worst"]) if worst_entry else None
    examined = int(body["num_samples"])
    context = (f"{body['norm']}, worst case of {', '.join(body['attacks'])} over {examined} samples examined, "
               f"{round(clean * examined)} classified correctly, clean accuracy {_num(clean)}")
    if examined == 0:
        return Judgement(Status.FAILED, requirement, None, f"requirement {requirement} not established: the check "
                         "examined 0 samples (empty data or limit); a check of nothing cannot pass")
    if min_robust_accuracy is not None and round(clean * examined) == 0:
        return Judgement(Status.FAILED, requirement, 0.0, f"requirement {requirement} not established: none of the "
                         f"{examined} samples examined is classified correctly, so none was attacked; a check of "
                         "nothing cannot pass")
    broken = []
    if min_clean_accuracy is not None and clean < min_clean_accuracy:
        broken.append(f"clean accuracy {_num(clean)} < {min_clean_accuracy:g}")
    if min_robust_accuracy is not None and robust is not None and robust < min_robust_accuracy:
        broken.append(f"robust accuracy {_num(robust)} < {min_robust_accuracy:g} at eps={worst_entry['eps']:g}")
    measured = robust if min_robust_accuracy is not None else clean
    where = f" at eps={worst_entry['eps']:g}" if worst_entry else ""
    if not broken:
        return Judgement(Status.PASSED, requirement, measured,
                         f"requirement {requirement} holds: measured robust accuracy "
                         f"{_num(robust) if robust is not None else 'n/a'}{where} ({context})")
    worst = _worst_attack_example(body, worst_entry["eps"]) if worst_entry else None
    message = f"requirement {requirement} not met: {'; '.join(broken)} ({context})."
    message += " Worst counterexample: " + (_describe_attack_example(worst) if worst else "none recorded") + "."
    return Judgement(Status.FAILED, requirement, measured, message, worst)


def _worst_attack_example(body: dict[str, Any], eps: float) -> dict[str, Any] | None:
    """The recorded adversarial example at ``eps`` with the smallest perturbation."""
    norm = body["norm"]
    found = [e for e in body.get("examples") or [] if e["eps"] == eps]
    if not found:
        return None
    best = min(found, key=lambda e: float((e.get("norms") or {}).get(norm, float("inf"))))
    return {k: best.get(k) for k in ("index", "eps", "attack", "label", "pred_clean", "pred_adv",
                                       "conf_clean", "conf_adv", "norms")}


def _describe_attack_example(ex: dict[str, Any]) -> str:
    conf = ""
    if ex.get("conf_clean") is not None and ex.get("conf_adv") is not None:
        conf = f" (confidence {_num(ex['conf_clean'])} -> {_num(ex['conf_adv'])})"
    return (f"sample {ex['index']} (label {ex['label']}): class {ex['pred_clean']} -> {ex['pred_adv']}{conf} "
            f"by {ex['attack']} at eps={ex['eps']:g}, perturbation {_norms(ex.get('norms') or {})}")


# ------------------------------------------------------------------ regions

_REGION_RANK = {"unsafe": 2, "safe": 1, "unknown": 0}


def judge_regions(images: Sequence[dict[str, Any]], *, max_unsafe_regions: int = 0) -> Judgement:
    """The ``images`` of a ``regions`` body against a cap on unsafe regions.

    A region is unsafe when any method found an onnxruntime-confirmed
    counterexample, safe when a method proved it, unknown otherwise.  More
    unsafe regions than allowed fails; if unknown regions could still push
    the count over the cap, the check is inconclusive.
    """
    requirement = f"max_unsafe_regions <= {max_unsafe_regions}"
    verdicts: dict[tuple[int, int], str] = {}
    worst: tuple[float, dict[str, Any]] | None = None
    skipped = sum(1 for im in images if not im.get("regions"))
    for im in images:
        for r in im.get("regions") or []:
            key = (int(im.get("index", 0)), int(r["id"]))
            if _REGION_RANK[r["verdict"]] > _REGION_RANK[verdicts.get(key, "unknown")]:
                verdicts[key] = r["verdict"]
            verdicts.setdefault(key, r["verdict"])
            cex = r.get("counterexample")
            if r["verdict"] == "unsafe" and cex:
                size = float(cex.get("linf") or 0.0), float(cex.get("l0") or 0.0)
                if worst is None or size < worst[0]:
                    worst = (size, {"image": im.get("index"), "label": im.get("label"), "region": r["id"],
                                    "box": r.get("box"), **{k: cex.get(k) for k in (
                                        "class_before", "class_after", "conf_before", "conf_after",
                                        "l0", "l2", "linf")}})
    counts = Counter(verdicts.values())
    unsafe, unknown, safe = counts["unsafe"], counts["unknown"], counts["safe"]
    tally = (f"{unsafe} unsafe, {unknown} unknown, {safe} safe of {len(verdicts)} regions in "
             f"{len(images) - skipped} of {len(images)} image(s) examined"
             + (f", {skipped} skipped (misclassified)" if skipped else ""))
    if not verdicts:
        return Judgement(Status.FAILED, requirement, None, _vacuous_regions(requirement, images, skipped))
    if unsafe > max_unsafe_regions:
        ex = worst[1] if worst else None
        message = f"requirement {requirement} not met: {tally}."
        message += " Worst counterexample: " + (_describe_region(ex) if ex else "none recorded") + "."
        return Judgement(Status.FAILED, requirement, unsafe, message, ex)
    if unsafe + unknown > max_unsafe_regions:
        return Judgement(Status.INCONCLUSIVE, requirement, unsafe,
                         f"requirement {requirement} undecided: {tally}; the unknown regions may be unsafe "
                         "(raise the timeout or reduce the grid)")
    return Judgement(Status.PASSED, requirement, unsafe, f"requirement {requirement} holds: {tally}")


def _vacuous_regions(requirement: str, images: Sequence[dict[str, Any]], skipped: int) -> str:
    """Why a regions check that checked no region fails."""
    why = (f"all {skipped} image(s) examined were skipped (misclassified: "
           + ", ".join(f"image {im.get('index')}" for im in images[:5] if not im.get("regions"))
           + ("..." if skipped > 5 else "") + "); raise limit (it counts images examined, correct or not)"
           if images else "no image was examined (empty data or limit)")
    return (f"requirement {requirement} not established: the check examined {len(images)} image(s) but checked "
            f"0 regions: {why}. A check of nothing cannot pass")


def _describe_region(ex: dict[str, Any]) -> str:
    box = ex.get("box")
    where = f" rows {box[0]}-{box[2] - 1}, cols {box[1]}-{box[3] - 1}" if box else ""
    conf = ""
    if ex.get("conf_before") is not None and ex.get("conf_after") is not None:
        conf = f" (confidence {_num(ex['conf_before'])} -> {_num(ex['conf_after'])})"
    return (f"image {ex['image']} (label {ex['label']}), region {ex['region']}{where}: class "
            f"{ex['class_before']} -> {ex['class_after']}{conf}, perturbation {_norms(ex)}")


# ------------------------------------------------------------------ verify


def judge_verify(instances: Sequence[dict[str, Any]], *, expect: str = "holds") -> Judgement:
    """``verify`` instances (``VerifyResult.to_dict()``) against the expected verdict.

    The opposite verdict fails (a VIOLATED one carries its onnxruntime-checked
    counterexample); unknown/timeout make it inconclusive; an error is an error.
    """
    if expect not in ("holds", "violated"):
        raise ValueError(f"judge_verify: expected expect='holds' or 'violated', got {expect!r}")
    requirement = f"expect = {expect}"
    if not instances:
        return Judgement(Status.FAILED, requirement, None, f"requirement {requirement} not established: "
                         "0 properties were decided; a check of nothing cannot pass")
    counts = Counter(i["verdict"] for i in instances)
    measured = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) if len(instances) != 1 \
        else instances[0]["verdict"]
    opposite = "violated" if expect == "holds" else "holds"
    bad = [i for i in instances if i["verdict"] == opposite]
    if bad:
        first = bad[0]
        worst = _verify_counterexample(first)
        message = (f"requirement {requirement} not met: property {first['property']} on {first['model']} is "
                   f"{opposite} ({measured} of {len(instances)} properties)")
        if worst:
            message += ". Counterexample (onnxruntime-checked): " + _describe_verify(worst)
        return Judgement(Status.FAILED, requirement, measured, message + ".", worst)
    errors = [i for i in instances if i["verdict"] == "error"]
    if errors:
        return Judgement(Status.ERROR, requirement, measured,
                         f"property {errors[0]['property']}: error: {errors[0].get('message') or 'no message'}")
    open_ = [i for i in instances if i["verdict"] != expect]
    if open_:
        reason = open_[0].get("message") or open_[0]["verdict"]
        return Judgement(Status.INCONCLUSIVE, requirement, measured,
                         f"requirement {requirement} undecided: {measured} of {len(instances)} properties; "
                         f"{open_[0]['property']}: {reason} (raise the timeout)")
    return Judgement(Status.PASSED, requirement, measured,
                     f"requirement {requirement} holds for all {len(instances)} properties")


def _verify_counterexample(instance: dict[str, Any]) -> dict[str, Any] | None:
    """The counterexample with its top class and, when the instance records the
    centre of its input box (``reference``), that centre's class and the norms of x - centre."""
    cex = instance.get("counterexample")
    if not cex:
        return None
    x, y = [float(v) for v in cex["x"]], [float(v) for v in cex["y"]]
    ref = instance.get("reference") or {}
    centre = ref.get("x") or [0.0] * len(x)
    delta = [a - b for a, b in zip(x, centre)]
    return {"property": instance["property"], "class_before": ref.get("class"),
            "class_after": max(range(len(y)), key=y.__getitem__) if y else None, "x": x, "y": y,
            "norms_from": "box centre" if ref else "zero",
            "norms": {"l0": sum(1 for v in delta if v != 0.0), "l2": sum(v * v for v in delta) ** 0.5,
                      "linf": max((abs(v) for v in delta), default=0.0)}}


def _describe_verify(ex: dict[str, Any]) -> str:
    def short(v: list[float]) -> str:
        head = ", ".join(_num(a) for a in v[:6])
        return f"[{head}{', ...' if len(v) > 6 else ''}]"

    classes = (f"class {ex['class_before']} (box centre) -> {ex['class_after']}" if ex["class_before"] is not None
               else f"top class {ex['class_after']}")
    return (f"input x = {short(ex['x'])} ({len(ex['x'])} values), output y = {short(ex['y'])}, {classes}, "
            f"distance from the {ex['norms_from']} {_norms(ex['norms'])}")
