"""Name the architecture of a checkpoint that is not a DenseNet, from its state-dict keys alone.

Used for the error a user sees when they bring a ResNet, VGG, ViT, EfficientNet, ... checkpoint:
"this is a ResNet checkpoint (ResNet-50 ...); this app explains DenseNets". Only key names and
tensor shapes are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from torch import Tensor

_RESNET_DEPTH = {  # (blocks per stage, bottleneck) -> torchvision name
    ((2, 2, 2, 2), False): "ResNet-18", ((3, 4, 6, 3), False): "ResNet-34", ((3, 4, 6, 3), True): "ResNet-50",
    ((3, 4, 23, 3), True): "ResNet-101", ((3, 8, 36, 3), True): "ResNet-152",
}
_VGG_DEPTH = {8: "VGG-11", 10: "VGG-13", 13: "VGG-16", 16: "VGG-19"}


def _has(state: Mapping[str, Tensor], pattern: str) -> bool:
    rx = re.compile(pattern)
    return any(rx.search(k) for k in state)


def _out_features(state: Mapping[str, Tensor], key: str) -> str:
    w = state.get(key)
    return f", {int(w.shape[1])} features into {int(w.shape[0])} outputs" if isinstance(w, Tensor) and w.dim() == 2 else ""


def _resnet(state: Mapping[str, Tensor]) -> str | None:
    if not ("conv1.weight" in state and _has(state, r"^layer1\.0\.conv1\.weight$")):
        return None
    blocks = []
    for s in range(1, 5):
        ids = {int(m.group(1)) for k in state if (m := re.match(rf"^layer{s}\.(\d+)\.", k))}
        if ids:
            blocks.append(max(ids) + 1)
    bottleneck = "layer1.0.conv3.weight" in state
    name = _RESNET_DEPTH.get((tuple(blocks), bottleneck))
    kind = "bottleneck" if bottleneck else "basic"
    layout = f"stages of {', '.join(map(str, blocks))} {kind} blocks"
    return f"{name + ': ' if name else ''}{layout}{_out_features(state, 'fc.weight')}"


def _vgg_or_alexnet(state: Mapping[str, Tensor]) -> tuple[str, str] | None:
    convs = sorted(int(m.group(1)) for k, v in state.items()
                   if (m := re.match(r"^features\.(\d+)\.weight$", k)) and v.dim() == 4)
    if not convs or "features.0.weight" not in state or not _has(state, r"^classifier\.\d+\.weight$"):
        return None
    if "classifier.1.weight" in state and state["features.0.weight"].shape[-1] == 11:
        return "AlexNet", f"{len(convs)} convolutions"
    if "classifier.6.weight" in state or "classifier.0.weight" in state:
        bn = _has(state, r"^features\.\d+\.running_mean$")
        name = _VGG_DEPTH.get(len(convs), "VGG")
        return "VGG", f"{name}{' with batch norm' if bn else ''}: {len(convs)} convolutions"
    return None


def _vit(state: Mapping[str, Tensor]) -> str | None:
    if "conv_proj.weight" in state and _has(state, r"^encoder\.layers\.encoder_layer_0\."):
        patch = state["conv_proj.weight"]
        layers = len({m.group(1) for k in state if (m := re.match(r"^encoder\.layers\.encoder_layer_(\d+)\.", k))})
        return f"{layers} encoder layers, width {patch.shape[0]}, {patch.shape[-1]}x{patch.shape[-1]} patches (torchvision)"
    if "patch_embed.proj.weight" in state and _has(state, r"^blocks\.0\.attn\.qkv\.weight$"):
        patch = state["patch_embed.proj.weight"]
        layers = len({m.group(1) for k in state if (m := re.match(r"^blocks\.(\d+)\.", k))})
        return f"{layers} blocks, width {patch.shape[0]}, {patch.shape[-1]}x{patch.shape[-1]} patches (timm)"
    return None


_RULES: list[tuple[str, Callable[[Mapping[str, Tensor]], str | None]]] = [
    ("Swin Transformer", lambda s: "relative position bias tables" if _has(s, r"relative_position_bias_table$") else None),
    ("Vision Transformer (ViT)", _vit),
    ("ConvNeXt", lambda s: "layer-scaled depthwise blocks" if _has(s, r"(\.layer_scale$|stages\.\d+\.blocks\.\d+\.gamma$)")
        or (_has(s, r"^stages\.\d+\.blocks\.\d+\.conv_dw\.weight$") and "stem.0.weight" in s) else None),
    ("EfficientNet", lambda s: "MBConv blocks with squeeze-excitation (torchvision)"
        if _has(s, r"^features\.\d+\.\d+\.block\.\d+\.") else None),
    ("EfficientNet or MobileNetV3", lambda s: "conv_stem / depthwise blocks / conv_head (timm)"
        if "conv_stem.weight" in s and _has(s, r"^blocks\.0\.0\.conv_dw\.weight$") else None),
    ("MobileNetV3", lambda s: "inverted residual blocks (torchvision)" if _has(s, r"^features\.\d+\.block\.\d+\.") else None),
    ("MobileNetV2", lambda s: "inverted residual blocks (torchvision)" if _has(s, r"^features\.\d+\.conv\.\d+\.") else None),
    ("Inception v3", lambda s: "Mixed_5b ... Mixed_7c blocks" if _has(s, r"^Mixed_5b\.") else None),
    ("GoogLeNet", lambda s: "inception3a ... inception5b blocks" if _has(s, r"^inception3a\.") else None),
    ("RegNet", lambda s: "trunk_output blocks" if _has(s, r"^trunk_output\.block1\.") else None),
    ("ShuffleNetV2", lambda s: "stage2 ... stage4 with branches" if _has(s, r"^stage2\.0\.branch") else None),
    ("SqueezeNet", lambda s: "Fire modules" if _has(s, r"^features\.\d+\.squeeze\.weight$") else None),
    ("ResNet", _resnet),
]


def recognise(state: Mapping[str, Tensor]) -> tuple[str, str] | None:
    """``(family, what was recognised)`` for a known non-DenseNet architecture, else ``None``.

    Args:
        state: a state dict (wrappers' prefixes already stripped).
    """
    for family, rule in _RULES:
        detail = rule(state)
        if detail:
            return family, detail
    return _vgg_or_alexnet(state)


def foreign_message(state: Mapping[str, Tensor]) -> str | None:
    """The sentence for a checkpoint of another architecture, or ``None`` if none is recognised."""
    found = recognise(state)
    if found is None:
        return None
    family, detail = found
    return (f"this is {with_article(family)} checkpoint ({detail}); this app explains DenseNets "
            "(DenseNet-121/161/169/201, CIFAR DenseNet-BC, torchxrayvision and timm DenseNets)")


_MODULE_FAMILIES = {
    "resnet": "ResNet", "vgg": "VGG", "alexnet": "AlexNet", "vision_transformer": "Vision Transformer (ViT)",
    "swin_transformer": "Swin Transformer", "convnext": "ConvNeXt", "efficientnet": "EfficientNet",
    "mobilenetv2": "MobileNetV2", "mobilenetv3": "MobileNetV3", "inception": "Inception v3", "googlenet": "GoogLeNet",
    "regnet": "RegNet", "shufflenetv2": "ShuffleNetV2", "squeezenet": "SqueezeNet", "byobnet": "ResNet",
    "deit": "Vision Transformer (ViT)", "beit": "Vision Transformer (ViT)", "maxxvit": "Vision Transformer (ViT)",
}


def family_of_classes(names: list[str] | set[str]) -> tuple[str, str] | None:
    """``(family, the class recognised)`` from the class names a whole pickled model holds (e.g.
    ``torchvision.models.resnet.ResNet``), read without unpickling it; ``None`` if none is known."""
    found = []
    for name in sorted(names):
        parts = name.split(".")
        if len(parts) >= 3 and parts[0] in ("torchvision", "timm") and parts[1] == "models":
            family = _MODULE_FAMILIES.get(parts[2])
            if family:
                found.append((parts[-1] not in _TOP_CLASSES, family, name))  # the model's own class first
    if not found:
        return None
    _, family, name = min(found)
    return family, name


_TOP_CLASSES = {"ResNet", "VGG", "AlexNet", "VisionTransformer", "SwinTransformer", "ConvNeXt", "EfficientNet",
                "MobileNetV2", "MobileNetV3", "Inception3", "GoogLeNet", "RegNet", "ShuffleNetV2", "SqueezeNet",
                "ByobNet", "Beit", "MaxxVit"}


def with_article(family: str) -> str:
    """``"a ResNet"``, ``"an EfficientNet"``."""
    return f"{'an' if family[0] in 'AEIOU' else 'a'} {family}"
