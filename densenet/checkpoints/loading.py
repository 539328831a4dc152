"""Load a DenseNet checkpoint: read it, unwrap it, infer its architecture, say what its outputs mean."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, BinaryIO

import torch
from torch import Tensor

from ..labels import CHESTXRAY14, XRV_PATHOLOGIES, clean_thresholds
from ..model import DenseNet
from ..presets import PRESETS, default_for
from .architecture import infer_config, load_state_strict
from .errors import CheckpointError
from .keys import normalise_keys, unwrap
from .metadata import Stated, read_metadata
from .reading import is_safetensors, load_safetensors, read_bytes, torch_load
from .wrappers import head_has_sigmoid, inner_densenet


def _imagenet_categories() -> list[str]:
    from torchvision.models import DenseNet121_Weights

    return list(DenseNet121_Weights.IMAGENET1K_V1.meta["categories"])


def model_from_state(state: Mapping[str, Tensor], *, stated: Stated | None = None, source: str = "") -> DenseNet:
    """Build the model a state dict describes and load it (the state dict is not modified).

    Args:
        state: the weights, with our, torchvision's or a known foreign library's key names.
        stated: what the file says beside the weights (config fields, class names, preprocessing, facts).
        source: the file's name, kept as ``model.metadata["source"]``.

    Raises:
        CheckpointError: not a DenseNet, or weights that do not fit.
    """
    stated = stated or Stated()
    state, found = inner_densenet(dict(state))
    state = normalise_keys(state)
    metadata: dict[str, Any] = dict(stated.facts)
    metadata.update({k: v for k, v in found.items() if k != "head"})
    if source:
        metadata["source"] = source
    thresholds = state.pop("op_threshs", None)
    fixed = dict(stated.config)
    is_xray_model = thresholds is not None
    if is_xray_model:
        metadata["op_threshs"] = thresholds.float().tolist()
        fixed.setdefault("multilabel", True)
        metadata.setdefault("outputs_stated", True)
    config = infer_config(state, **fixed)
    if is_xray_model and "thresholds" not in metadata:
        try:
            metadata["thresholds"] = list(clean_thresholds(thresholds.float(), config.num_classes))
        except ValueError:
            pass  # op_threshs of another length or outside (0, 1): kept as found, not used for calls
    if metadata.get("thresholds") is not None:
        try:
            metadata["thresholds"] = list(clean_thresholds(metadata["thresholds"], config.num_classes))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"the checkpoint's operating thresholds are unusable ({e})") from None

    names = stated.class_names
    if found.get("head") == "sequential" and "multilabel" not in stated.config and not is_xray_model:
        # torchvision's densenet121 with classifier = Sequential(Linear, Sigmoid): the CheXNet re-implementations
        sigmoid = stated.facts.get("head_activation") == "sigmoid"
        if sigmoid or config.num_classes == len(CHESTXRAY14):
            config = infer_config(state, **{**fixed, "multilabel": True})
            metadata["head"] = ("Sequential(Linear, Sigmoid)" if sigmoid else
                                "Sequential(Linear, ...) of 14 outputs: the CheXNet layout, read as ChestX-ray14's "
                                "independent findings")
            metadata.setdefault("outputs_stated", True)
            if names is None and config.num_classes == len(CHESTXRAY14):
                names = list(CHESTXRAY14)
    elif stated.facts.get("head_activation") == "sigmoid" and "multilabel" not in stated.config:
        config = infer_config(state, **{**fixed, "multilabel": True})
        metadata.setdefault("outputs_stated", True)
    if names is not None and len(names) != config.num_classes:
        names = None
    if names is None and is_xray_model and config.num_classes == len(XRV_PATHOLOGIES):
        names = list(XRV_PATHOLOGIES)
    if names is None and config.num_classes == 1000 and config.in_channels == 3:
        names = _imagenet_categories()
        metadata.setdefault("outputs_stated", True)
    metadata.setdefault("outputs_stated", False)
    preprocessing = stated.preprocessing or (
        PRESETS["xray"] if is_xray_model else default_for(config.in_channels))
    model = DenseNet(config, class_names=names, preprocessing=preprocessing, metadata=metadata)
    load_state_strict(model, state)
    return model.eval()


def load_checkpoint(source: str | os.PathLike | bytes | BinaryIO, *,
                    device: torch.device | str | None = None) -> DenseNet:
    """Load a DenseNet checkpoint, inferring its architecture from the weights.

    Args:
        source: a path, the file's bytes, or a binary file object.
        device: where to put the model (default: CPU).

    Returns:
        The model, in eval mode, with ``config``, ``class_names``, ``preprocessing`` and ``metadata``.

    Raises:
        CheckpointError: unreadable, unsafe, not a DenseNet, or weights that do not fit.
    """
    data, name = read_bytes(source)
    if not data:
        raise CheckpointError("the checkpoint file is empty")
    if name.endswith(".safetensors") or is_safetensors(data):
        state, raw_meta = load_safetensors(data)
        stated = read_metadata(raw_meta)
    else:
        obj = torch_load(data)
        state, names = unwrap(obj)
        sigmoid = head_has_sigmoid(obj) or any(head_has_sigmoid(v) for v in obj.values()) if isinstance(obj, dict) \
            else head_has_sigmoid(obj)
        stated = Stated(class_names=names, facts={"head_activation": "sigmoid"} if sigmoid else {})
    model = model_from_state(state, stated=stated, source=name)
    return model.to(device) if device is not None else model
