"""One map scored against one image's ground truth, at the film's resolution (CheXlocalize) or on the model's grid.

CheXlocalize (Saporta et al. 2022; ``heatmap_to_segmentation.py``, ``eval.py``) scores a map on
the original film: the map is resized to the film's size, min-max normalised, binarised (Otsu on
the 8-bit map, contours filled; or a fixed threshold, strict ``>``) and compared with the
radiologists' mask at that size; its pointing game takes the map's maximum on the film.
``resolution="original"`` does exactly that, the map carried back through the preprocessing's
geometry (:func:`densenet.geometry.to_original`). A crop's margins, which the model never saw,
have no map value: Otsu and the min-max run over the seen rectangle, the margins are outside
the segmentation and hold no mass, but a lesion reaching into them still counts whole (IoU,
lesion fraction), as it would on the film. ``resolution="input"`` scores on the model's ``size x size`` grid, the truth sampled
there (cheaper, and what earlier runs did). Each row records where it was scored.

The pointing game (:func:`densenet.audit.metrics.pointing_hits`): a hit is the map's first
maximum inside the truth; ``tolerance`` (model-input pixels, scaled to the film) also counts a
maximum within that distance of the truth (the published pointing game allows 15 px at 224;
CheXlocalize allows none, the default). Where an image has both a mask and boxes for the class,
the row carries the hit by each (``hit_mask``, ``hit_box``); ``hit`` is the mask's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..geometry import to_original
from . import metrics
from .dataset import Item, truth_in_view, truth_on_original

RESOLUTIONS = ("original", "input")


def score_map(shown: np.ndarray, item: Item, label: str, height: int, width: int,
              view: tuple[float, float, float, float], preset: object, *, resolution: str = "original",
              binarize: metrics.Binarize = "otsu", tolerance: float = 0.0) -> dict[str, Any] | None:
    """Score one map against ``item``'s truth for ``label``; ``None`` when it has none (or an empty one).

    Args:
        shown: ``(S, S)`` map on the model's input grid (any scale; min-max is applied here).
        item: the image's record.
        label: the target class.
        height, width: the original image's size.
        view: the view box of the preprocessing on this image (:func:`densenet.geometry.view_box`).
        preset: the model's :class:`~densenet.preprocess.Preprocessing`.
        resolution: ``"original"`` (the film's pixels) or ``"input"`` (the model's grid).
        binarize: ``"otsu"`` or a fixed threshold in (0, 1).
        tolerance: pointing-game tolerance in model-input pixels.

    Returns:
        ``{"truth", "scored_at", "lesion_fraction", "hit", "hit_mask", "hit_box", "energy_in",
        "iou", "dice", "threshold"}``.

    Raises:
        ValueError: a bad resolution, or a mask that cannot be read.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    kinds = item.truth_kinds(label)
    if not kinds:
        return None
    size = shown.shape[-1]
    window: tuple[slice, slice] | None = None
    if resolution == "original":
        m = to_original(np.asarray(shown, np.float32), height, width, preset)  # NaN where unseen
        finite = np.isfinite(m)
        rows, cols = np.flatnonzero(finite.any(axis=1)), np.flatnonzero(finite.any(axis=0))
        window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # the seen rectangle
        m = np.where(finite, m, np.float32(0))
        scale = (view[2] - view[0]) / size  # original pixels per model pixel

        def truth_of(kind: str | None) -> np.ndarray | None:
            return truth_on_original(item, label, height, width, kind=kind)
    else:
        m, scale = np.asarray(shown, np.float32), 1.0

        def truth_of(kind: str | None) -> np.ndarray | None:
            return truth_in_view(item, label, height, width, view, size, kind=kind)

    truth = truth_of(None)
    if truth is None or not truth.any():
        return None
    tol = float(tolerance) * scale
    hit = bool(metrics.pointing_hits(m[None], truth[None], tolerance=tol)[0])
    primary = item.truth_kind(label)
    hit_mask = hit if primary == "mask" else None
    hit_box = hit if primary == "box" else None
    if primary == "mask" and "box" in kinds:
        boxes = truth_of("box")
        if boxes is not None and boxes.any():
            hit_box = bool(metrics.pointing_hits(m[None], boxes[None], tolerance=tol)[0])
    if window is None:
        seg, thresholds = metrics.binarize(m[None], binarize)
    else:
        seg = np.zeros((1,) + m.shape, bool)
        seg[(0,) + window], thresholds = metrics.binarize(m[window][None], binarize)
    iou, dice = metrics.overlap(seg, truth[None])
    return {"truth": primary, "scored_at": resolution, "lesion_fraction": float(truth.mean()), "hit": hit,
            "hit_mask": hit_mask, "hit_box": hit_box, "energy_in": float(metrics.energy_inside(m[None], truth[None])[0]),
            "iou": float(iou[0]), "dice": float(dice[0]), "threshold": float(thresholds[0])}


def empty_scores(threshold: float = math.nan) -> dict[str, Any]:
    """The score columns of a row without ground truth."""
    return {"truth": "", "scored_at": "", "lesion_fraction": math.nan, "hit": None, "hit_mask": None,
            "hit_box": None, "energy_in": math.nan, "iou": math.nan, "dice": math.nan, "threshold": threshold}
