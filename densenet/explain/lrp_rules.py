"""Zennit rules for the canonized DenseNet that cost one transposed convolution per part: ε, z⁺ (α1β0),
pass-through, and the log-mean-exp pooling rule.

Zennit's rules (``BasicHook``) wrap each layer's input in an identity node and replace that node's
gradient with the relevance; the ordinary gradient of the layer is still computed first and then
thrown away, and the rule itself re-runs the layer's forward and differentiates it with a nested
``torch.autograd.grad``. Measured on DenseNet-121 that is three convolutions' work per layer in the
backward pass. These rules register a forward hook that routes the layer's output through an
``autograd.Function`` whose backward *is* the rule: it receives the relevance of the output and
returns the input's, with ``torch.nn.grad.conv2d_input`` (one transposed convolution) per sign part;
ε reuses the forward's output as its denominator. The layer's own gradient is never computed.

They are ``zennit.core.Hook`` subclasses and go into Zennit composites beside Zennit's own rules
(the flat rule of the first layer stays Zennit's); ``tests/test_lrp.py`` checks they give the same
relevance as Zennit's ``Epsilon``, ``ZPlus``, ``AlphaBeta`` and ``Pass``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zennit.core import Hook, RemovableHandle, RemovableHandleList


def stabilize(z: Tensor, epsilon: float = 1e-6) -> Tensor:
    """``z + ε·sign(z)`` with sign(+0) = +1, as Zennit's ``stabilize``, in two passes over ``z`` instead
    of four (measured: LRP-ε on DenseNet-121 from 1.58× to 1.30× a forward + backward). Only
    ``z = -0.0`` differs: it gets ``-ε`` where Zennit adds ``+ε``."""
    return z + torch.copysign(z.new_tensor(epsilon), z)


def _forward(module: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if isinstance(module, nn.Conv2d):
        return F.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)
    return F.linear(x, weight, bias)


def _transposed(module: nn.Module, shape: torch.Size, weight: Tensor, grad: Tensor) -> Tensor:
    """The layer's transpose applied to ``grad``: d(layer(x) · grad)/dx for the given weight."""
    if isinstance(module, nn.Conv2d):
        return torch.nn.grad.conv2d_input(shape, weight, grad, module.stride, module.padding, module.dilation,
                                          module.groups)
    return grad @ weight


class _Rule(torch.autograd.Function):
    """Forward: the layer's output, unchanged. Backward: the hook's rule, relevance in -> relevance out."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, z: Tensor, hook: FunctionRule, module: nn.Module) -> Tensor:
        ctx.save_for_backward(x, z)
        ctx.hook, ctx.module = hook, module
        return z.view_as(z)

    @staticmethod
    def backward(ctx: Any, relevance: Tensor) -> tuple[Tensor | None, None, None, None]:
        x, z = ctx.saved_tensors
        return ctx.hook.relevance(ctx.module, x.detach(), z, relevance), None, None, None


class FunctionRule(Hook):
    """A Zennit hook whose rule runs as the backward of the layer's output (see the module docstring)."""

    def relevance(self, module: nn.Module, x: Tensor, z: Tensor, r: Tensor) -> Tensor:
        """The input's relevance from the input ``x``, the output ``z`` and the output's relevance ``r``."""
        raise NotImplementedError

    def _route(self, module: nn.Module, input: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
        if not self.active or not input[0].requires_grad:
            return None
        return _Rule.apply(input[0], output.detach(), self, module)

    def register(self, module: nn.Module) -> RemovableHandleList:
        return RemovableHandleList([RemovableHandle(self), module.register_forward_hook(self._route)])

    def copy(self) -> FunctionRule:
        return type(self)()


class FastPass(FunctionRule):
    """Zennit's ``Pass``: the relevance goes through unchanged."""

    def relevance(self, module: nn.Module, x: Tensor, z: Tensor, r: Tensor) -> Tensor:
        return r


class FastEpsilon(FunctionRule):
    """LRP-ε (ε = 1e-6, Zennit's default): ``R_in = x · Wᵀ(R / (z ± ε))``, z the layer's output."""

    def relevance(self, module: nn.Module, x: Tensor, z: Tensor, r: Tensor) -> Tensor:
        return x * _transposed(module, x.shape, module.weight, r / stabilize(z))


class FastAlphaBeta(FunctionRule):
    """LRP-α1β0, which is z⁺ as Zennit's ``ZPlus`` and ``AlphaBeta(1, 0)`` define it: the positive
    contributions ``W⁺x⁺ + W⁻x⁻ + b⁺`` share the relevance.

    Where the input has negative values (a ThreshReLU's floor), ``W⁺x⁺ + W⁻x⁻ = (Wx + |W||x|) / 2``
    reuses the forward's ``Wx``, and the relevance ``x⁺·W⁺ᵀs + x⁻·W⁻ᵀs = (x·Wᵀs + |x|·|W|ᵀs) / 2``:
    one extra convolution and two transposed ones instead of two and two. After a ReLU (``x >= 0``)
    it is ``W⁺x`` and ``x·W⁺ᵀs``: one and one.
    """

    def relevance(self, module: nn.Module, x: Tensor, z: Tensor, r: Tensor) -> Tensor:
        w = module.weight
        bias = module.bias.clamp(min=0) if module.bias is not None else None
        if not bool((x < 0).any()):
            wp = w.clamp(min=0)
            return x * _transposed(module, x.shape, wp, r / stabilize(_forward(module, x, wp, bias)))
        wx = z if module.bias is None else z - module.bias.view(-1, *([1] * (z.dim() - 2)))
        zp = 0.5 * (wx + _forward(module, x.abs(), w.abs(), None))
        if bias is not None:
            zp = zp + bias.view(-1, *([1] * (z.dim() - 2)))
        half = 0.5 * r / stabilize(zp)
        return x * _transposed(module, x.shape, w, half) + x.abs() * _transposed(module, x.shape, w.abs(), half)


class LogMeanExpRule(FunctionRule):
    """Log-mean-exp pooling of scores ``s`` (N, K, P): ``R_p = a_p s_p / Σ_q a_q s_q · R`` with
    ``a = softmax(r·s)``, the ε rule of the pooling frozen at its weights; conserves R exactly."""

    def relevance(self, module: nn.Module, x: Tensor, z: Tensor, r: Tensor) -> Tensor:
        weighted = torch.softmax(module.r * x, dim=2) * x  # x: the scores (N, K, P)
        return weighted * (r.unsqueeze(2) / stabilize(weighted.sum(dim=2, keepdim=True)))


__all__ = ["FastAlphaBeta", "FastEpsilon", "FastPass", "FunctionRule", "LogMeanExpRule", "stabilize"]
