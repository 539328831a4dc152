"""Claim "fewer parameters": published ImageNet accuracy against computed parameter counts, and a same-depth ResNet.

The accuracies are the figures torchvision publishes with its weights
(``<Model>_Weights.IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"]["acc@1"]``), read from the
installed torchvision at run time: nothing is downloaded. Parameter counts and MACs are our own,
computed by building each model on the ``meta`` device (no memory, no weights) and counting; the
published ``num_params`` is kept beside ours so that a reader (and a test) can check they agree.
This is the paper's Fig. 3 (Huang et al. 2017) in spirit, with torchvision's re-trained models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import DenseNetConfig
from ._common import Progress, Stepper
from .nets import BlockPlan, param_count, same_depth_resnet

#: torchvision's DenseNet and ResNet families, in order of size.
FAMILIES: dict[str, tuple[str, ...]] = {
    "DenseNet": ("densenet121", "densenet169", "densenet201", "densenet161"),
    "ResNet": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
}


@dataclass(frozen=True)
class PublishedModel:
    """One torchvision ImageNet model: our counts beside its published figures.

    Attributes:
        name: torchvision's builder name (``"densenet121"``).
        family: ``"DenseNet"`` or ``"ResNet"``.
        params: parameters, counted here by building the model.
        macs: multiply-accumulates of one 224x224 image, counted here (``FlopCounterMode`` / 2).
        published_params: the weights' ``meta["num_params"]``.
        top1, top5: published ImageNet-1K validation accuracy, percent.
        weights: the weights enum member the figures come from (``"DenseNet121_Weights.IMAGENET1K_V1"``).
        recipe: the training recipe's address, from the same metadata.
    """

    name: str
    family: str
    params: int
    macs: int
    published_params: int
    top1: float
    top5: float
    weights: str
    recipe: str


@dataclass(frozen=True)
class ParamsVsAccuracy:
    """Parameters against published top-1 accuracy for both families.

    Attributes:
        models: every model, DenseNets first, each family by size.
        source: a sentence citing where the accuracies come from (torchvision version included).
    """

    models: list[PublishedModel]
    source: str

    def family(self, name: str) -> list[PublishedModel]:
        """The models of one family, in order of size."""
        return [m for m in self.models if m.family == name]


def count_macs(model: nn.Module, input_size: tuple[int, int], in_channels: int) -> int:
    """Multiply-accumulates of one image through ``model`` (``FlopCounterMode`` FLOPs / 2), run on ``meta``."""
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        model(torch.empty(1, in_channels, *input_size))
    return counter.get_total_flops() // 2


def published_accuracy(*, weights: str = "IMAGENET1K_V1", families: dict[str, tuple[str, ...]] | None = None,
                       progress: Progress | None = None) -> ParamsVsAccuracy:
    """torchvision's DenseNets and ResNets: computed parameters and MACs, published top-1/top-5.

    Args:
        weights: which weights' figures; ``"IMAGENET1K_V1"`` (default) is the original recipe
            for every model, so the two families were trained alike. ``"IMAGENET1K_V2"`` exists
            only for ResNet-50/101/152 (a newer, longer recipe); where a model lacks it, V1 is used.
        families: family -> torchvision builder names; ``None``: :data:`FAMILIES`.
        progress: called after each model with the fraction done.

    Returns:
        A :class:`ParamsVsAccuracy` (about 3 s on 2 cores: nine models built on ``meta``).
    """
    names = [(family, name) for family, members in (families or FAMILIES).items() for name in members]
    if not names:
        raise ValueError("no models to list: families is empty")
    stepper = Stepper(progress, len(names))
    models = []
    for family, name in names:
        enum = torchvision.models.get_model_weights(name)
        member = getattr(enum, weights, None) or enum.IMAGENET1K_V1
        with torch.device("meta"):
            model = torchvision.models.get_model(name)
        metrics = member.meta["_metrics"]["ImageNet-1K"]
        models.append(PublishedModel(
            name=name, family=family, params=param_count(model), macs=count_macs(model, (224, 224), 3),
            published_params=int(member.meta["num_params"]), top1=float(metrics["acc@1"]),
            top5=float(metrics["acc@5"]), weights=f"{enum.__name__}.{member.name}", recipe=str(member.meta["recipe"])))
        stepper.step()
    used = sorted({m.weights.rsplit(".", 1)[1] for m in models})
    source = (f"Top-1 accuracy: the ImageNet-1K validation figures torchvision {torchvision.__version__} publishes "
              f"with its {' and '.join(used)} weights (meta['_metrics']['ImageNet-1K']['acc@1']); "
              "parameters and MACs (224x224) counted here by building each model.")
    return ParamsVsAccuracy(models=models, source=source)


@dataclass(frozen=True)
class SameDepth:
    """A DenseNet and a ResNet of the same depth, side by side.

    Attributes:
        depth: weighted layers on the longest path, both networks (see :mod:`densenet.classroom.nets`).
        densenet_params, resnet_params: parameters of each.
        densenet_macs, resnet_macs: multiply-accumulates of one image at ``input_size``.
        resnet_block: ``"basic"`` or ``"bottleneck"``.
        resnet_plan: its residual blocks by kind.
        resnet_layout: residual blocks per stage.
        resnet_width: its first-stage width.
        input_size: (h, w) the MACs were counted at.
    """

    depth: int
    densenet_params: int
    resnet_params: int
    densenet_macs: int
    resnet_macs: int
    resnet_block: str
    resnet_plan: BlockPlan
    resnet_layout: list[int]
    resnet_width: int
    input_size: tuple[int, int]

    @property
    def ratio(self) -> float:
        """ResNet parameters per DenseNet parameter."""
        return self.resnet_params / self.densenet_params


def default_input_size(config: DenseNetConfig) -> int:
    """224 for ImageNet stems, 32 for CIFAR stems, 128 (the demo's) for ``"small"``."""
    return {"imagenet": 224, "cifar": 32}.get(config.stem, 128)


def same_depth(config: DenseNetConfig, *, block: str | None = None, width: int | None = None,
               input_size: int | None = None) -> SameDepth:
    """Parameters and MACs of ``config``'s DenseNet and of a ResNet of exactly its depth.

    The ResNet is :func:`~densenet.classroom.nets.same_depth_resnet` (torchvision's blocks; by
    default bottlenecks for a DenseNet-BC, basic blocks otherwise, first-stage width
    ``num_init_features``). Both are built on ``meta``, so even DenseNet-264 takes about a second.

    Args:
        config: the DenseNet.
        block, width: passed to ``same_depth_resnet``.
        input_size: side of the image for MACs; ``None``: :func:`default_input_size`.
    """
    from ..model import DenseNet

    size = input_size or default_input_size(config)
    with torch.device("meta"):
        dense = DenseNet(config)
        res = same_depth_resnet(config, block=block, width=width)
    return SameDepth(
        depth=config.depth, densenet_params=param_count(dense), resnet_params=param_count(res),
        densenet_macs=count_macs(dense, (size, size), config.in_channels),
        resnet_macs=count_macs(res, (size, size), config.in_channels), resnet_block=res.plan.main,
        resnet_plan=res.plan, resnet_layout=[len(s) for s in res.stages], resnet_width=res.stem[0].out_channels,
        input_size=(size, size))
