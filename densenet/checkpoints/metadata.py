"""What a checkpoint says about itself: our safetensors metadata, read and written.

Our own files state the config, the output kind (softmax or one sigmoid per finding), class names,
operating thresholds and preprocessing (with its geometry) in their safetensors metadata under
``densenet.*`` keys. ``facts["outputs_stated"]`` says whether the file said what its outputs mean.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model import DenseNet
from ..presets import PRESETS, Preprocessing
from .errors import CheckpointError

METADATA_PREFIX = "densenet."
DERIVED_FACTS = ("source", "outputs_stated")  # recomputed at every load, never saved


@dataclass(frozen=True)
class Stated:
    """What a file states beside its weights.

    Attributes:
        config: config fields (they win over what the weights imply).
        class_names: the outputs' names, or ``None``.
        preprocessing: the preprocessing, or ``None`` for the default of the input channels.
        facts: free-form facts for ``model.metadata`` (thresholds, ``cam_layer``, ``outputs_stated``...).
    """

    config: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    preprocessing: Preprocessing | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def read_metadata(raw: Mapping[str, str]) -> Stated:
    """Our own safetensors metadata: config fields, class names, preprocessing, free-form facts.

    Raises:
        CheckpointError: the metadata is malformed.
    """
    try:
        return _parse_metadata(raw)
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint's DenseNet metadata is malformed ({e})") from None


def _parse_metadata(raw: Mapping[str, str]) -> Stated:
    config = json.loads(raw.get(METADATA_PREFIX + "config", "{}"))
    names = json.loads(raw.get(METADATA_PREFIX + "class_names", "null"))
    prep = json.loads(raw.get(METADATA_PREFIX + "preprocessing", "null"))
    preprocessing = None
    if isinstance(prep, dict):
        preprocessing = Preprocessing.from_dict(prep)
    elif isinstance(prep, str):
        preprocessing = PRESETS.get(prep)
    facts = json.loads(raw.get(METADATA_PREFIX + "metadata", "{}"))
    facts = {k: v for k, v in facts.items() if k not in DERIVED_FACTS} if isinstance(facts, dict) else {}
    outputs = json.loads(raw.get(METADATA_PREFIX + "outputs", "null"))
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
    return Stated(config=config, class_names=names, preprocessing=preprocessing, facts=facts)


def metadata_strings(model: DenseNet) -> dict[str, str]:
    """The string metadata a self-describing checkpoint of ``model`` holds.

    Raises:
        TypeError: ``model.metadata`` is not JSON-serialisable.
    """
    from ..labels import outputs

    spec = outputs(model)
    facts = {k: v for k, v in model.metadata.items() if k not in DERIVED_FACTS and k != "thresholds"}
    try:
        facts_json = json.dumps(facts)
    except TypeError as e:
        raise TypeError(f"model.metadata must be JSON-serialisable to be saved ({e})") from None
    return {
        METADATA_PREFIX + "config": model.config.to_json(),
        METADATA_PREFIX + "class_names": json.dumps(list(model.class_names)),
        METADATA_PREFIX + "outputs": json.dumps({
            "kind": spec.kind, "thresholds": list(spec.thresholds) if spec.thresholds is not None else None}),
        METADATA_PREFIX + "preprocessing": json.dumps(model.preprocessing.to_dict()),
        METADATA_PREFIX + "metadata": facts_json,
    }
