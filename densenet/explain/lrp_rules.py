"""Zennit rules for the canonized DenseNet: ε, z⁺ and α1β0 with one transposed convolution per part,
and the log-mean-exp pooling rule.

Zennit's own ``Epsilon``/``ZPlus``/``AlphaBeta`` (``BasicHook``) re-run each layer's forward during
the backward pass and differentiate it with a nested ``torch.autograd.grad``, per layer and per
part. These compute the same relevance directly: ε reuses the forward's output as its denominator
and needs one ``conv_transpose`` (``torch.nn.grad.conv2d_input``) per layer; z⁺ and α1β0 need one
extra forward per sign part and skip the negative part where the layer's input is non-negative (after
a ReLU). ``tests/test_lrp.py`` checks them against Zennit's rules on the same model.

Each rule is a ``zennit.core.Hook`` and goes into a Zennit composite like Zennit's own rules.
"""

from __future__ import annotations

import functools
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zennit.core import Hook, Identity


def stabilize(z: Tensor, epsilon: float = 1e-6) -> Tensor:
    """``z + ε·sign(z)`` with sign(0) = +1: Zennit's ``stabilize`` in one pass instead of four."""
    return torch.where(z >= 0, z + epsilon, z - epsilon)


class _Hook(Hook):
    """A Zennit hook whose forward pre-hook does not copy the module's input.

    Zennit clones every hooked module's input so that in-place operations after it cannot corrupt
    it; our DenseNet has none, and the copies cost a tenth of an LRP pass (measured).
    """

    def pre_forward(self, module: nn.Module, input: tuple[Tensor, ...] | Tensor) -> Tensor | tuple[Tensor, ...]:
        hook_ref = weakref.ref(self)

        @functools.wraps(self.backward)
        def wrapper(grad_input: tuple[Tensor, ...], grad_output: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
            hook = hook_ref()
            if hook is not None and hook.active:
                return hook.backward(module, grad_input, hook.stored_tensors["grad_output"])
            return None

        if not isinstance(input, tuple):
            input = (input,)
        if not input[0].requires_grad:
            return input[0] if len(input) == 1 else input
        post = Identity.apply(*input)
        self.tensor_handles.append(post[0].grad_fn.register_hook(wrapper))
        return post[0] if len(post) == 1 else post

    def copy(self) -> _Hook:
        return type(self)()


class FastPass(_Hook):
    """Zennit's ``Pass`` (relevance through unchanged), without the input copy."""

    def backward(self, module: nn.Module, grad_input: tuple[Tensor, ...],
                 grad_output: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return grad_output


def _forward(module: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if isinstance(module, nn.Conv2d):
        return F.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)
    return F.linear(x, weight, bias)


def _backward(module: nn.Module, shape: torch.Size, weight: Tensor, grad: Tensor) -> Tensor:
    """The transposed layer applied to ``grad``: d(layer(x) · grad)/dx for the given weight."""
    if isinstance(module, nn.Conv2d):
        return torch.nn.grad.conv2d_input(shape, weight, grad, module.stride, module.padding, module.dilation,
                                          module.groups)
    return grad @ weight


class _Stored(_Hook):
    """Keeps the layer's input (and output) from the forward pass for the backward."""

    def forward(self, module: nn.Module, input: tuple[Tensor, ...], output: Tensor) -> None:
        self.stored_tensors["input"] = input[0]
        self.stored_tensors["output"] = output


class FastEpsilon(_Stored):
    """LRP-ε (ε = 1e-6, Zennit's default): ``R_in = x · Wᵀ(R / (z ± ε))``, z the layer's output."""

    def backward(self, module: nn.Module, grad_input: tuple[Tensor, ...],
                 grad_output: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        x, z = self.stored_tensors["input"], self.stored_tensors["output"].detach()
        ratio = grad_output[0] / stabilize(z)
        return (x.detach() * _backward(module, x.shape, module.weight, ratio),)


class FastAlphaBeta(_Stored):
    """LRP-α1β0 = z⁺ as Zennit's ``ZPlus``/``AlphaBeta(1, 0)`` define it: the positive contributions
    ``W⁺x⁺ + W⁻x⁻ (+ b⁺)`` share the relevance. Zennit gives the positive part the clamped bias."""

    def backward(self, module: nn.Module, grad_input: tuple[Tensor, ...],
                 grad_output: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        x = self.stored_tensors["input"].detach()
        w = module.weight
        bias = module.bias.clamp(min=0) if module.bias is not None else None
        xp, wp = x.clamp(min=0), w.clamp(min=0)
        negative = bool((x < 0).any())
        z = _forward(module, xp, wp, bias)
        if negative:
            xn, wn = x.clamp(max=0), w.clamp(max=0)
            z = z + _forward(module, xn, wn, None)
        ratio = grad_output[0] / stabilize(z)
        relevance = xp * _backward(module, x.shape, wp, ratio)
        if negative:
            relevance = relevance + xn * _backward(module, x.shape, wn, ratio)
        return (relevance,)


class LogMeanExpRule(_Stored):
    """Log-mean-exp pooling of scores ``s`` (N, K, P): ``R_p = a_p s_p / Σ_q a_q s_q · R`` with
    ``a = softmax(r·s)``, the ε rule of the pooling frozen at its weights; conserves R exactly."""

    def backward(self, module: nn.Module, grad_input: tuple[Tensor, ...],
                 grad_output: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        s = self.stored_tensors["input"].detach()  # (N, K, P)
        weighted = torch.softmax(module.r * s, dim=2) * s
        z = weighted.sum(dim=2, keepdim=True)
        return (weighted * (grad_output[0].unsqueeze(2) / stabilize(z)),)


__all__ = ["FastAlphaBeta", "FastEpsilon", "FastPass", "LogMeanExpRule", "stabilize"]
