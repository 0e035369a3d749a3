"""IR operation classes, one per ONNX operation, registered on import."""

from nnaudit.networks.ops import (  # noqa: F401  (import registers the classes)
    activations,
    conv,
    elementwise,
    linear,
    merge,
    pad,
    pool,
    shape,
)
