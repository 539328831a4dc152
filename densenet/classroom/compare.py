"""DenseNet beside a ResNet of the same depth, and two DenseNet configurations side by side, in aligned rows.

Connectivity: a DenseNet's dense layer ``l`` reads every earlier map of its block,
``x_l = H_l([x_0, x_1, ..., x_{l-1}])``, so a block of L layers has L(L+1)/2 links; a ResNet's
unit reads one tensor, ``x_l = H_l(x_{l-1}) + x_{l-1}``, so L units have L links. Parameters and
MACs are counted on models built on the ``meta`` device (MACs with ``FlopCounterMode``: the
convolutions and the classifier, as :mod:`densenet.topology` counts them); activation memory is
*measured* as the peak of one training step (:func:`densenet.classroom.memory.training_step_peak`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import DenseNetConfig
from ..model import DenseNet
from ..topology import topology
from ._common import Progress, Stepper, seeded
from .memory import StepMemory, training_step_memory
from .nets import PeerNet, param_count, same_depth_resnet
from .params import count_macs, default_input_size

DENSE_FORMULA = "x_l = H_l([x_0, x_1, ..., x_{l-1}])"
RESNET_FORMULA = "x_l = H_l(x_{l-1}) + x_{l-1}"


@dataclass(frozen=True)
class Architecture:
    """One network, summarised for the side-by-side view.

    Attributes:
        name: ``"DenseNet"`` or ``"ResNet"`` (or a config's label).
        depth: weighted layers on the longest path.
        units: the H_l units: dense layers, or residual blocks.
        unit_names: their module names, input side first.
        reads: channels each unit reads (its input width), aligned with ``unit_names``.
        links: inputs read by all units together (sum over blocks of L(L+1)/2, or one per unit).
        params: parameters.
        macs: multiply-accumulates of one image at the comparison's input size.
        memory: measured memory of one training step on ``batch_size`` images (activation memory
            and the whole step's peak); ``None`` if not measured.
        formula: how a unit combines its inputs.
    """

    name: str
    depth: int
    units: int
    unit_names: list[str]
    reads: list[int]
    links: int
    params: int
    macs: int
    memory: StepMemory | None
    formula: str


@dataclass(frozen=True)
class Row:
    """One aligned row: a quantity for the left and the right network."""

    quantity: str
    left: float | int | None
    right: float | int | None

    @property
    def difference(self) -> float | None:
        """right - left (``None`` where either is missing)."""
        return None if self.left is None or self.right is None else self.right - self.left

    @property
    def ratio(self) -> float | None:
        """right / left (``None`` where either is missing or left is 0)."""
        return None if not self.left or self.right is None else self.right / self.left


@dataclass(frozen=True)
class Comparison:
    """Two architectures and their aligned rows.

    Attributes:
        left, right: the two networks.
        rows: depth, units, links, widest input, params, MACs, activation memory, step peak
            (the memory rows hold ``None`` when not measured).
        input_size: (h, w) for MACs and memory.
        batch_size: images in the measured training step.
    """

    left: Architecture
    right: Architecture
    rows: list[Row]
    input_size: tuple[int, int]
    batch_size: int


def _peak(model: nn.Module, in_channels: int, size: int, batch_size: int, seed: int) -> StepMemory:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, in_channels, size, size, generator=g)
    return training_step_memory(model.train(), x)


def _dense(config: DenseNetConfig, size: int, name: str, memory: bool, batch_size: int, seed: int) -> Architecture:
    topo = topology(config, size)
    rows = [r for r in topo.layers if r.kind == "dense_layer"]
    with torch.device("meta"):
        meta = DenseNet(config)
    peak = None
    if memory:
        with seeded(seed):
            peak = _peak(DenseNet(config), config.in_channels, size, batch_size, seed)
    return Architecture(name=name, depth=config.depth, units=len(rows), unit_names=[r.name for r in rows],
                        reads=[r.in_channels for r in rows], links=topo.num_links, params=param_count(meta),
                        macs=count_macs(meta, (size, size), config.in_channels), memory=peak, formula=DENSE_FORMULA)


def _resnet(net: PeerNet, config: DenseNetConfig, size: int, peak: StepMemory | None) -> Architecture:
    names, reads = [], []
    for s, stage in enumerate(net.stages, start=1):
        for i, block in enumerate(stage):
            names.append(f"stage{s}.{i}")
            reads.append(block.conv1.in_channels)
    return Architecture(name="ResNet", depth=net.depth, units=len(names), unit_names=names, reads=reads,
                        links=len(names), params=param_count(net), macs=count_macs(net, (size, size), config.in_channels),
                        memory=peak, formula=RESNET_FORMULA)


def _rows(a: Architecture, b: Architecture) -> list[Row]:
    return [Row("depth (weighted layers)", a.depth, b.depth), Row("units H_l", a.units, b.units),
            Row("links (inputs read by the units)", a.links, b.links),
            Row("widest input a unit reads (channels)", max(a.reads), max(b.reads)),
            Row("parameters", a.params, b.params), Row("MACs per image", a.macs, b.macs),
            Row("activation memory: forward peak (bytes)", *(m.memory and m.memory.forward_bytes for m in (a, b))),
            Row("peak memory of a training step (bytes)", *(m.memory and m.memory.step_bytes for m in (a, b)))]


def compare_with_resnet(config: DenseNetConfig, *, input_size: int | None = None, measure_memory: bool = True,
                        batch_size: int = 1, block: str | None = None, seed: int = 0,
                        progress: Progress | None = None) -> Comparison:
    """A DenseNet beside the ResNet of exactly its depth (:func:`~densenet.classroom.nets.same_depth_resnet`).

    Args:
        config: the DenseNet.
        input_size: image side; ``None``: 224 (ImageNet stem), 32 (CIFAR stem) or 128 (``"small"``).
        measure_memory: run one real training step of each (fresh weights; the DenseNet's
            ``memory_efficient`` as configured) to measure peak memory;
            for DenseNet-121 at 224 and its 74M-parameter same-depth ResNet that is a few seconds.
        batch_size: images in that step.
        block: the ResNet's block kind (``None``: bottleneck for a DenseNet-BC, else basic).
        seed: weights and input of the measured step.
        progress: called after each network with the fraction done.

    Returns:
        A :class:`Comparison`, DenseNet on the left.
    """
    size = input_size or default_input_size(config)
    stepper = Stepper(progress, 2)
    dense = _dense(config, size, "DenseNet", measure_memory, batch_size, seed)
    stepper.step()
    peak = None
    if measure_memory:
        with seeded(seed):
            peak = _peak(same_depth_resnet(config, block=block), config.in_channels, size, batch_size, seed)
    with torch.device("meta"):
        res = _resnet(same_depth_resnet(config, block=block), config, size, peak)
    stepper.step()
    return Comparison(dense, res, _rows(dense, res), (size, size), batch_size)


def compare_configs(a: DenseNetConfig, b: DenseNetConfig, *, input_size: int | None = None,
                    measure_memory: bool = True, batch_size: int = 1, labels: tuple[str, str] = ("A", "B"),
                    seed: int = 0, progress: Progress | None = None) -> Comparison:
    """Two DenseNet configurations side by side (e.g. k=12 against k=32, or bottleneck on against off).

    Args:
        a, b: the two configs (same ``in_channels`` for a shared input size).
        input_size: image side; ``None``: :func:`default_input_size` of ``a``.
        measure_memory: measure each one's peak training-step memory (``memory_efficient`` as configured).
        batch_size: images in that step.
        labels: the two columns' names.
        seed: weights and input.
        progress: called after each config with the fraction done.

    Returns:
        A :class:`Comparison`; each row's ``difference``/``ratio`` is b against a.
    """
    size = input_size or default_input_size(a)
    stepper = Stepper(progress, 2)
    left = _dense(a, size, labels[0], measure_memory, batch_size, seed)
    stepper.step()
    right = _dense(b, size, labels[1], measure_memory, batch_size, seed)
    stepper.step()
    return Comparison(left, right, _rows(left, right), (size, size), batch_size)
