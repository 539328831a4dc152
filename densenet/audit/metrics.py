"""Scores of a map against ground truth, and the statistics over many of them.

Per map (all batched over ``(N, H, W)``):

- pointing game: is the map's maximum inside the truth (the first maximum in row-major order;
  a map with no positive value misses);
- energy-based pointing game: the share of the map's mass inside the truth;
- IoU and Dice after CheXlocalize's binarisation (Saporta et al. 2022, repository
  ``rajpurkarlab/cheXlocalize``, ``heatmap_to_segmentation.py``, ``cam_to_segmentation``):
  min-max to 0-255, truncated to ``uint8``, Otsu's threshold on that histogram (OpenCV's
  ``THRESH_OTSU``), a pixel is in when its value exceeds the threshold, then the contours of
  that segmentation filled (CheXlocalize draws every contour ``findContours`` finds as a filled
  polygon: holes are filled, single-pixel specks dropped); or a fixed threshold on the min-max
  map, strict (``>``) and unfilled, as theirs. :mod:`.protocol` applies it at the film's resolution.

Over many: means with percentile bootstrap intervals (1,000 resamples, as CheXlocalize),
accuracy, and AUROC (rank form, ties counted half).
"""

from __future__ import annotations

import math

import numpy as np

#: How a map is binarised for IoU and Dice: ``"otsu"`` or a fixed threshold in (0, 1).
Binarize = str | float


def pointing_hits(maps: np.ndarray, truth: np.ndarray, *, tolerance: float = 0.0) -> np.ndarray:
    """(N,) bool: the map's maximum falls inside the truth (or within ``tolerance`` pixels of it).

    Args:
        maps: (N, H, W); the first maximum in row-major order is the peak; a map with no positive
            value misses.
        truth: (N, H, W) bool.
        tolerance: a peak within this Euclidean distance (pixels, centre to centre) of a truth
            pixel also hits (the published pointing game uses 15 px at 224; CheXlocalize none).
    """
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    peak = flat.argmax(axis=1)
    hit = truth.reshape(n, -1)[np.arange(n), peak]
    if tolerance > 0:
        h, w = maps.shape[1:]
        r = int(math.floor(tolerance))
        for k in np.flatnonzero(~hit):
            i, j = divmod(int(peak[k]), w)
            window = truth[k, max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1]
            ii, jj = np.nonzero(window)
            d2 = (ii + max(i - r, 0) - i) ** 2 + (jj + max(j - r, 0) - j) ** 2
            hit[k] = bool((d2 <= tolerance ** 2).any())
    return hit & (flat.max(axis=1) > 0)


def energy_inside(maps: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,) share of each map's (non-negative) mass inside the truth; NaN for an all-zero map."""
    n = maps.shape[0]
    m = np.maximum(maps.reshape(n, -1), 0)  # in the maps' dtype: a film-sized float64 copy costs more than the sums
    total = m.sum(axis=1, dtype=np.float64)
    inside = np.where(truth.reshape(n, -1), m, 0).sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1), np.nan)


def to_uint8(maps: np.ndarray) -> np.ndarray:
    """CheXlocalize's first step: min-max each map to 0-255 and truncate to uint8; (N, H, W).

    Computed in float32, as CheXlocalize does on its float32 torch maps.
    """
    n = maps.shape[0]
    flat = maps.reshape(n, -1).astype(np.float32)
    lo = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - lo
    safe = np.where(span > 0, span, np.float32(1))
    scaled = (flat - lo) / safe
    scaled *= np.float32(255)
    scaled[(span <= 0)[:, 0]] = 0
    return scaled.astype(np.uint8).reshape(maps.shape)


def otsu_thresholds(values: np.ndarray) -> np.ndarray:
    """Otsu's threshold of each uint8 map, (N,) int, as OpenCV computes it.

    For every candidate ``t`` in 0..255 the classes are ``<= t`` and ``> t``; the first ``t``
    with the largest between-class variance wins.
    """
    n = values.shape[0]
    flat = values.reshape(n, -1)
    if flat.shape[1] > 65536:  # film-sized maps: one bincount each (no int64 copy of millions of pixels)
        hist = np.stack([np.bincount(f, minlength=256) for f in flat]).astype(np.float64)
    else:
        offsets = (np.arange(n, dtype=np.int64) * 256)[:, None]  # one 256-bin histogram per map, one bincount
        hist = np.bincount((flat + offsets).ravel(), minlength=256 * n).reshape(n, 256).astype(np.float64)
    p = hist / flat.shape[1]
    levels = np.arange(256, dtype=np.float64)
    q1 = np.cumsum(p, axis=1)
    mu_cum = np.cumsum(p * levels, axis=1)
    mu = mu_cum[:, -1:]
    q2 = 1 - q1
    with np.errstate(invalid="ignore", divide="ignore"):
        mu1 = mu_cum / q1
        mu2 = (mu - mu_cum) / q2
        between = q1 * q2 * (mu1 - mu2) ** 2
    # OpenCV skips levels where one class is (numerically) empty.
    between = np.where((q1 < 1e-12) | (q2 < 1e-12), -1.0, np.nan_to_num(between, nan=-1.0))
    return between.argmax(axis=1)


def fill_contours(segmentation: np.ndarray) -> np.ndarray:
    """CheXlocalize's contour step on (N, H, W) or (H, W) bool: every contour filled.

    ``cv2.findContours(RETR_TREE)`` then drawing each contour of more than one point as a filled
    polygon (PIL) gives each 8-connected component with its holes filled; a component of one
    pixel has a one-point contour, which CheXlocalize skips. Done here with SciPy: holes are the
    4-connected background regions that do not reach the border (OpenCV's convention).
    """
    from scipy import ndimage

    seg = np.asarray(segmentation, bool)
    if seg.ndim == 3:
        return np.stack([fill_contours(s) for s in seg]) if len(seg) else seg.copy()
    if not seg.any():
        return seg.copy()
    rows, cols = np.flatnonzero(seg.any(axis=1)), np.flatnonzero(seg.any(axis=0))
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, seg.shape[0])
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, seg.shape[1])
    if (r1 - r0, c1 - c0) != seg.shape:
        # Only the segmentation's bounding box, with a ring of background around it: that ring joins
        # the rest of the background, so holes and specks are the same as on the whole image.
        out = np.zeros_like(seg)
        out[r0:r1, c0:c1] = fill_contours(seg[r0:r1, c0:c1])
        return out
    # Holes: background regions (4-connected) that touch no border.
    background, _ = ndimage.label(~seg)
    edge = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    outside = np.zeros(background.max() + 1, bool)
    outside[edge] = True
    outside[0] = True  # label 0 is the foreground itself
    filled = seg | ~outside[background]
    labels, n = ndimage.label(filled, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    single = sizes == 1
    single[0] = False
    if single.any():
        filled &= ~single[labels]
    return filled


def binarize(maps: np.ndarray, method: Binarize = "otsu") -> tuple[np.ndarray, np.ndarray]:
    """Segment each map: CheXlocalize's Otsu pipeline (contours filled) or a fixed threshold (``>``) on the min-max map.

    Args:
        maps: (N, H, W) maps (any scale).
        method: ``"otsu"`` or a threshold in (0, 1).

    Returns:
        ((N, H, W) bool segmentations, (N,) thresholds on the [0, 1] scale).

    Raises:
        ValueError: an unknown method or a threshold outside (0, 1).
    """
    u8 = to_uint8(maps)
    if isinstance(method, str):
        if method != "otsu":
            raise ValueError(f"binarize must be 'otsu' or a threshold in (0, 1), got {method!r}")
        t = otsu_thresholds(u8)
        return fill_contours(u8 > t[:, None, None]), t / 255.0
    threshold = float(method)
    if not 0 < threshold < 1:
        raise ValueError(f"a fixed binarisation threshold must lie in (0, 1), got {method!r}")
    n = maps.shape[0]
    flat = maps.reshape(n, -1).astype(np.float64)
    lo = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - lo
    scaled = np.where(span > 0, (flat - lo) / np.where(span > 0, span, 1), 0)
    return (scaled > threshold).reshape(maps.shape) & (span > 0).reshape(n, 1, 1), np.full(n, threshold)


def overlap(segmentation: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) IoU and Dice of two (N, H, W) bool stacks; NaN where both are empty."""
    n = segmentation.shape[0]
    s, t = segmentation.reshape(n, -1), truth.reshape(n, -1)
    inter = (s & t).sum(axis=1).astype(np.float64)
    union = (s | t).sum(axis=1).astype(np.float64)
    sizes = s.sum(axis=1) + t.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)
        dice = np.where(sizes > 0, 2 * inter / np.where(sizes > 0, sizes, 1), np.nan)
    return iou, dice


# --- over many ---------------------------------------------------------------------------------

def bootstrap_ci(values: np.ndarray, *, resamples: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean of the finite ``values`` and its percentile bootstrap interval.

    Args:
        values: 1-D; NaNs are dropped (a row without ground truth has no IoU).
        resamples: bootstrap resamples (CheXlocalize uses 1,000).
        level: coverage of the interval.
        seed: the resampling stream, so a report is reproducible.

    Returns:
        ``(mean, low, high)``; all NaN when no value is finite.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // v.size)  # bounded memory for large sets
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        means[start:start + k] = v[rng.integers(0, v.size, (k, v.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return (float(v.mean()), float(low), float(high))


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties half); NaN without both classes."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    # average ranks over ties
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
