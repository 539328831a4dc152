"""Read a DenseNet's architecture off its weights, and load every weight or none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..config import DenseNetConfig
from ..model import DenseNet
from ..recognise import foreign_message
from .errors import CheckpointError


def infer_config(state: Mapping[str, Tensor], **fixed: Any) -> DenseNetConfig:
    """Read a DenseNet's architecture off its weights.

    Args:
        state: a state dict with our (torchvision's) key names.
        fixed: config fields known from elsewhere (metadata); these win over inference.

    Raises:
        CheckpointError: the weights are not a DenseNet's, or a part is missing.
    """
    conv0 = state.get("features.conv0.weight")
    if conv0 is not None and conv0.dim() == 5:
        raise CheckpointError("this is a 3-D DenseNet checkpoint (its first convolution has a depth axis, "
                              "as MONAI's spatial_dims=3); this app explains DenseNets on 2-D images")
    if conv0 is None or conv0.dim() != 4:
        foreign = foreign_message(state)
        if foreign:
            raise CheckpointError(foreign)
        from .wrappers import tried_message

        sample = ", ".join(list(state)[:3])
        raise CheckpointError(f"this does not look like a DenseNet checkpoint: {tried_message(list(state))}; "
                              f"its first keys are {sample}")
    if "features.conv1.weight" in state or "features.conv0.1.weight" in state:
        raise CheckpointError("this DenseNet has a deep stem (several stem convolutions, as timm's "
                              "densenet264d and densenetblur121d); only the paper's single-conv stems are supported")
    c0, in_channels, kh, _ = conv0.shape
    stem = "imagenet" if kh == 7 else ("small" if "features.norm0.weight" in state else "cifar")

    block_config = []
    b = 1
    while f"features.denseblock{b}.denselayer1.norm1.weight" in state:
        n = 1
        while f"features.denseblock{b}.denselayer{n + 1}.norm1.weight" in state:
            n += 1
        block_config.append(n)
        b += 1
    if not block_config:
        raise CheckpointError("a DenseNet checkpoint needs 'features.denseblock1.denselayer1.*' weights; none found")

    first = "features.denseblock1.denselayer1"
    if f"{first}.conv2.weight" in state:
        growth, width = state[f"{first}.conv2.weight"].shape[:2]
        bn_size: int | None = max(1, int(width) // int(growth))
    else:
        growth, bn_size = state[f"{first}.conv1.weight"].shape[0], None

    compression = 1.0
    if "features.transition1.conv.weight" in state:
        out, cin = state["features.transition1.conv.weight"].shape[:2]
        compression = round(int(out) / int(cin), 6)
    classifier = state.get("classifier.weight")
    if classifier is None:
        raise CheckpointError("the checkpoint has no classifier weights ('classifier.weight')")
    num_classes = int(classifier.shape[0]) + (1 if fixed.get("null_class") else 0)

    inferred = dict(growth_rate=int(growth), block_config=tuple(block_config), num_init_features=int(c0),
                    bn_size=bn_size, compression=compression, in_channels=int(in_channels),
                    num_classes=num_classes, stem=stem)
    inferred.update(fixed)
    try:
        return DenseNetConfig(**inferred)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the weights describe no valid DenseNet: {e}") from None


def load_state_strict(model: DenseNet, state: Mapping[str, Tensor]) -> None:
    """Load every weight or none: list missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", mismatched)):
        if items:
            more = f" (and {len(items) - 6} more)" if len(items) > 6 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:6])}{more}")
    if problems:
        raise CheckpointError("the weights do not fit the architecture; " + "; ".join(problems))
    model.load_state_dict(state, strict=False)
