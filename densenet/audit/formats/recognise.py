"""What a file in a dataset folder is, from its header or keys: a label table, boxes or masks.

A folder (or an unpacked zip) holding published files under their own names (CheXpert's
``valid.csv``, NIH's ``Data_Entry_2017_v2020.csv.gz``, RSNA's ``stage_2_train_labels.csv``,
VinDr's ``train.csv``, CheXlocalize's ``gt_segmentations_val.json``) is sorted by content, not by name.
"""

from __future__ import annotations

from pathlib import Path

from .labels import image_column
from .tables import TableError, read_header
from .truth import MASK_FORMATS, detect
from .vocabulary import norm

_SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".json")
_LABEL_HINTS = {"finding labels", "no finding", "cardiomegaly", "atelectasis", "pneumothorax", "edema",
                "effusion", "pleural effusion", "label", "labels", "class", "consolidation"}


def kind_of_file(path: Path) -> tuple[str, str] | None:
    """``("labels" | "boxes" | "masks", format)`` for a table or JSON file; ``None`` for anything else."""
    if not path.is_file() or not path.name.lower().endswith(_SUFFIXES):
        return None
    try:
        fmt = detect(path)
        return ("masks" if fmt in MASK_FORMATS else "boxes"), fmt
    except ValueError:
        pass
    if path.name.lower().endswith(".json"):
        return None
    try:
        header = read_header(path)
    except TableError:
        return None
    lowered = {norm(h) for h in header}
    if "finding labels" in lowered:
        return "labels", "nih"
    others = [norm(h) for i, h in enumerate(header) if i != image_column(header)]
    if lowered & _LABEL_HINTS and others:
        return "labels", "columns" if len(others) > 1 else "single"
    return None


def _output_like(name: str) -> int:
    lowered = name.lower()
    if any(w in lowered for w in ("gt_", "truth", "ground")):
        return 0
    return 2 if any(w in lowered for w in ("gradcam", "pred", "saliency", "cam_")) else 1


def sort_files(folder: Path) -> dict[str, Path]:
    """The first label, boxes and masks file of each kind among ``folder``'s files, by name order.

    A COCO RLE file is preferred to the polygon file of the same masks (CheXlocalize ships both),
    and a file named as ground truth (``gt_``, ``truth``) to one named as a model's output
    (``gradcam``, ``pred``, ``saliency``: CheXlocalize's sample holds its Grad-CAM segmentations
    in the same format as the radiologists').
    """
    found: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        kind = kind_of_file(path)
        if kind is not None:
            found.setdefault(kind[0], []).append((kind[1], path))
    out = {}
    for kind, files in found.items():
        files.sort(key=lambda f: (_output_like(f[1].name), f[0] == "polygons"))  # stable: name order otherwise
        out[kind] = files[0][1]
    return out
