"""DenseNet Explorer's engine: the DenseNet family, checkpoints, introspection and explanations.

This package never imports streamlit.
"""

from __future__ import annotations

import os
from typing import Any

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .config import VARIANTS, DenseNetConfig, cifar_bc, cifar_plain
from .device import pick_device
from .images import ImageError, load_image
from .model import DenseNet
from .preprocess import preprocess
from .pretrained import IMAGENET_VARIANTS, WeightsUnavailableError
from .topology import Topology, topology
from .trace import Trace

__all__ = [
    "VARIANTS", "DenseNet", "DenseNetConfig", "CheckpointError", "ImageError", "Topology", "Trace",
    "WeightsUnavailableError", "cifar_bc", "cifar_plain", "create", "load_checkpoint", "load_image",
    "pick_device", "preprocess", "save_checkpoint", "topology",
]


def create(name_or_config: str | DenseNetConfig, *, weights: str | os.PathLike | None = None,
           class_names: list[str] | None = None, **overrides: Any) -> DenseNet:
    """Build a DenseNet by variant name or config, optionally with weights.

    Args:
        name_or_config: a key of :data:`VARIANTS` (``"densenet121"``, ``"densenet-bc-100-12"``, ...)
            or a :class:`DenseNetConfig`.
        weights: ``None`` for fresh weights; ``"imagenet"`` for torchvision's published weights
            (hub cache, else download); or a path to a checkpoint of this architecture.
        class_names: names of the outputs (default: from the weights, else ``class i``).
        overrides: config fields to change, e.g. ``growth_rate=12, in_channels=1``.

    Returns:
        The model (eval mode when weights were loaded).

    Raises:
        ValueError: unknown variant or option; CheckpointError / WeightsUnavailableError for weights.
    """
    if isinstance(name_or_config, DenseNetConfig):
        name, config = None, name_or_config
    elif name_or_config in VARIANTS:
        name, config = name_or_config, VARIANTS[name_or_config]
    else:
        raise ValueError(f"unknown DenseNet variant {name_or_config!r}; known: {', '.join(VARIANTS)}")
    config = config.replace(**overrides) if overrides else config
    if weights is None:
        return DenseNet(config, class_names=class_names)

    if weights == "imagenet":
        from .pretrained import imagenet_weights_file

        if name not in IMAGENET_VARIANTS:
            raise ValueError(f"ImageNet weights exist for {', '.join(IMAGENET_VARIANTS)}, not {name_or_config!r}")
        if config != VARIANTS[name]:
            raise ValueError("ImageNet weights fit only the unchanged architecture; "
                             f"drop the overrides {sorted(overrides)}")
        weights = imagenet_weights_file(name)
    model = load_checkpoint(weights)
    if model.config.replace(memory_efficient=config.memory_efficient, drop_rate=config.drop_rate) != config:
        raise CheckpointError(f"the weights are a different DenseNet ({model.config}) than the one asked for ({config})")
    if config != model.config:
        fresh = DenseNet(config, class_names=model.class_names, preprocessing=model.preprocessing,
                         metadata=model.metadata)
        fresh.load_state_dict(model.state_dict())
        model = fresh.eval()
    if class_names is not None:
        if len(class_names) != config.num_classes:
            raise ValueError(f"{len(class_names)} class names for {config.num_classes} outputs")
        model.class_names = list(class_names)
    return model

# --- the practitioner's own checkpoint: what outputs mean, the whole film, DICOM windows and export, OOD ---
from . import dicom_export, geometry, labels, ood, render  # noqa: E402
from .checkpoints import checkpoint_bytes  # noqa: E402
from .dicom import WINDOW_PRESETS, DicomInfo, Window, dicom_info  # noqa: E402
from .labels import Outputs, outputs, with_outputs  # noqa: E402

__all__ += ["DicomInfo", "Outputs", "WINDOW_PRESETS", "Window", "checkpoint_bytes", "dicom_export", "dicom_info",
            "geometry", "labels", "ood", "outputs", "render", "with_outputs"]
