"""The DANN network: feature extractor, label predictor and domain classifier.

``DANN`` takes three user modules (Ganin et al., JMLR 2016, fig. 1)::

    x --features--> f --label_head-------------------> class logits (B, C)
                      \\--GradientReversal--domain_head--> domain logits (B, 2)

and the presets build them for vectors (MLP) and small images (conv).  Only
``label_path()`` (features + label head) is exported to ONNX; the domain
classifier exists for training.  Preset ops stay within what
``nnaudit.networks.load`` reads (Gemm, Conv, Relu, MaxPool, Flatten).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nnaudit.adaptation.config import DannConfig
from nnaudit.adaptation.grl import GradientReversal
from nnaudit.errors import ConfigError


class DANN(nn.Module):
    """Feature extractor + label predictor + (through the GRL) domain classifier.

    ``forward(x)`` with ``x`` (B, *input_shape) returns ``(class_logits (B, C),
    domain_logits (B, 2), features (B, F))``.  Set ``grl.lambda_`` to change
    the adaptation factor.
    """

    def __init__(self, features: nn.Module, label_head: nn.Module, domain_head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.label_head = label_head
        self.domain_head = domain_head
        self.grl = GradientReversal(0.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.label_head(f), self.domain_head(self.grl(f)), f

    def forward_domains(self, xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source class logits (Bs, C) and domain logits (Bs + Bt, 2), each domain's
        features computed with its own batch statistics; only the target updates
        the BatchNorm running statistics, which the exported model uses."""
        bns = [m for m in self.features.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in bns]
        for m in bns:
            m.momentum = 0.0           # running = (1 - 0) * running: the source leaves them unchanged
        try:
            fs = self.features(xs)
        finally:
            for m, momentum in zip(bns, saved):
                m.momentum = momentum
        ft = self.features(xt)
        return self.label_head(fs), self.domain_head(self.grl(torch.cat([fs, ft])))

    def label_path(self) -> nn.Sequential:
        """The deployable classifier (features then label head), sharing weights."""
        return nn.Sequential(self.features, self.label_head)


class SourceOnly(nn.Module):
    """The baseline: same feature extractor and label predictor, no domain branch.

    ``forward(x)`` returns ``(class_logits, features)``.
    """

    def __init__(self, features: nn.Module, label_head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.label_head = label_head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.label_head(f), f

    def label_path(self) -> nn.Sequential:
        return nn.Sequential(self.features, self.label_head)


def domain_head(width: int, hidden: tuple[int, ...]) -> nn.Module:
    """The domain classifier: Linear+ReLU layers of widths ``hidden``, then 2 logits."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 2))


def mlp_parts(input_dim: int, num_classes: int, hidden: tuple[int, ...], head_hidden: int,
              domain_hidden: tuple[int, ...] = ()) -> tuple[nn.Module, nn.Module, nn.Module]:
    """MLP preset for (input_dim,) inputs: Linear+ReLU feature layers, a linear
    label head, and a domain head (2 logits; one hidden layer of ``head_hidden`` by default)."""
    layers: list[nn.Module] = []
    width = input_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    features = nn.Sequential(*layers)
    label_head = nn.Linear(width, num_classes)
    return features, label_head, domain_head(width, domain_hidden or (head_hidden,))


def conv_parts(input_shape: tuple[int, int, int], num_classes: int, channels: tuple[int, ...], head_hidden: int,
               domain_hidden: tuple[int, ...] = (), batch_norm: bool = False) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Conv preset for (C, H, W) images: per width a 3x3 conv (padding 1),
    optional BatchNorm, ReLU and 2x2 max-pool while the image is at least 2x2,
    then Flatten; the label head is Linear-ReLU-Linear, the domain head as
    :func:`domain_head` (the paper's MNIST architecture, shrunk)."""
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(c, out, kernel_size=3, padding=1)]
        layers += [nn.BatchNorm2d(out), nn.ReLU()] if batch_norm else [nn.ReLU()]
        if h >= 2 and w >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = out
    layers.append(nn.Flatten())
    width = c * h * w
    features = nn.Sequential(*layers)
    label_head = nn.Sequential(nn.Linear(width, head_hidden), nn.ReLU(), nn.Linear(head_hidden, num_classes))
    return features, label_head, domain_head(width, domain_hidden or (head_hidden,))


def preset_parts(input_shape: tuple[int, ...], num_classes: int, config: DannConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The three modules of ``config.preset`` for samples of ``input_shape``
    (``auto``: conv for (C, H, W), MLP otherwise; an MLP flattens nothing, so
    its inputs must be 1-D)."""
    preset = config.preset
    if preset == "auto":
        preset = "conv" if len(input_shape) == 3 else "mlp"
    if preset == "conv":
        if len(input_shape) != 3:
            raise ConfigError(f"conv preset: expected (C, H, W) samples, got shape {tuple(input_shape)}")
        return conv_parts(tuple(input_shape), num_classes, config.conv_channels, config.head_hidden,  # type: ignore[arg-type]
                          config.domain_hidden, config.batch_norm)
    if len(input_shape) != 1:
        raise ConfigError(f"mlp preset: expected 1-D samples, got shape {tuple(input_shape)} "
                          f"(flatten them to ({math.prod(input_shape)},) or use the conv preset)")
    return mlp_parts(int(input_shape[0]), num_classes, config.mlp_hidden, config.head_hidden, config.domain_hidden)
