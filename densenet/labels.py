"""What a model's outputs mean: softmax or one sigmoid per finding, class names, operating thresholds.

One source of truth per model: ``model.config.multilabel`` (which :class:`~densenet.Trace` reads),
``model.class_names`` and ``model.metadata["thresholds"]``. :func:`outputs` reads them as one
record; :func:`with_outputs` returns a *shallow copy* of a model with other choices (the weights
are shared, the model given is not touched), so a page can apply a user's choice to a cached
shared model. :func:`findings` turns probabilities into the per-finding calls a multi-label
model is read by.

Class-name presets (:data:`PRESETS`) cover the chest X-ray label sets checkpoints are trained on;
a names file (``.txt``, one per line, or ``.json``, a list) covers the rest (:func:`read_names`).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .model import DenseNet

CHESTXRAY14 = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
"""NIH ChestX-ray14's 14 findings in the order of CheXNet's output (Rajpurkar et al. 2017)."""

CHEXPERT = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
"""CheXpert's 14 labels in the order of its label file (Irvin et al. 2019)."""

XRV_PATHOLOGIES = (
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis",
    "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia",
    "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum",
)
"""torchxrayvision's 18 default pathologies (``xrv.datasets.default_pathologies``), its models' output order."""

DEFAULT_THRESHOLD = 0.5
"""The positive call of a multi-label finding whose checkpoint gives no operating threshold."""

MAX_NAMES_BYTES = 1 << 20


@dataclass(frozen=True)
class ClassPreset:
    """A named label set.

    Attributes:
        key: what ``--classes`` and the app's selector take (``"chexnet"``).
        label: for people.
        names: one per output, in output order.
        multilabel: the label set is read as independent findings (sigmoids).
    """

    key: str
    label: str
    names: tuple[str, ...]
    multilabel: bool = True


PRESETS: dict[str, ClassPreset] = {p.key: p for p in (
    ClassPreset("chexnet", "ChestX-ray14 (CheXNet order)", CHESTXRAY14),
    ClassPreset("chexpert", "CheXpert (14 labels)", CHEXPERT),
    ClassPreset("xrv", "torchxrayvision (18 pathologies)", XRV_PATHOLOGIES),
)}


def presets_for(num_classes: int) -> list[ClassPreset]:
    """The presets with exactly ``num_classes`` names (what to offer for a model of that many outputs)."""
    return [p for p in PRESETS.values() if len(p.names) == num_classes]


def read_names(source: str | os.PathLike | bytes, *, filename: str = "") -> list[str]:
    """Class names from a names file: ``.json`` (a list of strings) or text (one name per line).

    Args:
        source: a path, or the file's bytes (then ``filename`` tells ``.json`` from ``.txt``; content
            starting with ``[`` is read as JSON either way).
        filename: the uploaded file's name, for the format.

    Returns:
        The names, in file order (blank lines and surrounding spaces dropped).

    Raises:
        ValueError: unreadable, empty, not a list of strings, duplicate or blank names.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"no names file at {path}")
        if path.stat().st_size > MAX_NAMES_BYTES:
            raise ValueError(f"the names file {path.name} is larger than 1 MB")
        data, filename = path.read_bytes(), filename or path.name
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > MAX_NAMES_BYTES:
            raise ValueError("the names file is larger than 1 MB")
    else:
        raise TypeError(f"expected a path or bytes, got {type(source).__name__}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("the names file is not UTF-8 text") from None
    if filename.lower().endswith(".json") or text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"the names file is not valid JSON ({e})") from None
        if isinstance(names, dict):
            names = next((names[k] for k in ("class_names", "classes", "labels", "pathologies") if k in names), None)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("a JSON names file must hold a list of strings, e.g. [\"Atelectasis\", \"Cardiomegaly\"]")
        names = [n.strip() for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    return check_names(names)


def check_names(names: Sequence[str], num_classes: int | None = None) -> list[str]:
    """``names`` as a list if they are usable (non-empty, unique, and ``num_classes`` of them)."""
    names = [str(n) for n in names]
    if not names:
        raise ValueError("no class names given")
    if any(not n.strip() for n in names):
        raise ValueError("class names must not be blank")
    seen: set[str] = set()
    duplicates = [n for n in names if n in seen or seen.add(n)]
    if duplicates:
        raise ValueError(f"duplicate class name(s): {', '.join(sorted(set(duplicates)))}")
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a model with {num_classes} outputs")
    return names


def resolve_names(spec: str | os.PathLike | Sequence[str], num_classes: int | None = None) -> list[str]:
    """Class names from a preset key (``"chexnet"``, ``"chexpert"``, ``"xrv"``), a names file, or a list.

    Raises:
        ValueError: unknown preset and no such file, or a count that does not match ``num_classes``.
    """
    if isinstance(spec, str) and spec in PRESETS:
        names = list(PRESETS[spec].names)
    elif isinstance(spec, (str, os.PathLike)):
        if not Path(spec).is_file():
            raise ValueError(f"{os.fspath(spec)!r} is neither a class-name preset "
                             f"({', '.join(PRESETS)}) nor a names file")
        names = read_names(spec)
    else:
        names = list(spec)
    return check_names(names, num_classes)


# --- one model's outputs --------------------------------------------------------------------------

@dataclass(frozen=True)
class Outputs:
    """What a model's outputs mean.

    Attributes:
        multilabel: one sigmoid per finding (else one softmax over classes).
        class_names: one per output.
        thresholds: per-finding operating thresholds (``None`` where a finding has none), or ``None``.
        stated: the checkpoint said all this itself; otherwise it is a guess to offer as a choice.
    """

    multilabel: bool
    class_names: tuple[str, ...]
    thresholds: tuple[float | None, ...] | None = None
    stated: bool = False

    @property
    def kind(self) -> str:
        """``"multilabel"`` or ``"softmax"``."""
        return "multilabel" if self.multilabel else "softmax"

    def threshold(self, index: int) -> float:
        """The operating threshold of output ``index`` (:data:`DEFAULT_THRESHOLD` where none is given)."""
        t = self.thresholds[index] if self.thresholds is not None else None
        return DEFAULT_THRESHOLD if t is None else t


def clean_thresholds(values: Sequence[float | None] | torch.Tensor | None,
                     num_classes: int) -> tuple[float | None, ...] | None:
    """Thresholds as a tuple with ``None`` for missing (NaN, as torchxrayvision marks them) ones.

    Raises:
        ValueError: a count other than ``num_classes`` or a value outside (0, 1).
    """
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    out: list[float | None] = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
            continue
        v = float(v)
        if not 0.0 < v < 1.0:
            raise ValueError(f"operating thresholds are probabilities in (0, 1), got {v}")
        out.append(v)
    if len(out) != num_classes:
        raise ValueError(f"{len(out)} thresholds for a model with {num_classes} outputs")
    return tuple(out)


def outputs(model: DenseNet) -> Outputs:
    """The model's output kind, names and thresholds, read from the model itself."""
    thresholds = model.metadata.get("thresholds")
    if thresholds is None and model.metadata.get("op_threshs") is not None:
        thresholds = model.metadata["op_threshs"]
    return Outputs(multilabel=bool(model.config.multilabel), class_names=tuple(model.class_names),
                   thresholds=clean_thresholds(thresholds, model.config.num_classes),
                   stated=bool(model.metadata.get("outputs_stated", False)))


def with_outputs(model: DenseNet, *, multilabel: bool | None = None,
                 class_names: str | os.PathLike | Sequence[str] | None = None,
                 thresholds: Sequence[float | None] | None = None, stated: bool = True) -> DenseNet:
    """A shallow copy of ``model`` whose outputs mean something else; ``model`` is not changed.

    The copy shares every parameter and buffer (no memory, no reload); only ``config``,
    ``class_names`` and ``metadata`` are its own, so ``copy.trace(...)`` gives sigmoid
    probabilities when ``multilabel=True`` while other sessions keep using ``model``. Do not
    call ``.train()`` or ``.to()`` on the copy: those act on the shared modules.

    Args:
        model: a DenseNet (e.g. the cached one), used read-only.
        multilabel: one sigmoid per finding (``True``) or a softmax (``False``); ``None``: keep.
            Choosing a preset does not change it; pass both.
        class_names: a preset key, a names file, or a list; ``None``: keep.
        thresholds: one per output (``None`` entries for none); ``None``: keep. Thresholds are
            dropped when ``class_names`` changes and no new ones are given (they belonged to the
            old names).
        stated: record that these are now the model's declared outputs (``outputs(copy).stated``).

    Raises:
        ValueError: names or thresholds that do not match the number of outputs.
    """
    k = model.config.num_classes
    names = list(model.class_names) if class_names is None else resolve_names(class_names, k)
    metadata = dict(model.metadata)
    if thresholds is not None:
        metadata["thresholds"] = list(clean_thresholds(thresholds, k))
        metadata.pop("op_threshs", None)
    elif class_names is not None and names != list(model.class_names):
        metadata.pop("thresholds", None)
        metadata.pop("op_threshs", None)
    metadata["outputs_stated"] = bool(stated)
    clone = copy.copy(model)  # new __dict__, same submodules, parameters and buffers
    if multilabel is not None:
        clone.config = model.config.replace(multilabel=bool(multilabel))
    clone.class_names = names
    clone.metadata = metadata
    return clone


@dataclass(frozen=True)
class Finding:
    """One output of one image, as a multi-label model is read.

    Attributes:
        index: the output.
        name: its class name.
        probability: sigmoid (multi-label) or softmax probability.
        threshold: the operating threshold the call uses.
        calibrated: the threshold came from the checkpoint (else :data:`DEFAULT_THRESHOLD`).
        positive: ``probability >= threshold``.
    """

    index: int
    name: str
    probability: float
    threshold: float
    calibrated: bool
    positive: bool


def findings(probabilities: torch.Tensor | Sequence[float], spec: Outputs) -> list[Finding]:
    """Every output's probability with its threshold and positive/negative call, in output order.

    Args:
        probabilities: ``(K,)`` or ``(1, K)`` (``trace.probabilities``).
        spec: :func:`outputs` of the model that produced them.
    """
    p = torch.as_tensor(probabilities, dtype=torch.float32).detach().flatten().tolist()
    if len(p) != len(spec.class_names):
        raise ValueError(f"{len(p)} probabilities for {len(spec.class_names)} outputs")
    result = []
    for i, (name, prob) in enumerate(zip(spec.class_names, p)):
        given = spec.thresholds[i] if spec.thresholds is not None else None
        t = spec.threshold(i)
        result.append(Finding(i, name, float(prob), t, given is not None, prob >= t))
    return result


def finding_maps(trace: object, method: str = "gradcam", layer: str | None = None, *,
                 targets: Sequence[int] | None = None, size: int | tuple[int, int] | None = None,
                 index: int = 0) -> dict[int, object]:
    """One map per finding from one trace: each target's own backward pass, the forward pass shared.

    Args:
        trace: ``model.trace(x, [layer], keep_graph=True)`` (a trace of a multi-label model, or any).
        method: a CAM method read from a trace (``explain.methods(uses_trace=True)``).
        layer: a traced layer; ``None``: the last traced one.
        targets: which outputs (default: all of them, in output order).
        size: (H, W) or side of each ``CamMap.map``; ``None``: the input's size.
        index: which sample of a batched trace.

    Returns:
        output index -> :class:`~densenet.explain.CamMap` at ``layer``.
    """
    from .explain.cam import cams_from_trace

    if layer is None:
        layer = list(trace.activations)[-1]
    k = trace.logits.shape[1]
    wanted = range(k) if targets is None else [int(t) for t in targets]
    return {t: cams_from_trace(trace, method, t, [layer], size, index=index)[layer] for t in wanted}
