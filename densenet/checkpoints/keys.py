"""Find the state dict inside whatever was saved, and rename foreign keys to ours.

Wrappers (``{"state_dict": ...}``, ``{"model": ...}``, whole pickled models), prefixes (``module.``),
torchvision's legacy ``norm.1`` keys and MONAI's ``.layers.`` keys: the one place foreign key names
are renamed to ours (:mod:`.architecture` then reads the architecture off our names).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .errors import CheckpointError
from .reading import PickledModule

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "ema", "module")
_CLASS_NAME_KEYS = ("class_names", "classes", "labels", "pathologies", "categories")
_LEGACY_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
_MONAI_LAYER = re.compile(r"^(features\.denseblock\d+\.denselayer\d+)\.layers\.(.*)$")


def _record_state(record: PickledModule, prefix: str = "") -> dict[str, Tensor]:
    """state_dict() of a stand-in module tree, read from its ``_parameters/_buffers/_modules``."""
    attrs = vars(record)
    state: dict[str, Tensor] = {}
    non_persistent = attrs.get("_non_persistent_buffers_set", set())
    for group in ("_parameters", "_buffers"):
        for name, value in (attrs.get(group) or {}).items():
            if isinstance(value, Tensor) and name not in non_persistent:
                state[prefix + name] = value.detach()
    for name, child in (attrs.get("_modules") or {}).items():
        if isinstance(child, PickledModule):
            state.update(_record_state(child, f"{prefix}{name}."))
    return state


def unwrap(obj: Any) -> tuple[dict[str, Tensor], list[str] | None]:
    """Find the state dict inside whatever was saved, and the class names stored beside it.

    Returns:
        The state dict and the class names (``None`` when the file names none); the outermost names win.

    Raises:
        CheckpointError: no tensors anywhere.
    """
    return _unwrap(obj, None)


def _unwrap(obj: Any, names: list[str] | None) -> tuple[dict[str, Tensor], list[str] | None]:
    if isinstance(obj, PickledModule):
        attrs = vars(obj)
        for key in _CLASS_NAME_KEYS:
            if names is None and isinstance(attrs.get(key), (list, tuple)):
                names = [str(c) for c in attrs[key]]
        state = _record_state(obj)
        if isinstance(attrs.get("op_threshs"), Tensor):
            state.setdefault("op_threshs", attrs["op_threshs"])
        return state, names
    if isinstance(obj, Mapping):
        for key in _CLASS_NAME_KEYS:
            if (names is None and isinstance(obj.get(key), (list, tuple))
                    and all(isinstance(c, str) for c in obj[key])):
                names = list(obj[key])
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            return dict(obj), names
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], (Mapping, PickledModule)):
                return _unwrap(obj[key], names)
        tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors:
            return tensors, names
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
