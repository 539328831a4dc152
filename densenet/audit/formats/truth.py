"""Ground truth as published: boxes and masks, the format recognised from the file's header or keys.

Boxes (continuous ``x0, y0, x1, y1`` in original pixels):

- ``"nih"``: NIH ChestX-ray14 ``BBox_List_2017.csv`` (``Image Index, Finding Label, Bbox [x,y,w,h]``).
- ``"rsna"``: RSNA Pneumonia ``stage_2_train_labels.csv`` (``patientId,x,y,width,height,Target``);
  ``Target`` 1 rows are boxes of one class (``truth_class``, default ``Pneumonia``).
- ``"vindr"``: VinDr-CXR ``train.csv`` (``image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max``),
  several readers per image, ``No finding`` rows without a box; ``readers``: ``"union"`` (every
  reader's boxes), ``"majority"`` (pixels more than half of the image's readers boxed) or
  ``"each"`` (each reader's boxes a ground truth of its own: one row per reader).
- ``"plain"``: ``image,label,x0,y0,x1,y1``.

Masks:

- ``"png"``: a folder of ``<image stem>.png`` / ``<image stem>__<label>.png`` (also in the image's sub-folder).
- ``"coco-rle"``: JSON ``{image_id: {pathology: {"size": [h, w], "counts": ...}}}`` (CheXlocalize ``gt_segmentations``).
- ``"polygons"``: JSON ``{image_id: {"img_size": [h, w], pathology: [[[x, y], ...], ...]}}`` (CheXlocalize ``gt_annotations``).
- ``"siim"``: SIIM-ACR ``train-rle.csv`` (``ImageId, EncodedPixels``), one class (``truth_class``,
  default ``Pneumothorax``).

Image keys go through :class:`~.names.NameIndex`, label names through the
:class:`~.vocabulary.Vocabulary`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .masks import Box, MaskSource, PolygonMask, RleMask, RunLengthMask, VoteMask
from .names import NameIndex
from .tables import TableError, read_csv, read_header
from .vocabulary import Vocabulary, is_no_finding, norm

BOX_FORMATS = ("nih", "rsna", "vindr", "plain")
MASK_FORMATS = ("png", "coco-rle", "polygons", "siim")
TRUTH_FORMATS = BOX_FORMATS + MASK_FORMATS
READERS = ("union", "majority", "each")

#: What each format needs, for the message about a file that is none of them.
NEEDS: dict[str, str] = {
    "nih": "CSV 'Image Index, Finding Label, Bbox [x,y,w,h], ...' (NIH BBox_List_2017.csv)",
    "rsna": "CSV 'patientId,x,y,width,height,Target' (RSNA stage_2_train_labels.csv)",
    "vindr": "CSV 'image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max' (VinDr-CXR train.csv)",
    "plain": "CSV 'image,label,x0,y0,x1,y1'",
    "png": "a folder of <image stem>.png or <image stem>__<label>.png masks",
    "coco-rle": "JSON {image_id: {pathology: {size: [h, w], counts: RLE}}} (CheXlocalize gt_segmentations)",
    "polygons": "JSON {image_id: {img_size: [h, w], pathology: [[[x, y], ...]]}} (CheXlocalize gt_annotations)",
    "siim": "CSV 'ImageId, EncodedPixels' (SIIM-ACR train-rle.csv)",
}
_CSV_COLUMNS = {
    "rsna": ("patientid", "x", "y", "width", "height", "target"),
    "vindr": ("image id", "class name", "rad id", "x min", "y min", "x max", "y max"),
    "siim": ("imageid", "encodedpixels"),
    "plain": ("image", "label", "x0", "y0", "x1", "y1"),
}
DEFAULT_CLASS = {"rsna": "Pneumonia", "siim": "Pneumothorax"}


@dataclass
class Truth:
    """Ground truth read from one file or folder.

    Attributes:
        format: the format read.
        boxes: image -> class -> boxes.
        masks: image -> class -> mask source (PNG folders: resolved per image by :func:`png_masks`).
        problems: ``(image, reason)`` for unusable rows.
        counts: what was read (``rows``, ``boxes``, ``masks``, ``no_finding``, ``readers``...).
        readers: image -> class -> reader -> boxes (VinDr-CXR with ``readers="each"``).
    """

    format: str
    boxes: dict[str, dict[str, list[Box]]] = field(default_factory=dict)
    masks: dict[str, dict[str, MaskSource]] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    readers: dict[str, dict[str, dict[str, tuple[Box, ...]]]] = field(default_factory=dict)


def unknown_format(path: Path, seen: str) -> ValueError:
    needs = "; ".join(f"{k}: {v}" for k, v in NEEDS.items())
    return ValueError(f"{str(path)!r} is not a ground-truth format this audit reads ({seen}). Known formats "
                      f"(--format to force one): {needs}")


def detect(path: Path) -> str:
    """The format of a truth file or folder, from its header or keys (see the module docstring).

    Raises:
        ValueError: none fits; the message says what each format needs.
    """
    if path.is_dir():
        return "png"
    if not path.is_file():
        raise ValueError(f"ground truth {str(path)!r}: no such file or folder")
    if path.name.lower().endswith(".json"):
        data = _load_json(path)
        for value in data.values():
            if isinstance(value, dict) and value:
                if "img_size" in value:
                    return "polygons"
                inner = next(iter(value.values()))
                if isinstance(inner, dict) and "counts" in inner:
                    return "coco-rle"
                break
        raise unknown_format(path, "a JSON file whose entries are neither RLE dicts nor polygons with img_size")
    try:
        header = read_header(path)
    except TableError as e:
        raise ValueError(str(e)) from None
    lowered = [norm(h) for h in header]
    if len(lowered) >= 3 and lowered[0] == "image index" and lowered[2].startswith("bbox"):
        return "nih"
    for fmt, cols in _CSV_COLUMNS.items():
        if all(c in lowered for c in cols):
            return fmt
    raise unknown_format(path, f"its header is {', '.join(header)}")


def read_truth(path: str | Path, index: NameIndex, vocabulary: Vocabulary, *, fmt: str | None = None,
               readers: str = "union", truth_class: str | None = None) -> Truth:
    """Read a boxes or masks file (or a PNG mask folder) for the images ``index`` lists.

    Args:
        path: the file or folder.
        index: the listed images.
        vocabulary: maps finding names to the model's classes (and counts the unmatched).
        fmt: force a format (one of :data:`TRUTH_FORMATS`).
        readers: VinDr-CXR's several readers: ``"union"``, ``"majority"`` or ``"each"``.
        truth_class: the class of a one-class format (RSNA, SIIM); default :data:`DEFAULT_CLASS`.

    Raises:
        ValueError: an unknown format, bad option, or a file that does not fit the format.
    """
    path = Path(path)
    if fmt is not None and fmt not in TRUTH_FORMATS:
        raise ValueError(f"unknown ground-truth format {fmt!r}; choose from {', '.join(TRUTH_FORMATS)}")
    if readers not in READERS:
        raise ValueError(f"--readers must be one of {', '.join(READERS)}, got {readers!r}")
    fmt = fmt or detect(path)
    out = Truth(fmt)
    if fmt == "png":
        if not path.is_dir():
            raise ValueError(f"masks folder {str(path)!r} does not exist or is not a folder")
        return out
    if fmt in ("coco-rle", "polygons"):
        _read_json_masks(path, _load_json(path), fmt, index, vocabulary, out)
        return out
    try:
        header, rows = read_csv(path)
    except TableError as e:
        raise ValueError(str(e)) from None
    lowered = [norm(h) for h in header]
    if fmt == "nih":
        if not (len(lowered) >= 6 and lowered[0] == "image index"):
            raise unknown_format(path, f"--format nih, but its header is {', '.join(header)}")
        cols = (0, 1, 2, 3, 4, 5)
    else:
        missing = [c for c in _CSV_COLUMNS[fmt] if c not in lowered]
        if missing:
            raise ValueError(f"{str(path)!r} as {fmt}: missing column(s) {', '.join(missing)} ({NEEDS[fmt]})")
        cols = tuple(lowered.index(c) for c in _CSV_COLUMNS[fmt])
    classes = vocabulary.match(truth_class or DEFAULT_CLASS[fmt]) if fmt in DEFAULT_CLASS else ()
    if fmt in DEFAULT_CLASS and not classes:
        raise ValueError(f"{str(path)!r} ({fmt}) holds {truth_class or DEFAULT_CLASS[fmt]!r} findings, not one of "
                         f"the model's classes ({', '.join(vocabulary.class_names)}); name the class with --truth-class")
    if fmt == "siim":
        _read_siim(rows, cols, index, classes, out)
    elif fmt == "vindr":
        _read_vindr(rows, cols, index, vocabulary, readers, out)
    else:
        _read_box_rows(rows, cols, fmt, index, vocabulary, classes, out)
    return out


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {str(path)!r} as JSON: {e}") from None
    if not isinstance(data, dict):
        raise unknown_format(path, "a JSON file that is not an object keyed by image")
    return data


def _box(values: list[str], wh: bool) -> Box | None:
    try:
        a, b, c, d = (float(v) for v in values)
    except ValueError:
        return None
    box = (a, b, a + c, b + d) if wh else (a, b, c, d)
    return box if box[2] > box[0] and box[3] > box[1] and all(np.isfinite(box)) else None


def _read_box_rows(rows: list[list[str]], cols: tuple[int, ...], fmt: str, index: NameIndex, vocabulary: Vocabulary,
                   fixed: tuple[str, ...], out: Truth) -> None:
    for row in rows:
        if len(row) <= max(cols):
            continue
        name = index.find(row[cols[0]])
        if name is None:
            continue
        out.counts["rows"] += 1
        if fmt == "rsna":
            if row[cols[5]].strip() not in ("1", "1.0"):
                out.counts["negative"] += 1
                continue
            found, values = fixed, [row[i] for i in cols[1:5]]
        else:
            found, values = vocabulary.match(row[cols[1]]), [row[i] for i in cols[2:6]]
            if not found:
                continue
        box = _box(values, wh=fmt in ("nih", "rsna"))
        if box is None:
            out.problems.append((name, f"{fmt} boxes: empty or invalid box {values}"))
            continue
        for cls in found:
            out.boxes.setdefault(name, {}).setdefault(cls, []).append(box)
        out.counts["boxes"] += 1


def _read_vindr(rows: list[list[str]], cols: tuple[int, ...], index: NameIndex, vocabulary: Vocabulary, readers: str,
                out: Truth) -> None:
    image_c, class_c, rad_c, x0, y0, x1, y1 = cols
    per_image: dict[str, dict[str, dict[str, list[Box]]]] = {}  # image -> reader -> class -> boxes
    for row in rows:
        if len(row) <= max(cols):
            continue
        name = index.find(row[image_c])
        if name is None:
            continue
        out.counts["rows"] += 1
        by_reader = per_image.setdefault(name, {}).setdefault(row[rad_c].strip(), {})
        label = row[class_c]
        if is_no_finding(label):
            out.counts["no_finding"] += 1
            continue
        found = vocabulary.match(label)
        if not found:
            continue
        box = _box([row[i] for i in (x0, y0, x1, y1)], wh=False)
        if box is None:
            out.problems.append((name, f"vindr boxes: empty or invalid box {[row[i] for i in (x0, y0, x1, y1)]}"))
            continue
        out.counts["boxes"] += 1
        for cls in found:
            by_reader.setdefault(cls, []).append(box)
    for name, by_reader in per_image.items():
        out.counts["readers"] = max(out.counts["readers"], len(by_reader))
        for cls in dict.fromkeys(c for r in by_reader.values() for c in r):
            if readers == "union":
                out.boxes.setdefault(name, {})[cls] = [b for r in by_reader.values() for b in r.get(cls, [])]
            elif readers == "each":
                out.readers.setdefault(name, {})[cls] = {rad: tuple(r[cls]) for rad, r in by_reader.items() if cls in r}
            else:
                votes = tuple(tuple(r.get(cls, ())) for r in by_reader.values())
                out.masks.setdefault(name, {})[cls] = VoteMask(votes, len(by_reader))


def _read_siim(rows: list[list[str]], cols: tuple[int, ...], index: NameIndex, classes: tuple[str, ...],
               out: Truth) -> None:
    image_c, enc_c = cols
    found: dict[str, list[str]] = {}
    for row in rows:
        if len(row) <= max(cols):
            continue
        name = index.find(row[image_c])
        if name is None:
            continue
        out.counts["rows"] += 1
        text = row[enc_c].strip()
        if text in ("-1", ""):
            out.counts["negative"] += 1
            continue
        found.setdefault(name, []).append(text)
    for name, encodings in found.items():
        for cls in classes:
            out.masks.setdefault(name, {})[cls] = RunLengthMask(tuple(encodings))
        out.counts["masks"] += 1


def _read_json_masks(path: Path, data: dict, fmt: str, index: NameIndex, vocabulary: Vocabulary, out: Truth) -> None:
    for key, entry in data.items():
        name = index.find(str(key))
        if name is None or not isinstance(entry, dict):
            continue
        out.counts["images"] += 1
        size = entry.get("img_size")
        for label, value in entry.items():
            if label == "img_size":
                continue
            if fmt == "coco-rle":
                if not (isinstance(value, dict) and "size" in value and "counts" in value):
                    out.problems.append((name, f"coco-rle: {label!r} is not an RLE dict with size and counts"))
                    continue
                counts = value["counts"]
                if not isinstance(counts, str):
                    out.problems.append((name, f"coco-rle: {label!r} has uncompressed counts; expected a string"))
                    continue
                source: MaskSource = RleMask((int(value["size"][0]), int(value["size"][1])), counts)
                empty = not counts or _rle_empty(source)
            else:
                if not (isinstance(size, list) and len(size) == 2):
                    out.problems.append((name, "polygons: the entry has no img_size [h, w]"))
                    break
                try:
                    polys = tuple(tuple((float(x), float(y)) for x, y in poly) for poly in value)
                except (TypeError, ValueError):
                    out.problems.append((name, f"polygons: {label!r} is not a list of [[x, y], ...] polygons"))
                    continue
                source = PolygonMask((int(size[0]), int(size[1])), polys)
                empty = not polys
            if empty:
                continue  # CheXlocalize writes an empty mask for every pathology not present
            for cls in vocabulary.match(label):
                out.masks.setdefault(name, {})[cls] = source
            out.counts["masks"] += 1


def _rle_empty(source: RleMask) -> bool:
    """An RLE whose only run is background (CheXlocalize writes one per absent pathology)."""
    return source.decode(*source.size).sum() == 0 if len(source.counts) < 16 else False


def png_masks(mask_dir: Path, image: str, class_names: list[str]) -> dict[str, Path]:
    """The PNG masks of one listed image: ``<stem>.png`` (key ``""``: every target) and ``<stem>__<label>.png``."""
    rel = Path(image)
    found: dict[str, Path] = {}
    for folder in dict.fromkeys((mask_dir / rel.parent, mask_dir)):
        if not folder.is_dir():
            continue
        plain = folder / f"{rel.stem}.png"
        if plain.is_file() and "" not in found:
            found[""] = plain
        for cls in class_names:
            for spelling in dict.fromkeys((cls, cls.replace(" ", "_"))):
                p = folder / f"{rel.stem}__{spelling}.png"
                if p.is_file() and cls not in found:
                    found[cls] = p
    return found
