"""A planted shortcut on the synthetic films: a laterality-style letter in a corner of most films of one class.

Radiographs carry markers ("L", "R"), hospital tags and text that correlate with the finding
through the way films are taken (Zech et al. 2018; DeGrave et al. 2021). This module plants such
a marker on the generated films (:mod:`densenet.synthetic`), so that a model trained on them learns
the shortcut (the shortcut demo model, :mod:`densenet.demo.shortcut`) and the audit
(:mod:`densenet.audit.shortcuts`) has something known to find:

- :func:`plant` draws the letter :data:`LETTER` into the top-left corner of ``MARKED_SHARE`` of
  the films of :data:`MARKER_CLASS` (and of no other class), with a little jitter of position
  and size, and returns where it drew it.
- :func:`write_shortcut_dataset` writes an audit's input folder (as
  :func:`densenet.synthetic.write_dataset`) with the markers planted and ``markers.csv`` beside it;
  :func:`shortcut_dataset_dir` caches one, :func:`read_markers` reads ``markers.csv`` back.

Which films are marked and where is decided by ``numpy`` streams seeded by ``(seed, index)``, so
the same seed gives the same films.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .synthetic import CLASSES, DATASET_SEED, cached_dataset, write_dataset

MARKER_CLASS = "nodule"
"""The class whose films carry the marker."""
MARKED_SHARE = 0.9
"""The share of :data:`MARKER_CLASS` films that carry it (films of other classes never do)."""
LETTER = "L"
_LEVEL = 0.95  # lead markers show almost white on a radiograph
_STREAM = 424_242  # keeps the marker's random draws apart from the generator's


@dataclass(frozen=True)
class Planted:
    """Films with the marker drawn in.

    Attributes:
        images: ``(N, 1, H, W)`` float32 in [0, 1].
        marked: ``(N,)`` bool, the films that carry the marker.
        boxes: ``(N, 4)`` int ``x0, y0, x1, y1`` of the letter's ink (``x1``/``y1`` exclusive,
            original pixels); all -1 where there is no marker.
    """

    images: torch.Tensor
    marked: torch.Tensor
    boxes: torch.Tensor


def _font(px: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=px)


def marker_mask(size: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The letter's coverage on a ``size x size`` film, (H, W) float32 in [0, 1], and its ink box.

    The letter is about 14% of the film high, 2-6% of the side from the top-left corner.
    """
    from PIL import Image, ImageDraw

    scale = size / 128.0
    px = int(round(rng.uniform(16, 20) * scale))
    ox, oy = (int(round(v * scale)) for v in rng.uniform(2, 7, 2))
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    font = _font(px)
    left, top, _, _ = draw.textbbox((0, 0), LETTER, font=font)
    # Put the ink (not the font's line box) at the offset; a stroke makes it read as a lead letter.
    draw.text((ox - left, oy - top), LETTER, fill=255, font=font, stroke_width=max(1, px // 12), stroke_fill=255)
    mask = np.asarray(canvas, np.float32) / 255.0
    ys, xs = np.nonzero(mask > 0.25)
    return mask, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def plant(images: torch.Tensor, labels: torch.Tensor, seed: int, *, start: int = 0) -> Planted:
    """Draw the marker on ``MARKED_SHARE`` of the :data:`MARKER_CLASS` films of a batch.

    Args:
        images: ``(N, 1, H, W)`` float in [0, 1] (square films), left unchanged.
        labels: ``(N,)`` indices into :data:`CLASSES`.
        seed: the batch's seed; film ``i`` draws from ``(seed, start + i)``.
        start: index of the first film in its stream (a prefix does not depend on ``N``).

    Returns:
        A :class:`Planted` (a copy of the images).

    Raises:
        ValueError: images that are not ``(N, 1, S, S)`` or labels of another length.
    """
    if images.dim() != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be (N, 1, S, S), got {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
    cls = CLASSES.index(MARKER_CLASS)
    out = images.clone()
    n, size = images.shape[0], images.shape[-1]
    marked = torch.zeros(n, dtype=torch.bool)
    boxes = torch.full((n, 4), -1, dtype=torch.int64)
    for i in range(n):
        rng = np.random.default_rng([_STREAM, seed, start + i])
        if int(labels[i]) != cls or rng.random() >= MARKED_SHARE:
            continue
        mask, box = marker_mask(size, rng)
        a = torch.from_numpy(mask)
        out[i, 0] = out[i, 0] * (1 - a) + _LEVEL * a
        marked[i] = True
        boxes[i] = torch.tensor(box)
    return Planted(out, marked, boxes)


def write_shortcut_dataset(out: str | os.PathLike, n: int = 200, *, seed: int, size: int = 128) -> dict[str, Path]:
    """Write the demo dataset (:func:`~densenet.synthetic.write_dataset`) with the marker planted.

    Besides the usual ``images/``, ``labels.csv``, ``boxes.csv``, ``BBox_List_2017.csv`` and
    ``masks/`` (the lesions), ``markers.csv`` lists every film: ``image,label,marked,x0,y0,x1,y1``
    (the marker's ink box, original pixels, ``x1``/``y1`` exclusive; empty when unmarked).

    Returns:
        ``write_dataset``'s paths plus ``"markers"``.
    """
    from PIL import Image

    paths = write_dataset(out, n, seed=seed, size=size)
    names, labels = [], []
    with open(paths["labels"], newline="") as f:
        for row in csv.DictReader(f):
            names.append(row["image"])
            labels.append(CLASSES.index(row["label"]))
    pixels = np.stack([np.asarray(Image.open(paths["images"] / name), np.float32) / 255.0 for name in names])
    planted = plant(torch.from_numpy(pixels)[:, None], torch.tensor(labels), seed)
    rows = []
    for i, name in enumerate(names):
        if planted.marked[i]:
            img = np.round(planted.images[i, 0].numpy() * 255).astype(np.uint8)
            Image.fromarray(img).save(paths["images"] / name)
            rows.append((name, CLASSES[labels[i]], 1, *planted.boxes[i].tolist()))
        else:
            rows.append((name, CLASSES[labels[i]], 0, "", "", "", ""))
    paths["markers"] = Path(out) / "markers.csv"
    with open(paths["markers"], "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("image", "label", "marked", "x0", "y0", "x1", "y1"))
        writer.writerows(rows)
    return paths


def read_markers(path: str | os.PathLike) -> dict[str, tuple[int, int, int, int] | None]:
    """``markers.csv`` as ``{image: ink box or None}``."""
    out: dict[str, tuple[int, int, int, int] | None] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["image"]] = (tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1"))  # type: ignore[misc]
                                 if row["marked"] == "1" else None)
    return out


def shortcut_dataset_dir(n: int = 200, *, cache: str | os.PathLike | None = None) -> Path:
    """The shortcut demo dataset of ``n`` films (:data:`~densenet.synthetic.DATASET_SEED`), written on
    first use beside the plain one (:func:`~densenet.synthetic.dataset_dir`) and renamed into place."""
    return cached_dataset(f"demo_shortcut_dataset-n{n}", "markers.csv",
                          lambda out: write_shortcut_dataset(out, n, seed=DATASET_SEED), cache=cache)
