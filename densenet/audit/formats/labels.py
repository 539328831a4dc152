"""Label tables as published: NIH's ``Finding Labels``, CheXpert/MIMIC-CXR columns, one label column.

Formats, recognised from the header (``fmt`` forces one):

- ``"nih"``: a ``Finding Labels`` column, names joined by ``|`` (``Cardiomegaly|Emphysema``);
  ``No Finding`` is an image with no positive finding (NIH ChestX-ray14's ``Data_Entry_2017.csv``).
- ``"columns"``: one column per class (CheXpert ``train.csv``/``valid.csv``, MIMIC-CXR
  ``chexpert.csv``/``negbio.csv``, a 0/1 table): ``1`` positive, ``0`` negative, ``-1`` uncertain, blank not
  mentioned. An uncertain label follows the ``uncertain`` policy: ``"ignore"`` (the default: it
  is neither a target nor a negative), ``"positive"`` or ``"negative"``; it never becomes a
  target unless asked. MIMIC-CXR's tables label a study (``subject_id, study_id``, no image
  column): the row holds for every image in the study's folder ``s<study_id>/``.
- ``"single"``: one label column (a class name or a class index).

Every label name goes through the :class:`~.vocabulary.Vocabulary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .names import NameIndex
from .tables import read_csv
from .vocabulary import Vocabulary, is_no_finding, norm

LABEL_FORMATS = ("nih", "columns", "single")
UNCERTAIN = ("ignore", "positive", "negative")

#: Column names taken as the image key, in order of preference.
IMAGE_COLUMNS = ("path", "image", "image index", "image_index", "file", "filename", "image_id", "imageid",
                 "patientid", "dicom_id", "img", "name")
#: Columns of the published tables that are not findings (kept out of the class columns).
_NOT_FINDINGS = {"sex", "age", "frontal/lateral", "ap/pa", "follow up #", "patient id", "patient age",
                 "patient gender", "view position", "subject id", "study id", "no finding"}


@dataclass
class LabelTable:
    """What a label file says about the listed images.

    Attributes:
        labels: image -> positive model classes (targets); ``()`` for an image with none.
        uncertain: image -> classes marked uncertain and not made targets (policy ``ignore``/``negative``).
        counts: ``{"positive", "negative", "uncertain", "blank"}`` cells of the listed images'
            rows (``columns`` format; for ``nih``/``single`` positives and no-finding rows).
        problems: ``(image, reason)`` for rows that cannot be used.
        format: the format read.
    """

    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    uncertain: dict[str, tuple[str, ...]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"positive": 0, "negative": 0, "uncertain": 0, "blank": 0})
    problems: list[tuple[str, str]] = field(default_factory=list)
    format: str = ""


def image_column(header: list[str]) -> int:
    """The index of the image-key column (the first column when none is named as one)."""
    lowered = [norm(h) for h in header]
    for name in IMAGE_COLUMNS:
        if norm(name) in lowered:
            return lowered.index(norm(name))
    return 0


def detect(header: list[str], vocabulary: Vocabulary) -> str:
    """The label format of a table with this header (see the module docstring)."""
    lowered = [norm(h) for h in header]
    if "finding labels" in lowered:
        return "nih"
    img = image_column(header)
    others = [i for i in range(len(header)) if i != img]
    finding_cols = [i for i in others if lowered[i] not in _NOT_FINDINGS and vocabulary.lookup(header[i])[0]]
    if finding_cols and (len(finding_cols) > 1 or len(others) > 1):
        return "columns"
    return "single"


def read_labels(path: str | Path, index: NameIndex, vocabulary: Vocabulary, *, uncertain: str = "ignore",
                fmt: str | None = None) -> LabelTable:
    """Read a label table for the images ``index`` lists.

    Args:
        path: the CSV (``.gz`` and one-member ``.zip`` too).
        index: the listed images.
        vocabulary: maps label names to the model's classes (and counts the unmatched).
        uncertain: policy for ``-1`` cells: ``"ignore"``, ``"positive"`` or ``"negative"``.
        fmt: force a format (``"nih"``, ``"columns"``, ``"single"``).

    Raises:
        ValueError: a bad policy or format, or a table without the columns its format needs.
    """
    if uncertain not in UNCERTAIN:
        raise ValueError(f"--uncertain must be one of {', '.join(UNCERTAIN)}, got {uncertain!r}")
    if fmt is not None and fmt not in LABEL_FORMATS:
        raise ValueError(f"unknown labels format {fmt!r}; choose from {', '.join(LABEL_FORMATS)}")
    path = Path(path)
    header, rows = read_csv(path)
    fmt = fmt or detect(header, vocabulary)
    img = image_column(header)
    out = LabelTable(format=fmt)
    if fmt == "nih":
        _read_nih(header, rows, img, index, vocabulary, out, path)
    elif fmt == "columns":
        _read_columns(header, rows, img, index, vocabulary, uncertain, out, path)
    else:
        _read_single(header, rows, img, index, vocabulary, out, path)
    return out


def _read_nih(header: list[str], rows: list[list[str]], img: int, index: NameIndex, vocabulary: Vocabulary,
              out: LabelTable, path: Path) -> None:
    col = [norm(h) for h in header].index("finding labels")
    for row in rows:
        name = index.find(row[img]) if img < len(row) else None
        if name is None or col >= len(row):
            continue
        positives: list[str] = []
        for part in row[col].split("|"):
            if not part.strip():
                continue
            if is_no_finding(part):
                continue
            out.counts["positive"] += 1
            positives += vocabulary.match(part)
        if not positives:
            out.counts["negative"] += 1  # a no-finding image (or one whose findings the model lacks)
        out.labels[name] = tuple(dict.fromkeys(positives))


def _read_columns(header: list[str], rows: list[list[str]], img: int, index: NameIndex, vocabulary: Vocabulary,
                  uncertain: str, out: LabelTable, path: Path) -> None:
    lowered = [norm(h) for h in header]
    cols: list[tuple[int, tuple[str, ...]]] = []
    for i, h in enumerate(header):
        if i == img or lowered[i] in _NOT_FINDINGS:
            continue
        classes = vocabulary.lookup(h)[0]
        if classes:
            vocabulary.match(h)  # recorded once per column, as the mapping used
            cols.append((i, classes))
        elif lowered[i] and not _is_metadata(rows, i):
            cols.append((i, ()))
    if not any(classes for _, classes in cols):
        raise ValueError(f"labels {str(path)!r}: no column names one of the model's classes "
                         f"({', '.join(vocabulary.class_names)}); columns are {', '.join(header)}")
    study = lowered.index("study id") if "study id" in lowered and not _has_image_column(header) else None
    for row in rows:
        if study is not None:  # MIMIC-CXR: one row per study, every image of its folder
            sid = row[study].strip().removesuffix(".0") if study < len(row) else ""
            targets = index.in_folder(f"s{sid}") if sid else []
        else:
            name = index.find(row[img]) if img < len(row) else None
            targets = [name] if name is not None else []
        for name in targets:
            _one_row(row, name, header, cols, uncertain, vocabulary, out)


def _has_image_column(header: list[str]) -> bool:
    lowered = {norm(h) for h in header}
    return any(norm(c) in lowered for c in IMAGE_COLUMNS)


def _one_row(row: list[str], name: str, header: list[str], cols: list[tuple[int, tuple[str, ...]]],
             uncertain: str, vocabulary: Vocabulary, out: LabelTable) -> None:
    """One image's cells: positives become targets, uncertain ones follow the policy, the kinds are counted."""
    positives: list[str] = []
    unsure: list[str] = []
    for i, classes in cols:
        cell = row[i].strip() if i < len(row) else ""
        if not cell:
            kind = "blank"
        else:
            try:
                kind = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}.get(float(cell))
            except ValueError:
                kind = None
            if kind is None:
                out.problems.append((name, f"labels: {header[i]!r} is {cell!r}, not 1, 0, -1 or blank"))
                continue
        if not classes:
            if kind in ("positive", "uncertain"):
                vocabulary.unmatched[header[i]] += 1
            continue
        out.counts[kind] += len(classes)
        if kind == "positive" or (kind == "uncertain" and uncertain == "positive"):
            positives += classes
        elif kind == "uncertain" and uncertain == "ignore":
            unsure += classes
    out.labels[name] = tuple(dict.fromkeys(positives))
    if unsure:
        out.uncertain[name] = tuple(dict.fromkeys(unsure))


def _is_metadata(rows: list[list[str]], i: int) -> bool:
    """A column whose cells are not all 1 / 0 / -1 / blank (an age, a sex, a view)."""
    for row in rows[:200]:
        cell = row[i].strip() if i < len(row) else ""
        if cell and cell not in ("1", "0", "-1", "1.0", "0.0", "-1.0"):
            return True
    return False


def _read_single(header: list[str], rows: list[list[str]], img: int, index: NameIndex, vocabulary: Vocabulary,
                 out: LabelTable, path: Path) -> None:
    others = [i for i in range(len(header)) if i != img]
    if not others:
        raise ValueError(f"labels {str(path)!r} needs a label column besides the image column ({header[img]!r})")
    col = others[0]
    for row in rows:
        name = index.find(row[img]) if img < len(row) else None
        if name is None:
            continue
        cell = row[col].strip() if col < len(row) else ""
        classes = vocabulary.index(cell)
        if not classes:
            out.problems.append((name, f"labels: label {cell!r} is not one of the model's classes"))
            continue
        out.counts["positive"] += 1
        out.labels[name] = classes
