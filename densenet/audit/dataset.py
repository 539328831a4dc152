"""What an audit runs over: the image listing, the labels and the ground-truth boxes and masks.

Coordinates: boxes are continuous ``x0, y0, x1, y1`` in the original image's pixels (x right,
y down), pixel ``(row i, column j)`` covering ``[j, j+1) x [i, i+1)``; NIH ChestX-ray14's
``x, y, w, h`` is the same box as ``x, y, x + w, y + h``. Masks are images of the original's
size (another size is scaled onto it). :func:`truth_in_view` maps either onto the model's input
grid through :func:`densenet.geometry.view_box`, so ground truth and maps always share the
preprocessing's geometry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .formats.masks import boxes_on_grid, decode as decode_mask, digest as mask_digest

#: Suffixes listed as images (``load_image`` reads them all; DICOM files may also lack a suffix).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom")

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
        masks: class name (``""``: every target of the image) -> mask source: a PNG file or a
            mask held in a file's text (:mod:`.formats.masks`).
        uncertain: classes the labels mark uncertain and that were not made targets.
        readers: class -> reader -> boxes, when each reader's boxes are scored on their own
            (VinDr-CXR ``readers="each"``): one row per reader (:meth:`for_reader`).
    """

    image: str
    path: Path
    labels: tuple[str, ...] = ()
    boxes: dict[str, tuple[Box, ...]] = field(default_factory=dict)
    masks: dict[str, Any] = field(default_factory=dict)
    uncertain: tuple[str, ...] = ()
    readers: dict[str, dict[str, tuple[Box, ...]]] = field(default_factory=dict)

    def for_reader(self, label: str, reader: str) -> Item:
        """This image with one reader's boxes as the truth of ``label``."""
        return replace(self, boxes={**self.boxes, label: self.readers[label][reader]}, readers={})

    def mask_source(self, label: str) -> Any | None:
        """The mask source of ``label`` (or of every target), ``None`` when there is none."""
        return self.masks.get(label, self.masks.get(""))

    def truth_kind(self, label: str) -> str:
        """``"mask"``, ``"box"`` or ``""``: what ground truth this image has for ``label`` (a mask first)."""
        from .formats.masks import kind_of

        source = self.mask_source(label)
        if source is not None:
            return kind_of(source)
        return "box" if label in self.boxes else ""

    def truth_kinds(self, label: str) -> tuple[str, ...]:
        """Every kind of truth for ``label``: ``("mask", "box")`` when both a mask and boxes exist."""
        kinds = [self.truth_kind(label)] if self.mask_source(label) is not None else []
        if label in self.boxes and "box" not in kinds:
            kinds.append("box")
        return tuple(kinds)


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
        details: what was recognised, for the manifest, the summary and the page: ``labels``
            (format, uncertainty policy, counts of positive / negative / uncertain / blank),
            ``boxes``/``masks`` (format, counts), ``vocabulary`` (the mapping used, the
            unmatched names with their counts) and ``options`` (what :func:`load_dataset` was
            given besides the files, so that ``audit rescore`` can list it again).
    """

    root: Path
    items: list[Item]
    class_names: list[str]
    has_labels: bool = False
    problems: list[tuple[str, str]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def unmatched_rows(self) -> list[tuple[str, str]]:
        """``("", reason)`` per label name that matched none of the model's classes, with its count (for ``skipped.csv``)."""
        unmatched = self.details.get("vocabulary", {}).get("unmatched", {})
        return [("", f"label {name!r} matches none of the model's classes ({n} "
                     f"{'row' if n == 1 else 'rows'}; add it with --classes-map)") for name, n in unmatched.items()]

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
                      {k: mask_digest(p) for k, p in sorted(item.masks.items())}]
            if item.uncertain:
                record.append(list(item.uncertain))
            if item.readers:
                record.append({c: {r: [list(b) for b in bs] for r, bs in sorted(v.items())}
                               for c, v in sorted(item.readers.items())})
            h.update(json.dumps(record, sort_keys=True).encode())
        h.update(json.dumps(sorted(self.problems)).encode())
        return h.hexdigest()


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
                 limit: int | None = None, uncertain: str = "ignore", readers: str = "union",
                 truth_format: str | None = None, labels_format: str | None = None, truth_class: str | None = None,
                 classes_map: str | os.PathLike | None = None) -> Dataset:
    """List a dataset and attach its labels and ground truth, in the formats the field publishes.

    Args:
        data: the image folder, searched recursively; with no ``labels`` file, class subfolders
            (every top-level folder named after a class) give the labels (ImageFolder layout).
        class_names: the model's class names; labels, boxes and masks are matched to them
            through :class:`~.formats.vocabulary.Vocabulary` (synonyms, ``classes_map``).
        labels: a label table (:mod:`.formats.labels`): NIH's ``Finding Labels``, CheXpert/MIMIC
            columns (1 / 0 / -1 / blank), or one label column; ``.gz``/``.zip`` too.
        boxes: a boxes file (:mod:`.formats.truth`): NIH, RSNA, VinDr-CXR or ``image,label,x0,y0,x1,y1``.
        masks: a PNG mask folder, COCO RLE JSON, polygon JSON or SIIM run-length CSV.
        limit: keep only the first ``limit`` images (in listing order).
        uncertain: CheXpert's ``-1``: ``"ignore"`` (default), ``"positive"`` or ``"negative"``.
        readers: VinDr-CXR's readers: ``"union"``, ``"majority"`` or ``"each"`` (one row per reader).
        truth_format: force the format of the ground-truth file(s) (:data:`~.formats.truth.TRUTH_FORMATS`;
            a box format applies to ``boxes``, a mask format to ``masks``).
        labels_format: force the label format (``"nih"``, ``"columns"``, ``"single"``).
        truth_class: the class of a one-class truth file (RSNA: ``Pneumonia``, SIIM: ``Pneumothorax``).
        classes_map: a file mapping dataset names to model classes (:func:`~.formats.vocabulary.read_classes_map`).

    Returns:
        The :class:`Dataset`.

    Raises:
        DatasetError: a missing folder or file, an empty folder, or a file without what its format needs.
    """
    from .formats.labels import read_labels
    from .formats.names import NameIndex
    from .formats.truth import BOX_FORMATS, MASK_FORMATS, png_masks, read_truth
    from .formats.vocabulary import Vocabulary, read_classes_map

    root = Path(data)
    if masks is not None and not Path(masks).exists():
        raise DatasetError(f"masks {str(masks)!r}: no such folder or file")
    mask_dir = Path(masks) if masks is not None and Path(masks).is_dir() else None
    names = list_images(root, exclude=(mask_dir,) if mask_dir is not None else ())
    if not names:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {str(root)!r}")
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"limit must be at least 1, got {limit}")
        names = names[:limit]
    try:
        vocabulary = Vocabulary(class_names, read_classes_map(classes_map) if classes_map is not None else None)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    problems: list[tuple[str, str]] = []
    sources: dict[str, str] = {}
    details: dict[str, Any] = {}
    index = NameIndex(names)

    label_map: dict[str, tuple[str, ...]] | None
    unsure: dict[str, tuple[str, ...]] = {}
    if labels is not None:
        sources["labels"] = str(Path(labels).resolve())
        try:
            table = read_labels(labels, index, vocabulary, uncertain=uncertain, fmt=labels_format)
        except ValueError as e:
            raise DatasetError(str(e)) from None
        label_map, unsure = table.labels, table.uncertain
        problems += table.problems
        details["labels"] = {"format": table.format, "uncertain_policy": uncertain, **table.counts}
    else:
        label_map = _folder_labels(root, names, {_norm(c): c for c in class_names})

    box_map: dict[str, dict[str, list[Box]]] = {}
    mask_map: dict[str, dict[str, Any]] = {}
    reader_map: dict[str, dict[str, dict[str, tuple[Box, ...]]]] = {}
    png_dir: Path | None = None
    for what, given in (("boxes", boxes), ("masks", masks)):
        if given is None:
            continue
        forced = None
        if truth_format is not None:
            fits = truth_format in (BOX_FORMATS if what == "boxes" else MASK_FORMATS)
            forced = truth_format if fits or (boxes is None or masks is None) else None
        sources[what] = str(Path(given).resolve())
        try:
            truth = read_truth(given, index, vocabulary, fmt=forced, readers=readers, truth_class=truth_class)
        except ValueError as e:
            raise DatasetError(f"--{what}: {e}") from None
        problems += truth.problems
        for name, per_class in truth.boxes.items():
            for cls, bs in per_class.items():
                box_map.setdefault(name, {}).setdefault(cls, []).extend(bs)
        for name, per_class in truth.masks.items():
            mask_map.setdefault(name, {}).update(per_class)
        for name, per_class in truth.readers.items():
            reader_map.setdefault(name, {}).update(per_class)
        details[what] = {"format": truth.format, **dict(truth.counts)}
        if truth.format == "vindr":
            details[what]["readers_policy"] = readers
        if truth.format == "png":
            png_dir = Path(given)

    items = []
    listed_problems = {p[0] for p in problems}
    for name in names:
        item_labels: tuple[str, ...] = ()
        if label_map is not None:
            if name not in label_map:
                if name not in listed_problems:
                    problems.append((name, "no label for this image in the labels file"))
                continue
            item_labels = label_map[name]
        item_masks: dict[str, Any] = dict(png_masks(png_dir, name, class_names)) if png_dir is not None else {}
        item_masks.update(mask_map.get(name, {}))
        item_boxes = {k: tuple(v) for k, v in box_map.get(name, {}).items()}
        items.append(Item(name, (root / name).resolve(), item_labels, item_boxes, item_masks, unsure.get(name, ()),
                          reader_map.get(name, {})))
    details["vocabulary"] = vocabulary.to_json()
    details["options"] = {"uncertain": uncertain, "readers": readers, "truth_format": truth_format,
                          "labels_format": labels_format, "truth_class": truth_class, "limit": limit,
                          "classes_map": None if classes_map is None else str(Path(classes_map).resolve())}
    return Dataset(root.resolve(), items, list(class_names), label_map is not None, problems, sources, details)


def reload_dataset(manifest: dict[str, Any], class_names: list[str]) -> Dataset:
    """The dataset a run's manifest describes, listed again (for the report and ``audit rescore``).

    Raises:
        DatasetError: its files are gone or changed shape.
    """
    d = manifest["dataset"]
    src = d.get("sources", {})
    options = {k: v for k, v in d.get("options", {}).items() if v is not None}
    return load_dataset(d["root"], class_names, labels=src.get("labels"), boxes=src.get("boxes"),
                        masks=src.get("masks"), **options)


def _folder_labels(root: Path, names: list[str], classes: dict[str, str]) -> dict[str, tuple[str, ...]] | None:
    """ImageFolder layout: every image sits in a top-level folder named after a class."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if not tops or any("/" not in n for n in names) or any(_norm(t) not in classes for t in tops):
        return None
    return {n: (classes[_norm(n.split("/", 1)[0])],) for n in names}



# --- ground truth on the model's grid ---------------------------------------------------------

def truth_in_view(item: Item, label: str, height: int, width: int,
                  view: tuple[float, float, float, float], size: int, *, kind: str | None = None) -> np.ndarray | None:
    """The ground truth of ``label`` on the model's ``size x size`` input grid, or ``None``.

    Each model pixel ``(i, j)`` is taken at its centre, mapped back into the original image
    through ``view`` (:func:`densenet.geometry.view_box`: the rectangle the view spans, past the image
    for a letterbox), and looked up in the mask (nearest pixel) or tested against the boxes.

    Args:
        item: the image's record.
        label: the class whose truth is wanted.
        height, width: the original image's size.
        view: ``(x0, y0, x1, y1)`` of the region the model sees, original pixels.
        size: side of the model's input.
        kind: ``"mask"`` or ``"box"`` for that truth only; ``None``: the mask when there is one.

    Returns:
        ``(size, size)`` bool, or ``None`` when the image has no truth for ``label``.

    Raises:
        ValueError: the mask cannot be read or decoded.
    """
    vx0, vy0, vx1, vy1 = view
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    xs = vx0 + centres * (vx1 - vx0)  # (size,) original x of each model column
    ys = vy0 + centres * (vy1 - vy0)
    return _truth_at(item, label, ys, xs, height, width, kind)


def truth_on_original(item: Item, label: str, height: int, width: int, *, kind: str | None = None) -> np.ndarray | None:
    """The ground truth of ``label`` at the original image's resolution, ``(height, width)`` bool, or ``None``.

    A mask of another size is scaled onto the image (nearest pixel); boxes cover the pixels
    whose centres they contain. ``kind`` as in :func:`truth_in_view`.
    """
    return _truth_at(item, label, np.arange(height) + 0.5, np.arange(width) + 0.5, height, width, kind)


def _truth_at(item: Item, label: str, ys: np.ndarray, xs: np.ndarray, height: int, width: int,
              kind: str | None) -> np.ndarray | None:
    """Truth at sample points ``ys`` x ``xs`` (original pixel coordinates), ``(len(ys), len(xs))`` bool."""
    source = item.mask_source(label) if kind in (None, "mask") else None
    if source is not None:
        if hasattr(source, "votes_at"):  # reader votes: boxes, evaluated where asked
            return source.votes_at(ys, xs)
        mask = decode_mask(source, height, width)
        mh, mw = mask.shape
        cols = np.floor(xs * (mw / width)).astype(np.int64)
        rows = np.floor(ys * (mh / height)).astype(np.int64)
        inside_c, inside_r = (cols >= 0) & (cols < mw), (rows >= 0) & (rows < mh)
        out = mask[np.clip(rows, 0, mh - 1)][:, np.clip(cols, 0, mw - 1)]
        return out & inside_r[:, None] & inside_c[None, :]
    if kind in (None, "box") and label in item.boxes:
        return boxes_on_grid(item.boxes[label], ys, xs)
    return None


# --- one folder with everything (the page's path box, an unpacked zip) --------------------------

LABEL_FILES = ("labels.csv", "Data_Entry_2017.csv", "valid.csv", "train.csv")
BOX_FILES = ("boxes.csv", "BBox_List_2017.csv")


def discover(folder: str | os.PathLike) -> dict[str, Path | None]:
    """Find the parts of a dataset laid out in one folder.

    Conventions (what ``python -m densenet.demo dataset`` writes): images in ``images/`` (else
    the folder itself), ``labels.csv``, ``boxes.csv`` or NIH's ``BBox_List_2017.csv``, and
    ``masks/``. Other tables and JSON files are sorted by their header or keys
    (:func:`~.formats.recognise.sort_files`): published files keep their own names. A single
    top-level folder (as zips often hold) is looked into.

    Returns:
        ``{"data", "labels", "boxes", "masks"}`` (``None`` for a part that is not there).
    """
    from .formats.recognise import kind_of_file, sort_files

    folder = Path(folder)
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))] if folder.is_dir() else []
    if len(entries) == 1 and entries[0].is_dir() and not (folder / "images").is_dir():
        folder = entries[0]
    sorted_files = sort_files(folder) if folder.is_dir() else {}

    def find(names: tuple[str, ...], kind: str) -> Path | None:
        named = next((folder / n for n in names if (folder / n).is_file()), None)
        if named is not None and (kind_of_file(named) or (kind,))[0] == kind:
            return named
        return sorted_files.get(kind)

    masks = folder / "masks"
    images = folder / "images"
    return {"data": images if images.is_dir() else folder, "labels": find(LABEL_FILES, "labels"),
            "boxes": find(BOX_FILES, "boxes"), "masks": masks if masks.is_dir() else sorted_files.get("masks")}


def load_folder(folder: str | os.PathLike, class_names: list[str], *, limit: int | None = None,
                **options: Any) -> Dataset:
    """:func:`load_dataset` on what :func:`discover` finds in ``folder``; ``options`` as :func:`load_dataset`'s
    (``uncertain``, ``readers``, ``truth_class``, ``classes_map``...)."""
    parts = discover(folder)
    return load_dataset(parts["data"], class_names, labels=parts["labels"], boxes=parts["boxes"],
                        masks=parts["masks"], limit=limit, **options)
