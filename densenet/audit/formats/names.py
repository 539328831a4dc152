"""Which listed image a file's key names: a relative path, a path under a dataset-root prefix, or a bare id.

Datasets name their images in several ways; every one is tried, in this order:

1. the relative path itself (``images/00000001_000.png``);
2. a path that *ends with* a listed relative path, on a ``/`` boundary: CheXpert's
   ``CheXpert-v1.0/valid/patient64541/study1/view1_frontal.jpg`` names ``valid/patient64541/...``
   in a folder holding ``valid/`` (dataset-root prefixes are common);
3. a bare file name (NIH's ``00000001_000.png``), when one listed file has it;
4. a bare id without a suffix (RSNA's ``patientId``, VinDr's ``image_id``, SIIM's ``ImageId``),
   when one listed file has that stem;
5. a flattened path (CheXlocalize's ``patient64541_study1_view1_frontal``): the listed path
   without its suffix, ``/`` read as ``_``, from any folder down, when unique.

An ambiguous key (two listed files fit) matches nothing rather than the wrong image.
:meth:`NameIndex.in_folder` lists the images of one folder (MIMIC-CXR labels a study, ``s<study_id>/``).
"""

from __future__ import annotations


class NameIndex:
    """Keys of a label or truth file -> listed images (relative ``/`` paths)."""

    def __init__(self, names: list[str]) -> None:
        self.names = set(names)
        by_base: dict[str, list[str]] = {}
        by_stem: dict[str, list[str]] = {}
        by_flat: dict[str, list[str]] = {}
        self._by_folder: dict[str, list[str]] = {}
        for n in names:
            if "/" in n:
                self._by_folder.setdefault(n.rsplit("/", 2)[-2], []).append(n)
            base = n.rsplit("/", 1)[-1]
            by_base.setdefault(base, []).append(n)
            stem_path = n.rsplit(".", 1)[0] if "." in base else n
            by_stem.setdefault(stem_path.rsplit("/", 1)[-1], []).append(n)
            parts = stem_path.split("/")
            for k in range(len(parts) - 1):  # every folder down, the file's own stem excepted (by_stem)
                by_flat.setdefault("_".join(parts[k:]), []).append(n)
        self._by_base = {b: v[0] for b, v in by_base.items() if len(v) == 1}
        self._by_stem = {b: v[0] for b, v in by_stem.items() if len(v) == 1}
        self._by_flat = {b: v[0] for b, v in by_flat.items() if len(v) == 1}

    def in_folder(self, name: str) -> list[str]:
        """The listed images whose own folder is called ``name``."""
        return self._by_folder.get(name.strip(), [])

    def find(self, text: str) -> str | None:
        """The listed image ``text`` names, or ``None`` (not listed, or ambiguous)."""
        key = text.strip().replace("\\", "/")
        while key.startswith("./"):
            key = key[2:]
        key = key.lstrip("/")
        if not key:
            return None
        if key in self.names:
            return key
        if "/" in key:
            parts = key.split("/")
            for k in range(1, len(parts) - 1 + 1):
                tail = "/".join(parts[k:])
                if tail in self.names:
                    return tail
            return None
        return self._by_base.get(key) or self._by_stem.get(key) or self._by_flat.get(key)
