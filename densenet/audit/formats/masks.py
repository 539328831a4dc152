"""Masks held in a file's text rather than in an image file, decoded when a row is scored.

- :class:`RleMask`: COCO run-length encoding (``{"size": [h, w], "counts": str}``, column-major),
  CheXlocalize's ``gt_segmentations_*.json``; decoded with pycocotools.
- :class:`PolygonMask`: polygons in original pixels (CheXlocalize's ``gt_annotations_*.json``),
  filled as CheXlocalize's ``annotation_to_segmentation.py`` fills them (PIL, outline and fill).
- :class:`RunLengthMask`: SIIM-ACR's ``EncodedPixels`` (start offsets *relative* to the end of
  the previous run, column-major over the image, ``-1`` for none), one or more per image.
- :class:`VoteMask`: boxes of several readers, a pixel in when more than half of them drew it
  (VinDr-CXR ``--readers majority``).

Each has ``decode(height, width) -> (h, w) bool`` (``height``/``width``: the image's size, for
encodings that do not carry one), ``digest()`` for the listing hash and ``kind`` (``"mask"``,
or ``"box"`` for reader votes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Box = tuple[float, float, float, float]


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RleMask:
    """COCO compressed RLE (pycocotools' ``mask.decode``); ``size`` is ``(h, w)``."""

    size: tuple[int, int]
    counts: str
    kind: str = "mask"

    def decode(self, height: int, width: int) -> np.ndarray:
        try:
            from pycocotools import mask as coco_mask
        except ImportError:
            raise ValueError("COCO RLE masks need pycocotools (pip install pycocotools)") from None
        rle = {"size": [int(self.size[0]), int(self.size[1])], "counts": self.counts.encode()}
        return coco_mask.decode(rle).astype(bool)

    def digest(self) -> str:
        return _digest([list(self.size), self.counts])


@dataclass(frozen=True)
class PolygonMask:
    """Polygons ``[[x, y], ...]`` in original pixels on an ``(h, w)`` image."""

    size: tuple[int, int]
    polygons: tuple[tuple[tuple[float, float], ...], ...]
    kind: str = "mask"

    def decode(self, height: int, width: int) -> np.ndarray:
        from PIL import Image, ImageDraw

        h, w = self.size
        canvas = Image.new("1", (int(w), int(h)))
        draw = ImageDraw.Draw(canvas)
        for polygon in self.polygons:
            draw.polygon([(float(x), float(y)) for x, y in polygon], outline=1, fill=1)
        return np.array(canvas, dtype=bool)

    def digest(self) -> str:
        return _digest([list(self.size), [[list(p) for p in poly] for poly in self.polygons]])


@dataclass(frozen=True)
class RunLengthMask:
    """SIIM-ACR run-lengths, decoded at the image's size (the encoding carries none)."""

    encodings: tuple[str, ...]
    kind: str = "mask"

    def decode(self, height: int, width: int) -> np.ndarray:
        flat = np.zeros(height * width, bool)
        for text in self.encodings:
            values = [int(v) for v in text.split()]
            if values == [-1] or not values:
                continue
            if len(values) % 2:
                raise ValueError(f"SIIM run-lengths need start/length pairs, got {len(values)} numbers")
            position = 0
            for start, length in zip(values[0::2], values[1::2]):
                position += start
                if position + length > flat.size:
                    raise ValueError(f"SIIM run-lengths reach pixel {position + length}, past a {height} x {width} image")
                flat[position:position + length] = True
                position += length
        return flat.reshape(width, height).T  # column-major: the flat index runs down the columns

    def digest(self) -> str:
        return _digest(list(self.encodings))


@dataclass(frozen=True)
class VoteMask:
    """Several readers' boxes; a pixel is in when more than half of ``readers`` drew a box over it."""

    boxes_by_reader: tuple[tuple[Box, ...], ...]
    readers: int
    kind: str = "box"

    def decode(self, height: int, width: int) -> np.ndarray:
        votes = np.zeros((height, width), np.int32)
        for boxes in self.boxes_by_reader:
            votes += boxes_on_grid(boxes, np.arange(height) + 0.5, np.arange(width) + 0.5)
        return votes * 2 > self.readers

    def votes_at(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """The majority at sample points (pixel centres of another grid)."""
        votes = np.zeros((ys.size, xs.size), np.int32)
        for boxes in self.boxes_by_reader:
            votes += boxes_on_grid(boxes, ys, xs)
        return votes * 2 > self.readers

    def digest(self) -> str:
        return _digest([[list(b) for b in r] for r in self.boxes_by_reader] + [self.readers])


def boxes_on_grid(boxes: tuple[Box, ...], ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(len(ys), len(xs)) bool: sample points inside any box (``x0 <= x < x1``, ``y0 <= y < y1``)."""
    out = np.zeros((ys.size, xs.size), bool)
    for x0, y0, x1, y1 in boxes:
        out |= ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
    return out


MaskSource = Path | RleMask | PolygonMask | RunLengthMask | VoteMask


def read_png(path: Path) -> np.ndarray:
    """A mask image, ``> 127`` in grey."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L")) > 127
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"cannot read mask {path.name}: {e}") from None


def decode(source: MaskSource, height: int, width: int) -> np.ndarray:
    """Any mask source as a bool array (its own size; a run-length or vote mask at ``height x width``)."""
    if isinstance(source, Path):
        return read_png(source)
    return source.decode(height, width)


def digest(source: MaskSource) -> str:
    if isinstance(source, Path):
        try:
            return hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        except OSError:
            return "missing"
    return source.digest()


def kind_of(source: MaskSource) -> str:
    return "mask" if isinstance(source, Path) else source.kind
