"""Load the DenseNet checkpoint a user actually has, safely, and infer its architecture.

Accepted: torchvision state dicts (current and legacy ``norm.1`` keys), state dicts wrapped in
``{"state_dict": ...}`` / ``{"model": ...}`` or prefixed with ``module.``, ``.safetensors`` files,
timm DenseNet state dicts, MONAI 2-D DenseNets, torchxrayvision DenseNet-121 checkpoints, and whole
pickled models whose every class is a known layer (read as plain records; no constructor of theirs
ever runs). Nothing is unpickled outside ``torch.load(weights_only=True)``.

What the outputs mean travels too: our own files state the output kind (softmax or one sigmoid per
finding), class names, operating thresholds and preprocessing (with its geometry) in their
safetensors metadata (:func:`save_checkpoint`); torchxrayvision's ``op_threshs`` make a model
multi-label with those thresholds. ``model.metadata["outputs_stated"]`` says whether the file said
so (see :func:`densenet.labels.outputs`); otherwise the app offers the choice.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor

from .config import DenseNetConfig
from .labels import XRV_PATHOLOGIES, clean_thresholds
from .model import DenseNet
from .preprocess import PRESETS, Preprocessing, default_for
from .recognise import family_of_classes, foreign_message, with_article

MAX_CHECKPOINT_BYTES = 1 << 30  # 1 GiB: DenseNet-264 is ~130 MB in float32

XRAY_PATHOLOGIES = list(XRV_PATHOLOGIES)  # kept for callers of the old name

# Classes a whole pickled model may name. Each is rebuilt as a plain record of its attributes,
# never as the class itself, so no code of the checkpoint's runs.
_MODULE_CLASSES = {
    f"torch.nn.modules.{name}" for name in (
        "conv.Conv2d", "batchnorm.BatchNorm2d", "activation.ReLU", "pooling.AvgPool2d", "pooling.MaxPool2d",
        "pooling.AdaptiveAvgPool2d", "linear.Linear", "linear.Identity", "container.Sequential",
        "container.ModuleDict", "container.ModuleList", "dropout.Dropout", "flatten.Flatten",
        "upsampling.Upsample", "activation.Sigmoid",
    )
} | {
    f"{module}.{cls}"
    for module in ("torchvision.models.densenet", "torchxrayvision.models", "torchxrayvision.models.densenet",
                   "densenet.model")
    for cls in ("DenseNet", "_DenseBlock", "_DenseLayer", "_Transition")
} | {
    "timm.models.densenet.DenseNet", "timm.models.densenet.DenseBlock", "timm.models.densenet.DenseLayer",
    "timm.models.densenet.DenseTransition", "timm.layers.norm_act.BatchNormAct2d",
    "timm.layers.adaptive_avgmax_pool.SelectAdaptivePool2d", "timm.layers.classifier.ClassifierHead",
}
_HARMLESS = {"builtins.set": set}

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "ema", "module")
_CLASS_NAME_KEYS = ("class_names", "classes", "labels", "pathologies", "categories")
_LEGACY_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
_METADATA_PREFIX = "densenet."
_MONAI_LAYER = re.compile(r"^(features\.denseblock\d+\.denselayer\d+)\.layers\.(.*)$")
_DERIVED_FACTS = ("source", "outputs_stated")  # recomputed at every load, never saved


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded, with a reason a person can act on."""


class _PickledModule:
    """Stand-in for any allowlisted module class in a whole-model pickle: only its attributes."""


# --- reading -------------------------------------------------------------------------------------

def _read_bytes(source: str | os.PathLike | bytes | BinaryIO) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), ""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"no checkpoint file at {path}")
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{path.name} is larger than {MAX_CHECKPOINT_BYTES >> 20} MB; not a DenseNet checkpoint")
        return path.read_bytes(), path.name
    if hasattr(source, "read"):
        return source.read(MAX_CHECKPOINT_BYTES + 1), getattr(source, "name", "") or ""
    raise TypeError(f"expected a path, bytes or a binary file, got {type(source).__name__}")


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return 0 < header_len <= len(data) - 8 and data[8:9] == b"{"


def _load_safetensors(data: bytes) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    try:
        tensors = load_tensors(data)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    except (SafetensorError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"the safetensors file is damaged or truncated ({e})") from None
    return tensors, dict(header.get("__metadata__") or {})


def _torch_load(data: bytes) -> Any:
    if not (data[:2] == b"PK" or data[:1] == b"\x80"):
        raise CheckpointError("this is not a PyTorch (.pt/.pth) or .safetensors checkpoint")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower() and "allowlist" not in str(e).lower():
            raise CheckpointError(f"the checkpoint could not be read safely ({_first_line(e)})") from None
    except Exception as e:  # torch raises RuntimeError/EOFError/... for damaged archives
        raise CheckpointError(f"the checkpoint is truncated or damaged ({_first_line(e)})") from None
    return _load_whole_model(data)


def _load_whole_model(data: bytes) -> Any:
    """A whole pickled model: allowed only if every class it names is a known layer."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception as e:
        raise CheckpointError(f"the checkpoint could not be read safely ({_first_line(e)})") from None
    refused = sorted(n for n in names if n not in _MODULE_CLASSES and n not in _HARMLESS)
    family = family_of_classes(refused)
    if family is not None:
        raise CheckpointError(f"this is {with_article(family[0])} checkpoint (a whole pickled model of class {family[1]}); "
                              "this app explains DenseNets")
    if refused:
        raise CheckpointError(
            "this file holds pickled Python objects beyond weights "
            f"({', '.join(refused[:4])}{', ...' if len(refused) > 4 else ''}), which are never run here. "
            "Export a state dict instead: torch.save(model.state_dict(), 'weights.pt'), "
            "or save it with safetensors.")
    stand_ins = [(_HARMLESS.get(n, _PickledModule), n) for n in names]
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"the pickled model could not be read safely ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


# --- unwrapping ----------------------------------------------------------------------------------

def _record_state(record: _PickledModule, prefix: str = "") -> dict[str, Tensor]:
    """state_dict() of a stand-in module tree, read from its ``_parameters/_buffers/_modules``."""
    attrs = vars(record)
    state: dict[str, Tensor] = {}
    non_persistent = attrs.get("_non_persistent_buffers_set", set())
    for group in ("_parameters", "_buffers"):
        for name, value in (attrs.get(group) or {}).items():
            if isinstance(value, Tensor) and name not in non_persistent:
                state[prefix + name] = value.detach()
    for name, child in (attrs.get("_modules") or {}).items():
        if isinstance(child, _PickledModule):
            state.update(_record_state(child, f"{prefix}{name}."))
    return state


def _unwrap(obj: Any, meta: dict[str, Any]) -> dict[str, Tensor]:
    """Find the state dict inside whatever was saved, collecting class names on the way."""
    if isinstance(obj, _PickledModule):
        attrs = vars(obj)
        for key in _CLASS_NAME_KEYS:
            if isinstance(attrs.get(key), (list, tuple)):
                meta.setdefault("class_names", [str(c) for c in attrs[key]])
        state = _record_state(obj)
        if isinstance(attrs.get("op_threshs"), Tensor):
            state.setdefault("op_threshs", attrs["op_threshs"])
        return state
    if isinstance(obj, Mapping):
        for key in _CLASS_NAME_KEYS:
            if isinstance(obj.get(key), (list, tuple)) and all(isinstance(c, str) for c in obj[key]):
                meta.setdefault("class_names", list(obj[key]))
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            return dict(obj)
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], (Mapping, _PickledModule)):
                return _unwrap(obj[key], meta)
        tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors:
            return tensors
    raise CheckpointError("no weights found in this file (expected a state dict of tensors)")


def _strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in ("module.", "_orig_mod.", "model.", "densenet.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def normalise_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename foreign keys to ours: wrappers' prefixes, torchvision's legacy ``norm.1`` keys."""
    state = _strip_prefixes(dict(state))
    monai = any(k.startswith("class_layers.out.") for k in state)
    renamed = {}
    for key, value in state.items():
        m = _LEGACY_KEY.match(key)
        key = m.group(1) + m.group(2) if m else key
        if monai:  # MONAI's DenseNet: the same layers under ``.layers.`` and ``class_layers.out``
            m = _MONAI_LAYER.match(key)
            key = f"{m.group(1)}.{m.group(2)}" if m else key.replace("class_layers.out.", "classifier.")
        renamed[key] = value
    return renamed


# --- inference -----------------------------------------------------------------------------------

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
        sample = ", ".join(list(state)[:3])
        raise CheckpointError("this does not look like a DenseNet checkpoint: it has no "
                              f"'features.conv0.weight' (its first keys are {sample})")
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


def _imagenet_categories() -> list[str]:
    from torchvision.models import DenseNet121_Weights

    return list(DenseNet121_Weights.IMAGENET1K_V1.meta["categories"])


def _metadata(raw: Mapping[str, str]) -> tuple[dict[str, Any], list[str] | None, Preprocessing | None, dict[str, Any]]:
    """Our own safetensors metadata: config fields, class names, preprocessing, free-form facts."""
    try:
        return _parse_metadata(raw)
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint's DenseNet metadata is malformed ({e})") from None


def _parse_metadata(raw: Mapping[str, str]) -> tuple[dict[str, Any], list[str] | None, Preprocessing | None, dict[str, Any]]:
    config = json.loads(raw.get(_METADATA_PREFIX + "config", "{}"))
    names = json.loads(raw.get(_METADATA_PREFIX + "class_names", "null"))
    prep = json.loads(raw.get(_METADATA_PREFIX + "preprocessing", "null"))
    preprocessing = None
    if isinstance(prep, dict):
        preprocessing = Preprocessing.from_dict(prep)
    elif isinstance(prep, str):
        preprocessing = PRESETS.get(prep)
    facts = json.loads(raw.get(_METADATA_PREFIX + "metadata", "{}"))
    facts = {k: v for k, v in facts.items() if k not in _DERIVED_FACTS} if isinstance(facts, dict) else {}
    outputs = json.loads(raw.get(_METADATA_PREFIX + "outputs", "null"))
    if isinstance(outputs, dict):
        kind = outputs.get("kind")
        if kind not in ("multilabel", "softmax"):
            raise ValueError(f"output kind must be 'multilabel' or 'softmax', got {kind!r}")
        config = {**config, "multilabel": kind == "multilabel"}
        if outputs.get("thresholds") is not None:
            facts["thresholds"] = outputs["thresholds"]
    # A file of ours states its outputs when it says so, or (older files) when it names its classes.
    placeholder = isinstance(names, list) and names == [f"class {i}" for i in range(len(names))]
    facts["outputs_stated"] = isinstance(outputs, dict) or (bool(config) and isinstance(names, list) and not placeholder)
    return config, names, preprocessing, facts


def model_from_state(state: Mapping[str, Tensor], *, meta: dict[str, Any] | None = None,
                     source: str = "") -> DenseNet:
    """Build the model a state dict describes and load it (the state dict is not modified)."""
    meta = dict(meta or {})
    state = normalise_keys(dict(state))
    metadata: dict[str, Any] = dict(meta.get("metadata") or {})
    if source:
        metadata["source"] = source
    thresholds = state.pop("op_threshs", None)
    fixed = dict(meta.get("config") or {})
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

    names = meta.get("class_names")
    if names is not None and len(names) != config.num_classes:
        names = None
    if names is None and is_xray_model and config.num_classes == len(XRAY_PATHOLOGIES):
        names = list(XRAY_PATHOLOGIES)
    if names is None and config.num_classes == 1000 and config.in_channels == 3:
        names = _imagenet_categories()
        metadata.setdefault("outputs_stated", True)
    metadata.setdefault("outputs_stated", False)
    preprocessing = meta.get("preprocessing") or (
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
    data, name = _read_bytes(source)
    if not data:
        raise CheckpointError("the checkpoint file is empty")
    meta: dict[str, Any] = {}
    if name.endswith(".safetensors") or _is_safetensors(data):
        state, raw_meta = _load_safetensors(data)
        config, names, preprocessing, facts = _metadata(raw_meta)
        meta.update(config=config, class_names=names, preprocessing=preprocessing, metadata=facts)
    else:
        state = _unwrap(_torch_load(data), meta)
    model = model_from_state(state, meta=meta, source=name)
    return model.to(device) if device is not None else model


def _file_contents(model: DenseNet) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and the string metadata a self-describing checkpoint holds."""
    from .labels import outputs

    spec = outputs(model)
    facts = {k: v for k, v in model.metadata.items() if k not in _DERIVED_FACTS and k != "thresholds"}
    try:
        facts_json = json.dumps(facts)
    except TypeError as e:
        raise TypeError(f"model.metadata must be JSON-serialisable to be saved ({e})") from None
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        _METADATA_PREFIX + "config": model.config.to_json(),
        _METADATA_PREFIX + "class_names": json.dumps(list(model.class_names)),
        _METADATA_PREFIX + "outputs": json.dumps({
            "kind": spec.kind, "thresholds": list(spec.thresholds) if spec.thresholds is not None else None}),
        _METADATA_PREFIX + "preprocessing": json.dumps(model.preprocessing.to_dict()),
        _METADATA_PREFIX + "metadata": facts_json,
    }
    return state, metadata


def save_checkpoint(model: DenseNet, path: str | os.PathLike) -> None:
    """Write a self-describing ``.safetensors`` file: the next load needs no choices.

    The metadata holds the config, the class names, the output kind (``"softmax"`` or
    ``"multilabel"``) with per-finding thresholds (``densenet.outputs``), the preprocessing with
    its geometry, and ``model.metadata`` (which must be JSON-serialisable, e.g.
    ``{"cam_layer": "features.denseblock2"}``; its ``source`` entry is not saved).
    """
    from safetensors.torch import save_file

    state, metadata = _file_contents(model)
    save_file(state, os.fspath(path), metadata=metadata)


def checkpoint_bytes(model: DenseNet) -> bytes:
    """The bytes :func:`save_checkpoint` would write (for a download button)."""
    from safetensors.torch import save

    state, metadata = _file_contents(model)
    return save(state, metadata=metadata)
