"""Read a checkpoint's bytes safely: size limits, safetensors, ``torch.load(weights_only=True)``, whole pickled models.

A whole pickled model is allowed only when every class it names is a known layer; each is rebuilt as a
plain record of its attributes (:class:`PickledModule`), never as the class itself, so no code of the
checkpoint's runs.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor

from ..recognise import family_of_classes, with_article
from .errors import CheckpointError

MAX_CHECKPOINT_BYTES = 1 << 30  # 1 GiB: DenseNet-264 is ~130 MB in float32

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



class PickledModule:
    """Stand-in for any allowlisted module class in a whole-model pickle: only its attributes.

    Each class gets its own subclass carrying ``class_path`` (the pickled class's dotted name), so
    that a reader can tell a ``Sigmoid`` record from a ``ReLU`` one.
    """

    class_path = ""


def _stand_in(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (PickledModule,), {"class_path": name})


def _is_wrapper(name: str) -> bool:
    """A user's own wrapper class around a DenseNet (``__main__.DenseNet121``, CheXNet re-implementations):
    read as a record like every allowed class, never constructed."""
    return "densenet" in name.rsplit(".", 1)[-1].lower()


def read_bytes(source: str | os.PathLike | bytes | BinaryIO) -> tuple[bytes, str]:
    """The file's bytes and its name (``""`` for bytes), refusing files over :data:`MAX_CHECKPOINT_BYTES`."""
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


def is_safetensors(data: bytes) -> bool:
    """Whether ``data`` starts like a safetensors file (a length, then a JSON header)."""
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return 0 < header_len <= len(data) - 8 and data[8:9] == b"{"


def load_safetensors(data: bytes) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and the ``__metadata__`` strings of a safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    try:
        tensors = load_tensors(data)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    except (SafetensorError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"the safetensors file is damaged or truncated ({e})") from None
    return tensors, dict(header.get("__metadata__") or {})


#: The first torch whose ``weights_only`` unpickler has no known advisory (CVE-2025-32434 < 2.6, CVE-2026-24747 < 2.10).
SAFE_TORCH = (2, 10)


def torch_is_safe(version: str | None = None) -> bool:
    """Whether this torch's (or ``version``'s) ``torch.load(weights_only=True)`` is free of known flaws."""
    version = torch.__version__ if version is None else version
    release = tuple(int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit())
    return release >= SAFE_TORCH


def torch_load(data: bytes) -> Any:
    """``torch.load(weights_only=True)``, then a whole pickled model of known layers only."""
    if not (data[:2] == b"PK" or data[:1] == b"\x80"):
        raise CheckpointError("this is not a PyTorch (.pt/.pth) or .safetensors checkpoint")
    if not torch_is_safe():
        raise CheckpointError(
            f"this server's torch {torch.__version__} has a known flaw in its safe loader (CVE-2026-24747), so "
            ".pt/.pth files are not opened: install torch >= 2.10, or use a .safetensors file")
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
    refused = sorted(n for n in names if n not in _MODULE_CLASSES and n not in _HARMLESS and not _is_wrapper(n))
    family = family_of_classes(refused)
    if family is not None:
        raise CheckpointError(f"this is {with_article(family[0])} checkpoint (a whole pickled model of class {family[1]}); "
                              "this app explains DenseNets")
    if refused:
        raise CheckpointError(
            "this file holds pickled Python objects beyond weights "
            f"({', '.join(refused[:4])}{', ...' if len(refused) > 4 else ''}), which are never run here. "
            "Export a state dict instead, where the model is defined: torch.save(model.state_dict(), 'weights.pt') "
            "(the DenseNet inside any wrapper is found by its keys), or save it with safetensors.")
    stand_ins = [(_HARMLESS.get(n) or _stand_in(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"the pickled model could not be read safely ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
