"""ONNX networks: loading, the IR, the bundled zoo and data sets.

``load(path)`` turns an ONNX file into a :class:`Network` whose layers the
verifiers, attacks and reports share; ``normalised(network, mean, std)``
(or ``load(path, normalisation=Normalisation(mean, std))``) puts the input
normalisation in front of it.  Importing this package is cheap: the
op classes (and onnx) are imported on the first ``load``.
"""

from nnaudit.networks.ir import CheckResult, Layer, Network
from nnaudit.networks.loader import load
from nnaudit.networks.normalise import Normalisation, normalised

__all__ = ["CheckResult", "Layer", "Network", "Normalisation", "load", "normalised"]
