"""The DenseNet canonizer for LRP, written as a Zennit canonizer: every BatchNorm folded into a convolution.

LRP's rules are defined for linear layers followed by ReLUs; a BatchNorm in between must be merged
into a neighbouring linear layer first ("canonization"). In a DenseNet each dense layer is
BN -> ReLU -> conv over a concatenation that feeds many later BatchNorms, so the BN cannot be folded
into the convolution *before* it. Following Pahde et al. (CVPRW 2023, ``frederikpahde/xai-canonization``),
write BN as ``s·x + b`` and ``ReLU(s·x + b)`` as ``s·T(x) + b`` with the threshold ReLU

    T(x) = x where s·x + b > 0, else -b/s            (:class:`ThreshReLU`)

then merge ``s`` and ``b`` into the convolution *after* it (its bias becomes ``sum W·b``). BNs that
directly follow a convolution (the stem's ``norm0``, the bottleneck's ``norm2``) merge into it
backwards, as Zennit's ``MergeBatchNorm`` does, but exactly: the emptied BN is replaced by an
``nn.Identity`` (Zennit leaves ``x / sqrt(1 + eps)``, which drifts over 100 layers). The head's
``norm5 -> relu -> pool -> classifier`` becomes modules (``ThreshReLU``, pooling, a merged classifier)
that rules can be attached to; a log-mean-exp head gets its own :class:`LogMeanExp` module.

A 3x3 convolution after a concatenation (DenseNets without a bottleneck) reads zero padding, which
after the merge would need a position-dependent bias; instead ``T``'s output is padded with the
value ``-b/s`` (which the BN maps to 0) and the convolution's own padding is set to 0.

The canonized model computes the same logits to float rounding. Apply it to a private copy:
:class:`DenseNetCanonizer` ``.apply(model)`` returns one instance whose ``remove()`` restores the
model exactly (every replaced parameter and module is put back, in reverse order).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import MethodType

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zennit.canonizers import Canonizer

from ..model import DenseNet, _DenseBlock, _Transition


class ThreshReLU(nn.Module):
    """``x`` where ``s·x + b > 0``, else ``-b/s`` (0 where ``s = 0``): ReLU(BN(x)) = BN(ThreshReLU(x)).

    Args:
        scale: (C,) the BN's ``s = weight / sqrt(var + eps)``.
        shift: (C,) the BN's ``b = bias - mean·s``.
    """

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        self.register_buffer("floor", torch.where(scale == 0, torch.zeros_like(scale), -shift / safe))
        # With s > 0 everywhere (BN weights are positive in practice) T(x) = max(x, -b/s): one pass.
        self.positive = bool((scale > 0).all())

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H, W)
        view = (1, -1) + (1,) * (x.dim() - 2)
        floor = self.floor.view(view).to(x.dtype)
        if self.positive:
            return torch.maximum(x, floor)
        on = x * self.scale.view(view) + self.shift.view(view) > 0
        return torch.where(on, x, floor)


class PadWith(nn.Module):
    """Pad (N, C, H, W) by ``padding`` pixels with a per-channel value (where the old BN gave 0)."""

    def __init__(self, value: Tensor, padding: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("value", value.detach().clone())
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H + 2p, W + 2q)
        v = self.value.view(1, -1, 1, 1).to(x.dtype)
        ph, pw = self.padding
        return F.pad(x - v, (pw, pw, ph, ph)) + v


class LogMeanExp(nn.Module):
    """Log-mean-exp pooling of (N, K, P) scores over P locations: ``(logsumexp(r·s) - log P) / r``."""

    def __init__(self, r: float) -> None:
        super().__init__()
        self.r = float(r)

    def forward(self, scores: Tensor) -> Tensor:  # (N, K, P) -> (N, K)
        return (torch.logsumexp(self.r * scores, dim=2) - math.log(scores.shape[2])) / self.r


class ClassifierConv(nn.Conv2d):
    """The classifier applied at every location (log-mean-exp heads); a type of its own so a
    composite can give it the classifier's rule rather than the convolutions'."""


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(s, b) with ``bn(x) = s·x + b`` per channel, in eval mode."""
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return s.detach().clone(), (bn.bias - bn.running_mean * s).detach().clone()


class _Edits:
    """An undo log: every change is made through it and :meth:`undo` reverts all, last first."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def set(self, owner: object, name: str, value: object) -> None:
        had = name in vars(owner) or (isinstance(owner, nn.Module) and (
            name in owner._parameters or name in owner._modules or name in owner._buffers))
        old = getattr(owner, name, None)

        def undo() -> None:
            if had:
                setattr(owner, name, old)
            else:
                delattr(owner, name)
        setattr(owner, name, value)
        self._undo.append(undo)

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


class DenseNetCanonizer(Canonizer):
    """Zennit canonizer for :class:`~densenet.DenseNet`: BN merged forward (through :class:`ThreshReLU`)
    after every concatenation and backward after every convolution; the head as modules.

    ``apply(model)`` returns ``[instance]``; ``instance.remove()`` undoes everything. The model must be
    in eval mode (the running statistics are what is merged).
    """

    def __init__(self) -> None:
        self._edits: _Edits | None = None

    def copy(self) -> DenseNetCanonizer:
        return DenseNetCanonizer()

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        if not isinstance(root_module, DenseNet):
            raise TypeError(f"DenseNetCanonizer applies to a densenet.DenseNet, got {type(root_module).__name__}")
        if root_module.training:
            raise ValueError("canonize a model in eval mode: its BatchNorm running statistics are what is merged")
        instance = self.copy()
        instance.register(root_module)
        return [instance]

    def register(self, model: DenseNet) -> None:  # type: ignore[override]
        self._edits = edits = _Edits()
        with torch.no_grad():
            features = model.features
            if hasattr(features, "norm0"):
                _merge_backward(edits, features, "conv0", "norm0")
            for child in features.children():
                if isinstance(child, _DenseBlock):
                    edits.set(child, "forward", MethodType(_block_forward, child))
                    for layer in child.values():
                        edits.set(layer, "memory_efficient", False)  # recomputation would run the rules twice
                        _merge_forward(edits, layer, "norm1", "relu1", layer.conv1)
                        if layer.has_bottleneck:
                            _merge_backward(edits, layer, "conv1", "norm2")
                elif isinstance(child, _Transition):
                    _merge_forward(edits, child, "norm", "relu", child.conv)
            _canonize_head(edits, model)

    def remove(self) -> None:
        if self._edits is not None:
            self._edits.undo()
            self._edits = None


def _merge_backward(edits: _Edits, parent: nn.Module, conv_name: str, bn_name: str) -> None:
    """conv -> BN becomes one conv (weights scaled per output channel, a bias); the BN an identity."""
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    s, b = _bn_affine(bn)
    weight = conv.weight * s.view(-1, *([1] * (conv.weight.dim() - 1)))
    bias = b if conv.bias is None else conv.bias * s + b
    edits.set(conv, "weight", nn.Parameter(weight.detach().clone(), requires_grad=False))
    edits.set(conv, "bias", nn.Parameter(bias.detach().clone(), requires_grad=False))
    edits.set(parent, bn_name, nn.Identity())


def _merge_forward(edits: _Edits, parent: nn.Module, bn_name: str, relu_name: str, conv: nn.Conv2d) -> None:
    """BN -> ReLU -> conv becomes ThreshReLU -> conv (the BN folded into the conv); the BN an identity."""
    bn = getattr(parent, bn_name)
    s, b = _bn_affine(bn)
    thresh = ThreshReLU(s, b)
    # Where s = 0 the BN outputs b whatever x is: ReLU(b), which the merged bias must carry.
    b_eff = torch.where(s == 0, b.clamp(min=0), b)
    w = conv.weight
    edits.set(conv, "weight", nn.Parameter((w * s.view(1, -1, 1, 1)).detach().clone(), requires_grad=False))
    bias = (w * b_eff.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    if conv.bias is not None:
        bias = bias + conv.bias
    edits.set(conv, "bias", nn.Parameter(bias.detach().clone(), requires_grad=False))
    pad = tuple(conv.padding) if not isinstance(conv.padding, str) else None
    if pad is None or conv.padding_mode != "zeros":
        raise ValueError(f"cannot canonize a convolution with padding {conv.padding!r} ({conv.padding_mode})")
    if any(pad):
        # The BN's zero padding is the value -b/s before it: pad T's output with that, conv unpadded.
        edits.set(parent, relu_name, nn.Sequential(thresh, PadWith(thresh.floor, pad)))
        edits.set(conv, "padding", (0, 0))
    else:
        edits.set(parent, relu_name, thresh)
    edits.set(parent, bn_name, nn.Identity())


def _canonize_head(edits: _Edits, model: DenseNet) -> None:
    """norm5 -> F.relu -> pool -> classifier as modules: ThreshReLU, pooling, the merged classifier."""
    s, b = _bn_affine(model.features.norm5)
    thresh = ThreshReLU(s, b)
    b_eff = torch.where(s == 0, b.clamp(min=0), b)
    w, bias = model.classifier.weight, model.classifier.bias  # (K, C), (K,)
    weight = w * s.view(1, -1)
    new_bias = w @ b_eff + (bias if bias is not None else 0)
    if model.config.pool == "avg":
        classifier: nn.Module = nn.Linear(w.shape[1], w.shape[0])
        classifier.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        pool: nn.Module = nn.AdaptiveAvgPool2d(1)
    else:
        classifier = ClassifierConv(w.shape[1], w.shape[0], kernel_size=1)
        classifier.weight = nn.Parameter(weight[:, :, None, None].detach().clone(), requires_grad=False)
        pool = LogMeanExp(model.config.lme_r)
    classifier.bias = nn.Parameter(new_bias.detach().clone(), requires_grad=False)
    edits.set(model.features, "norm5", nn.Identity())
    edits.set(model, "lrp_relu5", thresh)
    edits.set(model, "lrp_pool", pool)
    edits.set(model, "lrp_classifier", classifier)
    edits.set(model, "forward_head", MethodType(_head_forward, model))


def _head_forward(self: DenseNet, features: Tensor) -> Tensor:
    """The canonized head: (N, C, h, w) -> logits (N, num_classes)."""
    x = self.lrp_relu5(features)
    if self.config.pool == "avg":
        logits = self.lrp_classifier(torch.flatten(self.lrp_pool(x), 1))
    else:
        logits = self.lrp_pool(self.lrp_classifier(x).flatten(2))  # scores (N, K, h*w) -> (N, K)
    if self.config.null_class:
        logits = torch.cat([logits.new_zeros(logits.shape[0], 1), logits], dim=1)
    return logits


def _block_forward(self: _DenseBlock, x: Tensor, record: Callable[[str, Tensor], Tensor] | None = None,
                   prefix: str = "") -> Tensor:
    """The dense block with each layer's concatenated input passed to ``record`` as ``<layer>.input``,
    so that the relevance arriving at every concatenation can be read (no hooks)."""
    features = [x]
    for name, layer in self.items():
        joined = torch.cat(features, 1)  # (N, c0 + (l-1)k, H, W): what layer l reads
        if record is not None:
            joined = record(f"{prefix}.{name}.input", joined)
        # The layer's forward without its own concatenation (a copy of one tensor); eval: no dropout.
        new = layer.conv1(layer.relu1(layer.norm1(joined)))
        if layer.has_bottleneck:
            new = layer.conv2(layer.relu2(layer.norm2(new)))
        if record is not None:
            new = record(f"{prefix}.{name}", new)
        features.append(new)
    return torch.cat(features, 1)


__all__ = ["ClassifierConv", "DenseNetCanonizer", "LogMeanExp", "PadWith", "ThreshReLU"]
