"""A dataset's label names meet the model's class names: the same name, a known synonym, or a given map.

Names compare case-insensitively, with spaces, ``_`` and ``-`` alike (``Pleural_Thickening`` is
``pleural thickening``). A name the model does not have is looked up in :data:`SYNONYMS`, groups
of names the public chest X-ray datasets use for one finding; every member of its group that the
model has is used (VinDr's ``Nodule/Mass`` box counts for a model's ``Nodule`` and its ``Mass``).
A ``--classes-map`` file takes precedence over both. Every name that matched nothing is counted
(:attr:`Vocabulary.unmatched`), and the mapping used is kept for the manifest
(:meth:`Vocabulary.to_json`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from .tables import TableError, read_csv

#: Groups of names for one finding across NIH ChestX-ray14, CheXpert, MIMIC-CXR, CheXlocalize,
#: RSNA Pneumonia, VinDr-CXR and SIIM-ACR. A dataset name in a group matches every model class
#: in that group.
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("Infiltration", "Infiltrate", "Infiltrates"),
    ("Pleural Effusion", "Effusion"),
    ("Pleural Thickening", "Pleural_Thickening"),
    ("Lung Opacity", "Airspace Opacity", "Opacity"),
    ("Nodule/Mass", "Nodule", "Mass", "Lung Lesion"),
    ("Fibrosis", "Pulmonary Fibrosis"),
    ("Support Devices", "Support Device"),
    ("Enlarged Cardiomediastinum", "Enlarged Cardiom"),
    ("Pleural Other", "Pleural Others"),
)

#: Names that say an image has no finding (NIH ``No Finding``, VinDr ``No finding``).
NO_FINDING = ("No Finding", "Normal")


def norm(name: str) -> str:
    """The comparison form of a class name: lower case, runs of spaces, ``_`` and ``-`` as one space."""
    return re.sub(r"[\s_\-]+", " ", name.strip()).lower()


def is_no_finding(name: str) -> bool:
    return norm(name) in {norm(n) for n in NO_FINDING}


def read_classes_map(path: str | Path) -> dict[str, tuple[str, ...]]:
    """A ``--classes-map`` file: dataset name -> model class names.

    CSV with two columns (``name,class``; a header row is optional; one dataset name may appear
    on several rows, and an empty class means "use none"), or JSON ``{name: class or [classes]}``.

    Raises:
        ValueError: an unreadable file or a malformed entry, naming it.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"--classes-map {str(path)!r}: cannot read it as JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"--classes-map {str(path)!r}: expected an object {{name: class or [classes]}}")
        out: dict[str, tuple[str, ...]] = {}
        for k, v in data.items():
            values = [v] if isinstance(v, str) else v
            if not isinstance(values, list) or not all(isinstance(x, str) for x in values):
                raise ValueError(f"--classes-map {str(path)!r}: entry {k!r} must be a class name or a list of them")
            out[str(k)] = tuple(x for x in values if x.strip())
        return out
    try:
        header, rows = read_csv(path)
    except TableError as e:
        raise ValueError(f"--classes-map: {e}") from None
    if [norm(h) for h in header[:2]] != ["name", "class"]:
        rows = [header] + rows
    out = {}
    for row in rows:
        if len(row) < 2:
            raise ValueError(f"--classes-map {str(path)!r}: row {row!r} needs two columns, name and class")
        name, cls = row[0].strip(), row[1].strip()
        out[name] = out.get(name, ()) + ((cls,) if cls else ())
    return out


class Vocabulary:
    """Matches dataset label names to the model's classes and remembers what it did.

    Args:
        class_names: the model's class names.
        classes_map: dataset name -> model classes, taking precedence (:func:`read_classes_map`).

    Raises:
        ValueError: a ``classes_map`` target that is not one of the model's classes.
    """

    def __init__(self, class_names: list[str], classes_map: dict[str, tuple[str, ...]] | None = None) -> None:
        self.class_names = list(class_names)
        self._classes = {norm(c): c for c in class_names}
        self._given: dict[str, tuple[str, ...]] = {}
        for name, targets in (classes_map or {}).items():
            bad = [t for t in targets if norm(t) not in self._classes]
            if bad:
                raise ValueError(f"--classes-map maps {name!r} to {', '.join(map(repr, bad))}, not among the "
                                 f"model's classes ({', '.join(self.class_names)})")
            self._given[norm(name)] = tuple(self._classes[norm(t)] for t in targets)
        self._groups: dict[str, tuple[str, ...]] = {}
        for group in SYNONYMS:
            found = {self._classes[norm(g)] for g in group if norm(g) in self._classes}
            present = tuple(c for c in self.class_names if c in found)  # in the model's order
            for g in group:
                self._groups.setdefault(norm(g), present)
        self._cache: dict[str, tuple[tuple[str, ...], str]] = {}
        self.used: dict[str, dict[str, object]] = {}  # dataset name -> {"classes", "by"} (renamed ones only)
        self.unmatched: Counter[str] = Counter()

    def match(self, name: str) -> tuple[str, ...]:
        """The model classes ``name`` stands for (``()``: none; counted in :attr:`unmatched`)."""
        hit = self._cache.get(name)
        if hit is None:
            hit = self.lookup(name)
            self._cache[name] = hit
        classes, by = hit
        if not classes:
            self.unmatched[name.strip()] += 1
        elif by != "same" and name.strip() not in self.used:
            self.used[name.strip()] = {"classes": list(classes), "by": by}
        return classes

    def lookup(self, name: str) -> tuple[tuple[str, ...], str]:
        """``(classes, how)`` for ``name`` without counting it: how is ``"same"``, ``"synonym"``,
        ``"classes-map"`` or ``""`` (none)."""
        key = norm(name)
        if key in self._given:
            return self._given[key], "classes-map"
        if key in self._classes:
            return (self._classes[key],), "same"
        group = self._groups.get(key, ())
        return (group, "synonym") if group else ((), "")

    def index(self, value: str) -> tuple[str, ...]:
        """A class given as a number (single-label CSVs) or a name."""
        v = value.strip()
        if re.fullmatch(r"\d+", v) and norm(v) not in self._classes and norm(v) not in self._given:
            i = int(v)
            if i < len(self.class_names):
                return (self.class_names[i],)
            self.unmatched[v] += 1
            return ()
        return self.match(v)

    def to_json(self) -> dict[str, object]:
        """``{"mapped": {name: {"classes", "by"}}, "unmatched": {name: count}}`` for the manifest."""
        return {"mapped": dict(sorted(self.used.items())), "unmatched": dict(self.unmatched.most_common())}
