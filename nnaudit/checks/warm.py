"""What one checks run loads once: networks and data, shared by its checks.

``nnaudit check`` makes one :class:`RunCache` per run and passes it to every
check's preparation, so several checks of one model load the ONNX file, build
its torch form and open its onnxruntime session once (the attacks keep both
on the network object), instead of once per check.  No module-level state:
the cache lives as long as the run.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np


class RunCache:
    """Loaded networks by (model, normalisation) and data by (data, input shape, classes)."""

    def __init__(self) -> None:
        self._networks: dict[tuple[str, Any, Any], Any] = {}
        self._data: dict[tuple[str, tuple[int, ...], int], tuple[np.ndarray, np.ndarray]] = {}
        self.loads: Counter[str] = Counter()   # what was actually loaded ("network", "data"), for tests

    def network(self, model: Any, mean: Any = None, std: Any = None) -> Any:
        """The network of ``model`` (zoo name or path) with the normalisation of ``mean``/``std``."""
        from nnaudit.checks.adapters import load_network
        from nnaudit.networks.normalise import Normalisation

        key = (str(model), mean, std)
        if key not in self._networks:
            self.loads["network"] += 1
            norm = None if mean is None and std is None else Normalisation(mean or (0.0,), std or (1.0,))
            self._networks[key] = load_network(model, norm)
        return self._networks[key]

    def samples(self, net: Any, data: Any, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The first ``limit`` samples of ``data`` (a bundled name or an .npz path) for ``net``."""
        from nnaudit.checks.adapters import load_samples

        key = (str(data), tuple(int(d) for d in net.input_shape), int(net.output_size))
        if key not in self._data:
            self.loads["data"] += 1
            self._data[key] = load_samples(net, data)
        x, y = self._data[key]
        return (x[:limit], y[:limit]) if limit is not None else (x, y)
