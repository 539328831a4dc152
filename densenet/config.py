"""The knobs of a DenseNet, and the paper's variants as a table of them."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

POOLS = ("avg", "lme")


@dataclass(frozen=True)
class Stem:
    """One kind of stem: how it is built, how it is described, and the input it expects.

    Attributes:
        name: the config value (``DenseNetConfig.stem``).
        label: a short name for people.
        structure: the layers, as the paper's Table 1 would write them.
        kernel, stride: of the stem convolution (padding ``kernel // 2``).
        pool: a BN-ReLU and a 3x3/2 max-pool follow the convolution.
        input_size: the side of the images it was made for.
    """

    name: str
    label: str
    structure: str
    kernel: int
    stride: int
    pool: bool
    input_size: int

    @property
    def describe(self) -> str:
        """``"ImageNet: 7×7/2 conv + max-pool (224 px)"``."""
        return f"{self.label}: {self.structure} ({self.input_size} px)"


#: The stems every builder, topology, figure and control reads.
STEMS: dict[str, Stem] = {s.name: s for s in (
    Stem("imagenet", "ImageNet", "7×7/2 conv + max-pool", kernel=7, stride=2, pool=True, input_size=224),
    Stem("small", "Small", "3×3 conv + max-pool", kernel=3, stride=1, pool=True, input_size=128),
    Stem("cifar", "CIFAR", "one 3×3 conv", kernel=3, stride=1, pool=False, input_size=32),
)}


@dataclass(frozen=True)
class DenseNetConfig:
    """Everything needed to build a DenseNet; two equal configs build identical architectures.

    Attributes:
        growth_rate: k, the number of feature maps each dense layer adds.
        block_config: number of dense layers in each dense block.
        num_init_features: channels out of the stem (c0 of the first block).
        bn_size: bottleneck width factor (the 1x1 conv outputs ``bn_size * k``);
            ``None`` means no bottleneck (plain DenseNet: BN-ReLU-3x3 conv only).
        compression: theta; a transition outputs ``floor(theta * c)`` channels.
        drop_rate: dropout after each dense layer (training only).
        in_channels: image channels (1 for X-ray models).
        num_classes: number of outputs (logits) of the model.
        memory_efficient: gradient-checkpoint the concat-BN-ReLU-1x1 part of each layer.
        stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), ``"cifar"``
            (one 3x3 conv) or ``"small"`` (3x3/1 conv, BN, ReLU, 3x3/2 max-pool).
        pool: global pooling of the head: ``"avg"`` (average then classify) or
            ``"lme"`` (classify every location, then log-mean-exp with sharpness ``lme_r``).
        null_class: prepend a fixed zero logit (a "nothing there" class); the classifier
            then has ``num_classes - 1`` outputs.
        lme_r: sharpness of log-mean-exp pooling (large: max, small: mean).
        multilabel: outputs are independent sigmoids (e.g. chest X-ray findings), not a softmax.
    """

    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int | None = 4
    compression: float = 0.5
    drop_rate: float = 0.0
    in_channels: int = 3
    num_classes: int = 1000
    memory_efficient: bool = False
    stem: str = "imagenet"
    pool: str = "avg"
    null_class: bool = False
    lme_r: float = 5.0
    multilabel: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_config", tuple(int(n) for n in self.block_config))
        if self.growth_rate < 1:
            raise ValueError(f"growth_rate must be >= 1, got {self.growth_rate}")
        if not self.block_config or any(n < 1 for n in self.block_config):
            raise ValueError(f"block_config needs at least one block of >= 1 layer, got {self.block_config}")
        if self.num_init_features < 1:
            raise ValueError(f"num_init_features must be >= 1, got {self.num_init_features}")
        if self.bn_size is not None and self.bn_size < 1:
            raise ValueError(f"bn_size must be >= 1 or None, got {self.bn_size}")
        if not 0.0 < self.compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {self.compression}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.num_classes < (2 if self.null_class else 1):
            raise ValueError(f"num_classes too small: {self.num_classes}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {tuple(STEMS)}, got {self.stem!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")

    def replace(self, **changes: Any) -> DenseNetConfig:
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown DenseNetConfig option(s): {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["block_config"] = list(self.block_config)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenseNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def depth(self) -> int:
        """The paper's L: conv layers in the dense blocks and transitions, plus stem conv and classifier."""
        per_layer = 2 if self.bn_size is not None else 1
        return per_layer * sum(self.block_config) + (len(self.block_config) - 1) + 2


def cifar_bc(depth: int = 100, growth_rate: int = 12, *, num_classes: int = 10, **overrides: Any) -> DenseNetConfig:
    """DenseNet-BC for 32x32 images: three equal blocks of bottleneck layers, theta 0.5.

    ``depth = 6 * n + 4`` (each bottleneck layer has two convs; stem, two transitions, classifier).
    """
    if (depth - 4) % 6:
        raise ValueError(f"DenseNet-BC depth must be 6n+4 (e.g. 40, 100, 190), got {depth}")
    n = (depth - 4) // 6
    base = dict(growth_rate=growth_rate, block_config=(n, n, n), num_init_features=2 * growth_rate,
                bn_size=4, compression=0.5, stem="cifar", num_classes=num_classes)
    base.update(overrides)
    return DenseNetConfig(**base)


def cifar_plain(depth: int = 40, growth_rate: int = 12, *, num_classes: int = 10, **overrides: Any) -> DenseNetConfig:
    """The plain DenseNet of the paper (no bottleneck, no compression): ``depth = 3 * n + 4``."""
    if (depth - 4) % 3:
        raise ValueError(f"plain DenseNet depth must be 3n+4 (e.g. 40, 100), got {depth}")
    n = (depth - 4) // 3
    base = dict(growth_rate=growth_rate, block_config=(n, n, n), num_init_features=16,
                bn_size=None, compression=1.0, stem="cifar", num_classes=num_classes)
    base.update(overrides)
    return DenseNetConfig(**base)


VARIANTS: dict[str, DenseNetConfig] = {
    "densenet121": DenseNetConfig(32, (6, 12, 24, 16), 64),
    "densenet161": DenseNetConfig(48, (6, 12, 36, 24), 96),
    "densenet169": DenseNetConfig(32, (6, 12, 32, 32), 64),
    "densenet201": DenseNetConfig(32, (6, 12, 48, 32), 64),
    "densenet264": DenseNetConfig(32, (6, 12, 64, 48), 64),
    "densenet-bc-100-12": cifar_bc(100, 12),
    "densenet-bc-250-24": cifar_bc(250, 24),
    "densenet-bc-190-40": cifar_bc(190, 40),
    "densenet-40-12": cifar_plain(40, 12),
    "densenet-100-12": cifar_plain(100, 12),
}


def transition_channels(channels: int, compression: float) -> int:
    """Channels out of a transition: ``floor(theta * c)`` (at least one)."""
    return max(1, math.floor(compression * channels))
