"""Helpers for tests and benchmarks that need a model whose maps mean something without training."""

from __future__ import annotations

import torch
from torch import nn


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm scales (half negative), shifts and running statistics, and a random head bias.

    With fresh weights every BatchNorm is the identity, so every ReLU passes everything and every
    map is positive: comparisons of explanation methods then prove little. Modifies ``model`` in
    place and returns it.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.randn(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.out_features, generator=g))
    return model
