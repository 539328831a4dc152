"""Helpers for tests and benchmarks: models whose maps mean something without training, peers set up alike."""

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


def zeroing_ablation_layer() -> object:
    """pytorch-grad-cam's ``AblationLayer``, setting the ablated channel to 0 as Desai & Ramaswamy do.

    Its default sets a channel to (batch minimum - 1e7) where the layer has negative values, which
    equals zeroing only where a ReLU follows (norm5); after a BatchNorm with a negative scale
    (denseblock3) it makes a huge activation instead. Imports pytorch-grad-cam (a test dependency).
    """
    from pytorch_grad_cam.ablation_layer import AblationLayer

    class Zero(AblationLayer):
        def __call__(self, x):
            out = self.activations
            for i in range(out.size(0)):
                out[i, self.indices[i]] = 0
            return out

    return Zero()
