"""Checks and map helpers shared by the explainers: inputs, targets, copies, resizing, scaling."""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Size = int | tuple[int, int]


def to_numpy(t: Tensor) -> np.ndarray:
    """A float32 CPU copy; never a view of ``t`` (``.cpu()`` alone aliases on CPU)."""
    return t.detach().to(device="cpu", dtype=torch.float32, copy=True).numpy()


def normalise(t: Tensor) -> Tensor:
    """Min-max each map of (N, H, W) to [0, 1]; a constant map becomes zeros."""
    lo = t.amin(dim=(-2, -1), keepdim=True)
    span = t.amax(dim=(-2, -1), keepdim=True) - lo
    flat = span <= 0
    return torch.where(flat, torch.zeros_like(t), (t - lo) / torch.where(flat, torch.ones_like(span), span))


def upsample(t: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (N, h, w) maps to ``size`` (half-pixel centres, like cv2.resize)."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def resolve_size(size: Size | None, default: tuple[int, int]) -> tuple[int, int]:
    """``None`` -> ``default``; an int -> a square; checks both sides are positive."""
    if size is None:
        return default
    if isinstance(size, int):
        size = (size, size)
    h, w = (operator.index(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size}")
    return h, w


def check_eval(model: nn.Module) -> None:
    """Refuse a model in train mode: its BatchNorm would update the shared running statistics."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("the model is in train mode (BatchNorm would update its running statistics and "
                         "dropout would be random); call model.eval() once when loading it")


def is_multilabel(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    return bool(getattr(config, "multilabel", False))


def prepare_input(model: nn.Module, x: Tensor, index: int = 0) -> Tensor:
    """Sample ``index`` of ``x`` as a new (1, C, H, W) tensor on the model's device, detached.

    The caller's tensor is never modified (captum sets ``requires_grad`` on what it is given).
    """
    check_eval(model)
    if hasattr(model, "check_input"):
        x = model.check_input(x)
    else:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        x = x.unsqueeze(0) if x.dim() == 3 else x
        if x.dim() != 4:
            raise ValueError(f"expected an input of shape (N, C, H, W), got {tuple(x.shape)}")
        param = next(model.parameters())
        x = x.to(device=param.device, dtype=param.dtype)
    n = x.shape[0]
    index = operator.index(index)
    if not -n <= index < n:
        raise ValueError(f"index {index} out of range for a batch of {n}")
    return x[index:index + 1].detach().clone()


def resolve_target(model: nn.Module, x: Tensor, target: int | None) -> int:
    """Check a class/label index, or find the top prediction of ``x`` (one forward, no graph).

    The range is checked against ``model.config.num_classes`` when the model has one (a
    DenseNet); for other modules only ``target >= 0`` is checked here.
    """
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, np.integer))):
        raise TypeError(f"target must be an int class index or None, got {target!r}")
    if target is None:
        with torch.no_grad():
            return int(model(x)[0].argmax())
    num = getattr(getattr(model, "config", None), "num_classes", None)
    if target < 0 or (num is not None and target >= num):
        raise ValueError(f"target {target} out of range for {num} classes")
    return int(target)
