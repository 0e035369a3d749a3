"""Result documents for the report tests, built per reports/SCHEMA.md.

The pixel data come from the bundled digits and the predictions from the
bundled digits-ffn network, so region maps and galleries show real images;
the verdicts themselves are fixed so the tests can count them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nnaudit.reports import schema


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    from nnaudit.networks.datasets import digits

    x, y = digits("test")
    return x[:n].astype(np.float64), y[:n]


def regions_doc(num_images: int = 3, grid: int = 4, unsafe_every: int = 5, model_file: str = "digits-ffn.onnx") -> dict[str, Any]:
    """A ``regions`` result: ``grid`` x ``grid`` regions per 8x8 image; every
    ``unsafe_every``-th region unsafe (with a counterexample), every 7th unknown."""
    doc = schema.new_result("regions", settings={"grid": [grid, grid], "step": 0.1}, seeds={"seed": 0},
                            command="nnaudit regions digits-ffn.onnx --data digits --grid 4x4")
    doc["model"] = {"file": model_file, "sha256": "ab" * 32, "input_shape": [64], "output_shape": [10],
                    "num_params": 3466, "layers": ["Linear(32,)", "Relu(32,)", "Linear(10,)"]}
    x, y = _digits(num_images)
    side = 8 // grid
    images, k = [], 0
    for i in range(num_images):
        regions = []
        for r in range(grid):
            for c in range(grid):
                box = [r * side, c * side, (r + 1) * side, (c + 1) * side]
                pixels = [row * 8 + col for row in range(box[0], box[2]) for col in range(box[1], box[3])]
                verdict = "unsafe" if k % unsafe_every == 0 else ("unknown" if k % 7 == 0 else "safe")
                cx = None
                if verdict == "unsafe":
                    adv = x[i].copy()
                    adv[pixels] = np.clip(adv[pixels] + 0.2, 0, 1)
                    cx = {"x": adv.tolist(), "class_before": int(y[i]), "class_after": int((y[i] + 1) % 10),
                          "conf_before": 0.9, "conf_after": 0.55, "pixels_changed": pixels[:2], "l0": 2, "l2": 0.28,
                          "linf": 0.2}
                regions.append({"id": r * grid + c, "box": box, "pixels": pixels, "method": "exact",
                                "verdict": verdict, "route": "smt" if verdict != "safe" else "bounds", "time_s": 0.01,
                                "covered": "3 of 9 manipulations" if verdict == "unknown" else None,
                                "counterexample": cx})
                k += 1
        images.append({"index": i, "label": int(y[i]), "predicted": int(y[i]), "shape": [8, 8],
                       "x": x[i].tolist(), "regions": regions})
    doc.update({"manipulation": {"step": 0.1, "steps": 2, "budget": None, "clip": [0.0, 1.0]},
                "grid": [grid, grid], "patch": None, "methods": ["exact"], "images": images})
    return schema.finish(doc)


def attack_doc() -> dict[str, Any]:
    """An ``attack`` result with two attacks at two eps and two gallery examples."""
    doc = schema.new_result("attack", settings={"norm": "linf", "steps": 10}, seeds={"seed": 0},
                            command="nnaudit attack digits-ffn.onnx --eps 0.05,0.1")
    x, y = _digits(2)
    examples = []
    for i in range(2):
        adv = np.clip(x[i] + 0.1 * np.sign(np.sin(np.arange(64) + i)), 0, 1)
        examples.append({"index": i, "eps": 0.1, "attack": "pgd", "label": int(y[i]), "pred_clean": int(y[i]),
                         "pred_adv": int((y[i] + 3) % 10), "conf_clean": 0.97, "conf_adv": 0.6,
                         "norms": {"l0": 60, "l2": 0.7, "linf": 0.1}, "shape": [64], "x": x[i].tolist(),
                         "x_adv": adv.tolist()})
    doc.update({
        "num_samples": 100, "clean_accuracy": 0.97, "norm": "linf", "eps": [0.05, 0.1], "attacks": ["fgsm", "pgd"],
        "results": [
            {"eps": 0.05, "robust_accuracy": {"worst": 0.81, "fgsm": 0.86, "pgd": 0.83},
             "success_rate": {"worst": 0.16, "fgsm": 0.11, "pgd": 0.14},
             "median_perturbation": {"fgsm": {"l0": 64, "l2": 0.4, "linf": 0.05}, "pgd": None},
             "time_s": {"fgsm": 0.1, "pgd": 0.4}, "mismatches": {"fgsm": 0, "pgd": 0}},
            {"eps": 0.1, "robust_accuracy": {"worst": 0.42, "fgsm": 0.55, "pgd": 0.44},
             "success_rate": {"worst": 0.55, "fgsm": 0.42, "pgd": 0.53},
             "median_perturbation": {"fgsm": {"l0": 64, "l2": 0.8, "linf": 0.1}, "pgd": {"l0": 60, "l2": 0.7, "linf": 0.1}},
             "time_s": {"fgsm": 0.1, "pgd": 0.5}, "mismatches": {"fgsm": 0, "pgd": 1}},
        ],
        "examples": examples,
    })
    return schema.finish(doc)


def verify_doc() -> dict[str, Any]:
    """A ``verify`` result: one instance of each verdict, one counterexample."""
    doc = schema.new_result("verify", settings={"timeout": 10}, seeds={"seed": 0},
                            command="nnaudit verify net.onnx prop.vnnlib")
    verdicts = ["holds", "violated", "unknown", "timeout", "error", "holds"]
    instances = []
    for i, v in enumerate(verdicts):
        instances.append({
            "model": "acas.onnx", "property": f"prop_{i}.vnnlib", "verdict": v, "time_s": 0.5 + i,
            "phases": {"falsify": 0.1, "bounds": 0.2}, "subdomains": 10 * i, "z3_calls": i, "z3_time_s": 0.01 * i,
            "phase_closed": 3 if i == 5 else 0,
            "counterexample": {"x": [0.1, -0.2, 0.3, 0.0, 0.5], "y": [1.0, 0.2, 3.0, 0.1, 0.0], "input_shape": [5]}
            if v == "violated" else None,
            "message": "queue cap reached" if v == "unknown" else ""})
    doc["instances"] = instances
    return schema.finish(doc)


def adapt_doc() -> dict[str, Any]:
    """An ``adapt`` result on moons with curves, PCA and a decision boundary."""
    rng = np.random.default_rng(0)
    doc = schema.new_result("adapt", settings={"epochs": 3}, seeds={"seed": 0}, command="nnaudit adapt --task moons")
    epochs = [{"epoch": e, "dann": {"source_accuracy": 0.8 + 0.05 * e, "target_accuracy": 0.6 + 0.1 * e,
                                    "domain_accuracy": 0.6, "label_loss": 0.5 / e, "domain_loss": 0.69, "lambda": 0.1 * e,
                                    "lr": 0.01},
               "source_only": {"source_accuracy": 0.85, "target_accuracy": 0.7, "label_loss": 0.4 / e}}
              for e in range(1, 4)]
    pts = lambda n: np.round(rng.normal(size=(n, 2)), 4).tolist()  # noqa: E731
    grid = np.linspace(-2, 2, 20)
    doc.update({
        "task": "moons", "device": "cpu", "epochs": epochs,
        "final": {"source_only": {"source_accuracy": 0.99, "target_accuracy": 0.7, "a_distance": 1.8},
                  "dann": {"source_accuracy": 0.98, "target_accuracy": 0.93, "a_distance": 0.4}},
        "features": {"pca": {"before": {"source": pts(30), "target": pts(30)},
                             "after": {"source": pts(30), "target": pts(30)}}},
        "decision_boundary": {"grid_x": grid.tolist(), "grid_y": grid.tolist(),
                              "dann": (np.add.outer(grid, grid) > 0).astype(int).tolist(),
                              "source_only": (np.add.outer(grid, -grid) > 0).astype(int).tolist(),
                              "source": {"x": pts(20), "y": [i % 2 for i in range(20)]}, "target": {"x": pts(20)}},
        "export": {"path": "adapted.onnx", "max_abs_error": 1e-7},
    })
    return schema.finish(doc)


def check_doc() -> dict[str, Any]:
    """A ``check`` result with a nested attack result."""
    doc = schema.new_result("check", settings={"config": "nnaudit.toml"}, command="nnaudit check")
    doc["checks"] = [
        {"name": "digits-pgd", "kind": "attack", "requirement": "min_robust_accuracy >= 0.9", "measured": 0.42,
         "status": "failed", "message": "robust accuracy 0.42 < 0.9", "result": attack_doc()},
        {"name": "acas-prop1", "kind": "verify", "requirement": "holds", "measured": None, "status": "inconclusive",
         "message": "timeout", "result": None},
    ]
    return schema.finish(doc)


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "regions": regions_doc, "attack": attack_doc, "verify": verify_doc, "adapt": adapt_doc, "check": check_doc,
}


@pytest.fixture(scope="session")
def schema_docs() -> dict[str, dict[str, Any]]:
    """One document of each kind (deep-copy before changing one)."""
    return {kind: build() for kind, build in BUILDERS.items()}


@pytest.fixture
def write_docs(tmp_path: Any, schema_docs: dict[str, dict[str, Any]]) -> Callable[..., list[Any]]:
    """Write the named kinds (or given documents) to ``tmp_path`` and return the paths."""

    def write(*items: str | tuple[str, dict[str, Any]]) -> list[Any]:
        paths = []
        for item in items:
            name, doc = (item, copy.deepcopy(schema_docs[item])) if isinstance(item, str) else item
            paths.append(schema.write_json(doc, tmp_path / f"{name}.json"))
        return paths

    return write
