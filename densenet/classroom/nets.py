"""DenseNet's peers for the experiments: ResNets assembled from torchvision's blocks, and a plain CNN.

**How depth is counted** (He et al. 2016, and :attr:`DenseNetConfig.depth` for DenseNets): the
weighted layers on the longest path from input to output, i.e. every convolution that the signal
must pass through plus the classifier. For these ResNets that is the stem convolution, every
convolution inside the residual branches (two per ``BasicBlock``, three per ``Bottleneck``) and
the final fully-connected layer; the 1x1 projection convolutions on the shortcuts are not
counted (torchvision's ResNet-50 is ``1 + 3 * 16 + 1``). So a ResNet of depth ``D`` has
``D - 2`` residual-branch convolutions; where ``D - 2`` does not divide into blocks of the chosen
kind, one or two blocks of the other kind make up the difference (:func:`block_plan`).

The residual blocks are torchvision's own ``BasicBlock`` and ``Bottleneck``
(``torchvision.models.resnet``), not re-written; only the stem, the stage layout and the head
are assembled here, because torchvision's ``ResNet`` class fixes four stages and the ImageNet
stem, while the experiments need ResNets shaped like a given DenseNet (CIFAR-style stems, one
to four stages, one input channel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from ..config import STEMS, DenseNetConfig

BLOCKS = ("basic", "bottleneck")


@dataclass(frozen=True)
class BlockPlan:
    """How many residual blocks of each kind make ``depth - 2`` branch convolutions.

    Attributes:
        basic: ``BasicBlock`` count (two 3x3 convolutions each).
        bottleneck: ``Bottleneck`` count (1x1, 3x3, 1x1).
        main: the kind asked for; the other kind only fills in.
    """

    basic: int
    bottleneck: int
    main: str

    @property
    def blocks(self) -> int:
        return self.basic + self.bottleneck

    @property
    def convs(self) -> int:
        return 2 * self.basic + 3 * self.bottleneck


def block_plan(depth: int, block: str = "basic") -> BlockPlan:
    """The residual blocks of a ResNet of exactly ``depth`` weighted layers.

    ``depth - 2`` convolutions are split into blocks of kind ``block``; an odd remainder with
    ``"basic"`` becomes one ``Bottleneck``, a remainder of 1 or 2 with ``"bottleneck"`` becomes
    two or one ``BasicBlock``.

    Raises:
        ValueError: ``depth`` below 4 or an unknown ``block``.
    """
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
    if depth < 4:
        raise ValueError(f"a ResNet needs depth >= 4 (stem, one residual block, classifier), got {depth}")
    n = depth - 2
    if block == "basic":
        fill = n % 2  # one 3-conv block turns an odd count even
        return BlockPlan(basic=(n - 3 * fill) // 2, bottleneck=fill, main=block)
    fill = {0: 0, 1: 2, 2: 1}[n % 3]  # BasicBlocks (2 convs) that make n a multiple of 3
    return BlockPlan(basic=fill, bottleneck=(n - 2 * fill) // 3, main=block)


def _stem(kind: str, in_channels: int, width: int) -> nn.Sequential:
    if kind not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {kind!r}")
    if kind == "imagenet":  # torchvision's
        return nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    if kind == "small":
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


def _split(total: int, parts: int) -> list[int]:
    """``total`` items over ``parts`` stages as evenly as possible, extras in the earlier stages."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def proportional_layout(total: int, weights: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``total`` blocks over stages in proportion to ``weights`` (largest remainders), at least one each.

    Raises:
        ValueError: fewer blocks than stages, or a weight below 1.
    """
    if total < len(weights) or any(w < 1 for w in weights):
        raise ValueError(f"cannot lay {total} block(s) over stages weighted {tuple(weights)}")
    spare = total - len(weights)
    shares = [spare * w / sum(weights) for w in weights]
    counts = [1 + int(x) for x in shares]
    for i in sorted(range(len(weights)), key=lambda i: int(shares[i]) - shares[i])[:total - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


def _init(model: nn.Module) -> None:
    # torchvision's ResNet initialisation.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class PeerNet(nn.Module):
    """A stem, stages of units, global average pooling and a linear classifier.

    Every unit's output is a *tap*: :meth:`forward_taps` returns them in forward order (the stem
    first), and :attr:`tap_depths` says how many weighted layers lie between the input and each.

    Attributes:
        kind: ``"resnet"`` or ``"plain"``.
        depth: weighted layers on the longest path (see the module docstring).
        tap_names: ``"stem"``, ``"stage1.0"``, ... one per tap.
        tap_depths: weighted layers from the input up to and including each tap (increasing).
        plan: the residual blocks (ResNets only).
    """

    def __init__(self, kind: str, stem: nn.Sequential, stages: list[list[tuple[nn.Module, int]]],
                 channels: int, num_classes: int, plan: BlockPlan | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.stem = stem
        self.stages = nn.ModuleList(nn.Sequential(*(unit for unit, _ in stage)) for stage in stages)
        self.fc = nn.Linear(channels, num_classes)
        self.plan = plan
        self.tap_names = ["stem"]
        self.tap_depths = [1]
        for s, stage in enumerate(stages, start=1):
            for i, (_, convs) in enumerate(stage):
                self.tap_names.append(f"stage{s}.{i}")
                self.tap_depths.append(self.tap_depths[-1] + convs)
        self.depth = self.tap_depths[-1] + 1
        _init(self)

    def forward_taps(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits (N, K) and every tap's output (N, C, h, w), from one pass without hooks."""
        x = self.stem(x)
        taps = [x]
        for stage in self.stages:
            for unit in stage:
                x = unit(x)
                taps.append(x)
        return self.head(x), taps

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> the last stage's output (N, C, h, w)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def head(self, features: Tensor) -> Tensor:
        """Last-stage features (N, C, h, w) -> logits (N, K)."""
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))


def resnet(depth: int, *, block: str = "basic", width: int = 16, stages: int = 3,
           layout: tuple[int, ...] | None = None, stem: str = "cifar", in_channels: int = 1,
           num_classes: int = 4) -> PeerNet:
    """A ResNet of exactly ``depth`` weighted layers, built from torchvision's residual blocks.

    Stage ``s`` (0-based) halves the resolution (except the first) and has ``width * 2**s``
    channels (``BasicBlock``) or ``4 * width * 2**s`` (``Bottleneck``, whose inner width is
    ``width * 2**s``, as torchvision's ResNet-50). Blocks are spread evenly over the stages;
    filler blocks of the other kind (:func:`block_plan`) come first.

    Args:
        depth: the depth asked for (>= 4).
        block: ``"basic"`` or ``"bottleneck"``.
        width: channels of the first stage's basic blocks / inner width of its bottlenecks.
        stages: number of stages (>= 1), the blocks spread evenly over them.
        layout: blocks per stage instead (e.g. ``(3, 4, 6, 3)``: torchvision's ResNet-34 with
            ``width=64, stem="imagenet"``); must add up to the plan's block count.
        stem: ``"cifar"`` (3x3 conv, BN, ReLU), ``"small"`` (the same, then 3x3/2 max-pool) or
            ``"imagenet"`` (torchvision's 7x7/2 conv, BN, ReLU, 3x3/2 max-pool).
        in_channels, num_classes: image channels and outputs.

    Raises:
        ValueError: a bad depth, block, width or stage count.
    """
    plan = block_plan(depth, block)
    if width < 1 or stages < 1:
        raise ValueError(f"width and stages must be >= 1, got width={width}, stages={stages}")
    if layout is not None:
        layout = tuple(int(n) for n in layout)
        if sum(layout) != plan.blocks or min(layout, default=0) < 1:
            raise ValueError(f"layout {layout} must give every stage >= 1 block and add up to the "
                             f"{plan.blocks} block(s) of depth {depth} ({plan})")
    elif stages > plan.blocks:
        raise ValueError(f"depth {depth} gives {plan.blocks} residual block(s), fewer than {stages} stages")
    expansion = Bottleneck.expansion if block == "bottleneck" else 1
    if plan.bottleneck and block == "basic" and width % Bottleneck.expansion:
        raise ValueError(f"depth {depth} needs one Bottleneck filler, whose output is 4x its width: "
                         f"width must be a multiple of 4, got {width}")
    kinds = ["bottleneck" if block == "basic" else "basic"] * (plan.basic if block == "bottleneck" else plan.bottleneck)
    kinds += [block] * (plan.blocks - len(kinds))
    counts = list(layout) if layout is not None else _split(plan.blocks, stages)
    layers: list[list[tuple[nn.Module, int]]] = []
    inplanes, k = width, 0  # the stem outputs ``width`` channels, as torchvision's (64)
    for s, count in enumerate(counts):
        planes = width * 2 ** s
        out = planes * expansion
        stage = []
        for i in range(count):
            stride = 2 if (s > 0 and i == 0) else 1
            downsample = None
            if stride != 1 or inplanes != out:
                downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
            if kinds[k] == "basic":
                unit: nn.Module = BasicBlock(inplanes, out, stride, downsample)
                convs = 2
            else:
                unit, convs = Bottleneck(inplanes, out // Bottleneck.expansion, stride, downsample), 3
            stage.append((unit, convs))
            inplanes, k = out, k + 1
        layers.append(stage)
    net = PeerNet("resnet", _stem(stem, in_channels, width), layers, inplanes, num_classes, plan)
    assert net.depth == depth, (net.depth, depth)
    return net


def plain_cnn(depth: int, *, width: int = 16, stages: int = 3, stem: str = "cifar", in_channels: int = 1,
              num_classes: int = 4) -> PeerNet:
    """A plain deep CNN of ``depth`` weighted layers: conv-BN-ReLU units, no shortcut of any kind.

    The same stem, stage widths (``width * 2**s``) and head as :func:`resnet` with basic blocks;
    the first unit of each later stage has stride 2.

    Raises:
        ValueError: ``depth`` below 3, or more stages than units.
    """
    if depth < 3:
        raise ValueError(f"a plain CNN needs depth >= 3 (stem, one conv, classifier), got {depth}")
    if width < 1 or not 1 <= stages <= depth - 2:
        raise ValueError(f"width must be >= 1 and stages in 1..{depth - 2}, got width={width}, stages={stages}")
    layers: list[list[tuple[nn.Module, int]]] = []
    inplanes = width
    for s, count in enumerate(_split(depth - 2, stages)):
        out = width * 2 ** s
        stage = []
        for i in range(count):
            stride = 2 if (s > 0 and i == 0) else 1
            stage.append((nn.Sequential(nn.Conv2d(inplanes, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out),
                                        nn.ReLU()), 1))
            inplanes = out
        layers.append(stage)
    return PeerNet("plain", _stem(stem, in_channels, width), layers, inplanes, num_classes)


def param_count(model: nn.Module) -> int:
    """Learnable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def same_depth_resnet(config: DenseNetConfig, *, block: str | None = None, width: int | None = None) -> PeerNet:
    """A ResNet with the depth, stem, stage count, input channels and classes of ``config``.

    Its blocks are spread over the stages in proportion to the DenseNet's block sizes (DenseNet-121's
    ``(6, 12, 24, 16)`` gives ``(5, 8, 16, 11)`` blocks: 39 bottlenecks and one basic filler).

    Args:
        config: the DenseNet to match.
        block: ``None``: ``"bottleneck"`` for a DenseNet-BC (``bn_size`` set), else ``"basic"``.
        width: first-stage width; ``None``: ``num_init_features`` rounded up to a multiple of 4
            (64 for the ImageNet DenseNets, as torchvision's ResNets).
    """
    block = block or ("bottleneck" if config.bn_size is not None else "basic")
    if width is None:
        width = -(-config.num_init_features // 4) * 4
    plan = block_plan(config.depth, block)
    weights = config.block_config[:plan.blocks]
    return resnet(config.depth, block=block, width=width, layout=proportional_layout(plan.blocks, weights),
                  stem=config.stem, in_channels=config.in_channels, num_classes=config.num_classes)


def _closest_width(build: Callable[[int], PeerNet], target: int, step: int) -> int:
    """The multiple of ``step`` whose network has the parameter count closest to ``target``."""
    best, best_gap = step, None
    for width in range(step, 4097, step):  # parameters grow with width: stop once past the best
        with torch.device("meta"):  # counting only: no memory, no initialisation cost
            gap = abs(param_count(build(width)) - target)
        if best_gap is not None and gap > best_gap:
            break
        best, best_gap = width, gap
    return best


def _dense_params(config: DenseNetConfig) -> int:
    from ..model import DenseNet

    with torch.device("meta"):
        return param_count(DenseNet(config))


def matched_resnet(config: DenseNetConfig, *, depth: int | None = None, block: str | None = None) -> PeerNet:
    """A ResNet shaped like ``config`` (:func:`same_depth_resnet`) whose width (a multiple of 4)
    gives the parameter count closest to the DenseNet's.

    Args:
        config: the DenseNet to match.
        depth: the ResNet's depth; ``None``: the DenseNet's.
        block: residual block kind; ``None``: as :func:`same_depth_resnet`.
    """
    block = block or ("bottleneck" if config.bn_size is not None else "basic")
    depth = depth or config.depth
    plan = block_plan(depth, block)
    layout = proportional_layout(plan.blocks, config.block_config[:plan.blocks])

    def build(w: int) -> PeerNet:
        return resnet(depth, block=block, width=w, layout=layout, stem=config.stem,
                      in_channels=config.in_channels, num_classes=config.num_classes)

    return build(_closest_width(build, _dense_params(config), 4))


def matched_plain_cnn(config: DenseNetConfig) -> PeerNet:
    """A plain CNN of ``config``'s depth, stem and block count whose width gives about the DenseNet's parameters."""
    stages = min(len(config.block_config), config.depth - 2)

    def build(w: int) -> PeerNet:
        return plain_cnn(config.depth, width=w, stages=stages, stem=config.stem, in_channels=config.in_channels,
                         num_classes=config.num_classes)

    return build(_closest_width(build, _dense_params(config), 1))
