"""The bundled domain-adaptation tasks by name (``nnaudit adapt --task``, bench/dann.py).

| task | source -> target | shift |
|---|---|---|
| ``moons`` | 150 moons -> rotated 35 deg | the paper's toy problem |
| ``moons-hard`` | 150 moons -> rotated 50 deg | source-only near chance (44-52 %) |
| ``digits-mnist`` | 8x8 digits -> 100 MNIST-8x8 | other writers and scanning (transductive) |
| ``mnist-digits`` | 100 MNIST-8x8 -> 8x8 digits | the reverse, few labels |
| ``digits-m`` | grey digits -> CIFAR-textured digits-M | MNIST -> MNIST-M, scaled down |
"""

from __future__ import annotations

from enum import Enum

from nnaudit.adaptation.data import DomainData, moons_task
from nnaudit.adaptation.shifts import DigitsShift, digits_m_task, digits_mnist_task, mnist_digits_task
from nnaudit.errors import DataError

HARD_ROTATION_DEG = 50.0


class Task(str, Enum):
    """A bundled task; the value is its command-line name."""

    MOONS = "moons"
    MOONS_HARD = "moons-hard"
    DIGITS_MNIST = "digits-mnist"
    MNIST_DIGITS = "mnist-digits"
    DIGITS_M = "digits-m"

    @property
    def is_image(self) -> bool:
        return self not in (Task.MOONS, Task.MOONS_HARD)


def parse_task(name: str | Task) -> Task:
    """``Task`` of a name; DataError listing the names otherwise."""
    try:
        return Task(name)
    except ValueError:
        raise DataError(f"unknown task {name!r}; expected one of {', '.join(t.value for t in Task)}") from None


def bundled_task(name: str | Task, *, seed: int = 0, shift: DigitsShift = DigitsShift()) -> DomainData:
    """The data of a bundled task; ``shift`` applies to ``digits-m`` only."""
    task = parse_task(name)
    if task is Task.MOONS:
        return moons_task(seed=seed)
    if task is Task.MOONS_HARD:
        data = moons_task(seed=seed, rotation=HARD_ROTATION_DEG)
        return DomainData(task.value, data.source, data.target, data.num_classes, data.source_test, data.target_test)
    if task is Task.DIGITS_MNIST:
        return digits_mnist_task(seed=seed)
    if task is Task.MNIST_DIGITS:
        return mnist_digits_task(seed=seed)
    return digits_m_task(seed=seed, shift=shift)
