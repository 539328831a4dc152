"""Claim "a lot of memory": the peak memory of one training step against the depth of a dense block.

**What is measured.** :func:`peak_bytes` runs a function under a ``TorchDispatchMode`` that sees
every tensor operation of the forward *and* backward pass (the recomputation of the
memory-efficient mode included). Each freshly allocated output storage is counted from the
operation that creates it until it is freed (a weak reference to the storage notices), so the
result is the largest total size of tensor storages allocated by the step and alive at once,
checked after every operation: activations kept for the backward pass, concatenations,
temporaries, gradients. Storages that existed before the step (weights, the input) are not
counted, nor is memory freed inside a single operation. This is the number
``torch.cuda.max_memory_allocated`` reports on a GPU, up to allocator rounding, but it is
exact and deterministic on any device, including this CPU, where torch keeps no allocator statistics.

The experiment sweeps the depth L of one dense block (BN-ReLU-1x1-BN-ReLU-3x3 layers, growth
rate k) three ways: naive concatenation (each layer's ``torch.cat`` and the BatchNorm and ReLU
after it are kept for the backward pass: sum over layers of (c0 + l k) channels, quadratic in
L), the memory-efficient mode of our :class:`DenseNetConfig` (``memory_efficient=True``: that
concat-BN-ReLU-1x1 part is recomputed in the backward pass, as in Pleiss et al. 2017, so only
the k new maps of each layer stay: linear in L), and a stack of L torchvision ``BasicBlock``s
whose width is chosen so that it has about the dense block's parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torchvision.models.resnet import BasicBlock, conv1x1

from ..model import _DenseBlock
from ._common import Progress, Stepper, fit_exponent, seeded
from .nets import param_count


class _PeakTracker(TorchDispatchMode):
    """Live bytes of the storages that operations allocate, and their peak (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.upper = 0  # live bytes as last swept plus everything since: never below the truth
        self.peak = 0

    def _sweep(self) -> None:
        expired = torch.UntypedStorage._expired
        for key in [k for k, (ref, _) in self.live.items() if expired(ref.cdata)]:
            self.upper -= self.live.pop(key)[1]

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        outs = out if len(returns) > 1 else (out,)
        for ret, value in zip(returns, outs):
            if ret.alias_info is not None:  # a view or an in-place result: no new storage
                continue
            for t in tree_flatten(value)[0]:
                if isinstance(t, Tensor) and t.device.type != "meta":
                    storage = t.untyped_storage()
                    if storage._cdata not in self.live:
                        self.live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
                        self.upper += storage.nbytes()
        # Only a possible new peak needs the exact figure; sweeping after every operation would
        # cost O(live storages) each time (seconds for a 64-layer block).
        if self.upper > self.peak:
            self._sweep()
            self.peak = max(self.peak, self.upper)
        return out


def peak_bytes(step: Callable[[], Any]) -> int:
    """Peak bytes of tensor storage allocated by ``step()`` and alive at once (module docstring).

    ``step``'s return value is dropped before this returns.
    """
    with _PeakTracker() as tracker:
        step()
    return tracker.peak


@dataclass(frozen=True)
class StepMemory:
    """Memory of one training step.

    Attributes:
        forward_bytes: peak by the end of the forward pass: the activations kept for the backward
            pass plus the forward's temporaries ("activation memory").
        step_bytes: peak over the whole forward and backward pass, parameter gradients included.
    """

    forward_bytes: int
    step_bytes: int


def training_step_memory(model: nn.Module, x: Tensor, loss: Callable[[Tensor], Tensor] | None = None) -> StepMemory:
    """Measure one forward and backward pass of ``model`` on ``x`` (gradients go into ``.grad``, then are cleared).

    Use on a model private to the caller.

    Args:
        model: any module, in the mode to be measured (``train()`` for a training step).
        x: the input batch.
        loss: output -> scalar; ``None``: the mean of the output.
    """
    forward = 0

    def step(tracker: _PeakTracker) -> None:
        nonlocal forward
        out = model(x)
        forward = tracker.peak
        (loss(out) if loss is not None else out.mean()).backward()

    try:
        with _PeakTracker() as tracker:
            step(tracker)
        return StepMemory(forward_bytes=forward, step_bytes=tracker.peak)
    finally:
        model.zero_grad(set_to_none=True)


def training_step_peak(model: nn.Module, x: Tensor, loss: Callable[[Tensor], Tensor] | None = None) -> int:
    """Peak bytes of one forward and backward pass: :func:`training_step_memory`'s ``step_bytes``."""
    return training_step_memory(model, x, loss).step_bytes


@dataclass(frozen=True)
class MemoryCurve:
    """Peak memory of one training step against depth, for one kind of network.

    Attributes:
        label: what was measured (``"DenseNet, naive concatenation"``, ...).
        depths: L, increasing.
        peak_bytes: peak bytes of one training step at each L.
        params: parameters at each L.
        exponent: the fitted p of ``peak ~ c * L**p`` over all depths (least squares in log-log).
        tail_exponent: the same between the two deepest points, where the L^2 term of naive
            concatenation has overtaken the linear one (with c0 = 2k it dominates only for large L).
    """

    label: str
    depths: list[int]
    peak_bytes: list[int]
    params: list[int]
    exponent: float
    tail_exponent: float


@dataclass(frozen=True)
class MemoryResult:
    """The memory experiment: three curves on one depth axis.

    Attributes:
        depths: the layer counts L swept, increasing.
        naive, efficient, resnet: the curves.
        resnet_widths: the width of the ResNet stack at each L (chosen to match parameters).
        batch_size, image_size, growth_rate, in_channels: the setting (in_channels is c0).
        measured: a sentence saying what the numbers are.
    """

    depths: list[int]
    naive: MemoryCurve
    efficient: MemoryCurve
    resnet: MemoryCurve
    resnet_widths: list[int]
    batch_size: int
    image_size: int
    growth_rate: int
    in_channels: int
    measured: str

    @property
    def curves(self) -> list[MemoryCurve]:
        return [self.naive, self.efficient, self.resnet]


def _dense_block(layers: int, c0: int, k: int, bn_size: int | None, efficient: bool) -> nn.Module:
    return _DenseBlock(layers, c0, k, bn_size, 0.0, efficient)


def _resnet_stack(layers: int, c0: int, width: int) -> nn.Sequential:
    blocks: list[nn.Module] = [BasicBlock(c0, width, downsample=nn.Sequential(conv1x1(c0, width), nn.BatchNorm2d(width)))
                               if c0 != width else BasicBlock(c0, width)]
    blocks += [BasicBlock(width, width) for _ in range(layers - 1)]
    return nn.Sequential(*blocks)


def resnet_stack_params(layers: int, c0: int, width: int) -> int:
    """Parameters of :func:`_resnet_stack`, in closed form: two 3x3 convs and two BatchNorms per
    block, plus a 1x1 projection with its BatchNorm where ``c0 != width``."""
    first = 9 * c0 * width + 9 * width * width + 4 * width + (c0 * width + 2 * width if c0 != width else 0)
    return first + (layers - 1) * (18 * width * width + 4 * width)


def matched_width(layers: int, c0: int, target_params: int) -> int:
    """The width of an ``layers``-block BasicBlock stack whose parameter count is closest to ``target_params``."""
    return min(range(1, 4097), key=lambda w: abs(resnet_stack_params(layers, c0, w) - target_params))


def memory_experiment(depths: tuple[int, ...] | list[int] = (4, 8, 16, 24, 32, 48, 64), *, growth_rate: int = 12,
                      in_channels: int = 24, bn_size: int | None = 4, batch_size: int = 4, image_size: int = 16,
                      seed: int = 0, progress: Progress | None = None) -> MemoryResult:
    """Measure the peak memory of one training step of a dense block against its depth L.

    Args:
        depths: the L values, increasing, each >= 1 (two or more to fit an exponent).
        growth_rate: k.
        in_channels: c0, the channels entering the block.
        bn_size: bottleneck factor (``None``: plain BN-ReLU-3x3 layers).
        batch_size, image_size: the input batch, (batch_size, c0, image_size, image_size).
        seed: weights and input.
        progress: called after each measurement with the fraction done; raise from it to stop.

    Returns:
        A :class:`MemoryResult`. At the defaults: peaks up to 0.25 GB; see the README for timings.

    Raises:
        ValueError: depths not increasing, or fewer than two of them.
    """
    depths = [int(d) for d in depths]
    if len(depths) < 2 or any(b <= a for a, b in zip(depths, depths[1:])) or depths[0] < 1:
        raise ValueError(f"depths must be two or more increasing values >= 1, got {depths}")
    if min(growth_rate, in_channels, batch_size, image_size) < 1:
        raise ValueError("growth_rate, in_channels, batch_size and image_size must be >= 1")
    stepper = Stepper(progress, 3 * len(depths))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, in_channels, image_size, image_size, generator=g)
    x.requires_grad_(True)  # as a stem's output would: so the first layer is checkpointed too
    peaks: dict[str, list[int]] = {"naive": [], "efficient": [], "resnet": []}
    params: dict[str, list[int]] = {"naive": [], "efficient": [], "resnet": []}
    widths = []
    for depth in depths:
        for kind in ("naive", "efficient"):
            with seeded(seed):
                block = _dense_block(depth, in_channels, growth_rate, bn_size, kind == "efficient").train()
            peaks[kind].append(training_step_peak(block, x))
            params[kind].append(param_count(block))
            x.grad = None
            stepper.step()
        width = matched_width(depth, in_channels, params["naive"][-1])
        with seeded(seed):
            stack = _resnet_stack(depth, in_channels, width).train()
        peaks["resnet"].append(training_step_peak(stack, x))
        params["resnet"].append(param_count(stack))
        widths.append(width)
        x.grad = None
        stepper.step()
    labels = {"naive": "DenseNet block, naive concatenation",
              "efficient": "DenseNet block, memory-efficient (recompute concat-BN-ReLU-1x1)",
              "resnet": "ResNet stack (torchvision BasicBlock), about the same parameters"}
    curves = {kind: MemoryCurve(labels[kind], depths, peaks[kind], params[kind], fit_exponent(depths, peaks[kind]),
                                fit_exponent(depths[-2:], peaks[kind][-2:]))
              for kind in peaks}
    measured = (f"Peak bytes of tensor storage allocated and alive at once during one forward and backward "
                f"pass of a batch of {batch_size} x {in_channels} x {image_size} x {image_size}, counted "
                "operation by operation (weights and input excluded); exact and deterministic.")
    return MemoryResult(depths=depths, naive=curves["naive"], efficient=curves["efficient"], resnet=curves["resnet"],
                        resnet_widths=widths, batch_size=batch_size, image_size=image_size, growth_rate=growth_rate,
                        in_channels=in_channels, measured=measured)
