"""What an audit runs over: the image listing, the labels and the ground-truth boxes and masks.

Coordinates: boxes are continuous ``x0, y0, x1, y1`` in the original image's pixels (x right,
y down), pixel ``(row i, column j)`` covering ``[j, j+1) x [i, i+1)``; NIH ChestX-ray14's
``x, y, w, h`` is the same box as ``x, y, x + w, y + h``. Masks are images of the original's
size (another size is scaled onto it). :func:`truth_in_view` maps either onto the model's input
grid through :func:`densenet.geometry.view_box`, so ground truth and maps always share the
preprocessing's geometry.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Suffixes listed as images (``load_image`` reads them all; DICOM files may also lack a suffix).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom")
_IMAGE_COLUMNS = ("image", "path", "file", "filename", "image index", "image_index", "img", "name")

Box = tuple[float, float, float, float]


class DatasetError(ValueError):
    """A dataset folder or CSV that cannot be used at all (a bad row is reported instead)."""


@dataclass(frozen=True)
class Item:
    """One image to audit.

    Attributes:
        image: path relative to the data folder, with ``/`` separators (the row key).
        path: absolute path of the file.
        labels: the true class names (one for single-label data, the positives for multi-label
            data); ``()`` when the dataset has no labels (targets are then the top prediction).
        boxes: class name -> boxes in original-image pixels.
        masks: class name (``""``: every target of the image) -> mask file.
    """

    image: str
    path: Path
    labels: tuple[str, ...] = ()
    boxes: dict[str, tuple[Box, ...]] = field(default_factory=dict)
    masks: dict[str, Path] = field(default_factory=dict)

    def truth_kind(self, label: str) -> str:
        """``"mask"``, ``"box"`` or ``""``: what ground truth this image has for ``label``."""
        if label in self.masks or "" in self.masks:
            return "mask"
        return "box" if label in self.boxes else ""


@dataclass
class Dataset:
    """A listed dataset.

    Attributes:
        root: the data folder.
        items: the images to audit, sorted by ``image``.
        class_names: the model's class names, which labels were matched to.
        has_labels: labels were given (CSV or class folders).
        problems: ``(image, reason)`` for images that cannot be audited as asked (no label) and
            for unusable CSV rows; the engines write them to ``skipped.csv``.
        sources: the files the listing came from (labels, boxes, masks), for the manifest.
    """

    root: Path
    items: list[Item]
    class_names: list[str]
    has_labels: bool = False
    problems: list[tuple[str, str]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    def listing_hash(self) -> str:
        """sha256 of everything that decides the rows: images (name, size), labels and truth."""
        h = hashlib.sha256()
        for item in self.items:
            try:
                size = item.path.stat().st_size
            except OSError:
                size = -1
            record = [item.image, size, list(item.labels),
                      {k: [list(b) for b in v] for k, v in sorted(item.boxes.items())},
                      {k: _file_digest(p) for k, p in sorted(item.masks.items())}]
            h.update(json.dumps(record, sort_keys=True).encode())
        h.update(json.dumps(sorted(self.problems)).encode())
        return h.hexdigest()


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "missing"


def _norm(name: str) -> str:
    """Class names compare case-insensitively, with spaces, ``_`` and ``-`` alike."""
    return re.sub(r"[\s_\-]+", " ", name.strip()).lower()


def list_images(root: str | os.PathLike, *, exclude: tuple[Path, ...] = ()) -> list[str]:
    """Image files under ``root`` (recursively), as sorted relative ``/`` paths; hidden ones skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder {str(root)!r} does not exist or is not a folder")
    excluded = [e.resolve() for e in exclude]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (here / d).resolve() not in excluded)
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((here / name).relative_to(root).as_posix())
    return sorted(found)


def load_dataset(data: str | os.PathLike, class_names: list[str], *, labels: str | os.PathLike | None = None,
                 boxes: str | os.PathLike | None = None, masks: str | os.PathLike | None = None,
                 limit: int | None = None) -> Dataset:
    """List a dataset and attach its labels and ground truth.

    Args:
        data: the image folder, searched recursively; with no ``labels`` CSV, class subfolders
            (every top-level folder named after a class) give the labels (ImageFolder layout).
        class_names: the model's class names; labels, boxes and masks are matched to them.
        labels: a CSV with an image column (relative path, or file name when unique) and either
            one label column (class name or index) or one 0/1 column per class (multi-label).
        boxes: NIH ``BBox_List_2017.csv`` as published, or ``image,label,x0,y0,x1,y1``.
        masks: a folder of ``<image stem>.png`` or ``<image stem>__<label>.png`` masks (also in
            the image's relative sub-folder).
        limit: keep only the first ``limit`` images (in listing order).

    Returns:
        The :class:`Dataset`.

    Raises:
        DatasetError: a missing folder or file, an empty folder, or a CSV without the columns needed.
    """
    root = Path(data)
    mask_dir = Path(masks) if masks is not None else None
    if mask_dir is not None and not mask_dir.is_dir():
        raise DatasetError(f"masks folder {str(mask_dir)!r} does not exist or is not a folder")
    names = list_images(root, exclude=(mask_dir,) if mask_dir is not None else ())
    if not names:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {str(root)!r}")
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"limit must be at least 1, got {limit}")
        names = names[:limit]
    classes = {_norm(c): c for c in class_names}
    problems: list[tuple[str, str]] = []
    sources: dict[str, str] = {}
    index = _NameIndex(names)

    label_map: dict[str, tuple[str, ...]] | None = None
    if labels is not None:
        sources["labels"] = str(Path(labels).resolve())
        label_map = _read_labels(Path(labels), classes, index, problems)
    else:
        label_map = _folder_labels(root, names, classes)

    box_map: dict[str, dict[str, list[Box]]] = {}
    if boxes is not None:
        sources["boxes"] = str(Path(boxes).resolve())
        box_map = _read_boxes(Path(boxes), classes, index, problems)
    if mask_dir is not None:
        sources["masks"] = str(mask_dir.resolve())

    items = []
    for name in names:
        item_labels: tuple[str, ...] = ()
        if label_map is not None:
            if name not in label_map:
                if name not in {p[0] for p in problems}:
                    problems.append((name, "no label for this image in the labels CSV"))
                continue
            item_labels = label_map[name]
        item_masks = _find_masks(mask_dir, name, class_names) if mask_dir is not None else {}
        item_boxes = {k: tuple(v) for k, v in box_map.get(name, {}).items()}
        items.append(Item(name, (root / name).resolve(), item_labels, item_boxes, item_masks))
    return Dataset(root.resolve(), items, list(class_names), label_map is not None, problems, sources)


class _NameIndex:
    """CSV image names -> listed images: relative paths, or bare file names when unique."""

    def __init__(self, names: list[str]) -> None:
        self.names = set(names)
        by_base: dict[str, list[str]] = {}
        for n in names:
            by_base.setdefault(n.rsplit("/", 1)[-1], []).append(n)
        self.by_base = {b: v[0] for b, v in by_base.items() if len(v) == 1}

    def find(self, text: str) -> str | None:
        key = text.strip().replace("\\", "/")
        while key.startswith("./"):
            key = key[2:]
        if key in self.names:
            return key
        return self.by_base.get(key.rsplit("/", 1)[-1]) if "/" not in key else None


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise DatasetError(f"CSV file {str(path)!r} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"cannot read CSV {str(path)!r}: {e}") from None
    if not rows:
        raise DatasetError(f"CSV {str(path)!r} is empty")
    return [h.strip() for h in rows[0]], rows[1:]


def _image_column(header: list[str], path: Path) -> int:
    lowered = [h.lower() for h in header]
    for name in _IMAGE_COLUMNS:
        if name in lowered:
            return lowered.index(name)
    return 0


def _class_of(value: str, classes: dict[str, str]) -> str | None:
    value = value.strip()
    if _norm(value) in classes:
        return classes[_norm(value)]
    if re.fullmatch(r"\d+", value):
        names = list(classes.values())
        i = int(value)
        return names[i] if i < len(names) else None
    return None


def _read_labels(path: Path, classes: dict[str, str], index: _NameIndex,
                 problems: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    header, rows = _read_csv(path)
    image_col = _image_column(header, path)
    others = [i for i in range(len(header)) if i != image_col]
    class_cols = [i for i in others if _norm(header[i]) in classes]
    out: dict[str, tuple[str, ...]] = {}
    if class_cols and (len(class_cols) > 1 or len(others) > 1):
        # Multi-label, CheXpert style: 1 is positive; 0, blank and -1 (uncertain) are not.
        for row in rows:
            name = index.find(row[image_col]) if image_col < len(row) else None
            if name is None:
                continue
            positives = []
            for i in class_cols:
                cell = row[i].strip() if i < len(row) else ""
                try:
                    if cell and float(cell) == 1.0:
                        positives.append(classes[_norm(header[i])])
                except ValueError:
                    problems.append((name, f"labels CSV: {header[i]!r} is {cell!r}, not a number"))
            out[name] = tuple(positives)
        return out
    if not others:
        raise DatasetError(f"labels CSV {str(path)!r} needs a label column besides the image column")
    label_col = others[0]
    bad: set[str] = set()
    for row in rows:
        name = index.find(row[image_col]) if image_col < len(row) else None
        if name is None:
            continue
        cell = row[label_col] if label_col < len(row) else ""
        cls = _class_of(cell, classes)
        if cls is None:
            problems.append((name, f"labels CSV: label {cell.strip()!r} is not one of the model's classes"))
            bad.add(name)
            continue
        out[name] = (cls,)
    return {k: v for k, v in out.items() if k not in bad}


def _folder_labels(root: Path, names: list[str], classes: dict[str, str]) -> dict[str, tuple[str, ...]] | None:
    """ImageFolder layout: every image sits in a top-level folder named after a class."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if not tops or any("/" not in n for n in names) or any(_norm(t) not in classes for t in tops):
        return None
    return {n: (classes[_norm(n.split("/", 1)[0])],) for n in names}


def _read_boxes(path: Path, classes: dict[str, str], index: _NameIndex,
                problems: list[tuple[str, str]]) -> dict[str, dict[str, list[Box]]]:
    header, rows = _read_csv(path)
    lowered = [h.lower() for h in header]
    nih = len(header) >= 3 and lowered[0] == "image index" and lowered[2].startswith("bbox")
    if nih:
        cols = (0, 1, 2, 3, 4, 5)
    else:
        needed = ("image", "label", "x0", "y0", "x1", "y1")
        missing = [c for c in needed if c not in lowered]
        if missing:
            raise DatasetError(f"boxes CSV {str(path)!r}: expected NIH's 'Image Index, Finding Label, Bbox [x, y, w, h]' "
                               f"or columns {', '.join(needed)}; missing {', '.join(missing)}")
        cols = tuple(lowered.index(c) for c in needed)
    out: dict[str, dict[str, list[Box]]] = {}
    for row in rows:
        if len(row) <= max(cols):
            continue
        name = index.find(row[cols[0]])
        if name is None:
            continue
        cls = _class_of(row[cols[1]], classes)
        if cls is None:
            problems.append((name, f"boxes CSV: finding {row[cols[1]].strip()!r} is not one of the model's classes"))
            continue
        try:
            a, b, c, d = (float(row[i]) for i in cols[2:])
        except ValueError:
            problems.append((name, f"boxes CSV: non-numeric box {row[cols[2]:cols[5] + 1]}"))
            continue
        box = (a, b, a + c, b + d) if nih else (a, b, c, d)
        if not (box[2] > box[0] and box[3] > box[1]) or not all(np.isfinite(box)):
            problems.append((name, f"boxes CSV: empty or invalid box {box}"))
            continue
        out.setdefault(name, {}).setdefault(cls, []).append(box)
    return out


def _find_masks(mask_dir: Path, image: str, class_names: list[str]) -> dict[str, Path]:
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


# --- ground truth on the model's grid ---------------------------------------------------------

def truth_in_view(item: Item, label: str, height: int, width: int,
                  view: tuple[float, float, float, float], size: int) -> np.ndarray | None:
    """The ground truth of ``label`` on the model's ``size x size`` input grid, or ``None``.

    Each model pixel ``(i, j)`` is taken at its centre, mapped back into the original image
    through ``view`` (:func:`densenet.geometry.view_box`: the rectangle the view spans, past the image
    for a letterbox), and
    looked up in the mask (nearest pixel) or tested against the boxes.

    Args:
        item: the image's record.
        label: the class whose truth is wanted.
        height, width: the original image's size.
        view: ``(x0, y0, x1, y1)`` of the region the model sees, original pixels.
        size: side of the model's input.

    Returns:
        ``(size, size)`` bool, or ``None`` when the image has no truth for ``label``.

    Raises:
        ValueError: the mask file cannot be read.
    """
    vx0, vy0, vx1, vy1 = view
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    xs = vx0 + centres * (vx1 - vx0)  # (size,) original x of each model column
    ys = vy0 + centres * (vy1 - vy0)
    mask_path = item.masks.get(label, item.masks.get(""))
    if mask_path is not None:
        mask = _read_mask(mask_path)
        mh, mw = mask.shape
        cols = np.floor(xs * (mw / width)).astype(np.int64)
        rows = np.floor(ys * (mh / height)).astype(np.int64)
        inside_c, inside_r = (cols >= 0) & (cols < mw), (rows >= 0) & (rows < mh)
        out = mask[np.clip(rows, 0, mh - 1)][:, np.clip(cols, 0, mw - 1)]
        return out & inside_r[:, None] & inside_c[None, :]
    if label in item.boxes:
        out = np.zeros((size, size), bool)
        for x0, y0, x1, y1 in item.boxes[label]:
            out |= ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
        return out
    return None


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L")) > 127
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"cannot read mask {path.name}: {e}") from None


# --- one folder with everything (the page's path box, an unpacked zip) --------------------------

LABEL_FILES = ("labels.csv", "Data_Entry_2017.csv", "valid.csv", "train.csv")
BOX_FILES = ("boxes.csv", "BBox_List_2017.csv")


def discover(folder: str | os.PathLike) -> dict[str, Path | None]:
    """Find the parts of a dataset laid out in one folder.

    Conventions (what ``python -m densenet.demo dataset`` writes): images in ``images/`` (else
    the folder itself), ``labels.csv``, ``boxes.csv`` or NIH's ``BBox_List_2017.csv``, and
    ``masks/``. A single top-level folder (as zips often hold) is looked into.

    Returns:
        ``{"data", "labels", "boxes", "masks"}`` (``None`` for a part that is not there).
    """
    folder = Path(folder)
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))] if folder.is_dir() else []
    if len(entries) == 1 and entries[0].is_dir() and not (folder / "images").is_dir():
        folder = entries[0]
    find = (lambda names: next((folder / n for n in names if (folder / n).is_file()), None))
    masks = folder / "masks"
    images = folder / "images"
    return {"data": images if images.is_dir() else folder, "labels": find(LABEL_FILES), "boxes": find(BOX_FILES),
            "masks": masks if masks.is_dir() else None}


def load_folder(folder: str | os.PathLike, class_names: list[str], *, limit: int | None = None) -> Dataset:
    """:func:`load_dataset` on what :func:`discover` finds in ``folder``."""
    parts = discover(folder)
    return load_dataset(parts["data"], class_names, labels=parts["labels"], boxes=parts["boxes"],
                        masks=parts["masks"], limit=limit)
