"""Domain adaptation (DANN) for networks that nnaudit verifies and attacks.

Domain-Adversarial Training of Neural Networks (Ganin et al., JMLR 2016):
a feature extractor feeds a label predictor and, through a gradient reversal
layer, a domain classifier, so the features become discriminative for the
task and indistinguishable between the labelled source and the unlabelled
target domain.  The adapted classifier is exported to ONNX for
``nnaudit verify/regions/attack``.

Importing this package is cheap; torch is imported with the first use of
an attribute below::

    from nnaudit.adaptation import DannConfig, train_dann, export_onnx, moons_task
    run = train_dann(moons_task(seed=0), DannConfig(epochs=300, lr0=0.05, batch_size=32))  # = for_task("moons")
    export_onnx(run, "adapted.onnx")
"""

from __future__ import annotations

from nnaudit._lazy import lazy_getattr

_EXPORTS = {
    "DannConfig": "config", "for_task": "config",
    "GradientReversal": "grl", "grad_reverse": "grl",
    "DANN": "models", "SourceOnly": "models",
    "adaptation_factor": "schedules", "learning_rate": "schedules",
    "DomainData": "data", "Split": "data", "DigitsShift": "shifts", "Task": "tasks",
    "moons_task": "data", "digits_m_task": "shifts", "digits_mnist_task": "shifts", "mnist_digits_task": "shifts",
    "npz_task": "data", "bundled_task": "tasks",
    "train_dann": "trainer", "DannRun": "trainer",
    "proxy_a_distance": "metrics",
    "export_onnx": "export", "ExportResult": "export",
    "adapt_body": "record",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
